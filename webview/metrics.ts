// Numbers derived from a run for the header and the memory panels: progress, ETA, throughput, achieved
// FLOP/s and MFU (Megatron's FLOP accounting from the planner), memory levels, and the planner's
// prediction per category to compare with what the runtime measured. Pure.
import { categoryOf, MEMORY_CATEGORIES, MEMORY_TOTALS, type MemoryCategory } from '../common/memory-categories';
import { isEnded, planSummary, type MemoryMessage } from '../common/protocol';
import { estimate, stepFlops } from '../runtime/planner';
import type { ConventionName, MemoryBreakdown, PlanInput } from '../runtime/planner/types';
import type { RunData } from './store';

/** The categories a memory panel shows, in stacking order: the shared vocabulary (common/memory-categories.ts). */
export const DISPLAY_CATEGORIES = MEMORY_CATEGORIES;
export type DisplayCategory = MemoryCategory;

export const CATEGORY_LABEL: Record<DisplayCategory, string> = {
  params: 'params',
  grads: 'grads',
  optimizer: 'optimizer',
  activations: 'activations',
  buffers: 'buffers',
  other: 'other',
};

export interface Grouped {
  bytes: Record<DisplayCategory, number>;
  /** Which measured categories went into each displayed one (for tooltips). */
  parts: Record<DisplayCategory, string[]>;
}

export function groupCategories(categories: Record<string, number>): Grouped {
  const bytes = { params: 0, grads: 0, optimizer: 0, activations: 0, buffers: 0, other: 0 } as Record<DisplayCategory, number>;
  const parts = { params: [], grads: [], optimizer: [], activations: [], buffers: [], other: [] } as Record<DisplayCategory, string[]>;
  for (const [name, value] of Object.entries(categories)) {
    if ((MEMORY_TOTALS as readonly string[]).includes(name)) continue;
    const key = categoryOf(name);
    bytes[key] += value;
    parts[key].push(name);
  }
  return { bytes, parts };
}

export type Level = 'ok' | 'warn' | 'critical';
/** Colour thresholds on used / capacity. */
export const THRESHOLDS = { warn: 0.8, critical: 0.92 } as const;
export function levelOf(fraction: number): Level {
  return fraction >= THRESHOLDS.critical ? 'critical' : fraction >= THRESHOLDS.warn ? 'warn' : 'ok';
}

interface ConfigLike {
  train?: { steps?: number; globalBatch?: number; recompute?: string; precision?: string };
  model?: { seqLen?: number };
  parallel?: { dp?: number; tp?: number; pp?: number; zero?: number };
  devices?: { backend?: string; memory?: number; count?: number };
  cluster?: { gpu?: string; spec?: { peakFlops?: number } };
}

export function configOf(run: RunData): ConfigLike | null {
  return (run.hello?.config as ConfigLike | undefined) ?? null;
}

const GPU_BACKENDS = new Set(['tfjs-node-gpu', 'webgpu', 'cuda', 'gpu']);

/** Whether the run's devices are GPUs: the sampler saw some, or the backend is a GPU one. */
export function onGpu(run: RunData): boolean {
  if (run.gpu && run.gpu.devices.length > 0) return true;
  const backend = run.backend ?? configOf(run)?.devices?.backend;
  return backend !== undefined && GPU_BACKENDS.has(backend);
}

/** No message for this long: the run is not live (replayed, or the runtime hangs). */
export const STALE_MS = 120_000;

export interface Progress {
  /** The newest message is older than STALE_MS (and the run has no final state). */
  stale: boolean;
  step: number | null;
  total: number | null;
  elapsedMs: number | null;
  etaMs: number | null;
  tokensPerSec: number | null;
  stepMs: number | null;
  loss: number | null;
  /** Achieved hardware FLOP/s per device (with recompute), as Megatron reports TFLOP/s. */
  flopsPerDevice: number | null;
  /** Model FLOPs utilisation against the GPU's peak; null off GPU. */
  mfu: number | null;
  peakName: string | null;
  /** "dp8 × tp1 × pp1" */
  layout: string | null;
  /** "ZeRO-1" */
  zero: string | null;
  backend: string | null;
}

function meanOfLast(col: Float64Array, length: number, n: number): number | null {
  let sum = 0;
  let count = 0;
  for (let i = length - 1; i >= 0 && count < n; i--) {
    const v = col[i]!;
    if (Number.isFinite(v)) {
      sum += v;
      count++;
    }
  }
  return count ? sum / count : null;
}

