// Tensor-parallel (Megatron) variants of GPT-2's layers. Each rank holds a shard of the weights under the
// same HuggingFace names (shapes are the shard's) and talks to its tensor-parallel group through a
// TensorGroup, so these layers never import the communication library:
//   f  identity forward, all-reduce of dx in backward   (before a column-parallel layer)
//   g  all-reduce of y in forward, identity in backward  (after a row-parallel layer)
// Column-parallel: c_attn (split per head: [Q_r | K_r | V_r]) and mlp.c_fc; row-parallel: attn.c_proj and
// mlp.c_proj with the bias added after the all-reduce. That is 2 all-reduces forward and 2 backward per
// block. The token embedding is vocab-parallel (rows masked, then all-reduce) and so is the tied output
// layer's cross entropy, which never gathers the logits: all-reduce MAX of the row maxima, then one SUM of
// [Σ exp, target logit]. The vocabulary is padded to a multiple of 128·tp; padded columns are masked out of
// the softmax, so the loss does not change. LayerNorm, positions and row-parallel biases are replicated:
// their gradients come out identical on every rank of the group.
import * as tf from '@tensorflow/tfjs-core';
import {
  AttentionCore, Dropout, Gelu, keepActivation, LayerNorm, Linear,
  type Layer, type LayerBackward, type LayerContext, type LayerForward, type NamedGrads,
} from './layers';
import type { BlockLayers, GptShape, Recompute } from './gpt';
import { colSum, free, gatherRows, matmul, matmulNT, matmulTN, scatterAddRows, share } from './ops';
import type { ParamSpec } from './params';
import { mix } from './rng';

/** What a tensor-parallel layer needs of its group: blocking collectives on tensors. */
export interface TensorGroup {
  readonly size: number;
  /** This rank's index in the group. */
  readonly rank: number;
  /** Element-wise reduction over the group; returns a new tensor, leaves `t` alone. */
  allReduce(t: tf.Tensor, op: 'sum' | 'max'): tf.Tensor;
}

/** Megatron pads the vocabulary to a multiple of 128·tp (none at tp = 1, as GPT-2 keeps 50257). */
export function tpVocab(vocab: number, tp: number): number {
  if (tp === 1) return vocab;
  const m = 128 * tp;
  return Math.ceil(vocab / m) * m;
}

// ---- f and g -------------------------------------------------------------------------------------------

/** Column-parallel Linear: weight [in, out/tp] and bias [out/tp]; f before it (dx all-reduced in backward). */
export class ColumnParallelLinear implements Layer<{ x: tf.Tensor2D }> {
  private readonly inner: Linear;
  constructor(
    readonly name: string,
    inFeatures: number,
    outLocal: number,
    private readonly group: TensorGroup,
    std = 0.02,
  ) {
    this.inner = new Linear(name, inFeatures, outLocal, std);
  }
  paramSpecs(): ParamSpec[] {
    return this.inner.paramSpecs();
  }
  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ x: tf.Tensor2D }> {
    return this.inner.forward(ctx, x, save);
  }
  backward(ctx: LayerContext, dy: tf.Tensor, saved: { x: tf.Tensor2D }): LayerBackward {
    const r = this.inner.backward(ctx, dy, saved);
    return { dx: free(this.group.allReduce(r.dx, 'sum'), r.dx), grads: r.grads };
  }
}

/** Row-parallel Linear: weight [in/tp, out], bias [out] (replicated); g after it, then the bias. */
export class RowParallelLinear implements Layer<{ x: tf.Tensor2D }> {
  constructor(
    readonly name: string,
    readonly inLocal: number,
    readonly outFeatures: number,
    private readonly group: TensorGroup,
    private readonly std = 0.02,
  ) {}

