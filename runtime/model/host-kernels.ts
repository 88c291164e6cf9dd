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
      spec.run(
        ins.map((t) => be.typedArrayFromHeap(t) as Float32Array),
        outViews,
        shapes,
        a,
      );
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
      spec.run(
        ins.map((t) => be.data.get(t.dataId).values as Float32Array),
        outViews,
        shapes,
        a,
      );
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
  run: ([x], [out], [[rows, cols]]) => {
    // Tiles of 16; writes run along output rows (measured ~1.2 ns/element at 1M elements).
    const R = rows!;
    const C = cols!;
    const B = 16;
    for (let j0 = 0; j0 < C; j0 += B) {
      const j1 = Math.min(C, j0 + B);
      for (let i0 = 0; i0 < R; i0 += B) {
        const i1 = Math.min(R, i0 + B);
        for (let j = j0; j < j1; j++) {
          const o = j * R;
          for (let i = i0; i < i1; i++) out![o + i] = x![i * C + j]!;
        }
      }
    }
  },
});

export function transpose2dHost(x: tf.Tensor2D): tf.Tensor2D {
  return runHost(TRANSPOSE, [x])[0] as tf.Tensor2D;
}

// ---- cross-entropy from softmax probabilities -------------------------------------------------------------

const NLL = 'ScaleLMMeanNll';
/** mean over rows of −log p[row, target[row]] (probabilities from the backend's fast softmax). */
register<Record<string, never>>({
  name: NLL,
  outputs: () => [[]],
  run: ([p, targets], [out], [[N, V]]) => {
    let sum = 0;
    for (let i = 0; i < N!; i++) sum -= Math.log(Math.max(p![i * V! + targets![i]!]!, 1e-45));
    out![0] = sum / N!;
  },
});

export function meanNllHost(probs: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  return runHost(NLL, [probs, targets])[0] as tf.Scalar;
}

const CE_GRAD = 'ScaleLMCrossEntropyGrad';
/** (p − onehot(target))·scale in one pass. */
register<{ scale: number }>({
  name: CE_GRAD,
  outputs: ([shape]) => [shape!],
  run: ([p, targets], [out], [[N, V]], a) => {
    const s = a.scale;
    const n = N! * V!;
    for (let i = 0; i < n; i++) out![i] = p![i]! * s;
    for (let i = 0; i < N!; i++) out![i * V! + targets![i]!] -= s;
  },
});

export function crossEntropyGradHost(probs: tf.Tensor2D, targets: tf.Tensor1D, scale: number): tf.Tensor2D {
  return runHost(CE_GRAD, [probs, targets], { scale })[0] as tf.Tensor2D;
}

// ---- embedding rows ---------------------------------------------------------------------------------------

const GATHER = 'ScaleLMGatherRows';
register<Record<string, never>>({
  name: GATHER,
  outputs: ([[, C], [N]]) => [[N!, C!]],
  run: ([table, idx], [out], [[, C]]) => {
    const c = C!;
    for (let i = 0; i < idx!.length; i++) {
      const r = idx![i]!;
      out!.set(table!.subarray(r * c, r * c + c), i * c);
    }
  },
});

export function gatherRowsHost(table: tf.Tensor2D, idx: tf.Tensor1D): tf.Tensor2D {
  return runHost(GATHER, [table, idx])[0] as tf.Tensor2D;
}

export { register as registerHostKernel, runHost };
