// Layout search: every valid (dp, tp, pp, vpp, ZeRO, micro-batch, recompute, sequence parallel, offload) for
// a model, a cluster and a global batch; drop what does not fit (headroom kept free), rank by estimated
// throughput, explain each suggestion in one line. Fits are decided with the `scalelm` convention. Pure.
import { divisorsOf, layoutIssues } from '../config/rules';
import { formatBytes } from '../../common/units';
import { usableMemory } from './estimate';
import { estimateMemory, overheadsOf, scalelmContext, scalelmStage } from './memory';
import { countParams, type ParamCounts } from './params';
import { commOf, estimateTime } from './time';
import type { EstimateOptions, Layout, MemoryBreakdown, MemoryEstimate, PlanInput, PlanIssue, Recompute, TimeEstimate, ZeroStage } from './types';
import { asConfigModel, modelIssues } from './validate';

export interface SearchOptions extends EstimateOptions {
  /** Dimensions the user fixed (from CLI flags); the rest are searched. */
  fixed?: Partial<Layout>;
  /** How many of the best layouts to return with their full breakdown (default 10). */
  top?: number;
  /** Largest micro-batch tried (default: no limit beyond globalBatch/dp). */
  maxMicroBatch?: number;
  /** Host memory per node for offloaded states (default 1 TiB, a DGX A100's); layouts needing more do not fit. */
  hostMemoryPerNode?: number;
}

export const DEFAULT_HOST_MEMORY = 2 ** 40;

export interface Candidate {
  rank: number;
  layout: Layout;
  memory: MemoryBreakdown;
  heaviestStage: number;
  time: TimeEstimate;
  explanation: string;
  /** The full estimate (terms), for the top ones only. */
  detail?: MemoryEstimate;
}

export interface SearchResult {
  ok: boolean;
  /** The best `top` fitting layouts, best first. */
  candidates: Candidate[];
  /** Every fitting layout, best first, without detail (for "where does layout X rank"). */
  ranking: { layout: Layout; tokensPerSec: number; tflopsPerGpu: number; memory: number }[];
  /** Layouts considered = fits + tooBig + invalid (a rule broken: divisibility, ZeRO with pipelines, ...). */
  stats: { enumerated: number; fits: number; tooBig: number; invalid: number };
  usable: number;
  /** When nothing fits: the smallest layout and why, so the refusal says what binds. */
  closest?: { layout: Layout; memory: MemoryBreakdown; hostPerNode: number };
  /** When nothing fits: the offloading layout that fits the GPUs with the least host memory, if any. */
  offloadNeedsHost?: { layout: Layout; hostPerNode: number };
  hostLimit: number;
  issues: PlanIssue[];
}

const RECOMPUTE: Recompute[] = ['none', 'selective', 'full'];

/** Offload variants a ZeRO stage allows. */
function offloads(zero: ZeroStage): [boolean, boolean][] {
  if (zero === 0) return [[false, false]];
  if (zero === 3) return [[false, false], [true, false], [true, true]];
  return [[false, false], [true, false]];
}

