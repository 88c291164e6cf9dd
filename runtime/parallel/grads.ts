// Data-parallel gradient reduction, overlapped with backward. Gradients arrive from the model in reverse
// layer order; each is copied into its bucket (see flat.ts) and freed at once; a bucket whose gradients are
// all in is reduced asynchronously on the rank's comm thread while backward goes on.
//   ZeRO 0 (DDP)  the buckets are the gradients (gradient-as-bucket-view): accumulated over micro-batches,
//                 all-reduced (AVG) on the last one only.
//   ZeRO 1        the same buckets, part-major; on the last micro-batch an in-place reduce-scatter (AVG)
//                 leaves this rank's partition of the reduced gradient in its span of each bucket.
//   ZeRO 2 and 3  two rotating staging buckets; every micro-batch reduce-scatters each bucket and adds this
//                 rank's span into the partition it owns — the only gradient memory kept.
// A parameter two layers use (the tied wte: output layer, then embedding; ParamSpec.uses, declared by the
// layer that creates it) gets that many gradients per micro-batch: its bucket waits for all of them.
import * as tf from '@tensorflow/tfjs-core';
import type { Comm, ProcessGroup, Work } from '../comm/comm';
import type { MemoryTracker } from '../model/memory';
import { free } from '../model/ops';
import type { Bucket, FlatLayout, Segment } from './flat';
import { readFloats } from './tensor-io';

export interface CommTimer {
  /** ms this rank spent blocked on communication (waits and blocking calls). */
  exposedMs: number;
}

export class GradReducer {
  /** ZeRO 0/1: persistent buckets (registered). ZeRO 2/3: two staging buckets. */
  private readonly buffers: Float32Array[];
  /** ZeRO 2/3: this rank's partition of the reduced gradient. */
  readonly owned: Float32Array | undefined;
  private readonly remaining: number[];
  private readonly pending = new Map<string, { sum: tf.Tensor; count: number }>();
  private readonly works: (Work | undefined)[];
  /** ZeRO 2/3: which bucket each staging buffer holds now. */
  private readonly slotOwner: (number | undefined)[] = [undefined, undefined];
  private readonly prepared: boolean[];
  private micro = 0;
  private last = true;
  /** ZeRO 0/1: parameters whose gradient is in its bucket this step (the first copy overwrites, later ones add). */
  private readonly written = new Set<string>();
  private readonly rankInGroup: number;

  constructor(
    private readonly comm: Comm,
    private readonly dp: ProcessGroup,
    readonly flat: FlatLayout,
    readonly zero: 0 | 1 | 2 | 3,
    private readonly tracker: MemoryTracker,
    private readonly timer: CommTimer,
  ) {
    this.rankInGroup = zero >= 1 ? dp.rank : 0;
    const B = flat.buckets.length;
    this.remaining = new Array(B).fill(0);
    this.works = new Array(B).fill(undefined);
    this.prepared = new Array(B).fill(false);
    if (zero <= 1) {
      // Zeroed once: padding is never written, and every gradient overwrites its place at its first copy.
      this.buffers = flat.buckets.map((b) => this.comm.alloc(b.size).fill(0));
      tracker.hold('grads', 4 * this.buffers.reduce((n, b) => n + b.length, 0));
      this.owned = undefined;
    } else {
      const sizes = [0, 0];
      for (const b of flat.buckets) sizes[b.index % 2] = Math.max(sizes[b.index % 2]!, b.size);
      this.buffers = sizes.filter((s) => s > 0).map((s) => this.comm.alloc(s));
      tracker.hold('buffers', 4 * this.buffers.reduce((n, b) => n + b.length, 0));
      this.owned = new Float32Array(flat.partition);
      tracker.hold('grads', 4 * flat.partition);
    }
  }

  private expected(b: Bucket): number {
    let n = 0;
    for (const u of b.units) for (const s of this.flat.units[u]!.slots) n += this.zero >= 2 ? 1 : s.uses;
    return n;
  }

  beginStep(): void {
    if (this.zero <= 1) this.written.clear();
    else this.owned!.fill(0);
  }

  /** Before each micro-batch's backward; `last`: gradients are reduced after this one (DDP's no_sync before it). */
  beginMicro(micro: number, last: boolean): void {
    this.micro = micro;
    this.last = last;
    for (const b of this.flat.buckets) {
      this.remaining[b.index] = this.expected(b);
      this.prepared[b.index] = false;
    }
  }

  /** The model's gradient sink: takes ownership of `g`. */
  readonly sink = (name: string, g: tf.Tensor): void => {
    const slot = this.flat.slot(name);
    const bucket = this.flat.buckets[this.flat.units[slot.unit]!.bucket]!;
    if (this.zero <= 1) {
      const buf = this.buffers[bucket.index]!;
      const v = readFloats(g);
      if (this.written.has(name)) for (const [from, n, to] of slot.toBucket) for (let i = 0; i < n; i++) buf[to + i] += v[from + i]!;
      else {
        for (const [from, n, to] of slot.toBucket) buf.set(v.subarray(from, from + n), to);
        this.written.add(name);
      }
      g.dispose();
      if (--this.remaining[bucket.index]! === 0 && this.last) this.launch(bucket);
      return;
    }
    const need = slot.uses;
    if (need > 1) {
      // Hold the first part until the rest arrives (the staging buffer may belong to another bucket now).
      const p = this.pending.get(name);
      const sum = p ? free(tf.add(p.sum, g), p.sum, g) : g;
      const count = (p?.count ?? 0) + 1;
      this.tracker.tag(sum, 'grads');
      if (count < need) {
        this.pending.set(name, { sum, count });
        return;
      }
      this.pending.delete(name);
      g = sum;
    }
    const buf = this.prepare(bucket);
    const v = readFloats(g);
    for (const [from, n, to] of slot.toBucket) buf.set(v.subarray(from, from + n), to);
    g.dispose();
    if (--this.remaining[bucket.index]! === 0) this.launch(bucket);
  };

