// GPT-2: token + learned position embeddings, L pre-LayerNorm blocks (causal multi-head attention with a
// fused QKV projection, GELU MLP of 4h), a final LayerNorm, and an output layer tied to wte. Forward and
// backward are explicit and layer by layer; gradients leave through a sink as soon as each layer has them
// (where a data-parallel engine starts its bucketed all-reduce), and activations are freed as backward
// passes them. Full recompute keeps only each block's input and replays the block in backward.
import * as tf from '@tensorflow/tfjs-core';
import type { ModelSpec } from '../config/types';
import type { MemoryTracker } from './memory';
import { Dropout, Embedding, Gelu, keepActivation, LayerNorm, TiedHeadLoss, type Layer, type LayerContext, type NamedGrads, type EmbeddingSaved, type HeadSaved } from './layers';
import { matmulNT, share } from './ops';
import type { ParamSource, ParamSpec } from './params';
import { ColumnParallelLinear, RowParallelLinear, SINGLE_DEVICE, TpAttentionCore, tpVocab, VocabParallelEmbedding, VocabParallelHeadLoss, type TensorGroup } from './tp-layers';

export interface GptShape {
  layers: number;
  hidden: number;
  heads: number;
  vocab: number;
  /** Rows of wpe: the longest sequence the model takes. */
  positions: number;
  ffnHidden: number;
  eps: number;
}

export type Recompute = 'none' | 'selective' | 'full';

/** Receives each parameter gradient of one micro-batch as soon as backward has it (ownership passes). */
export type GradSink = (name: string, grad: tf.Tensor) => void;

export class ModelShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelShapeError';
  }
}

/** The GPT-2 shape of a config's model, or a precise error for what this runtime does not train. */
export function gptShape(model: ModelSpec): GptShape {
  const unsupported: string[] = [];
  if (model.activation !== 'gelu') unsupported.push(`model.activation="${model.activation}" (use "gelu")`);
  if (model.norm !== 'layernorm') unsupported.push(`model.norm="${model.norm}" (use "layernorm")`);
  if (!model.tiedEmbeddings) unsupported.push('model.tiedEmbeddings=false (use true)');
  if (!model.bias) unsupported.push('model.bias=false (use true)');
  if (model.positionEmbedding !== 'learned') unsupported.push(`model.positionEmbedding="${model.positionEmbedding}" (use "learned")`);
  if (model.kvHeads !== model.heads) unsupported.push(`model.kvHeads=${model.kvHeads} (grouped-query attention; use kvHeads = heads = ${model.heads})`);
  if (model.hidden % model.heads !== 0) unsupported.push(`model.heads=${model.heads} does not divide model.hidden=${model.hidden}`);
  if (unsupported.length) {
    throw new ModelShapeError(`the local runtime trains GPT-2-style models only; this config has ${unsupported.join('; ')}. Such configs can still be planned (scalelm plan).`);
  }
  return { layers: model.layers, hidden: model.hidden, heads: model.heads, vocab: model.vocab, positions: model.seqLen, ffnHidden: model.ffnHidden, eps: 1e-5 };
}

/** The sublayers of one block. */
export interface BlockLayers {
  ln1: Layer;
  attn: Layer;
  core: Layer;
  proj: Layer;
  dropAttn: Layer;
  ln2: Layer;
  fc: Layer;
  gelu: Layer;
  mproj: Layer;
  dropMlp: Layer;
}

/**
 * One GPT-2 block's sublayers on one rank of a tensor-parallel group (a group of one: the single-device
 * block). The column- and row-parallel layers declare their parameters' split; heads and the MLP's hidden
 * size are divided over the group. This is the one place a block's layers (and so its TP split) are chosen.
 */
export function gpt2BlockLayers(i: number, s: GptShape, recompute: Recompute, group: TensorGroup = SINGLE_DEVICE): BlockLayers {
  const C = s.hidden;
  // GPT-2 scales the residual projections by 1/√(2L) (two per block).
  const residualStd = 0.02 / Math.sqrt(2 * s.layers);
  return {
    ln1: new LayerNorm(`h.${i}.ln_1`, C, s.eps),
    // The fused Q|K|V: three sections, split per head.
    attn: new ColumnParallelLinear(`h.${i}.attn.c_attn`, C, 3 * C, group, 0.02, 3),
    core: new TpAttentionCore(`h.${i}.attn`, s.heads / group.size, C / s.heads, recompute === 'selective', group),
    proj: new RowParallelLinear(`h.${i}.attn.c_proj`, C, C, group, residualStd),
    dropAttn: new Dropout(`h.${i}.attn.resid_dropout`),
    ln2: new LayerNorm(`h.${i}.ln_2`, C, s.eps),
    fc: new ColumnParallelLinear(`h.${i}.mlp.c_fc`, C, s.ffnHidden, group),
    gelu: new Gelu(`h.${i}.mlp.act`),
    mproj: new RowParallelLinear(`h.${i}.mlp.c_proj`, s.ffnHidden, C, group, residualStd),
    dropMlp: new Dropout(`h.${i}.mlp.dropout`),
  };
}