export function searchLayouts(input: PlanInput, options: SearchOptions = {}): SearchResult {
  const issues = modelIssues(input.model);
  const usable = usableMemory(input);
  const hostLimit = options.hostMemoryPerNode ?? DEFAULT_HOST_MEMORY;
  const empty: SearchResult = { ok: false, candidates: [], ranking: [], stats: { enumerated: 0, fits: 0, tooBig: 0, invalid: 0 }, usable, hostLimit, issues };
  if (issues.length) return empty;
  const { model, train, cluster } = input;
  const N = cluster.gpusPerNode * cluster.nodes;
  const G = train.globalBatch;
  const fx = options.fixed ?? {};
  const overheads = overheadsOf(options);
  const comm = commOf(options.comm);
  const stats = { enumerated: 0, fits: 0, tooBig: 0, invalid: 0 };
  const fitting: { layout: Layout; memory: MemoryBreakdown; stage: number; time: TimeEstimate }[] = [];
  let closest: SearchResult['closest'];
  let offloadNeedsHost: SearchResult['offloadNeedsHost'];
  const ranksPerNode = Math.min(cluster.gpusPerNode, N);
  // Prefer, as "closest", layouts within the host limit; among them the smallest on the GPU.
  const closer = (c: NonNullable<SearchResult['closest']>) => {
    if (!closest) return true;
    const inHost = c.hostPerNode <= hostLimit;
    const wasInHost = closest.hostPerNode <= hostLimit;
    if (inHost !== wasInHost) return inHost;
    return c.memory.total < closest.memory.total;
  };
  const countsByTp = new Map<number, ParamCounts>();

  const pick = <T>(key: keyof Layout, all: T[]): T[] => (fx[key] !== undefined ? all.filter((v) => v === (fx[key] as unknown as T)) : all);
  const tps = pick('tp', divisorsOf(N));
  for (const tp of tps) {
    for (const pp of pick('pp', divisorsOf(N / tp))) {
      const dp = N / (tp * pp);
      if (fx.dp !== undefined && fx.dp !== dp) continue;
      if (G % dp !== 0) {
        stats.invalid++;
        continue;
      }
      const vpps = pp === 1 ? [1] : divisorsOf(model.layers % pp === 0 ? model.layers / pp : 1);
      for (const vpp of pick('vpp', vpps)) {
        for (const zero of pick('zero', [0, 1, 2, 3] as ZeroStage[])) {
          for (const [offloadOptimizer, offloadParams] of offloads(zero)) {
            // With dp = 1 ZeRO has nothing to partition; only its offload (ZeRO-Offload on one replica) differs from ZeRO-0.
            if (dp === 1 && zero > 0 && !offloadOptimizer) continue;
            if (fx.offloadOptimizer !== undefined && fx.offloadOptimizer !== offloadOptimizer) continue;
            if (fx.offloadParams !== undefined && fx.offloadParams !== offloadParams) continue;
            for (const sequenceParallel of pick('sequenceParallel', tp > 1 ? [true, false] : [false])) {
              const base = { dp, tp, pp, vpp, zero, sequenceParallel, offloadOptimizer, offloadParams };
              if (layoutIssues(asConfigModel(model), base).length) {
                stats.invalid++;
                continue;
              }
              let counts = countsByTp.get(tp);
              if (!counts) countsByTp.set(tp, (counts = countParams(model, tp)));
              const micro = pick('microBatch', divisorsOf(G / dp)).filter((b) => b <= (options.maxMicroBatch ?? Infinity));
              // With FlashAttention there are no attention scores to recompute: selective equals none.
              const recomputes = train.flashAttention && fx.recompute === undefined ? RECOMPUTE.filter((r) => r !== 'selective') : RECOMPUTE;
              for (const recompute of pick('recompute', recomputes)) {
                for (let i = 0; i < micro.length; i++) {
                  const layout: Layout = { ...base, microBatch: micro[i]!, recompute };
                  const m = G / (dp * layout.microBatch);
                  if (vpp > 1 && m % pp !== 0) {
                    stats.invalid++;
                    continue;
                  }
                  const ctx = scalelmContext(input, layout, overheads, counts);
                  let mem = scalelmStage(ctx, 0);
                  let stage = 0;
                  if (pp > 1) {
                    const last = scalelmStage(ctx, pp - 1);
                    if (last.total > mem.total) {
                      mem = last;
                      stage = pp - 1;
                    }
                  }
                  const hostPerNode = mem.host * ranksPerNode;
                  if (mem.total > usable || hostPerNode > hostLimit) {
                    const c = { layout, memory: mem, hostPerNode };
                    if (closer(c)) closest = c;
                    if (mem.total <= usable && (!offloadNeedsHost || hostPerNode < offloadNeedsHost.hostPerNode)) offloadNeedsHost = { layout, hostPerNode };
                    // Memory never falls as the micro-batch grows (host memory does not depend on it): the larger ones do not fit either.
                    const skipped = micro.length - i;
                    stats.tooBig += skipped;
                    break;
                  }
                  stats.fits++;
                  fitting.push({ layout, memory: mem, stage, time: estimateTime(input, layout, overheads, comm, counts) });
                }
              }
            }
          }
        }
      }
    }
  }
  stats.enumerated = stats.fits + stats.tooBig + stats.invalid;
  fitting.sort((a, b) => b.time.tokensPerSec - a.time.tokensPerSec || a.memory.total - b.memory.total);
  const top = options.top ?? 10;
  const candidates: Candidate[] = fitting.slice(0, top).map((f, i) => {
    const detail = estimateMemory(input, f.layout, { ...options, convention: 'scalelm' });
    return { rank: i + 1, layout: f.layout, memory: pickBreakdown(f.memory), heaviestStage: f.stage, time: f.time, explanation: explain(f.layout, f.memory.total, f.time, usable), detail };
  });
  const result: SearchResult = {
    ok: fitting.length > 0,
    candidates,
    ranking: fitting.map((f) => ({ layout: f.layout, tokensPerSec: f.time.tokensPerSec, tflopsPerGpu: f.time.tflopsPerGpu, memory: f.memory.total })),
    stats, usable, hostLimit, issues: [],
  };
  if (!fitting.length) {
    result.closest = closest && { layout: closest.layout, memory: pickBreakdown(closest.memory), hostPerNode: closest.hostPerNode };
    if (offloadNeedsHost) result.offloadNeedsHost = offloadNeedsHost;
    result.issues = [noFitIssue(input, stats, usable, hostLimit, result.closest, offloadNeedsHost)];
  }
  return result;
}

