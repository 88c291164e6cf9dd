// GPT-2 on one rank of a parallel layout: runtime/model/gpt.ts's model itself, with tensor-parallel layers
// when tp > 1 (runtime/model/tp-layers.ts); ZeRO-3 passes its hooks to Gpt.forward/backward. At tp = 1 the
// layers are exactly the single-device ones.
import { Gpt, gpt2BlockLayers, type GptShape, type Recompute } from '../model/gpt';
import { tpBlockLayers, VocabParallelEmbedding, VocabParallelHeadLoss, type TensorGroup } from '../model/tp-layers';

export { NO_HOOKS, type UnitHooks } from '../model/gpt';

/** The order in which a pass acquires units: what ZeRO-3 prefetches from. */
export function unitSchedule(layers: number, train: boolean): string[] {
  const blocks = Array.from({ length: layers }, (_, i) => `h.${i}`);
  const forward = ['embedding', ...blocks, 'ln_f', 'embedding'];
  return train ? [...forward, 'ln_f', ...blocks.reverse(), 'embedding'] : forward;
}

/** The single-device model with tensor-parallel layers when tp > 1; forward/backward are Gpt's own, with hooks. */
export class ShardedGpt extends Gpt {
  constructor(
    shape: GptShape,
    recompute: Recompute,
    readonly tp: TensorGroup,
    /** The vocabulary rows wte has over the whole group (padded to 128·tp when tp > 1). */
    readonly paddedVocab: number,
  ) {
    super(
      shape,
      recompute,
      (i) => (tp.size > 1 ? tpBlockLayers(i, shape, recompute, tp) : gpt2BlockLayers(i, shape, recompute)),
      tp.size > 1 ? { embedding: new VocabParallelEmbedding(paddedVocab, shape.positions, shape.hidden, tp), head: new VocabParallelHeadLoss(shape.vocab, paddedVocab, tp) } : {},
    );
  }
}