  private staging(b: Bucket): Float32Array {
    return this.buffers[b.index % 2]!;
  }

  /** ZeRO 2/3: the staging buffer of a bucket, once the bucket that used it before is finished. */
  private prepare(b: Bucket): Float32Array {
    const s = b.index % 2;
    const buf = this.staging(b);
    if (this.prepared[b.index]) return buf;
    const previous = this.slotOwner[s];
    if (previous !== undefined && previous !== b.index) this.finish(this.flat.buckets[previous]!);
    buf.fill(0, 0, b.size);
    this.slotOwner[s] = b.index;
    this.prepared[b.index] = true;
    return buf;
  }

  /** This rank's span of a (part-major) bucket buffer. */
  private span(b: Bucket, buf: Float32Array): Float32Array {
    return buf.subarray(this.rankInGroup * b.part, (this.rankInGroup + 1) * b.part);
  }

  private launch(b: Bucket): void {
    const buf = this.zero <= 1 ? this.buffers[b.index]! : this.staging(b);
    if (this.zero === 0) this.works[b.index] = this.dp.allReduceAsync(buf.subarray(0, b.size), 'avg');
    else this.works[b.index] = this.dp.reduceScatterAsync(this.span(b, buf), buf.subarray(0, b.size), 'avg');
  }

  private wait(b: Bucket): boolean {
    const w = this.works[b.index];
    if (!w) return false;
    const t0 = performance.now();
    w.wait();
    this.timer.exposedMs += performance.now() - t0;
    this.works[b.index] = undefined;
    return true;
  }

  /** ZeRO 2/3: waits for a bucket's reduce-scatter and adds this rank's span into the owned partition. */
  private finish(b: Bucket): void {
    if (!this.wait(b)) return;
    const from = this.span(b, this.staging(b));
    const to = this.owned!.subarray(b.partOffset, b.partOffset + b.part);
    if (this.micro === 0) to.set(from);
    else for (let i = 0; i < to.length; i++) to[i] += from[i]!;
    if (this.slotOwner[b.index % 2] === b.index) this.slotOwner[b.index % 2] = undefined;
  }

  /** After a micro-batch's backward: every launched reduction has landed. */
  endMicro(): void {
    if (this.pending.size) throw new Error(`gradients still waiting for their other half: ${[...this.pending.keys()].join(', ')}`);
    for (const b of this.flat.buckets) {
      if (this.zero >= 2) this.finish(b);
      else if (this.last) {
        if (!this.works[b.index]) throw new Error(`bucket ${b.index} was never complete (${this.remaining[b.index]} gradients missing)`);
        this.wait(b);
      }
    }
  }

  /** A copy of this rank's whole reduced partition, padding included (tests, and the hand-computed toy). */
  partition(): Float32Array {
    if (this.zero >= 2) return this.owned!.slice();
    const out = new Float32Array(this.flat.partition);
    for (const b of this.flat.buckets) out.set(this.span(b, this.buffers[b.index]!), b.partOffset);
    return out;
  }

  /** Where the reduced gradient of a partition segment is: [array, offset]. */
  gradOf(s: Segment): [Float32Array, number] {
    if (this.zero >= 2) return [this.owned!, s.at];
    const b = this.flat.buckets[this.flat.units[s.slot.unit]!.bucket]!;
    return [this.buffers[b.index]!, this.rankInGroup * b.part + (s.at - b.partOffset)];
  }

  /**
   * ZeRO 1/2: after the update, every rank's new parameters are all-gathered bucket by bucket (in place, in
   * the buckets or the staging buffers) and handed to `unpack`. `fill(b, buf)` writes this rank's span.
   */
  gatherParams(fill: (b: Bucket, buf: Float32Array) => void, unpack: (b: Bucket, buf: Float32Array) => void): void {
    const inFlight: { b: Bucket; buf: Float32Array; work: Work }[] = [];
    const drain = (keep: number) => {
      while (inFlight.length > keep) {
        const { b, buf, work } = inFlight.shift()!;
        const t0 = performance.now();
        work.wait();
        this.timer.exposedMs += performance.now() - t0;
        unpack(b, buf);
      }
    };
    for (const b of this.flat.buckets) {
      // Two staging buffers under ZeRO 2: the one before last must be unpacked before it is reused.
      if (this.zero >= 2) drain(1);
      const buf = this.zero <= 1 ? this.buffers[b.index]! : this.staging(b);
      fill(b, buf);
      inFlight.push({ b, buf, work: this.dp.allGatherAsync(buf.subarray(0, b.size), this.span(b, buf)) });
    }
    drain(0);
  }

  dispose(): void {
    for (const p of this.pending.values()) p.sum.dispose();
    this.pending.clear();
    for (const b of this.buffers) this.comm.free(b);
  }
}
