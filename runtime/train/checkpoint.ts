// Checkpoints: a folder per step with model.safetensors (HuggingFace GPT-2 names, Conv1D layout) and a HF
// config.json, so `GPT2LMHeadModel.from_pretrained(folder)` loads it; optimizer.safetensors (PyTorch's
// exp_avg/exp_avg_sq per parameter); state.json (step, data position, RNG, config). A checkpoint is written
// into a temporary folder, fsynced, and renamed into place, then latest.json is replaced the same way: a
// crash at any moment leaves the previous checkpoint whole and latest.json pointing at a whole one.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { lstatSync, realpathSync } from 'node:fs';
import { FileReadError, READ_LIMITS, readTextBounded, writeFileSynced } from '../files';
import type { GptShape } from '../model/gpt';
import type { ParamSpec } from '../model/params';
import { readSafetensors, SafetensorsError, toFloat32, writeSafetensors, type StoredTensor, type TensorToWrite } from './safetensors';
import { stateSlots, type OptimizerHyper } from './optimizer';

export const CHECKPOINT_FORMAT = 'scalelm-checkpoint';
export const CHECKPOINT_VERSION = 1;
/** Step folders kept; older ones are removed after a newer one is complete. */
export const KEEP_CHECKPOINTS = 3;

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/**
 * state.json's `model`: the shape a resume compares. GPT-2 (both engines) is exactly the GptShape; other
 * families (the torch engine's Llama) add theirs (python/scalelm/checkpoint.py model_state).
 */
export type ModelRecord = GptShape & { family?: string; kvHeads?: number };

export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  /** Optimizer steps completed. The next step trained is step + 1. */
  step: number;
  /** Tokens trained on so far. */
  tokens: number;
  /** Where the data order continues: batches are a pure function of (seed, step, row), so the next step suffices. */
  data: { nextStep: number; description: string };
  /** Every random stream is derived from this seed and the step: nothing else to restore. */
  rng: { seed: number };
  optimizer: OptimizerHyper & { steps: number };
  model: ModelRecord;
  /** Bytes of metrics.jsonl when this checkpoint was taken; a resume truncates the log back to it. */
  metricsBytes: number;
  lastLoss?: number;
  savedAt: string;
  /** The resolved run config. */
  config: unknown;
}

export interface CheckpointData {
  params: Map<string, Float32Array>;
  /** Per parameter: its optimizer state tensors (stateSlots order). */
  optimizer: Map<string, Float32Array[]>;
  state: CheckpointState;
}

export const stepFolder = (step: number): string => `step-${String(step).padStart(6, '0')}`;

/** HuggingFace GPT2Config for a model shape. */
export function hfConfig(shape: GptShape, dropout: number): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: shape.vocab,
    n_positions: shape.positions,
    n_ctx: shape.positions,
    n_embd: shape.hidden,
    n_layer: shape.layers,
    n_head: shape.heads,
    n_inner: shape.ffnHidden === 4 * shape.hidden ? null : shape.ffnHidden,
    activation_function: 'gelu_new',
    layer_norm_epsilon: shape.eps,
    initializer_range: 0.02,
    resid_pdrop: dropout,
    embd_pdrop: dropout,
    attn_pdrop: dropout,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
  };
}

export interface SaveHooks {
  /** Called after every file is written, before the folder is renamed into place (tests simulate crashes here). */
  beforeCommit?: () => void;
  /** Temporary folders (by name) that the caller's ranks may be writing right now: the cleanup keeps them. */
  inFlight?: (name: string) => boolean;
}

