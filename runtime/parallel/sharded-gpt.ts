// GPT-2 on one rank of a parallel layout: the same blocks and the same forward/backward order as
// runtime/model/gpt.ts, with tensor-parallel layers when tp > 1 (runtime/model/tp-layers.ts) and a hook
// around every use of a unit's parameters (ZeRO-3 gathers a layer just before its forward and again before
// its backward, and frees it after). At tp = 1 the layers are exactly the single-device ones.
import * as tf from '@tensorflow/tfjs-core';
import { Block, gpt2BlockLayers, type ForwardState, type GptShape, type GradSink, type Recompute } from '../model/gpt';
import { Embedding, keepActivation, LayerNorm, TiedHeadLoss, type LayerContext, type NamedGrads } from '../model/layers';
import type { MemoryTracker } from '../model/memory';
import { share } from '../model/ops';
import type { ParamSpec } from '../model/params';
import { tpBlockLayers, VocabParallelEmbedding, VocabParallelHeadLoss, type TensorGroup } from '../model/tp-layers';

/** Called around each use of a unit's parameters (see flat.ts for the units). */
export interface UnitHooks {
  acquire(unit: string): void;
  release(unit: string): void;
}

export const NO_HOOKS: UnitHooks = { acquire: () => {}, release: () => {} };

/** The order in which a pass acquires units: what ZeRO-3 prefetches from. */
export function unitSchedule(layers: number, train: boolean): string[] {
  const blocks = Array.from({ length: layers }, (_, i) => `h.${i}`);
  const forward = ['embedding', ...blocks, 'ln_f', 'embedding'];
  return train ? [...forward, 'ln_f', ...blocks.reverse(), 'embedding'] : forward;
}

type BlockSaved = Parameters<Block['backward']>[2];

export class ShardedGpt {
  readonly embedding: Embedding | VocabParallelEmbedding;
  readonly blocks: Block[];
  readonly lnF: LayerNorm;
  readonly head: TiedHeadLoss | VocabParallelHeadLoss;

  constructor(
    readonly shape: GptShape,
    readonly recompute: Recompute,
    readonly tp: TensorGroup,
    /** The vocabulary rows wte has over the whole group (padded to 128·tp when tp > 1). */
    readonly paddedVocab: number,
  ) {
    const split = tp.size > 1;
    this.embedding = split ? new VocabParallelEmbedding(paddedVocab, shape.positions, shape.hidden, tp) : new Embedding(shape.vocab, shape.positions, shape.hidden);
    this.blocks = Array.from({ length: shape.layers }, (_, i) => new Block(`h.${i}`, split ? tpBlockLayers(i, shape, recompute, tp) : gpt2BlockLayers(i, shape, recompute)));
    this.lnF = new LayerNorm('ln_f', shape.hidden, shape.eps);
    this.head = split ? new VocabParallelHeadLoss(shape.vocab, paddedVocab, tp) : new TiedHeadLoss();
  }

  /** This rank's parameters (shard shapes), in the single-device model's order. */
  paramSpecs(): ParamSpec[] {
    return [...this.embedding.paramSpecs(), ...this.blocks.flatMap((b) => b.paramSpecs()), ...this.lnF.paramSpecs()];
  }

  forward(ctx: LayerContext, tokens: tf.Tensor1D, targets: tf.Tensor1D, save: boolean, hooks: UnitHooks = NO_HOOKS): { loss: tf.Scalar; state?: ForwardState } {
    phase(ctx, save ? 'forward' : 'eval');
    where(ctx, 'embedding');
    hooks.acquire('embedding');
    const emb = this.embedding.forward(ctx, tokens, save);
    hooks.release('embedding');
    let h = emb.y;
    const blocks: ForwardState['blocks'] = [];
    for (const block of this.blocks) {
      hooks.acquire(block.name);
      if (save && this.recompute === 'full') {
        blocks.push({ input: keepActivation(ctx, share(h)) });
        const r = block.forward(ctx, h, false);
        h.dispose();
        h = r.y;
      } else {
        const r = block.forward(ctx, h, save);
        h.dispose();
        h = r.y;
        if (save) blocks.push({ saved: r.saved! });
      }
      hooks.release(block.name);
    }
    where(ctx, 'ln_f');
    hooks.acquire('ln_f');
    const f = this.lnF.forward(ctx, h, save);
    hooks.release('ln_f');
    h.dispose();
    where(ctx, 'lm_head');
    // The output layer is tied to wte: the embedding unit again, kept through the head's backward.
    hooks.acquire('embedding');
    const out = this.head.forward(ctx, f.y as tf.Tensor2D, targets, save);
    f.y.dispose();
    if (!save) {
      hooks.release('embedding');
      return { loss: out.loss };
    }
    return { loss: out.loss, state: { embedding: emb.saved! as never, blocks, lnF: f.saved, head: out.saved! as never } };
  }

  /** Backward of scale·loss; frees the state and hands every gradient to the sink as soon as it exists. */
  backward(ctx: LayerContext, state: ForwardState, scale: number, sink: GradSink, hooks: UnitHooks = NO_HOOKS): void {
    phase(ctx, 'backward');
    where(ctx, 'lm_head');
    const head = this.head.backward(ctx, scale, state.head as never);
    hooks.release('embedding');
    emit(head.grads, sink);
    where(ctx, 'ln_f');
    hooks.acquire('ln_f');
    const f = this.lnF.backward(ctx, head.dx, state.lnF as never);
    hooks.release('ln_f');
    head.dx.dispose();
    emit(f.grads, sink);
    let d = f.dx;
    for (let i = this.blocks.length - 1; i >= 0; i--) {
      const block = this.blocks[i]!;
      const s = state.blocks[i]!;
      hooks.acquire(block.name);
      let saved: BlockSaved;
      if ('input' in s) {
        phase(ctx, 'forward');
        const r = block.forward(ctx, s.input, true);
        r.y.dispose();
        s.input.dispose();
        saved = r.saved!;
        phase(ctx, 'backward');
      } else saved = s.saved;
      const dx = block.backward(ctx, d, saved, sink);
      hooks.release(block.name);
      d.dispose();
      d = dx;
    }
    where(ctx, 'embedding');
    hooks.acquire('embedding');
    const grads: NamedGrads = this.embedding.backward(ctx, d, state.embedding as never);
    hooks.release('embedding');
    emit(grads, sink);
    d.dispose();
  }
}

function emit(grads: NamedGrads, sink: GradSink): void {
  for (const [name, g] of grads) sink(name, g);
}

function where(ctx: LayerContext, layer: string): void {
  if (ctx.tracker) ctx.tracker.where.layer = layer;
}

function phase(ctx: LayerContext, p: MemoryTracker['where']['phase']): void {
  if (ctx.tracker) ctx.tracker.where.phase = p;
}
