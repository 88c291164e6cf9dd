// Causal attention as per-head plain 2-D matmuls, for the wasm and cpu backends. A batched or transposed
// matMul leaves XNNPACK for a scalar loop (~10x slower), so JavaScript kernels lay q, k, v out per head in
// exactly the orientation each product needs, and every product is a plain [M,K]·[K,N]:
//   forward   s = q̂·kᵀ (q̂ = q/√d)   p = causal softmax(s)   y = p·v
//   backward  dvᵀ = dyᵀ·p   dp = dy·vᵀ   dsᵀ = (p ⊙ (dp − rowsum(dp ⊙ p)))ᵀ   dq̂ᵀ = kᵀ·dsᵀ   dk = dsᵀ·q̂
// Saved per head: q̂ [T,D], kᵀ [D,T], vᵀ [D,T], p [T,T] — the same bytes as q, k, v, p.
import * as tf from '@tensorflow/tfjs-core';
import { registerHostKernel, runHost } from './host-kernels';

interface HeadAttrs {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  scale: number;
}

const SPLIT_QKV = 'ScaleLMAttnSplitQKV';
const SOFTMAX = 'ScaleLMCausalSoftmax';
const MERGE = 'ScaleLMAttnMerge';
const SPLIT_DY = 'ScaleLMAttnSplitGrad';
const SOFTMAX_BWD = 'ScaleLMCausalSoftmaxGradT';
const MERGE_GRADS = 'ScaleLMAttnMergeGrads';

/** qkv [B·T, 3·H·D] -> per head (b,h): q̂ [T,D] (scaled), kᵀ [D,T], v [T,D], vᵀ [D,T]. */
registerHostKernel<HeadAttrs>({
  name: SPLIT_QKV,
  outputs: (_, a) => {
    const n = a.batch * a.heads;
    return [...rep(n, [a.seq, a.headDim]), ...rep(n, [a.headDim, a.seq]), ...rep(n, [a.seq, a.headDim]), ...rep(n, [a.headDim, a.seq])];
  },
  run: ([qkv], outs, _, a) => {
    const { batch: B, seq: T, heads: H, headDim: D, scale } = a;
    const C = H * D;
    const n = B * H;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const i = b * H + h;
        const q = outs[i]!;
        const kT = outs[n + i]!;
        const v = outs[2 * n + i]!;
        const vT = outs[3 * n + i]!;
        for (let t = 0; t < T; t++) {
          const row = (b * T + t) * 3 * C + h * D;
          for (let d = 0; d < D; d++) {
            q[t * D + d] = qkv![row + d]! * scale;
            kT[d * T + t] = qkv![row + C + d]!;
            const vv = qkv![row + 2 * C + d]!;
            v[t * D + d] = vv;
            vT[d * T + t] = vv;
          }
        }
      }
    }
  },
});

/** Row softmax of s [T,T] over columns 0..row (the causal mask); masked entries are 0. */
registerHostKernel<{ seq: number }>({
  name: SOFTMAX,
  outputs: (shapes) => shapes.map((s) => s),
  run: (ins, outs, _, a) => {
    const T = a.seq;
    for (let k = 0; k < ins.length; k++) {
      const s = ins[k]!;
      const p = outs[k]!;
      for (let i = 0; i < T; i++) {
        const r = i * T;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) if (s[r + j]! > max) max = s[r + j]!;
        let sum = 0;
        for (let j = 0; j <= i; j++) {
          const e = Math.exp(s[r + j]! - max);
          p[r + j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let j = 0; j <= i; j++) p[r + j] = p[r + j]! * inv;
      }
    }
  },
});

/** Per head y [T,D] -> [B·T, H·D]. */
registerHostKernel<HeadAttrs>({
  name: MERGE,
  outputs: (_, a) => [[a.batch * a.seq, a.heads * a.headDim]],
  run: (ys, [out], _, a) => {
    const { batch: B, seq: T, heads: H, headDim: D } = a;
    const C = H * D;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const y = ys[b * H + h]!;
        for (let t = 0; t < T; t++) out!.set(y.subarray(t * D, t * D + D), (b * T + t) * C + h * D);
      }
    }
  },
});

/** dy [B·T, H·D] -> per head dy [T,D] and dyᵀ [D,T]. */
registerHostKernel<HeadAttrs>({
  name: SPLIT_DY,
  outputs: (_, a) => [...rep(a.batch * a.heads, [a.seq, a.headDim]), ...rep(a.batch * a.heads, [a.headDim, a.seq])],
  run: ([dy], outs, _, a) => {
    const { batch: B, seq: T, heads: H, headDim: D } = a;
    const C = H * D;
    const n = B * H;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const i = b * H + h;
        const g = outs[i]!;
        const gT = outs[n + i]!;
        for (let t = 0; t < T; t++) {
          const row = (b * T + t) * C + h * D;
          for (let d = 0; d < D; d++) {
            const v = dy![row + d]!;
            g[t * D + d] = v;
            gT[d * T + t] = v;
          }
        }
      }
    }
  },
});

