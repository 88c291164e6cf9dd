// A rank of the ZeRO toy test: hand-made gradients of a three-unit toy model go through the real
// GradReducer (and, for ZeRO-3, the real parameter gatherer); the rank returns its reduced partition,
// padding included, and what it gathered.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { Comm } from '../../../runtime/comm/comm';
import { MemoryTracker } from '../../../runtime/model/memory';
import type { ModelUnit } from '../../../runtime/model/gpt';
import type { ParamSpec } from '../../../runtime/model/params';
import { FlatLayout } from '../../../runtime/parallel/flat';
import { GradReducer } from '../../../runtime/parallel/grads';
import { Zero3Params } from '../../../runtime/parallel/zero3';

export const TOY_SPECS: ParamSpec[] = [
  { name: 'wte.weight', shape: [2, 2], init: { kind: 'zeros' }, decay: true, uses: 2 },
  { name: 'wpe.weight', shape: [1, 1], init: { kind: 'zeros' }, decay: true },
  { name: 'h.0.attn.c_attn.bias', shape: [5], init: { kind: 'zeros' }, decay: false },
  { name: 'ln_f.weight', shape: [3], init: { kind: 'zeros' }, decay: false },
];

/** The toy's units in gradient order, as a model declares them (Gpt.units()). */
export const TOY_UNITS: ModelUnit[] = [
  { name: 'ln_f', specs: TOY_SPECS.filter((s) => s.name.startsWith('ln_f.')) },
  { name: 'h.0', specs: TOY_SPECS.filter((s) => s.name.startsWith('h.0.')) },
  { name: 'embedding', specs: TOY_SPECS.filter((s) => s.name.startsWith('wte.') || s.name.startsWith('wpe.')) },
];

/** Rank r's gradients, in the order backward emits them (the tied wte twice: output layer, then embedding). */
export function toyGrads(rank: number): [string, number[]][] {
  const k = rank + 1;
  return [
    ['wte.weight', [100, 200, 300, 400].map((v) => k * v)],
    ['ln_f.weight', [1, 2, 3].map((v) => k * v)],
    ['h.0.attn.c_attn.bias', [10, 20, 30, 40, 50].map((v) => k * v)],
    ['wte.weight', [1000, 2000, 3000, 4000].map((v) => k * v)],
    ['wpe.weight', [7].map((v) => k * v)],
  ];
}

export interface ToyResult {
  partition: number[];
  gathered?: Record<string, number[]>;
  maxLive?: number;
  liveAfter?: string[];
}

export async function main(comm: Comm, args: { zero: 1 | 2 | 3; bucketBytes: number; micro: number }): Promise<ToyResult> {
  tf.enableProdMode(); // quiet: no "install tfjs-node" banner
  await tf.setBackend('cpu');
  const tracker = new MemoryTracker();
  const timer = { exposedMs: 0 };
  const flat = new FlatLayout(TOY_UNITS, comm.size, args.bucketBytes, args.bucketBytes);
  const reducer = new GradReducer(comm, comm.world, flat, args.zero, tracker, timer);
  reducer.beginStep();
  for (let a = 0; a < args.micro; a++) {
    reducer.beginMicro(a, a === args.micro - 1);
    for (const [name, values] of toyGrads(comm.rank))
      reducer.sink(
        name,
        tf.tensor(
          values.map((v) => v / args.micro),
          flat.slot(name).shape,
        ),
      );
    reducer.endMicro();
  }
  const result: ToyResult = { partition: [...reducer.partition()] };
  if (args.zero === 3) {
    // The parameters' partition of the same toy: full values 1..n in flat order, then gather every unit.
    const owned = comm.alloc(flat.partition);
    owned.fill(0);
    for (const s of flat.segments(comm.rank)) for (let i = 0; i < s.length; i++) owned[s.at + i] = s.slot.offset + s.from + i + 1 + 100 * s.slot.unit;
    const params = new Zero3Params(comm, comm.world, flat, owned, tracker, timer);
    params.begin(['ln_f', 'h.0', 'embedding']);
    result.gathered = {};
    for (const unit of ['ln_f', 'h.0', 'embedding']) {
      params.acquire(unit);
      for (const slot of flat.units.find((u) => u.name === unit)!.slots) result.gathered[slot.name] = [...(params.get(slot.name).dataSync() as Float32Array)];
      params.release(unit);
    }
    result.maxLive = params.maxLive;
    result.liveAfter = params.live();
  }
  reducer.dispose();
  return result;
}