  paramSpecs(): ParamSpec[] {
    return [
      { name: `${this.name}.weight`, shape: [this.inLocal, this.outFeatures], init: { kind: 'normal', std: this.std }, decay: true },
      { name: `${this.name}.bias`, shape: [this.outFeatures], init: { kind: 'zeros' }, decay: false },
    ];
  }

  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ x: tf.Tensor2D }> {
    const w = ctx.params.get(`${this.name}.weight`) as tf.Tensor2D;
    const b = ctx.params.get(`${this.name}.bias`) as tf.Tensor1D;
    const partial = matmul(x as tf.Tensor2D, w);
    const summed = free(this.group.allReduce(partial, 'sum'), partial);
    const y = free(tf.add(summed, b), summed) as tf.Tensor2D;
    return save ? { y, saved: { x: keepActivation(ctx, share(x as tf.Tensor2D)) } } : { y };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: { x: tf.Tensor2D }): LayerBackward {
    const w = ctx.params.get(`${this.name}.weight`) as tf.Tensor2D;
    const d = dy as tf.Tensor2D;
    const dW = matmulTN(saved.x, d);
    saved.x.dispose();
    const db = colSum(d);
    const dx = matmulNT(d, w);
    return { dx, grads: [[`${this.name}.weight`, dW], [`${this.name}.bias`, db]] };
  }
}

/** Dropout seed inside a TP region (Megatron's model-parallel RNG): different on every rank of the group; unchanged at tp = 1. */
export function tpRegionSeed(seed: number, group: Pick<TensorGroup, 'size' | 'rank'>): number {
  return group.size === 1 ? seed : mix(seed, 0x7e1a, group.rank);
}

/** The attention core on heads/tp heads; attention dropout sits inside the TP region, so each rank draws its own mask. */
export class TpAttentionCore implements Layer<unknown> {
  private readonly inner: AttentionCore;
  constructor(
    readonly name: string,
    localHeads: number,
    headDim: number,
    selectiveRecompute: boolean,
    private readonly group: TensorGroup,
  ) {
    this.inner = new AttentionCore(name, localHeads, headDim, selectiveRecompute);
  }
  private ctx(ctx: LayerContext): LayerContext {
    return this.group.size === 1 ? ctx : { ...ctx, dropoutSeed: tpRegionSeed(ctx.dropoutSeed, this.group) };
  }
  paramSpecs(): ParamSpec[] {
    return [];
  }
  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<unknown> {
    return this.inner.forward(this.ctx(ctx), x, save);
  }
  backward(ctx: LayerContext, dy: tf.Tensor, saved: unknown): LayerBackward {
    return this.inner.backward(this.ctx(ctx), dy, saved as never);
  }
}

/** One GPT-2 block's sublayers on one tensor-parallel rank (heads, ffn split by tp; see the file comment). */
export function tpBlockLayers(i: number, s: GptShape, recompute: Recompute, group: TensorGroup): BlockLayers {
  const tp = group.size;
  const C = s.hidden;
  const residualStd = 0.02 / Math.sqrt(2 * s.layers);
  return {
    ln1: new LayerNorm(`h.${i}.ln_1`, C, s.eps),
    attn: new ColumnParallelLinear(`h.${i}.attn.c_attn`, C, (3 * C) / tp, group),
    core: new TpAttentionCore(`h.${i}.attn`, s.heads / tp, C / s.heads, recompute === 'selective', group),
    proj: new RowParallelLinear(`h.${i}.attn.c_proj`, C / tp, C, group, residualStd),
    dropAttn: new Dropout(`h.${i}.attn.resid_dropout`),
    ln2: new LayerNorm(`h.${i}.ln_2`, C, s.eps),
    fc: new ColumnParallelLinear(`h.${i}.mlp.c_fc`, C, s.ffnHidden / tp, group),
    gelu: new Gelu(`h.${i}.mlp.act`),
    mproj: new RowParallelLinear(`h.${i}.mlp.c_proj`, s.ffnHidden / tp, C, group, residualStd),
    dropMlp: new Dropout(`h.${i}.mlp.dropout`),
  };
}

// ---- vocab-parallel embedding -------------------------------------------------------------------------

/** This rank's rows of the padded vocabulary: [start, end). */
export function vocabRange(paddedVocab: number, group: Pick<TensorGroup, 'size' | 'rank'>): { start: number; end: number } {
  const per = paddedVocab / group.size;
  return { start: group.rank * per, end: (group.rank + 1) * per };
}

/** Local row of each id (0 where the id is another rank's) and whether it is ours. */
function localIds(ids: Int32Array, start: number, end: number): { local: Int32Array; mask: Float32Array } {
  const local = new Int32Array(ids.length);
  const mask = new Float32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id >= start && id < end) {
      local[i] = id - start;
      mask[i] = 1;
    }
  }
  return { local, mask };
}

