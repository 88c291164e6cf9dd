// A sharded checkpoint: one safetensors file per rank that has something of its own to keep, written while
// training, next to the coordinator's state.json (with the layout):
//   shard-tp{t}-dp{d}.safetensors
//     <HF name>            this TP rank's parameter shards (ZeRO 0–2: written by dp rank 0 only; replicas skip)
//     partition.params     ZeRO-3: this rank's partition of the flat parameters
//     partition.<slot>     the optimizer state over the rank's partition (exp_avg, exp_avg_sq or
//                          momentum_buffer); under ZeRO 0 the whole model, written by dp rank 0
// and the way back: the full HuggingFace-named tensors of any layout (consolidation), pure but for fs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Gpt, type GptShape, type ModelUnit } from '../model/gpt';
import { numel, type ParamSpec } from '../model/params';
import { readSafetensors, toFloat32, writeSafetensors, type TensorToWrite } from '../train/safetensors';
import { stateSlots, type OptimizerHyper } from '../train/optimizer';
import { FlatLayout } from './flat';
import { ParallelError } from './layout';
import { joinShards, shardShape } from './shards';

/** The layout a sharded checkpoint was written in (state.json `layout`). */
export interface ShardLayout {
  dp: number;
  tp: number;
  zero: 0 | 1 | 2 | 3;
  paddedVocab: number;
}

export const shardFile = (c: { tp: number; dp: number }): string => `shard-tp${c.tp}-dp${c.dp}.safetensors`;

export interface ShardContents {
  file: string;
  params: Map<string, Float32Array>;
  partition: Map<string, Float32Array>;
  optimizerSteps: number;
}

export function writeShard(
  folder: string,
  coords: { tp: number; dp: number },
  layout: ShardLayout,
  optimizerSteps: number,
  contents: { params: Map<string, Float32Array>; partition: Map<string, Float32Array> },
  shapes: Map<string, number[]>,
): number {
  const tensors: [string, TensorToWrite][] = [];
  for (const [name, data] of contents.params) tensors.push([name, { shape: shapes.get(name)!, data }]);
  for (const [slot, data] of contents.partition) tensors.push([`partition.${slot}`, { shape: [data.length], data }]);
  const meta = {
    format: 'scalelm-shard',
    tp: String(layout.tp),
    dp: String(layout.dp),
    zero: String(layout.zero),
    tpRank: String(coords.tp),
    dpRank: String(coords.dp),
    optimizerSteps: String(optimizerSteps),
  };
  return writeSafetensors(join(folder, shardFile(coords)), tensors, meta);
}

export function readShard(folder: string, coords: { tp: number; dp: number }, layout: { dp: number; tp: number; zero: number }): ShardContents {
  const file = join(folder, shardFile(coords));
  if (!existsSync(file)) throw new ParallelError(`${file}: missing — the sharded checkpoint is incomplete, or was written with another layout`);
  const st = readSafetensors(file);
  const meta = st.metadata ?? {};
  if (meta.format !== 'scalelm-shard' || Number(meta.tp) !== layout.tp || Number(meta.dp) !== layout.dp || Number(meta.zero) !== layout.zero) {
    throw new ParallelError(`${file} belongs to a dp=${meta.dp} tp=${meta.tp} zero=${meta.zero} layout, not dp=${layout.dp} tp=${layout.tp} zero=${layout.zero}`);
  }
  const params = new Map<string, Float32Array>();
  const partition = new Map<string, Float32Array>();
  for (const [key, t] of st.tensors) {
    if (key.startsWith('partition.')) partition.set(key.slice('partition.'.length), toFloat32(t, key, file));
    else params.set(key, toFloat32(t, key, file));
  }
  return { file, params, partition, optimizerSteps: Number(meta.optimizerSteps ?? 0) };
}

/** A TP rank's units (shard shapes, from each parameter's declared split) of the model of this shape. */
export function localUnits(shape: GptShape, tp: number, paddedVocab: number): ModelUnit[] {
  return new Gpt(shape).units().map((u) => ({ name: u.name, specs: u.specs.map((s) => ({ ...s, shape: shardShape(s.tp, s.shape, tp, paddedVocab) })) }));
}

/**
 * The full, single-device tensors of a sharded checkpoint: parameters and optimizer state by HF name
 * (padding rows of wte dropped). Reads every shard file of the folder.
 */
export function consolidateShards(
  folder: string,
  layout: ShardLayout,
  shape: GptShape,
  fullSpecs: readonly ParamSpec[],
  kind: OptimizerHyper['kind'],
): { params: Map<string, Float32Array>; optimizer: Map<string, Float32Array[]>; optimizerSteps: number } {
  const { dp, tp, zero } = layout;
  const units = localUnits(shape, tp, layout.paddedVocab);
  const specs = units.flatMap((u) => u.specs);
  const flat = new FlatLayout(units, zero >= 1 ? dp : 1, 1, 1);
  const slots = stateSlots(kind);
  const perTp = Array.from({ length: tp }, () => ({ params: new Map<string, Float32Array>(), state: new Map<string, Float32Array[]>() }));
  let optimizerSteps = 0;
  for (let t = 0; t < tp; t++) {
    const mine = perTp[t]!;
    for (const s of specs) {
      mine.params.set(s.name, new Float32Array(numel(s.shape)));
      mine.state.set(
        s.name,
        slots.map(() => new Float32Array(numel(s.shape))),
      );
    }
    const partitioned = (d: number, c: ShardContents) => {
      for (const seg of flat.segments(zero >= 1 ? d : 0)) {
        if (zero === 3) mine.params.get(seg.slot.name)!.set(c.partition.get('params')!.subarray(seg.at, seg.at + seg.length), seg.from);
        slots.forEach((slot, i) => {
          const part = c.partition.get(slot);
          if (!part) throw new ParallelError(`${c.file}: missing partition.${slot}`);
          mine.state.get(seg.slot.name)![i]!.set(part.subarray(seg.at, seg.at + seg.length), seg.from);
        });
      }
    };
    for (let d = 0; d < (zero >= 1 ? dp : 1); d++) {
      const c = readShard(folder, { tp: t, dp: d }, layout);
      optimizerSteps = c.optimizerSteps;
      if (zero < 3 && d === 0) {
        for (const s of specs) {
          const v = c.params.get(s.name);
          if (!v) throw new ParallelError(`${c.file}: missing parameter ${s.name}`);
          mine.params.set(s.name, v);
        }
      }
      partitioned(d, c);
    }
  }
  const params = new Map<string, Float32Array>();
  const optimizer = new Map<string, Float32Array[]>();
  for (const s of fullSpecs) {
    params.set(
      s.name,
      joinShards(
        s.tp,
        s.shape,
        perTp.map((p) => p.params.get(s.name)!),
        tp,
      ),
    );
    optimizer.set(
      s.name,
      slots.map((_, i) =>
        joinShards(
          s.tp,
          s.shape,
          perTp.map((p) => p.state.get(s.name)![i]!),
          tp,
        ),
      ),
    );
  }
  return { params, optimizer, optimizerSteps };
}
