// `scalelm checkpoint consolidate DIR`: turns a sharded checkpoint (one file per rank of a parallel run) into
// the single-device files — model.safetensors with HuggingFace GPT-2 names, optimizer.safetensors — next to
// the shards. DIR is a checkpoint folder, a run's checkpoints/ folder or a run directory (its latest
// checkpoint). The result loads in PyTorch/transformers by name, and any layout can resume from it.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CliError, parseArgs, type Command } from './args';

const USAGE = `usage: scalelm checkpoint consolidate DIR [--json]

  DIR   a checkpoint folder (…/checkpoints/step-NNNNNN), a run's checkpoints/ folder, or a run directory
        (its latest checkpoint)

Writes model.safetensors (HuggingFace GPT-2 names, F32) and optimizer.safetensors into the checkpoint folder,
beside the shards. \`scalelm train --resume\` then continues the run in any layout (or on one device).`;

export const checkpointCommand: Command = async (argv) => {
  const args = parseArgs(argv, { switches: ['json'], positional: [1, 2], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const [action, target] = args.positional;
  if (action !== 'consolidate') throw new CliError(`unknown action "${action}"; the only one is consolidate\n\n${USAGE}`);
  if (!target) throw new CliError(`missing DIR\n\n${USAGE}`);
  const { latestCheckpoint } = await import('../train/checkpoint');
  const { consolidate, hasFullFiles, isSharded, readState } = await import('../parallel/checkpoint');
  let folder = resolve(target);
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new CliError(`${folder}: no such folder`, 1);
  if (!existsSync(join(folder, 'state.json'))) {
    const base = existsSync(join(folder, 'checkpoints')) ? join(folder, 'checkpoints') : folder;
    const latest = latestCheckpoint(base);
    if (!latest) throw new CliError(`${folder} holds no complete checkpoint (no state.json here or in a step folder)`, 1);
    folder = latest;
  }
  try {
    const state = readState(folder);
    if (!isSharded(state)) {
      const line = `${folder} is already a single-device checkpoint (model.safetensors + optimizer.safetensors); nothing to do`;
      console.log(args.switches.has('json') ? JSON.stringify({ folder, consolidated: hasFullFiles(folder), written: 0 }) : line);
      return 0;
    }
    const t0 = Date.now();
    const { bytes } = consolidate(folder);
    const l = state.layout;
    if (args.switches.has('json')) console.log(JSON.stringify({ folder, consolidated: true, written: bytes, layout: l, step: state.step }));
    else {
      console.log(`consolidated ${folder} (step ${state.step}, ${l.dp * l.tp} ranks: dp=${l.dp} tp=${l.tp} zero=${l.zero}) in ${Date.now() - t0} ms`);
      console.log(`  model.safetensors      HuggingFace GPT-2 names, F32`);
      console.log(`  optimizer.safetensors  ${state.optimizer.kind} state by parameter name (${bytes.toLocaleString('en-US')} bytes written in all)`);
    }
    return 0;
  } catch (e) {
    const name = (e as Error).name;
    if (name === 'CheckpointError' || name === 'ParallelError' || name === 'SafetensorsError') throw new CliError((e as Error).message, 1);
    throw e;
  }
};
