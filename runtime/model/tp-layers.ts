// Tensor-parallel (Megatron) variants of GPT-2's layers. Each rank holds a shard of the weights under the
// same HuggingFace names (shapes are the shard's) and talks to its tensor-parallel group through a
// TensorGroup, so these layers never import the communication library. Each layer declares how its
// parameters are split (ParamSpec.tp, Megatron's set_tensor_model_parallel_attributes): slicing, joining and
// the gradient norm read that declaration, so a new split layer is one class here. The collectives are
// Megatron's two operators, f and g (below):
//   f  identity forward, all-reduce of dx in backward   (before a column-parallel layer)
//   g  all-reduce of y in forward, identity in backward  (after a row-parallel layer)
// Column-parallel: c_attn (split per head: [Q_r | K_r | V_r]) and mlp.c_fc; row-parallel: attn.c_proj and
// mlp.c_proj with the bias added after the all-reduce. That is 2 all-reduces forward and 2 backward per
// block. The token embedding is vocab-parallel (rows masked, then g) and so is the tied output layer's
// cross entropy, which never gathers the logits: all-reduce MAX of the row maxima, then one SUM of
// [Σ exp, target logit]. The vocabulary is padded to a multiple of 128·tp; padded columns are masked out of
// the softmax, so the loss does not change. LayerNorm, positions and row-parallel biases are replicated:
// their gradients come out identical on every rank of the group. At tp = 1 (SINGLE_DEVICE) f and g are the
// identity and these layers compute exactly the single-device ones: the model has one block definition.
import * as tf from '@tensorflow/tfjs-core';
import { AttentionCore, embeddingSpecs, keepActivation, Linear, type Layer, type LayerBackward, type LayerContext, type LayerForward, type NamedGrads } from './layers';
import { colSum, free, gatherRows, linear, matmul, matmulNT, matmulTN, scatterAddRows, share } from './ops';
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

/** A group of one: what the single-device model is built with (f and g are the identity; nothing is reduced). */
export const SINGLE_DEVICE: TensorGroup = { size: 1, rank: 0, allReduce: (t) => tf.clone(t) };

// ---- f and g -------------------------------------------------------------------------------------------

/** Σ over the group, taking ownership of `t` (a group of one returns it as is). */
function allReduceSum(group: TensorGroup, t: tf.Tensor): tf.Tensor {
  return group.size === 1 ? t : free(group.allReduce(t, 'sum'), t);
}

/**
 * Megatron's f (copy_to_tensor_model_parallel_region), in front of a column-parallel layer: every rank
 * reads the whole input, so forward is the identity and backward sums the ranks' partial input gradients.
 * Both take ownership of their argument (the identity hands it back).
 */
export class CopyToTpRegion {
  constructor(private readonly group: TensorGroup) {}
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
  backward(dx: tf.Tensor): tf.Tensor {
    return allReduceSum(this.group, dx);
  }
}

/**
 * Megatron's g (reduce_from_tensor_model_parallel_region), after a row-parallel layer: each rank holds a
 * partial sum of the output, so forward all-reduces it and backward is the identity.
 */
export class ReduceFromTpRegion {
  constructor(private readonly group: TensorGroup) {}
  forward(y: tf.Tensor): tf.Tensor {
    return allReduceSum(this.group, y);
  }
  backward(dy: tf.Tensor): tf.Tensor {
    return dy;
  }
}

function checkSplit(name: string, what: string, size: number, parts: number): void {
  if (size % parts !== 0) throw new Error(`${name}: ${what} ${size} does not split into ${parts} equal parts`);
}

/**
 * Column-parallel Linear (Megatron's ColumnParallelLinear): weight [in, out/tp] and bias [out/tp], both
 * split along the output dimension; f in front. `sections`: the output is that many concatenated blocks
 * split each on its own (a fused Q|K|V: 3).
 */
export class ColumnParallelLinear implements Layer<{ x: tf.Tensor2D }> {
  private readonly inner: Linear;
  private readonly f: CopyToTpRegion;
  constructor(
    readonly name: string,
    inFeatures: number,
    outFeatures: number,
    group: TensorGroup,
    std = 0.02,
    private readonly sections = 1,
  ) {
    checkSplit(name, 'output features', outFeatures, group.size * sections);
    this.inner = new Linear(name, inFeatures, outFeatures / group.size, std);
    this.f = new CopyToTpRegion(group);
  }
  paramSpecs(): ParamSpec[] {
    const [weight, bias] = this.inner.paramSpecs() as [ParamSpec, ParamSpec];
    return [
      { ...weight, tp: { dim: 1, sections: this.sections } },
      { ...bias, tp: { dim: 0, sections: this.sections } },
    ];
  }
  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ x: tf.Tensor2D }> {
    return this.inner.forward(ctx, this.f.forward(x), save);
  }
  backward(ctx: LayerContext, dy: tf.Tensor, saved: { x: tf.Tensor2D }): LayerBackward {
    const r = this.inner.backward(ctx, dy, saved);
    return { dx: this.f.backward(r.dx), grads: r.grads };
  }
}

