// GPT-2's layers with explicit forward and backward (as llm.c does): forward keeps exactly what backward
// needs (tagged as activations), backward frees it as it goes and returns the input gradient and one
// gradient per parameter name. Ownership: forward never frees its input; backward never frees dy; backward
// frees its own saved tensors. A tensor-parallel variant of a layer is another class with the same shape of
// API that inserts collectives (Megatron's f before a column-parallel Linear, g after a row-parallel one) and
// declares its parameters' split (model/tp-layers.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { MemoryTracker } from './memory';
import {
  attentionBackward,
  attentionForward,
  attentionProbs,
  colSum,
  free,
  gatherRows,
  geluBackward,
  geluForward,
  layerNormBackward,
  layerNormForward,
  linear,
  matmul,
  matmulNT,
  matmulTN,
  scatterAddRows,
  share,
  crossEntropyBackward,
  crossEntropyForward,
  type AttentionSaved,
  type AttentionShape,
} from './ops';
import type { ParamSource, ParamSpec } from './params';
import { mix, hashString } from './rng';

export type NamedGrads = [name: string, grad: tf.Tensor][];

/** What layers need from the step they run in. */
export interface LayerContext {
  params: ParamSource;
  tracker?: MemoryTracker;
  /** Sequence length of the current batch: activations are 2-D [batch·seq, features]. */
  seq: number;
  /** Dropout probability (0 in evaluation and when dropout is off). */
  dropout: number;
  /** Seed of this micro-batch's dropout masks; masks are regenerated in backward and recompute. */
  dropoutSeed: number;
}

/** Marks a tensor as a saved activation and returns it. */
export function keepActivation<T extends tf.Tensor>(ctx: LayerContext, t: T): T {
  ctx.tracker?.tag(t, 'activations');
  return t;
}

function release(saved: object | undefined): void {
  if (!saved) return;
  for (const v of Object.values(saved)) if (v instanceof tf.Tensor) v.dispose();
}

export interface LayerForward<S> {
  y: tf.Tensor;
  saved?: S;
}
export interface LayerBackward {
  dx: tf.Tensor;
  grads: NamedGrads;
}

export interface Layer<S = unknown> {
  readonly name: string;
  paramSpecs(): ParamSpec[];
  /** With save=false (evaluation, or a recomputed block's first pass) nothing is kept. */
  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<S>;
  backward(ctx: LayerContext, dy: tf.Tensor, saved: S): LayerBackward;
}

// ---- Linear (HF Conv1D: y = x·W + b, W [in, out]) --------------------------------------------------------

export class Linear implements Layer<{ x: tf.Tensor2D }> {
  constructor(
    readonly name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    private readonly std = 0.02,
  ) {}

  paramSpecs(): ParamSpec[] {
    return [
      { name: `${this.name}.weight`, shape: [this.inFeatures, this.outFeatures], init: { kind: 'normal', std: this.std }, decay: true },
      { name: `${this.name}.bias`, shape: [this.outFeatures], init: { kind: 'zeros' }, decay: false },
    ];
  }

  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ x: tf.Tensor2D }> {
    const w = ctx.params.get(`${this.name}.weight`) as tf.Tensor2D;
    const b = ctx.params.get(`${this.name}.bias`) as tf.Tensor1D;
    const y = linear(x as tf.Tensor2D, w, b);
    return save ? { y, saved: { x: keepActivation(ctx, share(x as tf.Tensor2D)) } } : { y };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: { x: tf.Tensor2D }): LayerBackward {
    const w = ctx.params.get(`${this.name}.weight`) as tf.Tensor2D;
    const d = dy as tf.Tensor2D;
    const dW = matmulTN(saved.x, d);
    release(saved);
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

// ---- LayerNorm --------------------------------------------------------------------------------------------

export class LayerNorm implements Layer<{ xhat: tf.Tensor2D; rstd: tf.Tensor2D }> {
  constructor(
    readonly name: string,
    readonly features: number,
    readonly eps = 1e-5,
  ) {}

  paramSpecs(): ParamSpec[] {
    return [
      { name: `${this.name}.weight`, shape: [this.features], init: { kind: 'ones' }, decay: false },
      { name: `${this.name}.bias`, shape: [this.features], init: { kind: 'zeros' }, decay: false },
    ];
  }

  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ xhat: tf.Tensor2D; rstd: tf.Tensor2D }> {
    const g = ctx.params.get(`${this.name}.weight`) as tf.Tensor1D;
    const b = ctx.params.get(`${this.name}.bias`) as tf.Tensor1D;
    const { y, xhat, rstd } = layerNormForward(x as tf.Tensor2D, g, b, this.eps);
    if (!save) return { y: free(y, xhat, rstd) };
    return { y, saved: { xhat: keepActivation(ctx, xhat), rstd: keepActivation(ctx, rstd) } };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: { xhat: tf.Tensor2D; rstd: tf.Tensor2D }): LayerBackward {
    const g = ctx.params.get(`${this.name}.weight`) as tf.Tensor1D;
    const { dx, dg, db } = layerNormBackward(dy as tf.Tensor2D, saved, g);
    release(saved);
    return {
      dx,
      grads: [
        [`${this.name}.weight`, dg],
        [`${this.name}.bias`, db],
      ],
    };
  }
}