export interface VocabEmbeddingSaved {
  tokens: tf.Tensor1D;
  /** Host copies: local rows and the ownership mask (backward needs them; no device read). */
  local: Int32Array;
  mask: Float32Array;
}

/** Host values of an id tensor: the driver registers the batch's arrays (WebGPU cannot read synchronously). */
const hostIdValues = new WeakMap<tf.Tensor, Int32Array>();
export function setHostIds(t: tf.Tensor, values: Int32Array): void {
  hostIdValues.set(t, values);
}
function hostIds(t: tf.Tensor): Int32Array {
  return hostIdValues.get(t) ?? (t.dataSync() as Int32Array);
}

/** wte [Vp/tp, C] (this rank's rows of the padded vocabulary) and wpe [T, C] (replicated). */
export class VocabParallelEmbedding {
  readonly name = 'embedding';
  constructor(
    readonly paddedVocab: number,
    readonly positions: number,
    readonly hidden: number,
    private readonly group: TensorGroup,
  ) {}

  paramSpecs(): ParamSpec[] {
    return [
      { name: 'wte.weight', shape: [this.paddedVocab / this.group.size, this.hidden], init: { kind: 'normal', std: 0.02 }, decay: true },
      { name: 'wpe.weight', shape: [this.positions, this.hidden], init: { kind: 'normal', std: 0.02 }, decay: true },
    ];
  }

  forward(ctx: LayerContext, tokens: tf.Tensor1D, save: boolean): LayerForward<VocabEmbeddingSaved> {
    const seq = ctx.seq;
    const rows = tokens.shape[0];
    const { start, end } = vocabRange(this.paddedVocab, this.group);
    const { local, mask } = localIds(hostIds(tokens), start, end);
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const wpe = ctx.params.get('wpe.weight') as tf.Tensor2D;
    const mine = tf.tidy(() => tf.mul(gatherRows(wte, tf.tensor1d(local, 'int32')), tf.tensor2d(mask, [rows, 1])));
    // Every row is non-zero on exactly one rank: the sum is exact, the same bits as one device's lookup.
    const tok = free(this.group.allReduce(mine, 'sum'), mine);
    const y = tf.tidy(() => {
      const pos = tf.slice(wpe, [0, 0], [seq, this.hidden]);
      return tf.reshape(tf.add(tf.reshape(tok, [rows / seq, seq, this.hidden]), pos), [rows, this.hidden]) as tf.Tensor2D;
    });
    tok.dispose();
    return save ? { y, saved: { tokens: keepActivation(ctx, share(tokens)), local, mask } } : { y };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: VocabEmbeddingSaved): NamedGrads {
    const d = dy as tf.Tensor2D;
    const rows = d.shape[0];
    const T = ctx.seq;
    saved.tokens.dispose();
    const dWte = tf.tidy(() => scatterAddRows(tf.tensor1d(saved.local, 'int32'), tf.mul(d, tf.tensor2d(saved.mask, [rows, 1])) as tf.Tensor2D, this.paddedVocab / this.group.size));
    const dWpe = tf.tidy(() => {
      const perPos = matmul(tf.ones([1, rows / T]) as tf.Tensor2D, tf.reshape(d, [rows / T, T * this.hidden]) as tf.Tensor2D);
      const g = tf.reshape(perPos, [T, this.hidden]);
      return T === this.positions ? g : tf.concat([g, tf.zeros([this.positions - T, this.hidden])], 0);
    });
    return [['wte.weight', dWte], ['wpe.weight', dWpe]];
  }
}

// ---- vocab-parallel cross entropy over the tied output layer ------------------------------------------

export interface VocabHeadSaved {
  x: tf.Tensor2D;
  probs: tf.Tensor2D;
  targets: tf.Tensor1D;
  hostTargets: Int32Array;
}

/**
 * loss = mean CE(x·wteᵀ, targets) with wte split by vocabulary rows. Never gathers the logits: each rank
 * computes its [N, Vp/tp] slice, the row maxima are all-reduced (MAX), then Σ exp and the target's logit
 * (0 on ranks that do not own it) in one SUM. Backward is local: softmax minus one-hot on the owning rank.
 */
export class VocabParallelHeadLoss {
  readonly name = 'lm_head';
  constructor(
    /** The real vocabulary: columns at or past it are padding and take no probability. */
    readonly vocab: number,
    readonly paddedVocab: number,
    private readonly group: TensorGroup,
  ) {}

