// The optimizer update over flat float32 ranges — a rank's partition under ZeRO, the whole model under DDP.
// AdamW/Adam run exactly the arithmetic of the single-device fused kernel (runtime/model/host-kernels.ts:
// doubles inside, float32 stored), so a partition updated here gets the same bits as the whole tensor
// updated there; SGD rounds to float32 after every operation like the tfjs ops it replaces. The gradient
// is clipped on the way in (g·coef rounded to float32, as tf.mul would).
import type { OptimizerHyper } from '../train/optimizer';

export interface UpdateArgs {
  lr: number;
  /** Optimizer step, 1-based. */
  step: number;
  /** Clip coefficient (1: none). */
  coef: number;
  decay: boolean;
}

const f32 = Math.fround;

/**
 * p (read at pAt) -> out (written at outAt, may alias p), g at gAt, state slot arrays s0/s1 at sAt, n elements.
 */
export function updateRange(
  h: OptimizerHyper, a: UpdateArgs,
  p: Float32Array, pAt: number, out: Float32Array, outAt: number,
  g: Float32Array, gAt: number,
  s0: Float32Array, s1: Float32Array | undefined, sAt: number, n: number,
): void {
  const coef = a.coef;
  const clip = coef !== 1;
  if (h.kind === 'sgd') {
    const wd = a.decay ? h.weightDecay : 0;
    const first = a.step === 1 || h.beta1 === 0;
    for (let i = 0; i < n; i++) {
      const pp = p[pAt + i]!;
      let gi = g[gAt + i]!;
      if (clip) gi = f32(gi * coef);
      const d = wd ? f32(gi + f32(pp * wd)) : gi;
      const buf = first ? d : f32(f32(s0[sAt + i]! * h.beta1) + d);
      s0[sAt + i] = buf;
      out[outAt + i] = f32(pp - f32(buf * a.lr));
    }
    return;
  }
  const wd = a.decay ? h.weightDecay : 0;
  const keep = 1 - a.lr * (h.kind === 'adamw' ? wd : 0);
  const l2 = h.kind === 'adam' ? wd : 0;
  const b1 = h.beta1;
  const b2 = h.beta2;
  const c1 = 1 - b1;
  const c2 = 1 - b2;
  const eps = h.eps;
  const stepSize = a.lr / (1 - b1 ** a.step);
  const invBc2Sqrt = 1 / Math.sqrt(1 - b2 ** a.step);
  const m = s0;
  const v = s1!;
  for (let i = 0; i < n; i++) {
    const pp = p[pAt + i]!;
    let g0 = g[gAt + i]!;
    if (clip) g0 = f32(g0 * coef);
    const gi = g0 + l2 * pp;
    const mi = b1 * m[sAt + i]! + c1 * gi;
    const vi = b2 * v[sAt + i]! + c2 * gi * gi;
    m[sAt + i] = mi;
    v[sAt + i] = vi;
    out[outAt + i] = pp * keep - (stepSize * mi) / (Math.sqrt(vi) * invBc2Sqrt + eps);
  }
}

/** Σ g² over a range, in double. */
export function sumSquares(g: Float32Array, at: number, n: number): number {
  let s = 0;
  for (let i = at; i < at + n; i++) s += g[i]! * g[i]!;
  return s;
}

/** clip_grad_norm_'s coefficient, in float32 like the single-device tfjs ops: min(max/(norm + 1e-6), 1). */
export function clipCoefficient(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  return Math.min(f32(f32(maxNorm) / f32(f32(norm) + f32(1e-6))), 1);
}
