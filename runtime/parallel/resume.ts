// Where a rank starts from (StartFrom, decided by the coordinator): fresh weights, a model folder to
// initialise from, a full single-device checkpoint resharded to this layout, or this layout's own sharded
// checkpoint. Every layout starts from the single-device tensors, drawn or read once per name and sliced
// to this rank's shard (shards.ts), so a run's weights do not depend on its layout. Writes into the rank's
// parameter store (or ZeRO-3 partition) and its optimizer-state partition; returns the optimizer steps.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { GptShape } from '../model/gpt';
import { initialValues, type ParamSpec, type ParamStore } from '../model/params';
import { loadCheckpoint, loadHfFolder, readModelTensors } from '../train/checkpoint';
import { stateSlots, type OptimizerHyper } from '../train/optimizer';
import type { StartFrom } from '../coordinator/engine';
import type { Segment } from './flat';
import { ParallelError, type ParallelLayout } from './layout';
import { readShard, type ShardContents } from './shard-files';
import { sliceShard } from './shards';

/** The rank a start is loaded into. */
export interface StartTarget {
  layout: ParallelLayout;
  coords: { tp: number; dp: number };
  shape: GptShape;
  /** Full (single-device) specs, with their declared splits. */
  fullSpecs: readonly ParamSpec[];
  /** This rank's specs (shard shapes). */
  specs: readonly ParamSpec[];
  paddedVocab: number;
  optimizer: OptimizerHyper['kind'];
  /** ZeRO 0–2: the rank's parameters. */
  params: ParamStore | undefined;
  /** ZeRO-3: the rank's partition of the flat parameters. */
  owned: Float32Array | undefined;
  /** Optimizer state over the rank's partition, in stateSlots order. */
  state: Float32Array[];
  /** This rank's partition segments of one parameter. */
  segmentsOf(name: string): Segment[];
}

/** Loads `start` into the rank; returns the optimizer steps already taken (`steps` unless a checkpoint says). */
export function loadStart(t: StartTarget, start: StartFrom, seed: number, steps: number): number {
  const tp = t.layout.tp;
  const place = (name: string, local: Float32Array) => {
    if (t.params) t.params.setValues(name, local);
    else for (const s of t.segmentsOf(name)) t.owned!.set(local.subarray(s.from, s.from + s.length), s.at);
  };
  const placeState = (name: string, slots: Float32Array[]) => {
    for (const s of t.segmentsOf(name)) slots.forEach((v, i) => t.state[i]!.set(v.subarray(s.from, s.from + s.length), s.at));
  };
  const full = (spec: ParamSpec, v: Float32Array) => sliceShard(spec.tp, spec.shape, v, tp, t.coords.tp, t.paddedVocab);
  if (start.kind === 'resume-sharded') {
    // ZeRO 0–2 parameters (and ZeRO-0 optimizer state) are written once per TP rank, by dp rank 0; ZeRO ≥ 1
    // optimizer partitions and ZeRO-3 parameter partitions by every rank.
    const read = (dp: number) => readShard(start.folder, { tp: t.coords.tp, dp }, t.layout);
    const zero = t.layout.zero;
    const own = zero === 0 ? read(0) : read(t.coords.dp);
    const lead = zero === 3 || t.coords.dp === 0 ? own : read(0);
    return loadShard(t, own, lead);
  }
  if (start.kind === 'resume-full') {
    const ck = loadCheckpoint(start.folder, t.fullSpecs, { shape: t.shape, optimizer: t.optimizer });
    for (const spec of t.fullSpecs) {
      place(spec.name, full(spec, ck.params.get(spec.name)!));
      placeState(
        spec.name,
        ck.optimizer.get(spec.name)!.map((v) => full(spec, v)),
      );
    }
    return ck.state.optimizer.steps;
  }
  let values: Map<string, Float32Array> | undefined;
  if (start.kind === 'init') {
    values =
      existsSync(join(start.folder, 'state.json')) && existsSync(join(start.folder, 'model.safetensors'))
        ? readModelTensors(join(start.folder, 'model.safetensors'), t.fullSpecs)
        : loadHfFolder(start.folder, t.fullSpecs, t.shape);
  }
  // Every layout starts from the single-device weights: the full tensor, drawn once per name, then sliced.
  for (const spec of t.fullSpecs) place(spec.name, full(spec, values?.get(spec.name) ?? initialValues(spec, seed)));
  return steps;
}

function loadShard(t: StartTarget, own: ShardContents, lead: ShardContents): number {
  if (t.params) {
    for (const spec of t.specs) {
      const v = lead.params.get(spec.name);
      if (!v) throw new ParallelError(`${lead.file}: missing parameter ${spec.name}`);
      t.params.setValues(spec.name, v);
    }
  } else t.owned!.set(own.partition.get('params')!);
  const stateFrom = t.layout.zero >= 1 ? own : lead;
  stateSlots(t.optimizer).forEach((slot, i) => t.state[i]!.set(stateFrom.partition.get(slot)!));
  return own.optimizerSteps;
}