function pickBreakdown(b: MemoryBreakdown): MemoryBreakdown {
  return { params: b.params, grads: b.grads, optimizer: b.optimizer, activations: b.activations, buffers: b.buffers, overhead: b.overhead, total: b.total };
}

function noFitIssue(input: PlanInput, stats: SearchResult['stats'], usable: number, hostLimit: number, closest?: SearchResult['closest'], offload?: SearchResult['offloadNeedsHost']): PlanIssue {
  const N = input.cluster.gpusPerNode * input.cluster.nodes;
  if (!closest) {
    return { path: 'train.globalBatch', message: `no valid layout for ${N} GPUs and globalBatch=${input.train.globalBatch}: ${stats.invalid} combinations break a rule (dp must divide the global batch, tp the heads, pp the layers); change the batch or the GPU count` };
  }
  const m = closest.memory;
  if (m.total <= usable) {
    return { path: 'cluster', message: `no layout fits: the only ones small enough for the GPUs offload to the host and need ${formatBytes(closest.hostPerNode)} of host memory per node, more than ${formatBytes(hostLimit)} (${describe(closest.layout)}); add GPUs or host memory` };
  }
  const states = m.params + m.grads + m.optimizer;
  const what = states > usable ? `model states alone take ${formatBytes(states)}` : `activations take ${formatBytes(m.activations)} on top of ${formatBytes(states)} of model states`;
  const host = offload ? `; offloading (${describe(offload.layout)}) would fit the GPUs but needs ${formatBytes(offload.hostPerNode)} of host memory per node, more than ${formatBytes(hostLimit)}` : '';
  return { path: 'cluster', message: `no layout fits in ${formatBytes(usable)} per GPU (${Math.round(input.cluster.headroom * 100)}% headroom kept): the smallest, ${describe(closest.layout)}, needs ${formatBytes(m.total)} — ${what}${host}; add GPUs, use GPUs with more memory, or shorten the sequence` };
}

function describe(l: Layout): string {
  return `dp${l.dp}·tp${l.tp}·pp${l.pp}${l.vpp > 1 ? ` v${l.vpp}` : ''} ZeRO-${l.zero}${l.offloadParams ? ' offload opt+params' : l.offloadOptimizer ? ' offload opt' : ''} mb${l.microBatch} recompute ${l.recompute}${l.sequenceParallel ? ' SP' : ''}`;
}

const pct = (x: number) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;

/** One line: memory use, then what costs the most time beyond the matrix work (what binds), largest first. */
export function explain(l: Layout, memory: number, t: TimeEstimate, usable: number): string {
  const step = t.stepMs / 1e3;
  const b = t.breakdown;
  const losses: [number, string][] = [
    [b.bubble, `pipeline bubble ${pct(b.bubble / step)} (p=${l.pp}${l.vpp > 1 ? ` v=${l.vpp}` : ''}, ${t.microBatches} micro-batches)`],
    [b.tensorParallelComm, `TP all-reduce ${pct(b.tensorParallelComm / step)}${t.tensorParallelAcrossNodes ? ' ACROSS NODES' : ' in-node'}`],
    [b.dataParallelExposed, `${l.zero >= 1 ? `ZeRO-${l.zero}` : 'DP'} comm not hidden ${pct(b.dataParallelExposed / step)}${t.dataParallelAcrossNodes ? ' (inter-node)' : ''}`],
    [b.recompute, `recompute ${pct(b.recompute / step)}`],
    [b.offload, `offload transfers ${pct(b.offload / step)}`],
    [b.optimizer, `optimizer step ${pct(b.optimizer / step)}`],
    [b.pipelineComm, `pipeline sends ${pct(b.pipelineComm / step)}`],
  ];
  losses.sort((x, y) => y[0] - x[0]);
  const top = losses.filter(([v]) => v / step >= 0.01).slice(0, 2).map(([, s]) => s);
  const used = memory / usable;
  const parts = [`${formatBytes(memory, 1)} of ${formatBytes(usable, 1)} (${Math.round(used * 100)}%)`];
  if (used > 0.9) parts.push('memory binds');
  parts.push(top.length ? `binds: ${top.join(', ')}` : 'compute-bound');
  if (t.tensorParallelAcrossNodes && !top.some((s) => s.includes('ACROSS'))) parts.push('TP spans nodes');
  return parts.join(' · ');
}
