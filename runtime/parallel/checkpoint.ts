// Sharded checkpoints in the run directory, and their consolidation into the single-device format.
//   checkpoints/step-NNNNNN/shard-tp{t}-dp{d}.safetensors   written by the ranks while training
//   checkpoints/step-NNNNNN/state.json                       the coordinator's, with `layout` (state.json last)
//   checkpoints/step-NNNNNN/config.json                      HF GPT2Config
// Ranks write into checkpoints/.tmp-step-NNNNNN-<coordinator pid>-<nonce>/; when every rank has reported
// its shard the coordinator adds state.json, fsyncs and renames the folder into place, then points
// latest.json at it — a failure at any moment leaves the previous checkpoint whole.
// `consolidate` adds model.safetensors (HF names, Conv1D layout) and optimizer.safetensors to a sharded
// folder: it is then also a single-device checkpoint, from which any layout (and `scalelm train` on one
// device) can resume.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Gpt, type GptShape } from '../model/gpt';
import { CHECKPOINT_FORMAT, CheckpointError, commitCheckpointFolder, readCheckpointState, fsyncDir, hfConfig, latestCheckpoint, writeFileSynced, type CheckpointState } from '../train/checkpoint';
import { stateSlots } from '../train/optimizer';
import { writeSafetensors, type TensorToWrite } from '../train/safetensors';
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

/** The temporary folder the ranks write checkpoint `step` into. */
export function tmpCheckpointTemplate(checkpointsDir: string, nonce: string): string {
  return join(checkpointsDir, `.tmp-{step}-${process.pid}-${nonce}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes leftovers of interrupted checkpoints (ours other than `keep`, or a dead coordinator's). */
export function removeStaleTemporaries(checkpointsDir: string, keep: string[] = []): void {
  if (!existsSync(checkpointsDir)) return;
  for (const f of readdirSync(checkpointsDir)) {
    if (!f.startsWith('.tmp-') && !f.startsWith('.old-')) continue;
    const path = join(checkpointsDir, f);
    if (keep.includes(path)) continue;
    const pid = Number(/-(\d+)-[^-]+$/.exec(f)?.[1]);
    if (pid && pid !== process.pid && alive(pid)) continue;
    rmSync(path, { recursive: true, force: true });
  }
}

/** Commits a folder the ranks have filled: state.json and config.json, fsync, rename, latest.json, prune. */
export function commitCheckpoint(checkpointsDir: string, tmp: string, state: ShardedState, shape: GptShape, dropout: number): { path: string; bytes: number } {
  let bytes = 0;
  for (const f of readdirSync(tmp)) {
    const p = join(tmp, f);
    bytes += statSync(p).size;
    fsyncDir(p);
  }
  bytes += writeFileSynced(join(tmp, 'config.json'), JSON.stringify(hfConfig(shape, dropout), null, 2) + '\n');
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
  const fullSpecs = new Gpt(shape).paramSpecs();
  const kind = state.optimizer.kind;
  const full = consolidateShards(folder, state.layout, shape, fullSpecs, kind);
  const slots = stateSlots(kind);
  const tmpModel = join(folder, `.model.safetensors.${process.pid}.tmp`);
  const tmpOpt = join(folder, `.optimizer.safetensors.${process.pid}.tmp`);
  let bytes = writeSafetensors(tmpModel, fullSpecs.map((s): [string, TensorToWrite] => [s.name, { shape: s.shape, data: full.params.get(s.name)! }]), { format: 'pt' });
  const opt: [string, TensorToWrite][] = [];
  for (const s of fullSpecs) slots.forEach((slot, i) => opt.push([`${s.name}.${slot}`, { shape: s.shape, data: full.optimizer.get(s.name)![i]! }]));
  bytes += writeSafetensors(tmpOpt, opt, { format: 'pt', kind, steps: String(state.optimizer.steps) });
  renameSync(tmpOpt, join(folder, 'optimizer.safetensors'));
  renameSync(tmpModel, join(folder, 'model.safetensors'));
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