const flopsCache = new WeakMap<object, { model: number; hardware: number; tokens: number } | null>();
function flopsPerStep(run: RunData): { model: number; hardware: number; tokens: number } | null {
  const cfg = run.hello?.config;
  if (!cfg) return null;
  if (flopsCache.has(cfg)) return flopsCache.get(cfg)!;
  let out: { model: number; hardware: number; tokens: number } | null = null;
  try {
    const input = cfg as unknown as PlanInput;
    const f = stepFlops(input, input.train.recompute);
    const tokens = input.train.globalBatch * input.model.seqLen;
    if (Number.isFinite(f.model) && tokens > 0) out = { ...f, tokens };
  } catch {
    out = null;
  }
  flopsCache.set(cfg, out);
  return out;
}

export function progressOf(run: RunData, now: number): Progress {
  const cfg = configOf(run);
  const s = run.steps;
  const n = s.length;
  const step = n ? s.col('step')[n - 1]! : null;
  const total = cfg?.train?.steps ?? null;
  const startedAt = run.hello?.startedAt ?? null;
  const finished = run.status && isEnded(run.status.state);
  // A run that has gone quiet for minutes (a replay, a hung runtime) is timed to its last message, not to now.
  const stale = now - run.lastT > STALE_MS;
  const end = finished ? Math.max(run.status!.t, run.lastT) : stale ? run.lastT : now;
  const elapsedMs = startedAt ? Math.max(0, end - startedAt) : null;
  const stepMs = n ? meanOfLast(s.col('stepMs'), n, 20) : null;
  const tokensPerSec = n ? meanOfLast(s.col('tokensPerSec'), n, 20) : null;
  const etaMs = !finished && step !== null && total !== null && stepMs !== null && step < total ? (total - step) * stepMs : null;
  const loss = n ? s.col('loss')[n - 1]! : null;
  const f = flopsPerStep(run);
  const world = run.world;
  let flopsPerDevice: number | null = null;
  let mfu: number | null = null;
  let peakName: string | null = null;
  if (f && tokensPerSec !== null) {
    flopsPerDevice = ((f.hardware / f.tokens) * tokensPerSec) / world;
    const peak = cfg?.cluster?.spec?.peakFlops;
    if (onGpu(run) && peak) {
      mfu = ((f.model / f.tokens) * tokensPerSec) / (world * peak);
      peakName = cfg?.cluster?.gpu ?? null;
    }
  }
  const p = cfg?.parallel;
  const layout = p ? `dp${p.dp ?? 1} × tp${p.tp ?? 1} × pp${p.pp ?? 1}` : null;
  const zero = p ? `ZeRO-${p.zero ?? 0}` : null;
  const backend = run.backend ?? cfg?.devices?.backend ?? null;
  return { zero, stale: !finished && stale, step, total, elapsedMs, etaMs, tokensPerSec, stepMs, loss, flopsPerDevice, mfu, peakName, layout, backend };
}

// ------------------------------------------------------------------------------------------ prediction

export interface Prediction {
  bytes: Record<DisplayCategory, number>;
  /** Predicted peak (or total) per device. */
  total: number;
  /** "runtime (memory message)", "planner: runtime convention", … */
  source: string;
}

function fromRecord(r: Record<string, number>, source: string): Prediction {
  const g = groupCategories(r);
  const total = r.peak ?? r.total ?? Object.values(g.bytes).reduce((a, b) => a + b, 0);
  return { bytes: g.bytes, total, source };
}

function breakdownToRecord(b: MemoryBreakdown): Record<string, number> {
  return { params: b.params, grads: b.grads, optimizer: b.optimizer, activations: b.activations, buffers: b.buffers, overhead: b.overhead, total: b.total };
}

const plannedCache = new WeakMap<object, Prediction | null>();

/**
 * The prediction to show next to a rank's measured memory: what the runtime sent with the reading, else
 * the plan in the hello message, else the planner run here on the run's config (the `runtime` convention
 * for the local fp32 runtime, `scalelm` for GPU runs).
 */
export function predictionFor(run: RunData, latest: MemoryMessage | null): Prediction | null {
  if (latest?.predicted && Object.keys(latest.predicted).length) return fromRecord(latest.predicted, 'runtime');
  const hello = run.hello;
  if (!hello) return null;
  const plan = planSummary(hello);
  if (plan) return fromRecord(plan.perDevice, 'plan in the run');
  const cfg = hello.config;
  if (plannedCache.has(cfg)) return plannedCache.get(cfg)!;
  let out: Prediction | null = null;
  // The recorded config, typed only once the config parser accepts it (runtime/config/resolved.ts).
  const parsed = run.runConfig();
  try {
    if (parsed) {
      const input: PlanInput = parsed;
      const local = !onGpu(run) && input.train.precision === 'fp32';
      const convention: ConventionName = local ? 'runtime' : 'scalelm';
      const r = estimate(input, { convention });
      if (r.ok) out = fromRecord(breakdownToRecord(r.memory.perDevice), `planner, ${convention} convention`);
    }
  } catch {
    out = null;
  }
  plannedCache.set(cfg, out);
  return out;
}
