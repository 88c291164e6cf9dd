// The tensor primitives the layers are written in, shaped for each backend's fast path. On wasm only a plain
// 2-D, non-transposed matMul reaches XNNPACK (a transposed or batched one takes a scalar loop ~10x slower),
// so aᵀ·b and a·bᵀ transpose one operand with a JavaScript kernel first, attention runs per head as 2-D
// products (attention-heads.ts), and column sums are a ones-row matmul. Other backends use the direct forms.
// Every function frees its intermediates as soon as they are dead, so a step's temporaries stay small.
import * as tf from '@tensorflow/tfjs-core';
import { headsBackward, headsForward, headsProbs } from './attention-heads';
import { crossEntropyGradHost, gatherRowsHost, hostKernelsAvailable, meanNllHost, transpose2dHost } from './host-kernels';

export type Flavor = 'wasm' | 'host' | 'portable';
let flavor: Flavor = 'portable';

/** Chooses kernel shapes for a backend: 'wasm', 'cpu' (host typed arrays), anything else portable. */
export function useKernelsFor(backendName: string): Flavor {
  flavor = backendName === 'wasm' ? 'wasm' : backendName === 'cpu' ? 'host' : 'portable';
  return flavor;
}
export function kernelFlavor(): Flavor {
  return flavor;
}
/** Forces a flavor (tests compare the fast paths with the portable one on the same backend). */
export function setKernelFlavor(f: Flavor): void {
  flavor = f;
}

/** Disposes `dead` and returns `result`: the idiom that keeps temporaries short-lived. */
export function free<T extends tf.Tensor>(result: T, ...dead: (tf.Tensor | undefined)[]): T {
  for (const d of dead) d?.dispose();
  return result;
}

/** A second handle on the same buffer (no copy: reshape shares data on every backend; clone copies on wasm). */
export function share<T extends tf.Tensor>(x: T): T {
  return tf.reshape(x, x.shape) as T;
}

/** a·b for 2-D a [M,K], b [K,N]. */
export function matmul(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(a, b);
}

/** a·b + bias in one kernel (XNNPACK adds the bias on wasm). */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  return tf.fused.matMul({ a: x, b: w, bias }) as tf.Tensor2D;
}

/** aᵀ·b for a [K,M], b [K,N] -> [M,N]: the weight gradient xᵀ·dy. */
export function matmulTN(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (b.shape[0] !== a.shape[0]) throw new Error(`matmulTN: contracted sizes differ (${a.shape} vs ${b.shape})`);
  if (flavor !== 'portable') {
    // A JavaScript transpose and a plain matmul beat both the transposed matMul (a scalar loop) and a
    // convolution whose kernel spans K (XNNPACK, but ~25 GFLOP/s against ~30–38 here). Transpose whichever
    // side moves fewer elements: aᵀ (K·M), or bᵀ and the result ((bᵀ·a)ᵀ: K·N + M·N).
    const [K, M] = a.shape;
    const N = b.shape[1];
    if (K * M <= K * N + M * N) {
      const at = transpose2d(a);
      return free(tf.matMul(at, b), at);
    }
    const bt = transpose2d(b);
    const r = free(tf.matMul(bt, a), bt) as tf.Tensor2D;
    return free(transpose2d(r), r);
  }
  return tf.matMul(a, b, true, false);
}

/** a·bᵀ for a [M,K], b [N,K] -> [M,N]: the input gradient dy·Wᵀ. */
export function matmulNT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (flavor === 'portable') return tf.matMul(a, b, false, true);
  const bt = transpose2d(b);
  return free(tf.matMul(a, bt), bt);
}

/** xᵀ for 2-D x. */
export function transpose2d(x: tf.Tensor2D): tf.Tensor2D {
  if (flavor !== 'portable' && hostKernelsAvailable()) return transpose2dHost(x);
  return tf.transpose(x);
}

/** Σ over rows of x [N,M] -> [M] (bias gradients). */
export function colSum(x: tf.Tensor2D): tf.Tensor1D {
  if (flavor === 'wasm') {
    const ones = tf.ones([1, x.shape[0]]) as tf.Tensor2D;
    const s = tf.matMul(ones, x);
    return free(tf.reshape(s, [x.shape[1]]) as tf.Tensor1D, s, ones);
  }
  return tf.sum(x, 0);
}