/** (p, dp) per head -> dsᵀ where ds = p ⊙ (dp − rowsum(dp ⊙ p)). Inputs: p_0..p_{n−1}, dp_0..dp_{n−1}. */
registerHostKernel<{ seq: number }>({
  name: SOFTMAX_BWD,
  outputs: (shapes) => shapes.slice(0, shapes.length / 2),
  run: (ins, outs, _, a) => {
    const T = a.seq;
    const n = ins.length / 2;
    for (let k = 0; k < n; k++) {
      const p = ins[k]!;
      const dp = ins[n + k]!;
      const dsT = outs[k]!;
      for (let i = 0; i < T; i++) {
        const r = i * T;
        let c = 0;
        for (let j = 0; j <= i; j++) c += p[r + j]! * dp[r + j]!;
        for (let j = 0; j <= i; j++) dsT[j * T + i] = p[r + j]! * (dp[r + j]! - c);
      }
    }
  },
});

/** dq̂ᵀ [D,T], dk [T,D], dvᵀ [D,T] per head -> dqkv [B·T, 3·H·D] (dq = dq̂·scale). */
registerHostKernel<HeadAttrs>({
  name: MERGE_GRADS,
  outputs: (_, a) => [[a.batch * a.seq, 3 * a.heads * a.headDim]],
  run: (ins, [out], _, a) => {
    const { batch: B, seq: T, heads: H, headDim: D, scale } = a;
    const C = H * D;
    const n = B * H;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const i = b * H + h;
        const dqT = ins[i]!;
        const dk = ins[n + i]!;
        const dvT = ins[2 * n + i]!;
        for (let t = 0; t < T; t++) {
          const row = (b * T + t) * 3 * C + h * D;
          for (let d = 0; d < D; d++) {
            out![row + d] = dqT[d * T + t]! * scale;
            out![row + C + d] = dk[t * D + d]!;
            out![row + 2 * C + d] = dvT[d * T + t]!;
          }
        }
      }
    }
  },
});

function rep(n: number, shape: number[]): number[][] {
  return Array.from({ length: n }, () => shape);
}

export interface HeadsShape {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
}

/** Saved per head (lists of B·H 2-D tensors). */
export interface HeadsSaved {
  q: tf.Tensor2D[];
  kT: tf.Tensor2D[];
  vT: tf.Tensor2D[];
  p?: tf.Tensor2D[];
}

const attrs = (s: HeadsShape): HeadAttrs => ({ ...s, scale: 1 / Math.sqrt(s.headDim) });

export function headsProbs(q: tf.Tensor2D[], kT: tf.Tensor2D[], s: HeadsShape): tf.Tensor2D[] {
  const scores = q.map((qi, i) => tf.matMul(qi, kT[i]!));
  const p = runHost(SOFTMAX, scores, { seq: s.seq }) as tf.Tensor2D[];
  tf.dispose(scores);
  return p;
}

export function headsForward(qkv: tf.Tensor2D, s: HeadsShape): { y: tf.Tensor2D; saved: HeadsSaved } {
  const n = s.batch * s.heads;
  const parts = runHost(SPLIT_QKV, [qkv], attrs(s)) as tf.Tensor2D[];
  const q = parts.slice(0, n);
  const kT = parts.slice(n, 2 * n);
  const v = parts.slice(2 * n, 3 * n);
  const vT = parts.slice(3 * n);
  const p = headsProbs(q, kT, s);
  const ys = p.map((pi, i) => tf.matMul(pi, v[i]!));
  tf.dispose(v);
  const y = runHost(MERGE, ys, attrs(s))[0] as tf.Tensor2D;
  tf.dispose(ys);
  return { y, saved: { q, kT, vT, p } };
}

/** dy [B·T, H·D] -> dqkv [B·T, 3·H·D]. Frees nothing of `saved`. */
export function headsBackward(dy: tf.Tensor2D, saved: HeadsSaved & { p: tf.Tensor2D[] }, s: HeadsShape): tf.Tensor2D {
  const n = s.batch * s.heads;
  const g = runHost(SPLIT_DY, [dy], attrs(s)) as tf.Tensor2D[];
  const dyh = g.slice(0, n);
  const dyT = g.slice(n);
  const dvT = dyT.map((d, i) => tf.matMul(d, saved.p[i]!));
  tf.dispose(dyT);
  const dp = dyh.map((d, i) => tf.matMul(d, saved.vT[i]!));
  tf.dispose(dyh);
  const dsT = runHost(SOFTMAX_BWD, [...saved.p, ...dp], { seq: s.seq }) as tf.Tensor2D[];
  tf.dispose(dp);
  const dqT = dsT.map((d, i) => tf.matMul(saved.kT[i]!, d));
  const dk = dsT.map((d, i) => tf.matMul(d, saved.q[i]!));
  tf.dispose(dsT);
  const dqkv = runHost(MERGE_GRADS, [...dqT, ...dk, ...dvT], attrs(s))[0] as tf.Tensor2D;
  tf.dispose([...dqT, ...dk, ...dvT]);
  return dqkv;
}
