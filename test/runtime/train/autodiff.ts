// Test helpers: run a layer's explicit backward on the backend under test, and tfjs autodiff of its
// portable forward on the cpu backend, from the same host values, and compare.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { buildSync } from 'esbuild';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setKernelFlavor, kernelFlavor, type Flavor } from '../../../runtime/model/ops';
import type { Layer, LayerContext } from '../../../runtime/model/layers';
import type { ParamSource, ParamSpec } from '../../../runtime/model/params';
import { Rng } from '../../../runtime/model/rng';

// tfjs-core's CommonJS bundle leaves out the gradient functions (the union package registers them from ES
// modules). Bundle that registration once; registries and the engine are process-global, so it applies.
(function registerGradients(): void {
  const out = join(tmpdir(), `scalelm-tfjs-gradients-${tf.version_core}.cjs`);
  if (!existsSync(out)) {
    buildSync({ entryPoints: [require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js')], bundle: true, platform: 'node', format: 'cjs', outfile: out, logLevel: 'silent' });
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- runs a bundle written at test time, for its side effect
  require(out);
})();

export class MapSource implements ParamSource {
  constructor(readonly values: Map<string, tf.Tensor>) {}
  get(name: string): tf.Tensor {
    const t = this.values.get(name);
    if (!t) throw new Error(`no ${name}`);
    return t;
  }
}

export function randomValues(n: number, seed: number, std = 1): Float32Array {
  return new Rng(seed, 'test').normals(n, std);
}

export function randomParams(specs: ParamSpec[], seed: number): Map<string, Float32Array> {
  // Random (not initial) values, so LayerNorm gains and biases are exercised too.
  return new Map(
    specs.map((s, i) => [
      s.name,
      randomValues(
        s.shape.reduce((a, b) => a * b, 1),
        seed + i,
        0.5,
      ),
    ]),
  );
}

export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

/** Runs fn with a backend and kernel flavor, restoring both afterwards. */
export async function withBackend<T>(name: string, flavor: Flavor, fn: () => Promise<T> | T): Promise<T> {
  const prevBackend = tf.getBackend();
  const prevFlavor = kernelFlavor();
  await tf.setBackend(name);
  setKernelFlavor(flavor);
  try {
    return await fn();
  } finally {
    await tf.setBackend(prevBackend);
    setKernelFlavor(prevFlavor);
  }
}

export interface GradResult {
  dx?: Float32Array;
  grads: Map<string, Float32Array>;
}

export function context(params: ParamSource, seq: number, dropout = 0): LayerContext {
  return { params, seq, dropout, dropoutSeed: 42 };
}

function tensors(specs: ParamSpec[], values: Map<string, Float32Array>): Map<string, tf.Tensor> {
  return new Map(specs.map((s) => [s.name, tf.tensor(values.get(s.name)!, s.shape)]));
}

/** Explicit forward(save) + backward(dy) of a layer on the current backend. */
export async function explicitGrads(
  layer: Layer,
  specs: ParamSpec[],
  values: Map<string, Float32Array>,
  x: Float32Array,
  xShape: number[],
  dy: Float32Array,
  seq: number,
  dropout = 0,
): Promise<GradResult> {
  const params = tensors(specs, values);
  const ctx = context(new MapSource(params), seq, dropout);
  const xt = tf.tensor(x, xShape);
  const { y, saved } = layer.forward(ctx, xt, true);
  const dyt = tf.tensor(dy, y.shape);
  y.dispose();
  const { dx, grads } = layer.backward(ctx, dyt, saved);
  const out: GradResult = { dx: (await dx.data()) as Float32Array, grads: new Map() };
  for (const [n, g] of grads) out.grads.set(n, (await g.data()) as Float32Array);
  tf.dispose([dx, dyt, xt, ...grads.map((g) => g[1]), ...params.values()]);
  return out;
}

/** tfjs autodiff of Σ forward(x)·dy with respect to x and every parameter, on the cpu backend. */
export async function autodiffGrads(
  layer: Layer,
  specs: ParamSpec[],
  values: Map<string, Float32Array>,
  x: Float32Array,
  xShape: number[],
  dy: Float32Array,
  seq: number,
  dropout = 0,
): Promise<GradResult> {
  return withBackend('cpu', 'portable', async () => {
    const names = specs.map((s) => s.name);
    const params = tensors(specs, values);
    const xt = tf.tensor(x, xShape);
    const f = (...args: tf.Tensor[]): tf.Scalar => {
      const src = new MapSource(new Map(names.map((n, i) => [n, args[i + 1]!])));
      const { y } = layer.forward(context(src, seq, dropout), args[0]!, false);
      return tf.sum(tf.mul(y, tf.tensor(dy, y.shape)));
    };
    const gs = tf.grads(f)([xt, ...names.map((n) => params.get(n)!)]);
    const out: GradResult = { dx: (await gs[0]!.data()) as Float32Array, grads: new Map() };
    names.forEach((n, i) => out.grads.set(n, gs[i + 1]!.dataSync() as Float32Array));
    tf.dispose([...gs, xt, ...params.values()]);
    return out;
  });
}