// ---- LayerNorm ------------------------------------------------------------------------------------------

export interface LayerNormSaved {
  xhat: tf.Tensor2D;
  rstd: tf.Tensor2D;
}

/** y = (x − mean)/√(var + eps)·g + b over the last axis; also returns what backward needs (x̂ and 1/σ). */
export function layerNormForward(x: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D, eps: number): { y: tf.Tensor2D } & LayerNormSaved {
  const mean = tf.mean(x, -1, true);
  const xc = free(tf.sub(x, mean), mean);
  const sq = tf.square(xc);
  const variance = free(tf.mean(sq, -1, true), sq);
  const ve = free(tf.add(variance, eps), variance);
  const rstd = free(tf.rsqrt(ve), ve) as tf.Tensor2D;
  const xhat = free(tf.mul(xc, rstd), xc) as tf.Tensor2D;
  const scaled = tf.mul(xhat, g);
  const y = free(tf.add(scaled, b), scaled) as tf.Tensor2D;
  return { y, xhat, rstd };
}

export function layerNormBackward(dy: tf.Tensor2D, s: LayerNormSaved, g: tf.Tensor1D): { dx: tf.Tensor2D; dg: tf.Tensor1D; db: tf.Tensor1D } {
  const dyx = tf.mul(dy, s.xhat) as tf.Tensor2D;
  const dg = free(colSum(dyx), dyx);
  const db = colSum(dy);
  const dxhat = tf.mul(dy, g);
  const m1 = tf.mean(dxhat, -1, true);
  const prod = tf.mul(dxhat, s.xhat);
  const m2 = free(tf.mean(prod, -1, true), prod);
  const centred = free(tf.sub(dxhat, m1), dxhat, m1);
  const proj = free(tf.mul(s.xhat, m2), m2);
  const inner = free(tf.sub(centred, proj), centred, proj);
  const dx = free(tf.mul(inner, s.rstd), inner) as tf.Tensor2D;
  return { dx, dg, db };
}

// ---- GELU (tanh approximation) ---------------------------------------------------------------------------
// 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³): σ is a fast XNNPACK kernel, tanh is not.

const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

/** σ(2u) for the GELU's inner u. */
function geluGate(x: tf.Tensor, x2: tf.Tensor): tf.Tensor {
  const cx2 = tf.mul(x2, GELU_C);
  const w = free(tf.add(cx2, 1), cx2);
  const inner = free(tf.mul(x, w), w);
  const z = free(tf.mul(inner, 2 * GELU_K), inner);
  return free(tf.sigmoid(z), z);
}

export function geluForward(x: tf.Tensor2D): tf.Tensor2D {
  const x2 = tf.square(x);
  const s = free(geluGate(x, x2), x2);
  return free(tf.mul(x, s), s) as tf.Tensor2D;
}

/** d/dx [x·σ(2u)] = σ + x·σ(1−σ)·2√(2/π)·(1 + 3·0.044715·x²), times dy. */
export function geluBackward(dy: tf.Tensor2D, x: tf.Tensor2D): tf.Tensor2D {
  // At most three [N, 4h] temporaries alive at once (tidy would keep all nine to the end).
  const x2 = tf.square(x);
  const s = geluGate(x, x2);
  const t = tf.mul(x2, 3 * GELU_C * 2 * GELU_K);
  x2.dispose();
  const slope = free(tf.add(t, 2 * GELU_K), t);
  const oneMinus = tf.sub(1, s);
  const ds = free(tf.mul(s, oneMinus), oneMinus);
  const xds = free(tf.mul(x, ds), ds);
  const g = free(tf.mul(xds, slope), xds, slope);
  const sum = free(tf.add(s, g), s, g);
  return free(tf.mul(sum, dy), sum) as tf.Tensor2D;
}

// ---- Cross-entropy over a tied output layer ------------------------------------------------------------

