// The optimizer: PyTorch 1.13's single-tensor semantics, operation for operation, so a run and its PyTorch
// reference agree in fp32. updateRange is the one update: over flat float32 ranges — a rank's partition
// under ZeRO, the whole model under DDP or on one device — doubles inside, float32 stored. updateTensor
// applies it to a tensor (host backends), or the same arithmetic as tfjs ops (backends without synchronous
// reads); the Optimizer class applies it to every named parameter.
import * as tf from '@tensorflow/tfjs-core';
import type { TrainConfig } from '../config/types';
import type { MemoryTracker } from '../model/memory';
import { hostKernelsAvailable } from '../model/host-kernels';
import { free, kernelFlavor } from '../model/ops';
import type { ParamStore } from '../model/params';

export interface OptimizerHyper {
  kind: TrainConfig['optimizer'];
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export function optimizerHyper(t: TrainConfig): OptimizerHyper {
  return { kind: t.optimizer, beta1: t.beta1, beta2: t.beta2, eps: t.eps, weightDecay: t.weightDecay };
}

/** State slots per parameter, with the names PyTorch's optimizers use. */
export function stateSlots(kind: OptimizerHyper['kind']): string[] {
  return kind === 'sgd' ? ['momentum_buffer'] : ['exp_avg', 'exp_avg_sq'];
}

/**
 * One parameter's update at optimizer step `step` (1-based, counted over the whole run). Returns the new
 * parameter and state; frees nothing it was given. `decay`: whether weight decay applies to this tensor.
 */
export function updateTensor(h: OptimizerHyper, p: tf.Tensor, g: tf.Tensor, state: tf.Tensor[], lr: number, step: number, decay: boolean): { p: tf.Tensor; state: tf.Tensor[] } {
  if (h.kind !== 'sgd' && kernelFlavor() !== 'portable' && hostKernelsAvailable()) {
    // One pass on the host (updateRange) instead of a dozen full-size temporaries.
    const pv = p.dataSync() as Float32Array;
    const out = new Float32Array(pv.length);
    const [m, v] = state.map((s) => Float32Array.from(s.dataSync() as Float32Array)) as [Float32Array, Float32Array];
    updateRange(h, { lr, step, coef: 1, decay }, pv, 0, out, 0, g.dataSync() as Float32Array, 0, m, v, 0, pv.length);
    return { p: tf.tensor(out, p.shape), state: [tf.tensor(m, p.shape), tf.tensor(v, p.shape)] };
  }
  return tf.tidy(() => {
    const wd = decay ? h.weightDecay : 0;
    if (h.kind === 'sgd') {
      // torch.optim.SGD(momentum=beta1): d = g + wd·p; buf = m·buf + d (buf = d at the first step); p -= lr·buf
      const d = wd ? tf.add(g, tf.mul(p, wd)) : g;
      const buf = step === 1 || h.beta1 === 0 ? tf.clone(d) : tf.add(tf.mul(state[0]!, h.beta1), d);
      return { p: tf.sub(p, tf.mul(buf, lr)), state: [buf] };
    }
    let param = p;
    let grad = g;
    if (h.kind === 'adamw' && wd) param = tf.mul(p, 1 - lr * wd); // decoupled: param.mul_(1 − lr·wd)
    if (h.kind === 'adam' && wd) grad = tf.add(g, tf.mul(p, wd)); // L2: grad = grad + wd·param
    const m = tf.add(tf.mul(state[0]!, h.beta1), tf.mul(grad, 1 - h.beta1));
    const v = tf.add(tf.mul(state[1]!, h.beta2), tf.mul(tf.mul(grad, grad), 1 - h.beta2));
    const bc1 = 1 - h.beta1 ** step;
    const bc2 = 1 - h.beta2 ** step;
    const stepSize = lr / bc1;
    const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), h.eps);
    return { p: tf.sub(param, tf.mul(tf.div(m, denom), stepSize)), state: [m, v] };
  });
}

export class Optimizer {
  /** Per parameter name: its state tensors in stateSlots order. */
  readonly state = new Map<string, tf.Tensor[]>();
  /** Optimizer steps taken (PyTorch keeps one per parameter; they are always equal here). */
  steps = 0;

  constructor(
    readonly hyper: OptimizerHyper,
    private readonly tracker?: MemoryTracker,
  ) {}

  /** Zero state for every parameter of the store. */
  init(params: ParamStore): void {
    for (const s of params.specs) {
      this.setState(
        s.name,
        stateSlots(this.hyper.kind).map(() => tf.zeros(s.shape)),
      );
    }
  }

  setState(name: string, tensors: tf.Tensor[]): void {
    const old = this.state.get(name);
    if (old) tf.dispose(old.filter((t) => !tensors.includes(t)));
    for (const t of tensors) {
      tf.keep(t);
      this.tracker?.tag(t, 'optimizer');
    }
    this.state.set(name, tensors);
  }

  /** Updates every parameter that has a gradient; frees the gradients. */
  step(params: ParamStore, grads: Map<string, tf.Tensor>, lr: number): void {
    this.steps++;
    for (const spec of params.specs) {
      const g = grads.get(spec.name);
      if (!g) continue;
      const state = this.state.get(spec.name);
      if (!state) throw new Error(`optimizer has no state for ${spec.name}`);
      const r = updateTensor(this.hyper, params.get(spec.name), g, state, lr, this.steps, spec.decay);
      params.set(spec.name, r.p);
      this.setState(spec.name, r.state);
      grads.delete(spec.name);
      g.dispose();
    }
  }

  dispose(): void {
    for (const ts of this.state.values()) tf.dispose(ts);
    this.state.clear();
  }
}

/** Gradient sums over micro-batches, one tensor per parameter name. */
export class GradAccumulator {
  readonly grads = new Map<string, tf.Tensor>();
  constructor(private readonly tracker?: MemoryTracker) {}

  /** Takes ownership of g. */
  add = (name: string, g: tf.Tensor): void => {
    const prev = this.grads.get(name);
    const sum = prev ? free(tf.add(prev, g), prev, g) : g;
    this.grads.set(name, sum);
    this.tracker?.tag(sum, 'grads');
  };

  /**
   * PyTorch's clip_grad_norm_: total = ‖(‖g_i‖)_i‖₂; every gradient is scaled by min(1, max/(total + 1e-6)).
   * Stays on the device (nothing read back); returns the total norm as a tensor to read later.
   */
  clipByGlobalNorm(maxNorm: number): tf.Scalar {
    const total = tf.tidy(() => {
      const norms = [...this.grads.values()].map((g) => tf.sqrt(tf.sum(tf.square(g))));
      return tf.sqrt(tf.sum(tf.square(tf.stack(norms)))) as tf.Scalar;
    });
    if (maxNorm > 0) {
      const coef = tf.tidy(() => tf.minimum(tf.div(maxNorm, tf.add(total, 1e-6)), 1));
      for (const [name, g] of this.grads) {
        const scaled = tf.mul(g, coef);
        g.dispose();
        this.grads.set(name, scaled);
        this.tracker?.tag(scaled, 'grads');
      }
      coef.dispose();
    }
    return total;
  }

  dispose(): void {
    for (const g of this.grads.values()) g.dispose();
    this.grads.clear();
  }
}

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
  h: OptimizerHyper,
  a: UpdateArgs,
  p: Float32Array,
  pAt: number,
  out: Float32Array,
  outAt: number,
  g: Float32Array,
  gAt: number,
  s0: Float32Array,
  s1: Float32Array | undefined,
  sAt: number,
  n: number,
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