type Saved = Record<keyof BlockLayers, unknown>;
const ORDER: (keyof BlockLayers)[] = ['ln1', 'attn', 'core', 'proj', 'dropAttn', 'ln2', 'fc', 'gelu', 'mproj', 'dropMlp'];

export class Block {
  constructor(
    readonly name: string,
    readonly parts: BlockLayers,
  ) {}

  paramSpecs(): ParamSpec[] {
    return ORDER.flatMap((k) => this.parts[k].paramSpecs());
  }

  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): { y: tf.Tensor; saved?: Saved } {
    const p = this.parts;
    const saved = {} as Saved;
    const step = (k: keyof BlockLayers, input: tf.Tensor, freeInput: boolean): tf.Tensor => {
      where(ctx, p[k].name);
      const r = p[k].forward(ctx, input, save);
      if (freeInput) input.dispose();
      saved[k] = r.saved;
      return r.y;
    };
    let h = step('ln1', x, false);
    h = step('attn', h, true);
    h = step('core', h, true);
    h = step('proj', h, true);
    h = step('dropAttn', h, true);
    const x2 = tf.add(x, h);
    h.dispose();
    h = step('ln2', x2, false);
    h = step('fc', h, true);
    h = step('gelu', h, true);
    h = step('mproj', h, true);
    h = step('dropMlp', h, true);
    const y = tf.add(x2, h);
    h.dispose();
    x2.dispose();
    return save ? { y, saved } : { y };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: Saved, sink: GradSink): tf.Tensor {
    const p = this.parts;
    const step = (k: keyof BlockLayers, d: tf.Tensor, freeInput: boolean): tf.Tensor => {
      where(ctx, p[k].name);
      const r = p[k].backward(ctx, d, saved[k]);
      if (freeInput) d.dispose();
      emit(r.grads, sink);
      return r.dx;
    };
    let d = step('dropMlp', dy, false);
    d = step('mproj', d, true);
    d = step('gelu', d, true);
    d = step('fc', d, true);
    d = step('ln2', d, true);
    const dx2 = tf.add(dy, d);
    d.dispose();
    d = step('dropAttn', dx2, false);
    d = step('proj', d, true);
    d = step('core', d, true);
    d = step('attn', d, true);
    d = step('ln1', d, true);
    const dx = tf.add(dx2, d);
    d.dispose();
    dx2.dispose();
    return dx;
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

/** Everything one micro-batch's forward kept for its backward. */
export interface ForwardState {
  embedding: EmbeddingSaved;
  /** Per block: the sublayers' saved tensors, or (full recompute) the block's input alone. */
  blocks: ({ saved: Saved } | { input: tf.Tensor })[];
  lnF: unknown;
  head: HeadSaved;
}

/**
 * Called around each use of a unit's parameters ("embedding", "h.i", "ln_f"): ZeRO-3 gathers a unit just
 * before its forward and again before its backward, and frees it after. One device needs none.
 */
export interface UnitHooks {
  acquire(unit: string): void;
  release(unit: string): void;
}

export const NO_HOOKS: UnitHooks = { acquire: () => {}, release: () => {} };

/** The embedding and the loss: the single-device ones, or (tp > 1) the vocab-parallel ones. */
export interface EmbeddingLayer {
  paramSpecs(): ParamSpec[];
  forward(ctx: LayerContext, tokens: tf.Tensor1D, save: boolean): { y: tf.Tensor; saved?: unknown };
  backward(ctx: LayerContext, dy: tf.Tensor, saved: never): NamedGrads;
}
export interface HeadLossLayer {
  forward(ctx: LayerContext, x: tf.Tensor2D, targets: tf.Tensor1D, save: boolean): { loss: tf.Scalar; saved?: unknown };
  backward(ctx: LayerContext, scale: number, saved: never): { dx: tf.Tensor; grads: NamedGrads };
}

/** A unit: the parameters ZeRO-3 gathers together and a gradient bucket holds whole. */
export interface ModelUnit {
  name: string;
  specs: ParamSpec[];
}

/**
 * GPT-2 on one rank of a tensor-parallel group (default: one device). Its units are named "embedding" (wte +
 * wpe; the tied output layer uses it again), "h.i" and "ln_f"; forward and backward call the unit hooks in
 * the order unitSchedule() lists.
 */
export class Gpt {
  readonly embedding: EmbeddingLayer;
  readonly blocks: Block[];
  readonly lnF: LayerNorm;
  readonly head: HeadLossLayer;
  /** The vocabulary rows wte has over the whole group (padded to 128·tp when tp > 1). */
  readonly paddedVocab: number;

  constructor(
    readonly shape: GptShape,
    readonly recompute: Recompute = 'none',
    readonly group: TensorGroup = SINGLE_DEVICE,
  ) {
    const tp = group.size;
    this.paddedVocab = tpVocab(shape.vocab, tp);
    this.embedding = tp > 1 ? new VocabParallelEmbedding(this.paddedVocab, shape.positions, shape.hidden, group) : new Embedding(shape.vocab, shape.positions, shape.hidden);
    this.blocks = Array.from({ length: shape.layers }, (_, i) => new Block(`h.${i}`, gpt2BlockLayers(i, shape, recompute, group)));
    this.lnF = new LayerNorm('ln_f', shape.hidden, shape.eps);
    this.head = tp > 1 ? new VocabParallelHeadLoss(shape.vocab, this.paddedVocab, group) : new TiedHeadLoss();
  }

  paramSpecs(): ParamSpec[] {
    return [...this.embedding.paramSpecs(), ...this.blocks.flatMap((b) => b.paramSpecs()), ...this.lnF.paramSpecs()];
  }

  /**
   * The units in the order backward finishes their gradients: ln_f, h.{L-1} … h.0, embedding (wte last: the
   * tied output layer and the embedding both feed it). The flat parameter layout and its buckets follow it.
   */
  units(): ModelUnit[] {
    return [
      { name: 'ln_f', specs: this.lnF.paramSpecs() },
      ...[...this.blocks].reverse().map((b) => ({ name: b.name, specs: b.paramSpecs() })),
      { name: 'embedding', specs: this.embedding.paramSpecs() },
    ];
  }

  /**
   * The order in which forward (and, when training, backward) acquires units through its hooks: what
   * ZeRO-3 prefetches from. Forward ends with the embedding again (the tied output layer), held through the
   * head's backward; backward then acquires the units in units() order.
   */
  unitSchedule(train: boolean): string[] {
    const forward = ['embedding', ...this.blocks.map((b) => b.name), 'ln_f', 'embedding'];
    return train ? [...forward, ...this.units().map((u) => u.name)] : forward;
  }

  /**
   * Mean cross-entropy of one micro-batch. tokens and targets: int32 [B·T] (ctx.seq = T). With save=false
   * nothing is kept (evaluation); otherwise the returned state feeds backward().
   */
  forward(ctx: LayerContext, tokens: tf.Tensor1D, targets: tf.Tensor1D, save: boolean, hooks: UnitHooks = NO_HOOKS): { loss: tf.Scalar; state?: ForwardState } {
    if (ctx.seq > this.shape.positions) throw new ModelShapeError(`sequence length ${ctx.seq} exceeds the model's ${this.shape.positions} positions`);
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
    return { loss: out.loss, state: { embedding: emb.saved as EmbeddingSaved, blocks, lnF: f.saved, head: out.saved as HeadSaved } };
  }

  /** Logits of the next token after each sequence of a batch (int32 [B·T] with ctx.seq = T): [B, vocab]. Keeps nothing. */
  nextTokenLogits(ctx: LayerContext, tokens: tf.Tensor1D): tf.Tensor2D {
    if (ctx.seq > this.shape.positions) throw new ModelShapeError(`sequence length ${ctx.seq} exceeds the model's ${this.shape.positions} positions`);
    let h = this.embedding.forward(ctx, tokens, false).y;
    for (const block of this.blocks) {
      const r = block.forward(ctx, h, false);
      h.dispose();
      h = r.y;
    }
    const f = this.lnF.forward(ctx, h, false).y as tf.Tensor2D;
    h.dispose();
    const B = tokens.shape[0] / ctx.seq;
    const last = tf.tidy(() => tf.reshape(tf.slice(tf.reshape(f, [B, ctx.seq, this.shape.hidden]), [0, ctx.seq - 1, 0], [B, 1, this.shape.hidden]), [B, this.shape.hidden]) as tf.Tensor2D);
    f.dispose();
    const logits = matmulNT(last, ctx.params.get('wte.weight') as tf.Tensor2D);
    last.dispose();
    return logits;
  }

  /** Backward of scale·loss (scale = 1/accumulation steps); frees the state and hands every gradient to the sink. */
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
      let saved: Saved;
      if ('input' in s) {
        // Full recompute: replay this block's forward, keeping what its backward needs.
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
    const grads = this.embedding.backward(ctx, d, state.embedding as never);
    hooks.release('embedding');
    emit(grads, sink);
    d.dispose();
  }
}

/** Frees a forward state without running backward (an aborted step). */
export function disposeForwardState(state: ForwardState | undefined): void {
  if (!state) return;
  const walk = (v: unknown): void => {
    if (v instanceof tf.Tensor) v.dispose();
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(state);
}

export type { ParamSource };