/** Writes checkpoints/<step-folder> atomically and points latest.json at it. Returns the folder and bytes written. */
export function saveCheckpoint(checkpointsDir: string, data: CheckpointData, specs: readonly ParamSpec[], dropout: number, hooks: SaveHooks = {}): { path: string; bytes: number } {
  mkdirSync(checkpointsDir, { recursive: true });
  removeTemporaries(checkpointsDir, hooks.inFlight);
  const name = stepFolder(data.state.step);
  const tmp = join(checkpointsDir, `.tmp-${name}-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  let bytes = writeModelFiles(tmp, data, specs);
  bytes += writeFileSynced(join(tmp, 'config.json'), JSON.stringify(hfConfig(data.state.model, dropout), null, 2) + '\n');
  // state.json last: a folder without it is never a checkpoint.
  bytes += writeFileSynced(join(tmp, 'state.json'), JSON.stringify(data.state, null, 2) + '\n');
  fsyncDir(tmp);
  hooks.beforeCommit?.();
  return { path: commitCheckpointFolder(checkpointsDir, tmp, data.state.step), bytes };
}

/**
 * Writes model.safetensors (HF names, Conv1D layout) and optimizer.safetensors into a folder, each under a
 * temporary name and then renamed: an interrupted write leaves no half file under the real name. Returns
 * the bytes written. The one writer of single-device files (checkpoints, and consolidated shards).
 */
export function writeModelFiles(folder: string, data: CheckpointData, specs: readonly ParamSpec[]): number {
  const tmpModel = join(folder, `.model.safetensors.${process.pid}.tmp`);
  const tmpOpt = join(folder, `.optimizer.safetensors.${process.pid}.tmp`);
  let bytes = writeSafetensors(
    tmpModel,
    specs.map((s): [string, TensorToWrite] => [s.name, { shape: s.shape, data: data.params.get(s.name)! }]),
    { format: 'pt' },
  );
  const slots = stateSlots(data.state.optimizer.kind);
  const opt: [string, TensorToWrite][] = [];
  for (const s of specs) {
    const st = data.optimizer.get(s.name);
    if (!st) continue;
    slots.forEach((slot, i) => opt.push([`${s.name}.${slot}`, { shape: s.shape, data: st[i]! }]));
  }
  bytes += writeSafetensors(tmpOpt, opt, { format: 'pt', kind: data.state.optimizer.kind, steps: String(data.state.optimizer.steps) });
  renameSync(tmpOpt, join(folder, 'optimizer.safetensors'));
  renameSync(tmpModel, join(folder, 'model.safetensors'));
  return bytes;
}

/**
 * Makes a fully written (and fsynced) temporary folder the checkpoint of `step`: renamed into place (an
 * existing one of the same step is replaced only after the new one is in), latest.json pointed at it, and
 * the oldest beyond KEEP_CHECKPOINTS removed. Shared by the single-device and the parallel writers.
 */
export function commitCheckpointFolder(checkpointsDir: string, tmp: string, step: number): string {
  const name = stepFolder(step);
  const final = join(checkpointsDir, name);
  if (existsSync(final)) {
    const old = join(checkpointsDir, `.old-${name}-${process.pid}-${Date.now()}`);
    renameSync(final, old);
    renameSync(tmp, final);
    rmSync(old, { recursive: true, force: true });
  } else renameSync(tmp, final);
  fsyncDir(checkpointsDir);
  writeAtomic(join(checkpointsDir, 'latest.json'), JSON.stringify({ step, folder: name }) + '\n');
  pruneOld(checkpointsDir);
  return final;
}

/**
 * Whether `name` is a complete step folder of this checkpoints directory: a plain "step-N" name (no "..",
 * no separator, not absolute), a real directory rather than a symlink, resolving inside the directory,
 * holding state.json.
 */
function isOwnStepFolder(checkpointsDir: string, name: unknown): name is string {
  if (typeof name !== 'string' || !/^step-\d{1,12}$/.test(name)) return false;
  const folder = join(checkpointsDir, name);
  try {
    if (!lstatSync(folder).isDirectory()) return false; // a symlink (or a file) is not ours
    const inside = relative(realpathSync(checkpointsDir), realpathSync(folder));
    return inside === name && !isAbsolute(inside) && existsSync(join(folder, 'state.json'));
  } catch {
    return false;
  }
}

/** The newest complete checkpoint folder, or undefined when there is none. */
export function latestCheckpoint(checkpointsDir: string): string | undefined {
  if (!existsSync(checkpointsDir)) return undefined;
  try {
    // latest.json may only name a folder of this run: one pointing elsewhere ("../../other/run/…", an
    // absolute path, a symlink) is ignored, and the newest complete folder here is used instead.
    const latest = JSON.parse(readTextBounded(join(checkpointsDir, 'latest.json'), 64 * 1024)) as { folder?: unknown };
    if (isOwnStepFolder(checkpointsDir, latest?.folder)) return join(checkpointsDir, latest.folder);
  } catch {
    // no or unreadable latest.json: fall back to scanning
  }
  const complete = readdirSync(checkpointsDir)
    .filter((f) => isOwnStepFolder(checkpointsDir, f))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  return complete.length ? join(checkpointsDir, complete[complete.length - 1]!) : undefined;
}

/** Largest step count anywhere (train.steps' bound). */
export const MAX_STEPS = 1_000_000_000;

/**
 * state.json's fields, checked before anything is done with them (a lying state.json must not truncate
 * metrics.jsonl or restart the optimizer's bias correction). Throws CheckpointError naming the file.
 */
export function checkState(raw: unknown, statePath: string): CheckpointState {
  const bad = (what: string): never => {
    throw new CheckpointError(`${statePath}: ${what}; the checkpoint is damaged (resume from an earlier one by removing this folder)`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('not a JSON object');
  const s = raw as Record<string, unknown>;
  if (s.format !== CHECKPOINT_FORMAT) throw new CheckpointError(`${statePath}: format is ${JSON.stringify(s.format)}, not "${CHECKPOINT_FORMAT}"`);
  const whole = (v: unknown, name: string, min: number, max: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const step = whole(s.step, 'step', 0, MAX_STEPS);
  whole(s.metricsBytes, 'metricsBytes', 0, Number.MAX_SAFE_INTEGER); // 0: saved without a run directory; truncation checks it against the file
  if (typeof s.tokens !== 'number' || !Number.isFinite(s.tokens) || s.tokens < 0) bad(`tokens must be a finite number ≥ 0, got ${JSON.stringify(s.tokens)}`);
  const opt = s.optimizer as Record<string, unknown> | null;
  if (typeof opt !== 'object' || opt === null) bad('optimizer is missing');
  whole(opt!.steps, 'optimizer.steps', 0, step);
  if (typeof opt!.kind !== 'string') bad('optimizer.kind is missing');
  const data = s.data as Record<string, unknown> | null;
  if (typeof data !== 'object' || data === null) bad('data is missing');
  whole(data!.nextStep, 'data.nextStep', 0, MAX_STEPS + 1);
  const model = s.model as Record<string, unknown> | null;
  if (typeof model !== 'object' || model === null) bad('model is missing');
  for (const k of ['layers', 'hidden', 'heads', 'vocab', 'positions', 'ffnHidden'] as const) whole(model![k], `model.${k}`, 1, 2 ** 31 - 1);
  if (s.lastLoss !== undefined && typeof s.lastLoss !== 'number') bad(`lastLoss must be a number, got ${JSON.stringify(s.lastLoss)}`);
  return s as unknown as CheckpointState;
}

/** Reads and checks a folder's state.json (bounded; see checkState). */
export function readCheckpointState(folder: string): CheckpointState {
  const statePath = join(folder, 'state.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readTextBounded(statePath, READ_LIMITS.state));
  } catch (e) {
    if (e instanceof FileReadError) throw new CheckpointError(e.code === 'ENOENT' ? `${statePath}: missing: this folder is not a complete ScaleLM checkpoint` : e.message);
    throw new CheckpointError(`${statePath}: not valid JSON (${(e as Error).message})`);
  }
  return checkState(raw, statePath);
}

/** Reads and checks a checkpoint folder against the model about to use it. */
export function loadCheckpoint(folder: string, specs: readonly ParamSpec[], expect: { shape: GptShape; optimizer: OptimizerHyper['kind'] }): CheckpointData {
  const statePath = join(folder, 'state.json');
  const state = readCheckpointState(folder);
  if (state.version !== CHECKPOINT_VERSION) throw new CheckpointError(`${statePath}: checkpoint version ${state.version}; this ScaleLM reads version ${CHECKPOINT_VERSION}`);
  const diffs = shapeDiffs(state.model, expect.shape);
  if (diffs.length) throw new CheckpointError(`${folder} was trained with a different model: ${diffs.join(', ')}. Resume with the run's own config (or set these with --set).`);
  if (state.optimizer.kind !== expect.optimizer) throw new CheckpointError(`${folder} holds ${state.optimizer.kind} state but train.optimizer is ${expect.optimizer}`);
  const params = readModelTensors(join(folder, 'model.safetensors'), specs);
  const optFile = join(folder, 'optimizer.safetensors');
  const opt = readSafetensors(optFile);
  const optimizer = new Map<string, Float32Array[]>();
  const slots = stateSlots(state.optimizer.kind);
  for (const s of specs) {
    optimizer.set(
      s.name,
      slots.map((slot) => {
        const key = `${s.name}.${slot}`;
        const t = opt.tensors.get(key);
        if (!t) throw new SafetensorsError(optFile, `missing optimizer tensor ${key}`);
        checkShape(optFile, key, t.shape, s.shape);
        return toFloat32(t, key, optFile);
      }),
    );
  }
  return { params, optimizer, state };
}

/** Model tensors by name from a safetensors file, checked name by name and shape by shape. */
export function readModelTensors(file: string, specs: readonly ParamSpec[]): Map<string, Float32Array> {
  const st = readSafetensors(file);
  const byName = new Map<string, { key: string; t: StoredTensor }>();
  for (const [key, t] of st.tensors) {
    const name = key.startsWith('transformer.') ? key.slice('transformer.'.length) : key;
    // Buffers and the tied output layer that GPT-2 files may carry: not parameters here.
    if (/^h\.\d+\.attn\.(masked_)?bias$/.test(name) || name === 'lm_head.weight') continue;
    byName.set(name, { key, t });
  }
  const out = new Map<string, Float32Array>();
  const missing: string[] = [];
  for (const s of specs) {
    const e = byName.get(s.name);
    if (!e) {
      missing.push(s.name);
      continue;
    }
    checkShape(file, e.key, e.t.shape, s.shape);
    out.set(s.name, toFloat32(e.t, e.key, file));
    byName.delete(s.name);
  }
  if (missing.length) throw new SafetensorsError(file, `missing ${missing.length} tensor${missing.length === 1 ? '' : 's'} of a GPT-2 with this shape: ${list(missing)}`);
  if (byName.size) throw new SafetensorsError(file, `${byName.size} tensor${byName.size === 1 ? '' : 's'} that this GPT-2 does not have: ${list([...byName.values()].map((e) => e.key))}`);
  return out;
}

/** Loads a local HuggingFace GPT-2 folder (config.json + model.safetensors) as initial weights. */
export function loadHfFolder(dir: string, specs: readonly ParamSpec[], shape: GptShape): Map<string, Float32Array> {
  const configPath = join(dir, 'config.json');
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readTextBounded(configPath, READ_LIMITS.config)) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof FileReadError) throw new CheckpointError(e.code === 'ENOENT' ? `${configPath}: missing; a HuggingFace GPT-2 folder has config.json and model.safetensors` : e.message);
    throw new CheckpointError(`${configPath}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new CheckpointError(`${configPath}: not a JSON object`);
  if (cfg.model_type !== undefined && cfg.model_type !== 'gpt2') throw new CheckpointError(`${configPath}: model_type is "${String(cfg.model_type)}"; only GPT-2 checkpoints load here`);
  const act = cfg.activation_function ?? 'gelu_new';
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') throw new CheckpointError(`${configPath}: activation_function "${String(act)}" is not GPT-2's tanh GELU (gelu_new)`);
  if (cfg.scale_attn_by_inverse_layer_idx === true || cfg.reorder_and_upcast_attn === true)
    throw new CheckpointError(`${configPath}: scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported`);
  if (cfg.tie_word_embeddings === false) throw new CheckpointError(`${configPath}: tie_word_embeddings is false; this runtime ties the output layer to wte`);
  const hidden = Number(cfg.n_embd);
  const theirs: GptShape = {
    layers: Number(cfg.n_layer),
    hidden,
    heads: Number(cfg.n_head),
    vocab: Number(cfg.vocab_size),
    positions: Number(cfg.n_positions),
    ffnHidden: cfg.n_inner == null ? 4 * hidden : Number(cfg.n_inner),
    eps: cfg.layer_norm_epsilon == null ? 1e-5 : Number(cfg.layer_norm_epsilon),
  };
  const diffs = shapeDiffs(theirs, shape);
  if (diffs.length) {
    throw new CheckpointError(`${dir} is a different GPT-2: ${diffs.join(', ')}. Match the config to it, e.g. ${setHint(theirs)}`);
  }
  const weights = join(dir, 'model.safetensors');
  if (!existsSync(weights)) {
    const hint = existsSync(join(dir, 'model.safetensors.index.json'))
      ? ' (sharded checkpoints are not supported: merge the shards into one model.safetensors)'
      : existsSync(join(dir, 'pytorch_model.bin'))
        ? ' (pytorch_model.bin is not read: convert it to safetensors)'
        : '';
    throw new CheckpointError(`${weights}: missing${hint}`);
  }
  return readModelTensors(weights, specs);
}