/** Mean cross-entropy of logits [N,V] against int32 targets [N]; returns the loss and the softmax probabilities. */
export function crossEntropyForward(logits: tf.Tensor2D, targets: tf.Tensor1D): { loss: tf.Scalar; probs: tf.Tensor2D } {
  if (flavor !== 'portable' && hostKernelsAvailable()) {
    // The backend's softmax is one SIMD kernel; −log p[target] is read off the probabilities.
    const probs = tf.softmax(logits) as tf.Tensor2D;
    return { loss: meanNllHost(probs, targets), probs };
  }
  const V = logits.shape[1];
  const max = tf.max(logits, -1, true);
  const z = free(tf.sub(logits, max), max);
  const e = tf.exp(z);
  const se = tf.sum(e, -1, true);
  const probs = free(tf.div(e, se), e) as tf.Tensor2D;
  const lse = free(tf.log(se), se);
  const oneHot = oneHotFloat(targets, V);
  const picked = free(tf.mul(z, oneHot), z, oneHot);
  const zt = free(tf.sum(picked, -1, true), picked);
  const nll = free(tf.sub(lse, zt), lse, zt);
  const loss = free(tf.mean(nll), nll) as tf.Scalar;
  return { loss, probs };
}

/** d(scale·mean CE)/d logits = (p − onehot)·scale/N. */
export function crossEntropyBackward(probs: tf.Tensor2D, targets: tf.Tensor1D, scale: number): tf.Tensor2D {
  const [N, V] = probs.shape;
  if (flavor !== 'portable' && hostKernelsAvailable()) return crossEntropyGradHost(probs, targets, scale / N);
  const oneHot = oneHotFloat(targets, V);
  const d = free(tf.sub(probs, oneHot), oneHot);
  return free(tf.mul(d, scale / N), d) as tf.Tensor2D;
}

/** Rows of a table by index (the embedding lookup). */
export function gatherRows(table: tf.Tensor2D, idx: tf.Tensor1D): tf.Tensor2D {
  if (flavor !== 'portable' && hostKernelsAvailable()) return gatherRowsHost(table, idx);
  return tf.gather(table, idx) as tf.Tensor2D;
}

function oneHotFloat(targets: tf.Tensor1D, depth: number): tf.Tensor2D {
  const h = tf.oneHot(targets, depth);
  return free(tf.cast(h, 'float32'), h) as tf.Tensor2D;
}

/** out[idx[i]] += rows[i]: the embedding gradient, without tf.gather's gradient (no wasm kernel for it). */
export function scatterAddRows(idx: tf.Tensor1D, rows: tf.Tensor2D, numRows: number): tf.Tensor2D {
  const indices = tf.reshape(idx, [idx.shape[0], 1]);
  return free(tf.scatterND(indices, rows, [numRows, rows.shape[1]]), indices) as tf.Tensor2D;
}

// ---- Causal multi-head attention core (softmax(q·kᵀ/√d + mask)·v) --------------------------------------

export interface AttentionShape {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
}

/**
 * What attention keeps for backward. 'batched': one [B·H, T, D] tensor each (portable path, and any path
 * with attention dropout); 'heads': per-head 2-D tensors q̂ [T,D], kᵀ [D,T], vᵀ [D,T], p [T,T] (wasm/cpu).
 */
export interface AttentionSaved {
  layout: 'batched' | 'heads';
  q: tf.Tensor[];
  k: tf.Tensor[];
  v: tf.Tensor[];
  /** Probabilities before dropout; absent under selective recompute until backward rebuilds them. */
  p?: tf.Tensor[];
}

const causalMasks = new Map<number, tf.Tensor2D>();
/** 0 on and below the diagonal, −∞ above; one per sequence length, kept for the life of the process. */
function causalMask(T: number): tf.Tensor2D {
  let m = causalMasks.get(T);
  if (!m || m.isDisposed) {
    const data = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) data[i * T + j] = -Infinity;
    m = tf.keep(tf.tensor2d(data, [T, T]));
    causalMasks.set(T, m);
  }
  return m;
}

/** Whether this backend takes the per-head path (not with attention dropout, which the batched path does). */
function useHeads(dropout: boolean): boolean {
  return flavor !== 'portable' && !dropout && hostKernelsAvailable();
}