// ---- GELU (tanh approximation, HF "gelu_new") -------------------------------------------------------------

export class Gelu implements Layer<{ x: tf.Tensor2D }> {
  constructor(readonly name: string) {}
  paramSpecs(): ParamSpec[] {
    return [];
  }
  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ x: tf.Tensor2D }> {
    const y = geluForward(x as tf.Tensor2D);
    return save ? { y, saved: { x: keepActivation(ctx, share(x as tf.Tensor2D)) } } : { y };
  }
  backward(_ctx: LayerContext, dy: tf.Tensor, saved: { x: tf.Tensor2D }): LayerBackward {
    const dx = geluBackward(dy as tf.Tensor2D, saved.x);
    release(saved);
    return { dx, grads: [] };
  }
}

// ---- Dropout (inverted; masks are regenerated from the seed, never stored) ------------------------------

export class Dropout implements Layer<{ shape: number[] }> {
  constructor(readonly name: string) {}
  paramSpecs(): ParamSpec[] {
    return [];
  }
  mask(ctx: LayerContext, shape: number[]): tf.Tensor | undefined {
    return dropoutMask(ctx, this.name, shape);
  }
  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<{ shape: number[] }> {
    const m = this.mask(ctx, x.shape);
    const y = m ? free(tf.mul(x, m), m) : share(x);
    return save ? { y, saved: { shape: x.shape } } : { y };
  }
  backward(ctx: LayerContext, dy: tf.Tensor, saved: { shape: number[] }): LayerBackward {
    const m = this.mask(ctx, saved.shape);
    return { dx: m ? free(tf.mul(dy, m), m) : share(dy), grads: [] };
  }
}

/** Inverted-dropout mask (0 or 1/(1−p)) for a named site of this micro-batch, or undefined when dropout is off. */
export function dropoutMask(ctx: LayerContext, site: string, shape: number[]): tf.Tensor | undefined {
  const p = ctx.dropout;
  if (!(p > 0)) return undefined;
  return tf.tidy(() => {
    const u = tf.randomUniform(shape, 0, 1, 'float32', mix(ctx.dropoutSeed, hashString(site)));
    return tf.mul(tf.cast(tf.greaterEqual(u, p), 'float32'), 1 / (1 - p));
  });
}

// ---- Causal self-attention core (between c_attn and c_proj) ---------------------------------------------

export class AttentionCore implements Layer<AttentionSaved> {
  constructor(
    readonly name: string,
    /** Heads on this device (heads / tp). */
    readonly heads: number,
    readonly headDim: number,
    /** Selective recompute keeps q, k, v and rebuilds the probabilities in backward. */
    readonly selectiveRecompute = false,
  ) {}

  paramSpecs(): ParamSpec[] {
    return [];
  }

  private shape(ctx: LayerContext, x: tf.Tensor): AttentionShape {
    return { batch: x.shape[0]! / ctx.seq, seq: ctx.seq, heads: this.heads, headDim: this.headDim };
  }

  private mask(ctx: LayerContext, s: AttentionShape): tf.Tensor3D | undefined {
    return dropoutMask(ctx, `${this.name}.attn_dropout`, [s.batch * s.heads, s.seq, s.seq]) as tf.Tensor3D | undefined;
  }

  forward(ctx: LayerContext, x: tf.Tensor, save: boolean): LayerForward<AttentionSaved> {
    const s = this.shape(ctx, x);
    const mask = this.mask(ctx, s);
    const { y, saved } = attentionForward(x as tf.Tensor2D, s, mask);
    mask?.dispose();
    if (!save) {
      releaseAttention(saved);
      return { y };
    }
    if (this.selectiveRecompute) {
      tf.dispose(saved.p!);
      delete saved.p;
    }
    for (const t of [...saved.q, ...saved.k, ...saved.v, ...(saved.p ?? [])]) keepActivation(ctx, t);
    return { y, saved };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: AttentionSaved): LayerBackward {
    const s = this.shape(ctx, dy);
    if (!saved.p) saved.p = attentionProbs(saved, s);
    const mask = saved.layout === 'batched' ? this.mask(ctx, s) : undefined;
    const dx = attentionBackward(dy as tf.Tensor2D, saved, s, mask);
    mask?.dispose();
    releaseAttention(saved);
    return { dx, grads: [] };
  }
}

