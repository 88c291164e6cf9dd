// Shared by `estimate`, `plan` and `export`: reads a *.scalelm.json or a HuggingFace config.json, applies
// the layout/cluster flags and then --set, and parses the result into a RunConfig (which the planner takes
// as its PlanInput). A flag overrides the file; --set overrides both.
import { READ_LIMITS, readTextBounded } from '../files';
import { readRawConfig } from './load';
import { CliError, intFlag, type ParsedArgs } from './args';
import { isHuggingFaceConfig, modelFromHuggingFace } from '../config/huggingface';
import { parseConfig } from '../config/parse';
import { setPath } from '../config/set-path';
import type { RunConfig } from '../config/types';
import { GPU_PRESET_NAMES } from '../config/presets';
import type { EstimateOptions, Layout } from '../planner/types';
import { applyProfile, checkProfile, type ClusterProfile } from '../planner/calibrate';
import { dirname, resolve } from 'node:path';

export const PLAN_VALUE_FLAGS = [
  'gpus',
  'gpus-per-node',
  'nodes',
  'gpu',
  'gpu-mem',
  'dp',
  'tp',
  'pp',
  'vpp',
  'zero',
  'micro-batch',
  'global-batch',
  'seq-len',
  'recompute',
  'precision',
  'headroom',
  'efficiency',
  'profile',
] as const;
export const PLAN_SWITCHES = ['offload-optimizer', 'offload-params', 'sequence-parallel', 'flash-attention'] as const;

export const PLAN_FLAGS_HELP = `layout and cluster (a flag overrides the file):
  --gpus N            total GPUs (nodes = N / gpus-per-node)
  --gpus-per-node N   GPUs per node (default 8, or fewer when --gpus is smaller)
  --nodes N           number of nodes
  --gpu NAME          GPU preset: ${GPU_PRESET_NAMES.join(', ')}
  --gpu-mem SIZE      memory per GPU, e.g. 80GiB
  --dp N --tp N --pp N --vpp N --zero 0|1|2|3
  --micro-batch N --global-batch N --seq-len N
  --recompute none|selective|full   --precision fp32|bf16-mixed|fp16-mixed
  --sequence-parallel --flash-attention --offload-optimizer --offload-params
  --headroom F        fraction of GPU memory kept free (default 0.05)
  --efficiency F      fraction of peak FLOP/s large GEMMs reach (default 0.7)
  --profile FILE      a cluster profile from \`scalelm calibrate\` (overrides cluster.profile)
  --set path=value    any config key, e.g. --set parallel.zero=3 (repeatable)`;

export interface LoadedPlan {
  config: RunConfig;
  /** 'huggingface' when <file> was a config.json. */
  source: 'scalelm' | 'huggingface';
  /** The HuggingFace config.json as read (source 'huggingface'): what the torch convention's HF activation model reads. */
  hf?: Record<string, unknown>;
  notes: string[];
  /** Layout dimensions the user fixed with flags (plan searches the rest). */
  fixed: Partial<Layout>;
  /** True when the global batch was not given and plan picked one. */
  defaultGlobalBatch: boolean;
  /** Estimate options from a calibrated cluster profile (`cluster.profile` or --profile), empty without one. */
  options: EstimateOptions;
  /** "calibrated profile FILE (from run R)" when a profile is in use. */
  profile?: string;
  /** plan: the layout the *.scalelm.json has now, on the planned cluster (dp fills the GPUs). */
  current?: Layout;
}

type Raw = Record<string, unknown>;
const section = (raw: Raw, key: string): Raw => {
  const v = raw[key];
  if (v === undefined) raw[key] = {};
  else if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CliError(`the config's "${key}" must be an object`, 1);
  return raw[key] as Raw;
};

