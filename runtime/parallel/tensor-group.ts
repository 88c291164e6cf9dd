// The tensor-parallel group as the TP layers see it (runtime/model/tp-layers.ts): blocking all-reduces of
// tensors through one registered buffer in shared memory (the zero-copy path of the shared-memory
// transport; written straight to the socket on the other). Counted as communication buffers.
import type * as tf from '@tensorflow/tfjs-core';
import type { Comm, ProcessGroup } from '../comm/comm';
import type { MemoryTracker } from '../model/memory';
import type { TensorGroup } from '../model/tp-layers';
import type { CommTimer } from './grads';
import { readInto, tensorFromHost } from './tensor-io';

export class CommTensorGroup implements TensorGroup {
  readonly size: number;
  readonly rank: number;
  private scratch: Float32Array | undefined;

  constructor(
    private readonly comm: Comm,
    readonly group: ProcessGroup,
    private readonly tracker: MemoryTracker,
    private readonly timer: CommTimer,
  ) {
    this.size = group.size;
    this.rank = group.rank;
  }

  /** Sizes the scratch buffer up front (the largest all-reduce: one micro-batch's [B·T, C]). */
  reserve(elements: number): void {
    if (this.scratch && this.scratch.length >= elements) return;
    this.release();
    this.scratch = this.comm.alloc(elements);
    this.tracker.hold('buffers', 4 * elements);
  }

  allReduce(t: tf.Tensor, op: 'sum' | 'max'): tf.Tensor {
    const n = t.size;
    this.reserve(n);
    const buf = this.scratch!.subarray(0, n);
    readInto(t, buf);
    const t0 = performance.now();
    this.group.allReduce(buf, op);
    this.timer.exposedMs += performance.now() - t0;
    return tensorFromHost(buf, t.shape);
  }

  release(): void {
    if (!this.scratch) return;
    this.tracker.hold('buffers', -4 * this.scratch.length);
    this.comm.free(this.scratch);
    this.scratch = undefined;
  }
}
