// Layout search: every valid (dp, tp, pp, vpp, ZeRO, micro-batch, recompute, sequence parallel, offload) for
// a model, a cluster and a global batch; drop what does not fit (headroom kept free), rank by estimated
// throughput, explain each suggestion in one line. Fits are decided with the `scalelm` convention. Pure.
import { divisorsOf, layoutIssues } from '../config/rules';
import { formatBytes } from '../../common/units';
import { describeLayout, estimate, usableMemory } from './estimate';
import { estimateMemory, layoutParallel, overheadsOf, scalelmContext, scalelmStage } from './memory';
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
  /** Throughputs closer than this fraction are a tie (the time model's error on the golden runs); more memory headroom ranks first among ties. Default 0.05. */
  tieTolerance?: number;
  /** The layout the user has now (from the config): the result says where it ranks and how far from #1. */
  current?: Layout;
}

/** Above this fraction of usable memory, a layout ranked first is flagged (allocator spikes, longer batches). */
export const TIGHT_MEMORY = 0.95;

export interface CurrentLayout {
  layout: Layout;
  /** 1-based rank among the fitting layouts, or null when it does not fit or cannot exist. */
  rank: number | null;
  tokensPerSec?: number;
  /** Its throughput over #1's (1 = as fast). */
  vsBest?: number;
  memory?: number;
  /** Why it is not ranked: the first issue, or "needs X of Y usable". */
  reason?: string;
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
  /** Within the tie tolerance of #1's throughput. */
  tiesFirst: boolean;
}

export interface SearchResult {
  ok: boolean;
  /** The best `top` fitting layouts, best first. */
  candidates: Candidate[];
  /** Where the user's layout stands (when SearchOptions.current was given). */
  current?: CurrentLayout;
  /** Things a user must know about the ranking (a first place above 95% of usable memory). */
  warnings: string[];
  tieTolerance: number;
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
  if (zero === 3)
    return [
      [false, false],
      [true, false],
      [true, true],
    ];
  return [
    [false, false],
    [true, false],
  ];
}

export function searchLayouts(input: PlanInput, options: SearchOptions = {}): SearchResult {
  const issues = modelIssues(input.model);
  const usable = usableMemory(input);
  const hostLimit = options.hostMemoryPerNode ?? DEFAULT_HOST_MEMORY;
  const tol = options.tieTolerance ?? 0.05;
  const empty: SearchResult = { ok: false, candidates: [], ranking: [], stats: { enumerated: 0, fits: 0, tooBig: 0, invalid: 0 }, usable, hostLimit, issues, warnings: [], tieTolerance: tol };
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
  // Ties: estimates closer than the model's error are not a ranking. Walking down the list, the next place
  // goes to the layout with the most headroom among those within `tol` of the fastest remaining one (the
  // rest stays sorted by throughput). Only the head is re-ranked: further down, order matters little.
  const head = Math.min(fitting.length, Math.max(top, 50));
  for (let i = 0; i < head; i++) {
    const lead = fitting[i]!.time.tokensPerSec;
    let pick = i;
    for (let j = i + 1; j < fitting.length && fitting[j]!.time.tokensPerSec >= lead * (1 - tol); j++) if (fitting[j]!.memory.total < fitting[pick]!.memory.total) pick = j;
    if (pick !== i) fitting.splice(i, 0, fitting.splice(pick, 1)[0]!);
  }
  const fastest = fitting.reduce((m, f) => Math.max(m, f.time.tokensPerSec), 0);
  const candidates: Candidate[] = fitting.slice(0, top).map((f, i) => {
    const detail = estimateMemory(input, f.layout, { ...options, convention: 'scalelm' });
    return {
      rank: i + 1,
      layout: f.layout,
      memory: pickBreakdown(f.memory),
      heaviestStage: f.stage,
      time: f.time,
      explanation: explain(f.layout, f.memory.total, f.time, usable),
      detail,
      tiesFirst: f.time.tokensPerSec >= fastest * (1 - tol),
    };
  });
  const warnings: string[] = [];
  const first = fitting[0];
  if (first && first.memory.total > TIGHT_MEMORY * usable) {
    const roomy = fitting.findIndex((f) => f.memory.total <= TIGHT_MEMORY * usable);
    warnings.push(
      `#1 uses ${Math.round((100 * first.memory.total) / usable)}% of usable memory (above ${TIGHT_MEMORY * 100}%): an allocator spike or a longer batch can run out of memory; ${roomy >= 0 ? `the best layout under ${TIGHT_MEMORY * 100}% is #${roomy + 1}, ${Math.round(100 * (1 - fitting[roomy]!.time.tokensPerSec / first.time.tokensPerSec))}% slower` : `no fitting layout stays under ${TIGHT_MEMORY * 100}%`}`,
    );
  }
  const result: SearchResult = {
    ok: fitting.length > 0,
    candidates,
    ranking: fitting.map((f) => ({ layout: f.layout, tokensPerSec: f.time.tokensPerSec, tflopsPerGpu: f.time.tflopsPerGpu, memory: f.memory.total })),
    stats,
    usable,
    hostLimit,
    issues: [],
    warnings,
    tieTolerance: tol,
  };
  if (options.current) result.current = whereIs(input, options, options.current, result, usable);
  if (!fitting.length) {
    result.closest = closest && { layout: closest.layout, memory: pickBreakdown(closest.memory), hostPerNode: closest.hostPerNode };
    if (offloadNeedsHost) result.offloadNeedsHost = offloadNeedsHost;
    result.issues = [noFitIssue(input, stats, usable, hostLimit, result.closest, offloadNeedsHost)];
  }
  return result;
}