/**
 * Row-parallel Linear (Megatron's RowParallelLinear): weight [in/tp, out] split along the input dimension,
 * bias [out] replicated; g after the matmul, then the bias. At tp = 1 the bias is fused into the matmul,
 * exactly the single-device Linear.
 */
export class RowParallelLinear implements Layer<{ x: tf.Tensor2D }> {
  readonly inLocal: number;
  private readonly g: ReduceFromTpRegion;
  constructor(
    readonly name: string,
    inFeatures: number,
    readonly outFeatures: number,
    private readonly group: TensorGroup,
    private readonly std = 0.02,
  ) {
    checkSplit(name, 'input features', inFeatures, group.size);
    this.inLocal = inFeatures / group.size;
    this.g = new ReduceFromTpRegion(group);
  }

  paramSpecs(): ParamSpec[] {
    return [
      { name: `${this.name}.weight`, shape: [this.inLocal, this.outFeatures], init: { kind: 'normal', std: this.std }, decay: true, tp: { dim: 0 } },
      { name: `${this.name}.bias`, shape: [this.outFeatures], init: { kind: 'zeros' }, decay: false },
    ];
  }

  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ x: tf.Tensor2D }> {
    const w = ctx.params.get(`${this.name}.weight`) as tf.Tensor2D;
    const b = ctx.params.get(`${this.name}.bias`) as tf.Tensor1D;
    let y: tf.Tensor2D;
    if (this.group.size === 1) y = linear(x as tf.Tensor2D, w, b);
    else {
      const summed = this.g.forward(matmul(x as tf.Tensor2D, w));
      y = free(tf.add(summed, b), summed) as tf.Tensor2D;
    }
    return save ? { y, saved: { x: keepActivation(ctx, share(x as tf.Tensor2D)) } } : { y };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: { x: tf.Tensor2D }): LayerBackward {
    const w = ctx.params.get(`${this.name}.weight`) as tf.Tensor2D;
    const d = this.g.backward(dy) as tf.Tensor2D;
    const dW = matmulTN(saved.x, d);
    saved.x.dispose();
    const db = colSum(d);
    const dx = matmulNT(d, w);
    return {
      dx,
      grads: [
        [`${this.name}.weight`, dW],
        [`${this.name}.bias`, db],
      ],
    };
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
  private readonly g: ReduceFromTpRegion;
  constructor(
    readonly paddedVocab: number,
    readonly positions: number,
    readonly hidden: number,
    private readonly group: TensorGroup,
  ) {
    this.g = new ReduceFromTpRegion(group);
  }

  paramSpecs(): ParamSpec[] {
    return embeddingSpecs(this.paddedVocab / this.group.size, this.positions, this.hidden);
  }

  forward(ctx: LayerContext, tokens: tf.Tensor1D, save: boolean): LayerForward<VocabEmbeddingSaved> {
    const seq = ctx.seq;
    const rows = tokens.shape[0];
    const { start, end } = vocabRange(this.paddedVocab, this.group);
    const { local, mask } = localIds(hostIds(tokens), start, end);
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const wpe = ctx.params.get('wpe.weight') as tf.Tensor2D;
    const mine = tf.tidy(() => tf.mul(gatherRows(wte, tf.tensor1d(local, 'int32')), tf.tensor2d(mask, [rows, 1])));
    // g: every row is non-zero on exactly one rank, so the sum is exact — the same bits as one device's lookup.
    const tok = this.g.forward(mine);
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
    return [
      ['wte.weight', dWte],
      ['wpe.weight', dWpe],
    ];
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
  /** The head's input x is every rank's: f, whose backward sums the partial dx. */
  private readonly f: CopyToTpRegion;
  constructor(
    /** The real vocabulary: columns at or past it are padding and take no probability. */
    readonly vocab: number,
    readonly paddedVocab: number,
    private readonly group: TensorGroup,
  ) {
    this.f = new CopyToTpRegion(group);
  }

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
    const dx = this.f.backward(partial);
    return { dx, grads: [['wte.weight', dWte]] };
  }
}
