// Sharded checkpoints in the run directory, and their consolidation into the single-device format; the
// commit of both formats an engine may declare (coordinator/engine.ts CheckpointFormat).
//   checkpoints/step-NNNNNN/shard-tp{t}-dp{d}.safetensors   written by the ranks while training
//   checkpoints/step-NNNNNN/state.json                       the coordinator's, with `layout` (state.json last)
//   checkpoints/step-NNNNNN/config.json                      HF GPT2Config
// Ranks write into checkpoints/.tmp-step-NNNNNN-<coordinator pid>-<nonce>/; when every rank has reported
// its shard the coordinator adds state.json, fsyncs and renames the folder into place, then points
// latest.json at it — a failure at any moment leaves the previous checkpoint whole.
// `consolidate` adds model.safetensors (HF names, Conv1D layout) and optimizer.safetensors to a sharded
// folder: it is then also a single-device checkpoint, from which any layout (and `scalelm train` on one
// device) can resume.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { describeSystemError, writeFileSynced } from '../files';
import { join } from 'node:path';
import { Gpt, type GptShape } from '../model/gpt';
import {
  CheckpointError,
  commitCheckpointFolder,
  fsyncDir,
  hfConfig,
  latestCheckpoint,
  readCheckpointState,
  readModelTensors,
  saveCheckpoint,
  stepFolder,
  writeModelFiles,
  type CheckpointState,
} from '../train/checkpoint';
import { consolidateShards, type ShardLayout } from './shard-files';

export interface ShardedState extends CheckpointState {
  layout: ShardLayout;
}

export function isSharded(state: CheckpointState): state is ShardedState {
  return typeof (state as Partial<ShardedState>).layout === 'object';
}

/** A folder's state.json, bounded and checked field by field (train/checkpoint.ts checkState). */
export function readState(folder: string): CheckpointState {
  return readCheckpointState(folder);
}

/** Whether the folder holds the single-device files (model.safetensors + optimizer.safetensors). */
export function hasFullFiles(folder: string): boolean {
  return existsSync(join(folder, 'model.safetensors')) && existsSync(join(folder, 'optimizer.safetensors'));
}

/** The folder a checkpoint template (tmpCheckpointTemplate) names for `step`. */
export function checkpointFolder(template: string, step: number): string {
  return template.replace('{step}', stepFolder(step));
}

/**
 * Creates a rank's temporary checkpoint folder (every rank of the world may, at once) inside the existing
 * checkpoints folder. Not `mkdir -p`: on a file system that turned read-only it reports ENOENT instead of
 * EROFS. Failures are CheckpointErrors in one sentence ("…: the file system is read-only").
 */
export function makeCheckpointFolder(folder: string): void {
  try {
    mkdirSync(folder);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw new CheckpointError(describeSystemError(e) ?? (e as Error).message);
  }
}

/** The temporary folder the ranks write checkpoint `step` into. */
export function tmpCheckpointTemplate(checkpointsDir: string, nonce: string): string {
  return join(checkpointsDir, `.tmp-{step}-${process.pid}-${nonce}`);
}

/**
 * Commits a folder the ranks have filled: state.json and config.json, fsync, rename, latest.json, prune.
 * A world of one (dp = tp = 1, ZeRO 0) is stored as a single-device checkpoint (saveCheckpoint): its one
 * shard becomes model.safetensors (HF names, loadable by transformers) and optimizer.safetensors, and
 * state.json has no layout — the format single-device runs have always written, so old and new ones resume
 * alike. `inFlight`: temporary folders this run's ranks may be writing now (kept by the cleanup).
 */