/** One line on where the user's layout stands (the CLI's `plan` and the extension's quick pick say the same). */
export function currentLayoutText(result: SearchResult): string | undefined {
  const cur = result.current;
  const best = result.candidates[0];
  if (!cur || !best) return undefined;
  const gib = (b: number) => (b / 2 ** 30).toFixed(1);
  const pct = (x: number) => `${Math.round(Math.abs(1 - x) * 100)}%`;
  if (cur.rank !== null) {
    const diff =
      cur.rank === 1
        ? 'it is #1'
        : cur.vsBest! >= 1 - result.tieTolerance
          ? `${pct(cur.vsBest!)} ${cur.vsBest! < 1 ? 'slower than' : 'faster than'} #1 — a tie within the model's ${Math.round(result.tieTolerance * 100)}% error`
          : `${pct(cur.vsBest!)} slower than #1 (${describeLayout(best.layout)})`;
    return `your layout ${describeLayout(cur.layout)} ranks #${cur.rank} of ${result.ranking.length}: ${Math.round(cur.tokensPerSec!).toLocaleString('en-US')} tokens/s, ${gib(cur.memory!)} GiB/GPU — ${diff}`;
  }
  return `your layout ${describeLayout(cur.layout)} is not ranked: ${cur.reason}${cur.vsBest !== undefined ? ` (it would run at ${Math.round(cur.vsBest * 100)}% of #1's throughput)` : ''}`;
}

export const sameLayout = (a: Layout, b: Layout) =>
  a.dp === b.dp &&
  a.tp === b.tp &&
  a.pp === b.pp &&
  a.vpp === b.vpp &&
  a.zero === b.zero &&
  a.microBatch === b.microBatch &&
  a.recompute === b.recompute &&
  a.sequenceParallel === b.sequenceParallel &&
  a.offloadOptimizer === b.offloadOptimizer &&
  a.offloadParams === b.offloadParams;

/** Where the user's own layout ranks, and how far it is from #1 — or why it is not ranked. */
function whereIs(input: PlanInput, options: EstimateOptions, layout: Layout, result: SearchResult, usable: number): CurrentLayout {
  const i = result.ranking.findIndex((r) => sameLayout(r.layout, layout));
  const best = result.ranking[0];
  if (i >= 0) {
    const r = result.ranking[i]!;
    return { layout, rank: i + 1, tokensPerSec: r.tokensPerSec, vsBest: best ? r.tokensPerSec / best.tokensPerSec : 1, memory: r.memory };
  }
  const e = estimate(
    {
      ...input,
      parallel: { ...input.parallel, ...layoutParallel(layout) },
      train: { ...input.train, microBatch: layout.microBatch, recompute: layout.recompute },
    },
    { ...options, convention: 'scalelm' },
    layout,
  );
  if (!e.ok) return { layout, rank: null, reason: e.issues[0]!.message };
  const vsBest = best ? e.time.tokensPerSec / best.tokensPerSec : 1;
  if (!e.fits)
    return {
      layout,
      rank: null,
      tokensPerSec: e.time.tokensPerSec,
      memory: e.memory.perDevice.total,
      vsBest,
      reason: `needs ${formatBytes(e.memory.perDevice.total, 1)} of ${formatBytes(usable, 1)} usable`,
    };
  if (e.memory.host.perNode > result.hostLimit)
    return {
      layout,
      rank: null,
      tokensPerSec: e.time.tokensPerSec,
      memory: e.memory.perDevice.total,
      vsBest,
      reason: `needs ${formatBytes(e.memory.host.perNode, 1)} of host memory per node, more than ${formatBytes(result.hostLimit, 1)}`,
    };
  // Fits but was not enumerated (a fixed flag, or selective recompute with FlashAttention, which the search
  // folds into none): where it would rank by throughput.
  const rank = result.ranking.filter((r) => r.tokensPerSec > e.time.tokensPerSec).length + 1;
  return { layout, rank, tokensPerSec: e.time.tokensPerSec, memory: e.memory.perDevice.total, vsBest };
}

function pickBreakdown(b: MemoryBreakdown): MemoryBreakdown {
  return { params: b.params, grads: b.grads, optimizer: b.optimizer, activations: b.activations, buffers: b.buffers, overhead: b.overhead, total: b.total };
}

function noFitIssue(input: PlanInput, stats: SearchResult['stats'], usable: number, hostLimit: number, closest?: SearchResult['closest'], offload?: SearchResult['offloadNeedsHost']): PlanIssue {
  const N = input.cluster.gpusPerNode * input.cluster.nodes;
  if (!closest) {
    return {
      path: 'train.globalBatch',
      message: `no valid layout for ${N} GPUs and globalBatch=${input.train.globalBatch}: ${stats.invalid} combinations break a rule (dp must divide the global batch, tp the heads, pp the layers); change the batch or the GPU count`,
    };
  }
  const m = closest.memory;
  if (m.total <= usable) {
    return {
      path: 'cluster',
      message: `no layout fits: the only ones small enough for the GPUs offload to the host and need ${formatBytes(closest.hostPerNode)} of host memory per node, more than ${formatBytes(hostLimit)} (${describe(closest.layout)}); add GPUs or host memory`,
    };
  }
  const states = m.params + m.grads + m.optimizer;
  const what = states > usable ? `model states alone take ${formatBytes(states)}` : `activations take ${formatBytes(m.activations)} on top of ${formatBytes(states)} of model states`;
  const host = offload
    ? `; offloading (${describe(offload.layout)}) would fit the GPUs but needs ${formatBytes(offload.hostPerNode)} of host memory per node, more than ${formatBytes(hostLimit)}`
    : '';
  return {
    path: 'cluster',
    message: `no layout fits in ${formatBytes(usable)} per GPU (${Math.round(input.cluster.headroom * 100)}% headroom kept): the smallest, ${describe(closest.layout)}, needs ${formatBytes(m.total)} — ${what}${host}; add GPUs, use GPUs with more memory, or shorten the sequence`,
  };
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
  const top = losses
    .filter(([v]) => v / step >= 0.01)
    .slice(0, 2)
    .map(([, s]) => s);
  const used = memory / usable;
  const parts = [`${formatBytes(memory, 1)} of ${formatBytes(usable, 1)} (${Math.round(used * 100)}%)`];
  if (used > 0.9) parts.push('memory binds');
  parts.push(top.length ? `binds: ${top.join(', ')}` : 'compute-bound');
  if (t.tensorParallelAcrossNodes && !top.some((s) => s.includes('ACROSS'))) parts.push('TP spans nodes');
  return parts.join(' · ');
}
