// Collectives on tfjs tensors: a thin wrapper over the Float32Array API. Each call reads the tensor
// (dataSync copies on wasm; on cpu it returns the tensor's own storage, so we copy before reducing in place),
// runs the blocking collective, and returns a new tensor; the input is not disposed. Float32 only.

import * as tf from '@tensorflow/tfjs-core';
import type { ProcessGroup } from './comm';
import type { ReduceOp } from './types';

function floats(t: tf.Tensor, what: string): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`${what}: collectives move float32 tensors, got ${t.dtype}`);
  return new Float32Array(t.dataSync() as Float32Array);
}

export function allReduceTensor(group: ProcessGroup, t: tf.Tensor, op: ReduceOp = 'sum'): tf.Tensor {
  const buf = floats(t, 'allReduceTensor');
  group.allReduce(buf, op);
  return tf.tensor(buf, t.shape, 'float32');
}

export function broadcastTensor(group: ProcessGroup, t: tf.Tensor, root = 0): tf.Tensor {
  const buf = floats(t, 'broadcastTensor');
  group.broadcast(buf, root);
  return tf.tensor(buf, t.shape, 'float32');
}

/** Non-roots get their input back unchanged. */
export function reduceTensor(group: ProcessGroup, t: tf.Tensor, root = 0, op: ReduceOp = 'sum'): tf.Tensor {
  const buf = floats(t, 'reduceTensor');
  group.reduce(buf, root, op);
  return tf.tensor(buf, t.shape, 'float32');
}

/**
 * Concatenates every member's tensor (all the same shape) along `axis`: 0 (rows, ZeRO-style) or -1 (the
 * last dimension, Megatron's gather of a column-parallel output).
 */
export function allGatherTensor(group: ProcessGroup, t: tf.Tensor, axis: 0 | -1 = 0): tf.Tensor {
  const n = group.size;
  const mine = floats(t, 'allGatherTensor');
  const flat = new Float32Array(mine.length * n);
  group.allGather(flat, mine);
  if (axis === 0 || t.rank <= 1) {
    const shape = t.rank === 0 ? [n] : [t.shape[0]! * n, ...t.shape.slice(1)];
    return tf.tensor(flat, shape, 'float32');
  }
  const cols = t.shape[t.rank - 1]!;
  const rows = mine.length / cols;
  const out = new Float32Array(flat.length);
  for (let r = 0; r < n; r++) {
    for (let row = 0; row < rows; row++) {
      out.set(flat.subarray(r * mine.length + row * cols, r * mine.length + (row + 1) * cols), row * cols * n + r * cols);
    }
  }
  return tf.tensor(out, [...t.shape.slice(0, -1), cols * n], 'float32');
}

/** Reduces every member's tensor and keeps this member's slice along `axis` (whose size n must divide). */
export function reduceScatterTensor(group: ProcessGroup, t: tf.Tensor, op: ReduceOp = 'sum', axis: 0 | -1 = 0): tf.Tensor {
  const n = group.size;
  const dim = axis === 0 ? 0 : t.rank - 1;
  const size = t.shape[dim] ?? 1;
  if (t.rank === 0 || size % n !== 0) throw new Error(`reduceScatterTensor: dimension ${dim} of shape [${t.shape}] is not divisible by the group size ${n}`);
  let input = floats(t, 'reduceScatterTensor');
  const cols = size / n;
  if (dim !== 0) {
    // Lay the slices out member by member: [rows, n*cols] -> [n, rows, cols].
    const rows = input.length / size;
    const laid = new Float32Array(input.length);
    for (let row = 0; row < rows; row++) {
      for (let r = 0; r < n; r++) laid.set(input.subarray(row * size + r * cols, row * size + (r + 1) * cols), r * rows * cols + row * cols);
    }
    input = laid;
  }
  const out = new Float32Array(input.length / n);
  group.reduceScatter(out, input, op);
  const shape = [...t.shape];
  shape[dim] = cols;
  return tf.tensor(out, shape, 'float32');
}