function setHint(s: GptShape): string {
  return (
    `--set model.layers=${s.layers} --set model.hidden=${s.hidden} --set model.heads=${s.heads} --set model.vocab=${s.vocab} --set model.seqLen=${s.positions}` +
    (s.ffnHidden !== 4 * s.hidden ? ` --set model.ffnHidden=${s.ffnHidden}` : '')
  );
}

const SHAPE_FIELDS: [keyof GptShape, string][] = [
  ['layers', 'layers (n_layer)'],
  ['hidden', 'hidden (n_embd)'],
  ['heads', 'heads (n_head)'],
  ['vocab', 'vocab (vocab_size)'],
  ['positions', 'seqLen (n_positions)'],
  ['ffnHidden', 'ffnHidden (n_inner)'],
  ['eps', 'LayerNorm eps (layer_norm_epsilon)'],
];

function shapeDiffs(theirs: GptShape, ours: GptShape): string[] {
  return SHAPE_FIELDS.filter(([k]) => theirs[k] !== ours[k]).map(([k, label]) => `${label} ${theirs[k]} there vs ${ours[k]} in the config`);
}

function checkShape(file: string, key: string, got: number[], want: number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    const transposed = got.length === 2 && want.length === 2 && got[0] === want[1] && got[1] === want[0];
    throw new SafetensorsError(
      file,
      `tensor ${key} has shape [${got}], expected [${want}]${transposed ? " (transposed: HF GPT-2 stores Conv1D weights as [in, out], not nn.Linear's [out, in])" : ''}`,
    );
  }
}

