// One layout in, its memory (in a convention) and step time out — or the reasons it cannot exist. Pure.
import { estimateMemory, layoutOf, overheadsOf } from './memory';
import { commOf, estimateTime } from './time';
import type { EstimateOptions, EstimateResult, Layout, PlanInput } from './types';
import { planIssues } from './validate';

export function usableMemory(input: PlanInput): number {
  return input.cluster.spec.memory * (1 - input.cluster.headroom);
}

/** Estimates the layout in `input` (or `layout`, when given). Never throws for a bad layout: it returns the issues. */
export function estimate(input: PlanInput, options: EstimateOptions = {}, layout: Layout = layoutOf(input)): EstimateResult {
  const issues = planIssues(input, layout, options.convention ?? 'scalelm');
  if (issues.length) return { ok: false, issues };
  const memory = estimateMemory(input, layout, options);
  const time = estimateTime(input, layout, overheadsOf(options), commOf(options.comm));
  const usable = usableMemory(input);
  return { ok: true, layout, memory, time, usable, fits: memory.perDevice.total <= usable };
}

/** "dp4·tp8·pp8 v2 · ZeRO-1 · mb 1 · recompute selective · SP · offload opt" */
export function describeLayout(l: Layout): string {
  const parts = [`dp${l.dp}·tp${l.tp}·pp${l.pp}${l.vpp > 1 ? ` v${l.vpp}` : ''}`, `ZeRO-${l.zero}`, `mb ${l.microBatch}`, `recompute ${l.recompute}`];
  if (l.sequenceParallel) parts.push('SP');
  if (l.offloadParams) parts.push('offload opt+params');
  else if (l.offloadOptimizer) parts.push('offload opt');
  return parts.join(' · ');
}
