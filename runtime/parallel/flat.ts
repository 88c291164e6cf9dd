// The flat parameter layout every data-parallel engine shares. Parameters are grouped into units — the
// layers ZeRO-3 gathers one at a time, as the model declares them (Gpt.units(): ln_f, h.{L-1} … h.0,
// embedding) — in the order their gradients become complete in backward.
// The flat buffer is the units one after another, each padded to a multiple of `parts` (dp under ZeRO, 1
// for plain DDP) and split into `parts` equal pieces; rank k's partition is its piece of every unit, so all
// partitions have the same size and the padding (fewer than `parts` elements per unit) stays zero.
//
// Units are grouped into buckets (a small first one, then ~parallel.bucketMB; the planner's runtime
// convention uses the same rule). A bucket's buffer is laid out part-major — [every unit's part 0 | every
// unit's part 1 | …] — so a plain reduce-scatter of the bucket hands rank k exactly its partition's span
// [bucket.partOffset, + bucket.part), and an all-gather of that span rebuilds the bucket. Pure.
import { formBuckets } from '../planner/runtime-model';
import type { ModelUnit } from '../model/gpt';
import { numel } from '../model/params';

export interface Slot {
  name: string;
  shape: number[];
  numel: number;
  decay: boolean;
  /** Declared split over the tensor-parallel group (ParamSpec.tp: at tp > 1 each rank's shard counts in the
   *  global norm), else replicated (counted once, on tp rank 0). */
  sharded: boolean;
  /** Gradients it receives per micro-batch (ParamSpec.uses: 2 for the tied wte). */
  uses: number;
  unit: number;
  /** Offset in the unit's flat (unpadded order). */
  offset: number;
  /** Copies of this parameter's gradient into its bucket buffer: [from (in the parameter), length, to (in the bucket)]. */
  toBucket: [number, number, number][];
}

export interface Unit {
  index: number;
  name: string;
  slots: Slot[];
  numel: number;
  /** numel rounded up to a multiple of parts. */
  padded: number;
  /** padded / parts: each rank's piece. */
  part: number;
  /** Where this unit's piece sits in every rank's partition. */
  partOffset: number;
  bucket: number;
}

export interface Bucket {
  index: number;
  units: number[];
  /** Σ part of its units: each rank's span of the bucket. */
  part: number;
  /** Where that span sits in a rank's partition. */
  partOffset: number;
  /** parts · part: the bucket buffer's length. */
  size: number;
}

/** One contiguous run of a partition that belongs to one parameter (padding has none). */
export interface Segment {
  slot: Slot;
  /** Offset in the parameter. */
  from: number;
  length: number;
  /** Offset in the partition. */
  at: number;
}

export class FlatLayout {
  readonly units: Unit[];
  readonly buckets: Bucket[];
  readonly slots = new Map<string, Slot>();
  /** Elements in each rank's partition. */
  readonly partition: number;
  /** The padded flat buffer: parts · partition. */
  readonly paddedTotal: number;
  /** Real (unpadded) elements. */
  readonly total: number;

  /** `units`: the model's units (this rank's shard shapes), in gradient order. */
  constructor(
    units: readonly ModelUnit[],
    readonly parts: number,
    firstBucketBytes: number,
    bucketBytes: number,
  ) {
    let partOffset = 0;
    this.units = units.map(({ name, specs }, index) => {
      let offset = 0;
      const slots = specs.map((s): Slot => {
        const n = numel(s.shape);
        if (this.slots.has(s.name)) throw new Error(`parameter ${s.name} is in two units`);
        const slot: Slot = { name: s.name, shape: [...s.shape], numel: n, decay: s.decay, sharded: s.tp !== undefined, uses: s.uses ?? 1, unit: index, offset, toBucket: [] };
        offset += n;
        this.slots.set(s.name, slot);
        return slot;
      });
      const padded = Math.ceil(offset / parts) * parts;
      const unit: Unit = { index, name, slots, numel: offset, padded, part: padded / parts, partOffset, bucket: -1 };
      partOffset += unit.part;
      return unit;
    });
    this.partition = partOffset;
    this.paddedTotal = partOffset * parts;
    this.total = this.units.reduce((n, u) => n + u.numel, 0);
    const groups = formBuckets(
      this.units.map((u) => 4 * u.padded),
      firstBucketBytes,
      bucketBytes,
    );
    this.buckets = groups.map((units, index) => {
      const part = units.reduce((n, u) => n + this.units[u]!.part, 0);
      for (const u of units) this.units[u]!.bucket = index;
      return { index, units, part, partOffset: this.units[units[0]!]!.partOffset, size: part * parts };
    });
    for (const unit of this.units) {
      const bucket = this.buckets[unit.bucket]!;
      const base = unit.partOffset - bucket.partOffset;
      for (const slot of unit.slots) {
        let e = slot.offset;
        const end = slot.offset + slot.numel;
        while (e < end) {
          const k = Math.floor(e / unit.part);
          const stop = Math.min(end, (k + 1) * unit.part);
          slot.toBucket.push([e - slot.offset, stop - e, k * bucket.part + base + (e - k * unit.part)]);
          e = stop;
        }
      }
    }
  }

  slot(name: string): Slot {
    const s = this.slots.get(name);
    if (!s) throw new Error(`no parameter named ${name} in the flat layout`);
    return s;
  }

  /** Rank k's partition, parameter by parameter, in partition order. */
  segments(k: number): Segment[] {
    const out: Segment[] = [];
    for (const unit of this.units) {
      const lo = k * unit.part;
      const hi = lo + unit.part;
      for (const slot of unit.slots) {
        const from = Math.max(lo, slot.offset);
        const to = Math.min(hi, slot.offset + slot.numel);
        if (to > from) out.push({ slot, from: from - slot.offset, length: to - from, at: unit.partOffset + (from - lo) });
      }
    }
    return out;
  }

  /** Rank k's partition segments inside one bucket (offsets still in the partition). */
  bucketSegments(k: number, bucket: Bucket): Segment[] {
    return this.segments(k).filter((s) => s.at >= bucket.partOffset && s.at < bucket.partOffset + bucket.part);
  }
}
