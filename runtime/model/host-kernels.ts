// Kernels written in JavaScript over the backend's own memory, for the data movements tfjs does slowly on
// the CPU backends (wasm's transpose runs at ~0.35 GB/s and its slice copies the whole input first). They
// are registered for the 'wasm' and 'cpu' backends only; other backends use the portable ops.
import * as tf from '@tensorflow/tfjs-core';

type Views = Float32Array[];
interface HostKernelSpec<A> {
  name: string;
  /** Output shapes from input shapes and attributes. */
  outputs(inputs: number[][], attrs: A): number[][];
  /** Fills the outputs (zero-initialised) from the inputs. */
  run(inputs: Views, outputs: Views, inputShapes: number[][], attrs: A): void;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.TypedArray;
}
interface CpuBackendLike {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.TypedArray): tf.TensorInfo;
  data: { get(dataId: object): { values?: tf.TypedArray } };
}

const registered = new Set<string>();

function register<A>(spec: HostKernelSpec<A>): void {
  if (registered.has(spec.name)) return;
  registered.add(spec.name);
  tf.registerKernel({
    kernelName: spec.name,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as WasmBackendLike;
      const ins = Object.values(inputs) as tf.TensorInfo[];
      const shapes = ins.map((t) => t.shape);
      const a = attrs as unknown as A;
      // Allocate first: an allocation may grow the wasm memory, which detaches earlier views.
      const outs = spec.outputs(shapes, a).map((s) => be.makeOutput(s, 'float32'));
      const outViews = outs.map((o) => be.typedArrayFromHeap(o) as Float32Array);
      for (const v of outViews) v.fill(0);
      spec.run(ins.map((t) => be.typedArrayFromHeap(t) as Float32Array), outViews, shapes, a);
      return outs.length === 1 ? outs[0]! : outs;
    },
  });
  tf.registerKernel({
    kernelName: spec.name,
    backendName: 'cpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as CpuBackendLike;
      const ins = Object.values(inputs) as tf.TensorInfo[];
      const shapes = ins.map((t) => t.shape);
      const a = attrs as unknown as A;
      const outViews = spec.outputs(shapes, a).map((s) => new Float32Array(s.reduce((x, y) => x * y, 1)));
      spec.run(ins.map((t) => be.data.get(t.dataId).values as Float32Array), outViews, shapes, a);
      const outs = outViews.map((v, i) => be.makeTensorInfo(spec.outputs(shapes, a)[i]!, 'float32', v));
      return outs.length === 1 ? outs[0]! : outs;
    },
  });
}

/** True when the active backend has the host kernels (wasm or cpu). */
export function hostKernelsAvailable(): boolean {
  const b = tf.getBackend();
  return b === 'wasm' || b === 'cpu';
}

function runHost(name: string, inputs: tf.Tensor[], attrs: object = {}): tf.Tensor[] {
  const named: Record<string, tf.Tensor> = {};
  inputs.forEach((t, i) => (named[`i${i}`] = t));
  const out = tf.engine().runKernel(name, named as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap);
  return Array.isArray(out) ? (out as tf.Tensor[]) : [out as tf.Tensor];
}

// ---- transpose ------------------------------------------------------------------------------------------

const TRANSPOSE = 'ScaleLMTranspose2D';
register<Record<string, never>>({
  name: TRANSPOSE,
  outputs: ([[r, c]]: number[][]) => [[c!, r!]],
  run: ([x], [out], [[R, C]]) => {
    const B = 16;
    for (let i0 = 0; i0 < R!; i0 += B) {
      const i1 = Math.min(R!, i0 + B);
      for (let j0 = 0; j0 < C!; j0 += B) {
        const j1 = Math.min(C!, j0 + B);
        for (let i = i0; i < i1; i++) {
          const row = i * C!;
          for (let j = j0; j < j1; j++) out![j * R! + i] = x![row + j]!;
        }
      }
    }
  },
});

export function transpose2dHost(x: tf.Tensor2D): tf.Tensor2D {
  return runHost(TRANSPOSE, [x])[0] as tf.Tensor2D;
}

export { register as registerHostKernel, runHost };