function numberFlag(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const raw = args.values.get(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new CliError(`--${name} must be a number from ${min} to ${max}, got "${raw}"`);
  return n;
}

function oneOfFlag<T extends string>(args: ParsedArgs, name: string, choices: readonly T[]): T | undefined {
  const raw = args.values.get(name);
  if (raw === undefined) return undefined;
  if (!(choices as readonly string[]).includes(raw)) throw new CliError(`--${name} must be one of ${choices.join(', ')}, got "${raw}"`);
  return raw as T;
}

/** Reads and resolves the file for `mode`; throws CliError (exit 1) with every problem when it cannot. */
export function loadPlanInput(file: string, args: ParsedArgs, mode: 'estimate' | 'plan' | 'export'): LoadedPlan {
  let raw = readRawConfig(file);
  const notes: string[] = [];
  let source: LoadedPlan['source'] = 'scalelm';
  let hfConfig: Record<string, unknown> | undefined;
  if (raw.model === undefined && isHuggingFaceConfig(raw)) {
    hfConfig = raw;
    const hf = modelFromHuggingFace(raw);
    if (!hf.ok) throw new CliError(`${file}: not a usable HuggingFace config:\n${hf.errors.map((e) => `  ${e.path || '(root)'}: ${e.message}`).join('\n')}`, 1);
    source = 'huggingface';
    notes.push(`read ${file} as a HuggingFace ${hf.family} config`, ...hf.notes);
    // A config.json is for planning GPU runs: mixed precision unless --precision (or --set) says otherwise.
    raw = { name: hf.model.name, model: hf.model, train: { precision: 'bf16-mixed' } };
    if (!args.values.has('precision')) notes.push('precision bf16-mixed assumed for a HuggingFace config (set --precision to change)');
  }

  const fixed: Partial<Layout> = {};
  const model = section(raw, 'model');
  const train = section(raw, 'train');
  const parallel = section(raw, 'parallel');
  const cluster = raw.cluster === undefined ? undefined : section(raw, 'cluster');
  const clusterSection = () => section(raw, 'cluster');

  const gpus = intFlag(args, 'gpus');
  const gpusPerNodeFlag = intFlag(args, 'gpus-per-node');
  const nodesFlag = intFlag(args, 'nodes');
  if (gpus !== undefined) {
    const gpn = gpusPerNodeFlag ?? (cluster?.gpusPerNode as number | undefined) ?? Math.min(8, gpus);
    if (gpus % gpn !== 0) throw new CliError(`--gpus ${gpus} is not a whole number of nodes of ${gpn} GPUs; set --gpus-per-node`);
    if (nodesFlag !== undefined && nodesFlag * gpn !== gpus) throw new CliError(`--gpus ${gpus} disagrees with --nodes ${nodesFlag} × ${gpn} GPUs per node`);
    Object.assign(clusterSection(), { gpusPerNode: gpn, nodes: gpus / gpn });
  } else {
    if (gpusPerNodeFlag !== undefined) clusterSection().gpusPerNode = gpusPerNodeFlag;
    if (nodesFlag !== undefined) clusterSection().nodes = nodesFlag;
  }
  const gpu = args.values.get('gpu');
  if (gpu !== undefined) clusterSection().gpu = gpu;
  const mem = args.values.get('gpu-mem');
  if (mem !== undefined) clusterSection().gpuMemory = /^\d+$/.test(mem) ? Number(mem) : mem;
  const headroom = numberFlag(args, 'headroom', 0, 0.9);
  if (headroom !== undefined) clusterSection().headroom = headroom;
  const efficiency = numberFlag(args, 'efficiency', 0.01, 1);
  if (efficiency !== undefined) clusterSection().efficiency = efficiency;

  for (const [flag, key] of [
    ['dp', 'dp'],
    ['tp', 'tp'],
    ['pp', 'pp'],
    ['vpp', 'vpp'],
  ] as const) {
    const v = intFlag(args, flag);
    if (v !== undefined) {
      parallel[key] = v;
      fixed[key] = v;
    }
  }
  const zero = oneOfFlag(args, 'zero', ['0', '1', '2', '3'] as const);
  if (zero !== undefined) parallel.zero = fixed.zero = Number(zero) as Layout['zero'];
  const micro = intFlag(args, 'micro-batch');
  if (micro !== undefined) train.microBatch = fixed.microBatch = micro;
  const globalBatch = intFlag(args, 'global-batch');
  if (globalBatch !== undefined) train.globalBatch = globalBatch;
  const seqLen = intFlag(args, 'seq-len');
  if (seqLen !== undefined) model.seqLen = seqLen;
  const recompute = oneOfFlag(args, 'recompute', ['none', 'selective', 'full'] as const);
  if (recompute !== undefined) train.recompute = fixed.recompute = recompute;
  const precision = oneOfFlag(args, 'precision', ['fp32', 'bf16-mixed', 'fp16-mixed'] as const);
  if (precision !== undefined) train.precision = precision;
  if (args.switches.has('sequence-parallel')) parallel.sequenceParallel = fixed.sequenceParallel = true;
  if (args.switches.has('offload-optimizer')) parallel.offloadOptimizer = fixed.offloadOptimizer = true;
  if (args.switches.has('offload-params')) parallel.offloadParams = fixed.offloadParams = true;
  if (args.switches.has('flash-attention')) train.flashAttention = true;

  for (const s of args.repeated.get('set') ?? []) {
    try {
      setPath(raw, s);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  }

  // A calibrated cluster profile: read here (the planner is pure), applied to the parsed config below.
  const profileFlag = args.values.get('profile');
  const clusterRaw = raw.cluster as Raw | undefined;
  const profilePath = profileFlag ?? (clusterRaw && typeof clusterRaw.profile === 'string' ? resolve(dirname(file), clusterRaw.profile) : undefined);
  if (clusterRaw && 'profile' in clusterRaw) delete clusterRaw.profile;
  const profile = profilePath === undefined ? undefined : readProfile(profilePath);

  // A planning run has GPUs, not a local devices list: keep devices.count out of the way.
  const devices = raw.devices as Raw | undefined;
  if (devices && typeof devices === 'object') delete devices.count;

  const c = raw.cluster as Raw | undefined;
  const totalGpus = c && typeof c.nodes === 'number' && typeof c.gpusPerNode === 'number' ? c.nodes * c.gpusPerNode : undefined;
  if (mode === 'plan') return withProfile({ ...planConfig(file, raw, fixed, notes, source, totalGpus), ...(hfConfig ? { hf: hfConfig } : {}) }, profile, profilePath);

  // estimate / export: when the GPU count is known and dp is not, dp fills the rest.
  const p = raw.parallel as Raw;
  if (totalGpus !== undefined && p.dp === undefined) {
    const tp = (p.tp as number | undefined) ?? 1;
    const pp = (p.pp as number | undefined) ?? 1;
    if (totalGpus % (tp * pp) === 0) p.dp = totalGpus / (tp * pp);
  }
  const result = parseConfig(raw);
  if (!result.ok) throw configError(file, result.errors);
  return withProfile({ config: result.config, source, ...(hfConfig ? { hf: hfConfig } : {}), notes, fixed, defaultGlobalBatch: false, options: {} }, profile, profilePath);
}

function readProfile(path: string): ClusterProfile {
  let value: unknown;
  try {
    value = JSON.parse(readTextBounded(path, READ_LIMITS.config));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cluster profile ${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 1);
  }
  const checked = checkProfile(value);
  if (!checked.ok) throw new CliError(`cluster profile ${path}: ${checked.reason}`, 1);
  return checked.value;
}

/** The profile's efficiency replaces the config's; its overheads become the estimate's; a note says so. */
function withProfile(loaded: LoadedPlan, profile: ClusterProfile | undefined, path: string | undefined): LoadedPlan {
  if (!profile || path === undefined) return loaded;
  const applied = applyProfile(loaded.config, profile, loaded.options);
  loaded.config = { ...loaded.config, cluster: { ...loaded.config.cluster, efficiency: applied.input.cluster.efficiency } };
  loaded.options = applied.options;
  loaded.profile = `calibrated profile ${path} (fitted from run ${profile.fittedFrom.run}: efficiency ${profile.efficiency.toFixed(3)})`;
  loaded.notes.push(`using the ${loaded.profile}`);
  if (profile.gpu !== loaded.config.cluster.gpu) loaded.notes.push(`the profile was fitted on ${profile.gpu}, this plan is for ${loaded.config.cluster.gpu}`);
  return loaded;
}

function configError(file: string, errors: { path: string; message: string }[]): CliError {
  return new CliError(`${file}: ${errors.length} problem${errors.length === 1 ? '' : 's'}\n${errors.map((e) => `  ${e.path || '(root)'}: ${e.message}`).join('\n')}`, 1);
}

/**
 * For `plan` the file's layout is only a starting point: the config is parsed with a one-GPU placeholder
 * layout (so its rules do not reject the layout being searched away), then the real cluster is put back.
 */
function planConfig(file: string, raw: Raw, fixed: Partial<Layout>, notes: string[], source: LoadedPlan['source'], totalGpus: number | undefined): LoadedPlan {
  const c = (raw.cluster as Raw | undefined) ?? {};
  const gpusPerNode = (c.gpusPerNode as number | undefined) ?? 8;
  const nodes = (c.nodes as number | undefined) ?? (totalGpus !== undefined ? totalGpus / gpusPerNode : 1);
  if (!Number.isInteger(gpusPerNode) || gpusPerNode < 1 || !Number.isInteger(nodes) || nodes < 1)
    throw new CliError(`${file}: cluster.gpusPerNode and cluster.nodes must be positive whole numbers`, 1);
  const parallel = raw.parallel as Raw;
  const placeholder: Raw = { ...raw, parallel: { bucketMB: parallel.bucketMB }, cluster: { ...c, gpusPerNode: 1, nodes: 1 }, train: { ...(raw.train as Raw), microBatch: 1, recompute: 'none' } };
  if ((placeholder.parallel as Raw).bucketMB === undefined) delete (placeholder.parallel as Raw).bucketMB;
  const train = placeholder.train as Raw;
  const N = gpusPerNode * nodes;
  const defaultGlobalBatch = train.globalBatch === undefined;
  if (defaultGlobalBatch) train.globalBatch = 1;
  const result = parseConfig(placeholder);
  if (!result.ok) throw configError(file, result.errors);
  const config = result.config;
  // The file's own layout, so that plan can say where it ranks (a config.json has none).
  let current: Layout | undefined;
  const tp = (parallel.tp as number | undefined) ?? 1;
  const pp = (parallel.pp as number | undefined) ?? 1;
  if (source === 'scalelm' && N % (tp * pp) === 0) {
    const t = raw.train as Raw;
    current = {
      dp: N / (tp * pp),
      tp,
      pp,
      vpp: (parallel.vpp as number | undefined) ?? 1,
      zero: ((parallel.zero as number | undefined) ?? 0) as Layout['zero'],
      microBatch: (t.microBatch as number | undefined) ?? 1,
      recompute: (t.recompute as Layout['recompute'] | undefined) ?? 'none',
      sequenceParallel: (parallel.sequenceParallel as boolean | undefined) ?? false,
      offloadOptimizer: (parallel.offloadOptimizer as boolean | undefined) ?? false,
      offloadParams: (parallel.offloadParams as boolean | undefined) ?? false,
    };
  }
  config.cluster = { ...config.cluster, gpusPerNode, nodes, explicit: true };
  config.parallel = { ...config.parallel, dp: N };
  // About a million tokens per step, a whole number of sequences per GPU.
  if (defaultGlobalBatch) config.train.globalBatch = N * Math.max(1, Math.ceil(2 ** 20 / (N * config.model.seqLen)));
  return { config, source, notes, fixed, defaultGlobalBatch, options: {}, ...(current ? { current } : {}) };
}