function releaseAttention(saved: AttentionSaved): void {
  tf.dispose([...saved.q, ...saved.k, ...saved.v, ...(saved.p ?? [])]);
}

// ---- Token + position embeddings ------------------------------------------------------------------------

/**
 * wte [rows, C] and wpe [T, C], as every embedding layer (one device or vocab-parallel) declares them: wte is
 * split by vocabulary rows over a tensor-parallel group (padded to 128·tp), and it is tied to the output
 * layer, so it receives two gradients per micro-batch (the head's, then the embedding's); wpe is replicated.
 */
export function embeddingSpecs(wteRows: number, positions: number, hidden: number): ParamSpec[] {
  return [
    { name: 'wte.weight', shape: [wteRows, hidden], init: { kind: 'normal', std: 0.02 }, decay: true, tp: { dim: 0, padded: true }, uses: 2 },
    { name: 'wpe.weight', shape: [positions, hidden], init: { kind: 'normal', std: 0.02 }, decay: true },
  ];
}

export interface EmbeddingSaved {
  tokens: tf.Tensor1D;
}

/** The first layer: its input is token ids, so its backward returns parameter gradients only. */
export class Embedding {
  constructor(
    readonly vocab: number,
    readonly positions: number,
    readonly hidden: number,
  ) {}
  readonly name = 'embedding';

  paramSpecs(): ParamSpec[] {
    return embeddingSpecs(this.vocab, this.positions, this.hidden);
  }

  /** tokens: int32 [B·T] for a batch of sequences of length ctx.seq. */
  forward(ctx: LayerContext, tokens: tf.Tensor1D, save: boolean): LayerForward<EmbeddingSaved> {
    const seq = ctx.seq;
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const wpe = ctx.params.get('wpe.weight') as tf.Tensor2D;
    const rows = tokens.shape[0];
    const y = tf.tidy(() => {
      const tok = gatherRows(wte, tokens);
      const pos = tf.slice(wpe, [0, 0], [seq, this.hidden]);
      return tf.reshape(tf.add(tf.reshape(tok, [rows / seq, seq, this.hidden]), pos), [rows, this.hidden]);
    });
    return save ? { y, saved: { tokens: keepActivation(ctx, share(tokens)) } } : { y };
  }

  backward(ctx: LayerContext, dy: tf.Tensor, saved: EmbeddingSaved): NamedGrads {
    const d = dy as tf.Tensor2D;
    const rows = d.shape[0];
    const T = ctx.seq;
    const dWte = scatterAddRows(saved.tokens, d, this.vocab);
    const dWpe = tf.tidy(() => {
      // Σ over the batch: a ones-row matmul over [B, T·C].
      const perPos = matmul(tf.ones([1, rows / T]) as tf.Tensor2D, tf.reshape(d, [rows / T, T * this.hidden]) as tf.Tensor2D);
      const g = tf.reshape(perPos, [T, this.hidden]);
      return T === this.positions ? g : tf.concat([g, tf.zeros([this.positions - T, this.hidden])], 0);
    });
    release(saved);
    return [
      ['wte.weight', dWte],
      ['wpe.weight', dWpe],
    ];
  }
}

// ---- Output layer tied to wte, and the mean cross-entropy -------------------------------------------------

export interface HeadSaved {
  x: tf.Tensor2D;
  probs: tf.Tensor2D;
  targets: tf.Tensor1D;
}

export class TiedHeadLoss {
  readonly name = 'lm_head';
  /** loss = mean CE(x·wteᵀ, targets). */
  forward(ctx: LayerContext, x: tf.Tensor2D, targets: tf.Tensor1D, save: boolean): { loss: tf.Scalar; saved?: HeadSaved } {
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const logits = matmulNT(x, wte);
    const { loss, probs } = crossEntropyForward(logits, targets);
    logits.dispose();
    if (!save) return { loss: free(loss, probs) };
    return { loss, saved: { x: keepActivation(ctx, share(x)), probs: keepActivation(ctx, probs), targets: keepActivation(ctx, share(targets)) } };
  }

  /** Gradient of scale·loss: returns dx and wte's gradient from the output layer. */
  backward(ctx: LayerContext, scale: number, saved: HeadSaved): LayerBackward {
    const wte = ctx.params.get('wte.weight') as tf.Tensor2D;
    const dlogits = crossEntropyBackward(saved.probs, saved.targets, scale);
    saved.probs.dispose();
    const dWte = matmulTN(dlogits, saved.x);
    const dx = matmul(dlogits, wte);
    dlogits.dispose();
    release(saved);
    return { dx, grads: [['wte.weight', dWte]] };
  }
}
