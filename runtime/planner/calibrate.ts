// Calibration: fit the GPU model's efficiency constants to what one measured run reports, and apply the
// resulting cluster profile to later estimates. Pure (the CLI reads metrics.jsonl and writes the profile).
import { estimateMemory, layoutOf, overheadsOf } from './memory';
import { commOf, estimateTime } from './time';
import { array, finite, ID, Invalid, isPlainObject, LIMITS, literal, object, opt, record, str, validateWith, type Check, type Result, type Shape } from '../../common/validate';
import type { CommModel, EstimateOptions, Overheads, PlanInput } from './types';

export const PROFILE_VERSION = 1;

/** What a run measured on its heaviest rank: median step time and the three memory figures it reported. */
export interface RunMeasurement {
  stepMs: number;
  /** torch.cuda.max_memory_allocated (or the runtime's step peak of live tensors), bytes. */
  allocated: number;
  /** torch.cuda.max_memory_reserved, when the engine reports it. */
  reserved?: number;
  /** nvidia-smi's used memory of the rank's process. */
  device?: number;
}

/** A cluster profile (`cluster.profile`): the fitted constants, and what they were fitted from. */
export interface ClusterProfile {
  scalelmProfile: typeof PROFILE_VERSION;
  gpu: string;
  /** Fitted fraction of peak FLOP/s large GEMMs reach (replaces cluster.efficiency). */
  efficiency: number;
  overheads: Partial<Pick<Overheads, 'cudaContext' | 'allocatorSlack'>>;
  comm?: Partial<CommModel>;
  fittedFrom: { run: string; measured: RunMeasurement; predictedBefore: { stepMs: number; allocated: number; reserved: number; device: number }; notes: string[] };
}

/**
 * Fits `cluster.efficiency` so that the time model gives the measured step time (bisection: the step time
 * falls as efficiency rises), then the allocator slack (reserved / allocated − 1, when reserved was measured)
 * and the CUDA context (device − reserved − the NCCL buffers the estimate counts), holding the rest.
 */
export function calibrate(input: PlanInput, measured: RunMeasurement, run: string, options: EstimateOptions = {}): ClusterProfile {
  const layout = layoutOf(input);
  const overheads = overheadsOf(options);
  const comm = commOf(options.comm);
  const notes: string[] = [];
  const stepAt = (efficiency: number) => estimateTime({ ...input, cluster: { ...input.cluster, efficiency } }, layout, overheads, comm).stepMs;
  let lo = 0.01;
  let hi = 1;
  let efficiency: number;
  if (stepAt(hi) > measured.stepMs) {
    efficiency = 1;
    notes.push(
      `the run (${measured.stepMs.toFixed(0)} ms) is faster than the model allows even at efficiency 1 (${stepAt(1).toFixed(0)} ms): communication or memory-bound terms are overestimated for this machine`,
    );
  } else if (stepAt(lo) < measured.stepMs) {
    efficiency = lo;
    notes.push(`the run (${measured.stepMs.toFixed(0)} ms) is slower than the model gives at efficiency ${lo}: something outside the model (data loading, host stalls) dominates`);
  } else {
    for (let i = 0; i < 60; i++) {
      const mid = (lo + hi) / 2;
      if (stepAt(mid) > measured.stepMs) lo = mid;
      else hi = mid;
    }
    efficiency = (lo + hi) / 2;
  }

  const before = estimateMemory(input, layout, { ...options, convention: 'scalelm' });
  const f = before.figures!;
  const nccl = before.terms.filter((t) => t.label.startsWith('NCCL buffers')).reduce((s, t) => s + t.bytes, 0);
  const fitted: ClusterProfile['overheads'] = {};
  let slack = overheads.allocatorSlack;
  if (measured.reserved !== undefined && measured.allocated > 0) {
    slack = Math.max(0, measured.reserved / measured.allocated - 1);
    fitted.allocatorSlack = slack;
  }
  if (measured.device !== undefined) {
    const reserved = measured.reserved ?? measured.allocated * (1 + slack);
    const context = measured.device - reserved - nccl;
    if (context < 0) notes.push(`nvidia-smi's ${measured.device} B is less than reserved + NCCL (${Math.round(reserved + nccl)} B): the context is set to 0`);
    fitted.cudaContext = Math.max(0, context);
  }
  const ratio = measured.allocated / f.allocated;
  notes.push(`allocated: measured ${(ratio * 100).toFixed(1)}% of the estimate's ${f.allocated} B`);
  return {
    scalelmProfile: PROFILE_VERSION,
    gpu: (input.cluster as { gpu?: string }).gpu ?? 'custom',
    efficiency,
    overheads: fitted,
    fittedFrom: { run, measured, predictedBefore: { stepMs: stepAt(input.cluster.efficiency), allocated: f.allocated, reserved: f.reserved, device: f.device }, notes },
  };
}