function list(names: string[]): string {
  return names.length > 6 ? `${names.slice(0, 6).join(', ')} … (${names.length - 6} more)` : names.join(', ');
}

/** temp + fsync + rename + fsync(dir). */
export function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSynced(tmp, text);
  renameSync(tmp, file);
  fsyncDir(join(file, '..'));
}

/** fsync of a folder (or file) by path, so a rename into it is durable; tolerated where unsupported. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on a directory; the rename is still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Leftovers of interrupted writes (never checkpoints: they were not renamed into place): ours, or a dead
 * process's — a live writer would still be using its own — except those `inFlight` names. Every writer's
 * names end in -<pid>-<nonce or time> (`.tmp-step-000004-1234-1733300000000`, `.tmp-step-000004-1234-9f3a0c1e`)
 * or .<pid>.tmp.
 */
export function removeTemporaries(dir: string, inFlight?: (name: string) => boolean): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    if (!(f.startsWith('.tmp-') || f.startsWith('.old-') || f.endsWith('.tmp')) || inFlight?.(f)) continue;
    const pid = Number(/-(\d+)-[0-9a-f]+$/.exec(f)?.[1] ?? /\.(\d+)\.tmp$/.exec(f)?.[1]);
    if (pid && pid !== process.pid && isAlive(pid)) continue;
    rmSync(join(dir, f), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pruneOld(dir: string): void {
  const steps = readdirSync(dir)
    .filter((f) => /^step-\d+$/.test(f) && statSync(join(dir, f)).isDirectory())
    .sort();
  for (const f of steps.slice(0, Math.max(0, steps.length - KEEP_CHECKPOINTS))) rmSync(join(dir, f), { recursive: true, force: true });
}