export function commitCheckpoint(checkpointsDir: string, tmp: string, state: ShardedState, shape: GptShape, dropout: number, inFlight: (name: string) => boolean): { path: string; bytes: number } {
  const L = state.layout;
  if (L.dp === 1 && L.tp === 1 && L.zero === 0) {
    const specs = new Gpt(shape).paramSpecs();
    const full = consolidateShards(tmp, L, shape, specs, state.optimizer.kind);
    const { layout: _layout, ...single } = state;
    const saved = saveCheckpoint(checkpointsDir, { params: full.params, optimizer: full.optimizer, state: single }, specs, dropout, {
      inFlight: (f) => inFlight(f) && join(checkpointsDir, f) !== tmp,
    });
    rmSync(tmp, { recursive: true, force: true });
    return saved;
  }
  let bytes = 0;
  for (const f of readdirSync(tmp)) {
    const p = join(tmp, f);
    bytes += statSync(p).size;
    fsyncDir(p);
  }
  bytes += writeFileSynced(join(tmp, 'config.json'), JSON.stringify(hfConfig(shape, dropout), null, 2) + '\n');
  // state.json last: a folder without it is never a checkpoint.
  bytes += writeFileSynced(join(tmp, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  fsyncDir(tmp);
  return { path: commitCheckpointFolder(checkpointsDir, tmp, state.step), bytes };
}

/**
 * Commits a folder whose ranks wrote the full files themselves (an engine declaring `full` checkpoints: rank 0
 * gathers model.safetensors and optimizer.safetensors): config.json, then state.json (no layout) last, fsync,
 * rename, latest.json, prune.
 */
export function commitFullCheckpoint(checkpointsDir: string, tmp: string, state: CheckpointState, hfConfig: Record<string, unknown>): { path: string; bytes: number } {
  let bytes = 0;
  for (const f of readdirSync(tmp)) {
    const p = join(tmp, f);
    bytes += statSync(p).size;
    fsyncDir(p);
  }
  bytes += writeFileSynced(join(tmp, 'config.json'), JSON.stringify(hfConfig, null, 2) + '\n');
  bytes += writeFileSynced(join(tmp, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  fsyncDir(tmp);
  return { path: commitCheckpointFolder(checkpointsDir, tmp, state.step), bytes };
}

/**
 * Writes model.safetensors, optimizer.safetensors and config.json (the single-device checkpoint files) into
 * a sharded checkpoint folder. Each file is written under a temporary name and renamed: an interrupted
 * consolidation leaves the shards as they were. Returns the bytes written.
 */
export function consolidate(folder: string): { bytes: number; state: ShardedState } {
  const state = readState(folder);
  if (!isSharded(state)) throw new CheckpointError(`${folder} is not a sharded checkpoint (its state.json has no layout): it already is a single-device checkpoint`);
  const shape = state.model;
  const specs = new Gpt(shape).paramSpecs();
  const full = consolidateShards(folder, state.layout, shape, specs, state.optimizer.kind);
  let bytes = writeModelFiles(folder, { params: full.params, optimizer: full.optimizer, state }, specs);
  if (!existsSync(join(folder, 'config.json'))) bytes += writeFileSynced(join(folder, 'config.json'), JSON.stringify(hfConfig(shape, 0), null, 2) + '\n');
  fsyncDir(folder);
  return { bytes, state };
}

/** Full tensors of a sharded checkpoint without writing anything (tests, in-memory resharding). */
export function readConsolidated(folder: string): { params: Map<string, Float32Array>; optimizer: Map<string, Float32Array[]>; state: ShardedState } {
  const state = readState(folder);
  if (!isSharded(state)) throw new CheckpointError(`${folder} is not a sharded checkpoint`);
  const fullSpecs = new Gpt(state.model).paramSpecs();
  const r = consolidateShards(folder, state.layout, state.model, fullSpecs, state.optimizer.kind);
  return { params: r.params, optimizer: r.optimizer, state };
}

/** Before a single-device resume: consolidates the run's latest checkpoint if it is sharded and not yet consolidated. */
export function consolidateLatestIfSharded(checkpointsDir: string, log: (line: string) => void): void {
  const folder = latestCheckpoint(checkpointsDir);
  if (!folder) return;
  const state = readState(folder);
  if (!isSharded(state) || hasFullFiles(folder)) return;
  log(`checkpoint ${folder} is sharded (dp=${state.layout.dp} tp=${state.layout.tp} zero=${state.layout.zero}); consolidating it to resume on one device`);
  consolidate(folder);
}

/** The full parameters of any checkpoint folder: its single-device files, or its shards consolidated in memory. */
export function readCheckpointParams(folder: string): Map<string, Float32Array> {
  if (hasFullFiles(folder)) return readModelTensors(join(folder, 'model.safetensors'), new Gpt(readState(folder).model).paramSpecs());
  return readConsolidated(folder).params;
}
