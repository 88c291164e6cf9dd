// Moving float32 tensor data between the tfjs backend and host (or shared) memory with as few copies as the
// backend allows: wasm tensors are read straight from the wasm heap, cpu tensors from their own storage;
// other backends pay a dataSync(). Tensors made from host data always own a copy (on the cpu backend
// tf.tensor(view) would alias the view, and shared buffers are reused).
import * as tf from '@tensorflow/tfjs-core';

interface WasmLike {
  typedArrayFromHeap(t: tf.TensorInfo): tf.TypedArray;
}
interface CpuLike {
  data: { get(dataId: object): { values?: tf.TypedArray } };
}

/**
 * A view of a float32 tensor's data without copying, where the backend keeps it in host memory; valid only
 * until the next tfjs allocation (the wasm heap may grow and move). Undefined on other backends.
 */
export function hostView(t: tf.Tensor): Float32Array | undefined {
  const name = tf.getBackend();
  if (name === 'wasm') return (tf.backend() as unknown as WasmLike).typedArrayFromHeap(t) as Float32Array;
  if (name === 'cpu') {
    const v = (tf.backend() as unknown as CpuLike).data.get(t.dataId)?.values;
    return v instanceof Float32Array ? v : undefined;
  }
  return undefined;
}

/** The tensor's values: a view where possible (read it before the next allocation), else a copy. */
export function readFloats(t: tf.Tensor): Float32Array {
  return hostView(t) ?? (t.dataSync() as Float32Array);
}

/** dst[at + i] = t[i] (or += with add). */
export function readInto(t: tf.Tensor, dst: Float32Array, at = 0, add = false): void {
  const v = readFloats(t);
  if (!add) {
    dst.set(v, at);
    return;
  }
  for (let i = 0; i < v.length; i++) dst[at + i] += v[i]!;
}

/** A tensor that owns a copy of `values`. */
export function tensorFromHost(values: Float32Array, shape: readonly number[]): tf.Tensor {
  return tf.tensor(tf.getBackend() === 'wasm' ? values : values.slice(), [...shape], 'float32');
}
