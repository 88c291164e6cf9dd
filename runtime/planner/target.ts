// What a config is planned against, and whether its layout fits there. A config with a `cluster` section is
// planned for that cluster in the `scalelm` convention; one without it is a local run, planned in the
// `runtime` convention against `devices.memory` per device (exactly what ScaleLM's runtime will allocate).
// The editor's CodeLens and diagnostics, `scalelm train`'s refusal and the Launch command all ask here. Pure.
import type { RunConfig } from '../config/types';
import { formatBytes } from '../../common/units';
import { describeLayout, estimate } from './estimate';
import { searchLayouts, type Candidate } from './search';
import type { ConventionName, EstimateResult, PlanInput } from './types';

export interface PlanTarget {
  kind: 'cluster' | 'local';
  /** "8 × H100-SXM" or "2 × CPU device (1.00 GiB)" */
  label: string;
  devices: number;
  /** Memory one device may use, bytes (after headroom). */
  capacity: number;
  convention: ConventionName;
  input: PlanInput;
}

export function planTarget(config: RunConfig): PlanTarget {
  const devices = config.parallel.dp * config.parallel.tp * config.parallel.pp;
  if (config.cluster.explicit) {
    const { cluster } = config;
    return {
      kind: 'cluster',
      label: `${cluster.nodes * cluster.gpusPerNode} × ${cluster.gpu}`,
      devices: cluster.nodes * cluster.gpusPerNode,
      capacity: cluster.spec.memory * (1 - cluster.headroom),
      convention: 'scalelm',
      input: config,
    };
  }
  const capacity = config.devices.memory;
  return {
    kind: 'local',
    label: `${config.devices.count} × ${config.devices.backend === 'webgpu' || config.devices.backend === 'tfjs-node-gpu' ? 'GPU' : 'CPU'} device (${formatBytes(capacity)})`,
    devices: config.devices.count,
    capacity,
    convention: 'runtime',
    input: {
      ...config,
      cluster: { ...config.cluster, nodes: 1, gpusPerNode: devices, headroom: 0, spec: { ...config.cluster.spec, memory: capacity } },
    },
  };
}

export interface FitCheck {
  target: PlanTarget;
  result: EstimateResult;
  /** When the layout does not fit (or cannot exist): the best layout that fits the same devices, if any. */
  suggestion?: Candidate;
}

export function checkFit(config: RunConfig): FitCheck {
  const target = planTarget(config);
  const result = estimate(target.input, { convention: target.convention });
  if (result.ok && result.fits) return { target, result };
  // The local runtime has no pipeline, offload or sequence parallelism: search only what it can run.
  const fixed = target.kind === 'local' ? { pp: 1, vpp: 1, offloadOptimizer: false, offloadParams: false, sequenceParallel: false } : {};
  const search = searchLayouts(target.input, { convention: target.convention, top: 1, fixed });
  const suggestion = search.candidates[0];
  return suggestion ? { target, result, suggestion } : { target, result };
}

/** "use tp=4 zero=1 — fits at 61.2 GiB": what changes relative to the config's layout. */
export function describeSuggestion(config: RunConfig, c: Candidate): string {
  const p = config.parallel;
  const l = c.layout;
  const changes: string[] = [];
  for (const key of ['dp', 'tp', 'pp', 'vpp', 'zero'] as const) if (l[key] !== p[key]) changes.push(`${key}=${l[key]}`);
  if (l.microBatch !== config.train.microBatch) changes.push(`microBatch=${l.microBatch}`);
  if (l.recompute !== config.train.recompute) changes.push(`recompute=${l.recompute}`);
  if (l.sequenceParallel !== p.sequenceParallel) changes.push(`sequenceParallel=${l.sequenceParallel}`);
  if (l.offloadOptimizer !== p.offloadOptimizer) changes.push(`offloadOptimizer=${l.offloadOptimizer}`);
  if (l.offloadParams !== p.offloadParams) changes.push(`offloadParams=${l.offloadParams}`);
  return `use ${changes.length ? changes.join(' ') : describeLayout(l)} — fits at ${formatBytes(c.memory.total, 1)}`;
}

/** The config edits (JSON path -> value) that turn the config's layout into `c`'s. */
export function suggestionEdits(config: RunConfig, c: Candidate): { path: string; value: number | boolean | string }[] {
  const edits: { path: string; value: number | boolean | string }[] = [];
  const l = c.layout;
  const p = config.parallel;
  for (const key of ['dp', 'tp', 'pp', 'vpp', 'zero', 'sequenceParallel', 'offloadOptimizer', 'offloadParams'] as const) if (l[key] !== p[key]) edits.push({ path: `parallel.${key}`, value: l[key] });
  if (l.microBatch !== config.train.microBatch) edits.push({ path: 'train.microBatch', value: l.microBatch });
  if (l.recompute !== config.train.recompute) edits.push({ path: 'train.recompute', value: l.recompute });
  return edits;
}