function batchedProbs(q: tf.Tensor3D, k: tf.Tensor3D, s: AttentionShape): tf.Tensor3D {
  return tf.tidy(() => {
    const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(s.headDim));
    return tf.softmax(tf.add(scores, causalMask(s.seq))) as tf.Tensor3D;
  });
}

/** Rebuilds the probabilities from the saved q and k (selective recompute). */
export function attentionProbs(saved: AttentionSaved, s: AttentionShape): tf.Tensor[] {
  if (saved.layout === 'heads') return headsProbs(saved.q as tf.Tensor2D[], saved.k as tf.Tensor2D[], s);
  return [batchedProbs(saved.q[0] as tf.Tensor3D, saved.k[0] as tf.Tensor3D, s)];
}

/** qkv [B·T, 3·H·D] (GPT-2's fused c_attn output) -> y [B·T, H·D]. dropoutMask: [B·H, T, T] over the probabilities. */
export function attentionForward(qkv: tf.Tensor2D, s: AttentionShape, dropoutMask?: tf.Tensor3D): { y: tf.Tensor2D; saved: AttentionSaved } {
  if (useHeads(Boolean(dropoutMask))) {
    const r = headsForward(qkv, s);
    return { y: r.y, saved: { layout: 'heads', q: r.saved.q, k: r.saved.kT, v: r.saved.vT, p: r.saved.p! } };
  }
  const { batch: B, seq: T, heads: H, headDim: D } = s;
  const [q, k, v] = tf.tidy(() => {
    const split = tf.transpose(tf.reshape(qkv, [B, T, 3, H, D]), [2, 0, 3, 1, 4]);
    return tf.unstack(split).map((t) => tf.reshape(t, [B * H, T, D]) as tf.Tensor3D);
  }) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
  const p = batchedProbs(q, k, s);
  const y = tf.tidy(() => {
    const o = tf.matMul(dropoutMask ? tf.mul(p, dropoutMask) : p, v);
    return tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, D]), [0, 2, 1, 3]), [B * T, H * D]) as tf.Tensor2D;
  });
  return { y, saved: { layout: 'batched', q: [q], k: [k], v: [v], p: [p] } };
}

/** dy [B·T, H·D] -> dqkv [B·T, 3·H·D]. `saved` must hold p; the caller frees it. */
export function attentionBackward(dy: tf.Tensor2D, saved: AttentionSaved, s: AttentionShape, dropoutMask?: tf.Tensor3D): tf.Tensor2D {
  if (!saved.p) throw new Error('attentionBackward needs the probabilities (rebuild them with attentionProbs)');
  if (saved.layout === 'heads') {
    return headsBackward(dy, { q: saved.q as tf.Tensor2D[], kT: saved.k as tf.Tensor2D[], vT: saved.v as tf.Tensor2D[], p: saved.p as tf.Tensor2D[] }, s);
  }
  const { batch: B, seq: T, heads: H, headDim: D } = s;
  const [q, k, v, p] = [saved.q[0]!, saved.k[0]!, saved.v[0]!, saved.p[0]!] as tf.Tensor3D[];
  const mask = dropoutMask;
  return tf.tidy(() => {
    const dyh = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, D]), [0, 2, 1, 3]), [B * H, T, D]);
    // With dropout y = (P·M)·v: dv uses P·M, and softmax's backward gets d(P·M)·M.
    const dv = tf.matMul(mask ? tf.mul(p!, mask) : p!, dyh, true, false);
    let dp = tf.matMul(dyh, v!, false, true);
    if (mask) dp = tf.mul(dp, mask);
    const ds = tf.mul(tf.mul(p!, tf.sub(dp, tf.sum(tf.mul(dp, p!), -1, true))), 1 / Math.sqrt(D));
    const dq = tf.matMul(ds, k!);
    const dk = tf.matMul(ds, q!, true, false);
    const stacked = tf.reshape(tf.stack([dq, dk, dv]), [3, B, H, T, D]);
    return tf.reshape(tf.transpose(stacked, [1, 3, 0, 2, 4]), [B * T, 3 * H * D]) as tf.Tensor2D;
  });
}