  private range(): { start: number; end: number } {
    return vocabRange(this.paddedVocab, this.group);
  }

  /** Row-major one-hot of the targets this rank owns ([N, V/tp]; all-zero rows for the others'). */
  private oneHot(targets: Int32Array, width: number): tf.Tensor2D {
    const { start, end } = this.range();
    const local = new Int32Array(targets.length);
    for (let i = 0; i < targets.length; i++) local[i] = targets[i]! >= start && targets[i]! < end ? targets[i]! - start : -1;
    return tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(local, 'int32'), width), 'float32') as tf.Tensor2D);
  }

  /** Cross entropy of logits this rank holds ([N, Vp/tp]); exported for the layer tests (logits scaled by 1000). */
  lossFromLogits(logits: tf.Tensor2D, targets: Int32Array): { loss: tf.Scalar; probs: tf.Tensor2D } {
    const [N, width] = logits.shape;
    const { start } = this.range();
    const padded = Math.max(0, start + width - this.vocab);
    let z0 = logits;
    if (padded > 0) {
      // Padding columns are −∞: no share of the max, exp() = 0.
      const pad = new Float32Array(width);
      pad.fill(-Infinity, width - Math.min(width, padded));
      z0 = tf.tidy(() => tf.add(logits, tf.tensor2d(pad, [1, width]))) as tf.Tensor2D;
    }
    const localMax = tf.max(z0, -1);
    const max = free(this.group.allReduce(localMax, 'max'), localMax);
    const z = tf.tidy(() => tf.sub(z0, tf.reshape(max, [N, 1]))) as tf.Tensor2D;
    max.dispose();
    if (z0 !== logits) z0.dispose();
    const e = tf.exp(z) as tf.Tensor2D;
    const oneHot = this.oneHot(targets, width);
    // (−∞·0 is NaN: padded columns are zeroed before the one-hot product.)
    const parts = tf.tidy(() => tf.concat([tf.sum(e, -1), tf.sum(tf.mul(padded > 0 ? tf.where(tf.isFinite(z), z, tf.zerosLike(z)) : z, oneHot), -1)]));
    oneHot.dispose();
    z.dispose();
    const summed = free(this.group.allReduce(parts, 'sum'), parts);
    const [sumExp, targetLogit] = tf.split(summed, 2) as [tf.Tensor1D, tf.Tensor1D];
    summed.dispose();
    const probs = tf.tidy(() => tf.div(e, tf.reshape(sumExp, [N, 1]))) as tf.Tensor2D;
    e.dispose();
    const loss = tf.tidy(() => tf.mean(tf.sub(tf.log(sumExp), targetLogit))) as tf.Scalar;
    sumExp.dispose();
    targetLogit.dispose();
    return { loss, probs };
  }

  forward(ctx: LayerContext, x: tf.Tensor2D, targets: tf.Tensor1D, save: boolean): { loss: tf.Scalar; saved?: VocabHeadSaved } {
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const logits = matmulNT(x, wte);
    const hostTargets = hostIds(targets);
    const { loss, probs } = this.lossFromLogits(logits, hostTargets);
    logits.dispose();
    if (!save) return { loss: free(loss, probs) };
    return { loss, saved: { x: keepActivation(ctx, share(x)), probs: keepActivation(ctx, probs), targets: keepActivation(ctx, share(targets)), hostTargets } };
  }

  /** d(scale·mean CE)/d logits = (p − onehot)·scale/N on the owning rank; dx is all-reduced (f's backward). */
  backward(ctx: LayerContext, scale: number, saved: VocabHeadSaved): LayerBackward {
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const [N, width] = saved.probs.shape;
    const oneHot = this.oneHot(saved.hostTargets, width);
    const dlogits = tf.tidy(() => tf.mul(tf.sub(saved.probs, oneHot), scale / N)) as tf.Tensor2D;
    oneHot.dispose();
    saved.probs.dispose();
    saved.targets.dispose();
    const dWte = matmulTN(dlogits, saved.x);
    saved.x.dispose();
    const partial = matmul(dlogits, wte);
    dlogits.dispose();
    const dx = free(this.group.allReduce(partial, 'sum'), partial);
    return { dx, grads: [['wte.weight', dWte]] };
  }
}
