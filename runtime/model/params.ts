// Parameters as named flat tensors. Names and layouts are HuggingFace GPT-2's (wte.weight,
// h.0.attn.c_attn.weight in Conv1D layout [in, out], …), so checkpoints need no renaming and a
// parallel engine can address, slice, flatten and partition parameters by name.
import * as tf from '@tensorflow/tfjs-core';
import type { MemoryTracker } from './memory';
import { Rng } from './rng';

export type ParamInit = { kind: 'normal'; std: number } | { kind: 'zeros' } | { kind: 'ones' };

/**
 * How a parameter is split over a tensor-parallel group, declared by the layer that creates it (Megatron's
 * set_tensor_model_parallel_attributes): rank r holds the r-th of tp equal slices of dimension `dim`.
 * Slicing, joining and the gradient norm read it; nothing infers it from the parameter's name.
 */
export interface TpSplit {
  /** The dimension split over the group (Megatron's partition_dim). */
  dim: number;
  /** The dimension is this many concatenated sections, each split on its own: a fused Q|K|V has 3, so rank r
   *  holds [Q_r | K_r | V_r] (a plain split of the concatenation would give rank 0 only Q). Default 1. */
  sections?: number;
  /** The dimension is the vocabulary, padded to a multiple of 128·tp (tpVocab); padding rows are zero. */
  padded?: boolean;
}

export interface ParamSpec {
  name: string;
  shape: number[];
  init: ParamInit;
  /** AdamW's decoupled weight decay applies (matrices and embeddings), not biases or LayerNorm. */
  decay: boolean;
  /** Tensor-parallel split (set by the creating layer); absent: replicated on every rank of the group. */
  tp?: TpSplit;
  /** Gradients the parameter receives per micro-batch: 2 for a weight two layers use (the tied wte). Default 1. */
  uses?: number;
}

/** What a layer reads its weights from: a plain store, or (ZeRO-3) one that gathers shards on demand. */
export interface ParamSource {
  get(name: string): tf.Tensor;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Deterministic initial values of one parameter: a pure function of (seed, name). */
export function initialValues(spec: ParamSpec, seed: number): Float32Array {
  const n = numel(spec.shape);
  switch (spec.init.kind) {
    case 'zeros':
      return new Float32Array(n);
    case 'ones':
      return new Float32Array(n).fill(1);
    case 'normal':
      return new Rng(seed, `init/${spec.name}`).normals(n, spec.init.std);
  }
}

export class ParamStore implements ParamSource {
  private readonly values = new Map<string, tf.Tensor>();
  private readonly byName: Map<string, ParamSpec>;

  constructor(
    readonly specs: readonly ParamSpec[],
    private readonly tracker?: MemoryTracker,
  ) {
    this.byName = new Map(specs.map((s) => [s.name, s]));
    if (this.byName.size !== specs.length) throw new Error('duplicate parameter names');
  }

  spec(name: string): ParamSpec {
    const s = this.byName.get(name);
    if (!s) throw new Error(`no parameter named ${name}`);
    return s;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  get(name: string): tf.Tensor {
    const t = this.values.get(name);
    if (!t) throw new Error(`parameter ${name} has no value yet`);
    return t;
  }

  /** Replaces a parameter's value (taking ownership of `t`; the old value is freed). */
  set(name: string, t: tf.Tensor): void {
    const spec = this.spec(name);
    if (t.size !== numel(spec.shape)) throw new Error(`parameter ${name}: expected shape [${spec.shape}], got [${t.shape}]`);
    const value = t.shape.length === spec.shape.length && t.shape.every((d, i) => d === spec.shape[i]) ? t : tf.reshape(t, spec.shape);
    if (value !== t) t.dispose();
    const old = this.values.get(name);
    // Free the old value first: the new one was a temporary until now, so the step's params maximum stays
    // the parameters' size rather than size + one tensor.
    if (old && old !== value) old.dispose();
    this.values.set(name, tf.keep(value));
    this.tracker?.tag(value, 'params');
  }

  /** Sets a parameter from host values. */
  setValues(name: string, data: Float32Array): void {
    this.set(name, tf.tensor(data, this.spec(name).shape, 'float32'));
  }

  /** GPT-2's initialisation, seeded per parameter name. */
  initialize(seed: number): void {
    for (const s of this.specs) this.setValues(s.name, initialValues(s, seed));
  }

  /** Host copies of every parameter (asynchronous: works on backends that cannot read synchronously). */
  async readAll(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const s of this.specs) out.set(s.name, (await this.get(s.name).data()) as Float32Array);
    return out;
  }

  totalElements(): number {
    return this.specs.reduce((n, s) => n + numel(s.shape), 0);
  }

  dispose(): void {
    for (const t of this.values.values()) t.dispose();
    this.values.clear();
  }
}