const GiB = 2 ** 30;
/** Stated bounds of every number a profile file may carry (it is read from disk: anything may be in it). */
const positive =
  (max: number): Check<number> =>
  (v, path) => {
    const n = finite(0, max)(v, path);
    if (n === 0) throw new Invalid(path, 'must be more than 0');
    return n;
  };
const share = finite(0.001, 1);
const PROFILE_COMM: Shape<Partial<CommModel>> = {
  intraNodeLatency: opt(finite(0, 1)),
  interNodeLatency: opt(finite(0, 1)),
  hostBandwidth: opt(positive(1e15)),
  cpuOptimizerParamsPerSec: opt(positive(1e15)),
  intraNodeCollectiveEfficiency: opt(share),
  interNodeCollectiveEfficiency: opt(share),
  gemmHalfSize: opt(finite(0, 1e6)),
  elementwiseBytesReplicated: opt(finite(0, 1e4)),
  elementwiseBytesSharded: opt(finite(0, 1e4)),
  lossBytesPerLogit: opt(finite(0, 1e4)),
  attentionBytesPerScore: opt(finite(0, 1e4)),
  overlapSlowdown: opt(finite(0, 1)),
};
const figures = record(finite(0, 1e18), 8);
const profileShape: Check<ClusterProfile> = object<ClusterProfile>({
  scalelmProfile: literal(PROFILE_VERSION),
  gpu: str(LIMITS.name, /^[\x20-\x7e]*$/),
  efficiency: positive(1),
  overheads: object<ClusterProfile['overheads']>({ cudaContext: opt(finite(0, 1024 * GiB)), allocatorSlack: opt(finite(0, 10)) }),
  comm: opt(object(PROFILE_COMM)),
  fittedFrom: object<ClusterProfile['fittedFrom']>({
    run: str(LIMITS.name, ID),
    measured: figures as unknown as Check<RunMeasurement>,
    predictedBefore: figures as unknown as Check<ClusterProfile['fittedFrom']['predictedBefore']>,
    notes: array(str(LIMITS.text), 64),
  }),
});

/** A parsed profile file, checked field by field against the bounds above: the profile, or the reason (with its path) it cannot be used. */
export function checkProfile(value: unknown): Result<ClusterProfile> {
  // A file that is no profile at all (another JSON file given by mistake) is told so, not its first odd field.
  if (!isPlainObject(value) || value.scalelmProfile !== PROFILE_VERSION)
    return { ok: false, reason: `not a ScaleLM cluster profile (scalelmProfile must be ${PROFILE_VERSION}; write one with \`scalelm calibrate RUN_DIR\`)` };
  return validateWith(profileShape, value);
}

/** The input and options a profile implies: its efficiency replaces the cluster's, its overheads the defaults. */
export function applyProfile(input: PlanInput, profile: ClusterProfile, options: EstimateOptions = {}): { input: PlanInput; options: EstimateOptions } {
  return {
    input: { ...input, cluster: { ...input.cluster, efficiency: profile.efficiency } },
    options: { ...options, overheads: { ...profile.overheads, ...options.overheads }, comm: { ...profile.comm, ...options.comm } },
  };
}
