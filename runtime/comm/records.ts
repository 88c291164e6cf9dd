// The accounting log: every call's {op, group, bytes, start, end, algorithm}, kept cheaply — a fixed ring
// of typed arrays (no allocation per call) plus running totals per op. Telemetry drains it with take().

import { OP_NAMES, type CallRecord, type OpName } from './types';

export interface OpTotals {
  calls: number;
  bytes: number;
  /** Sum of (end - start) in milliseconds. For async calls that includes the time queued. */
  ms: number;
}

export class CallLog {
  private readonly op: Uint8Array;
  private readonly group: Uint16Array;
  private readonly algorithm: Uint8Array;
  private readonly bytes: Float64Array;
  private readonly start: Float64Array;
  private readonly end: Float64Array;
  private readonly groupNames: string[] = [];
  private readonly groupIndex = new Map<string, number>();
  private readonly algorithmNames: string[] = [];
  private readonly algorithmIndex = new Map<string, number>();
  private written = 0; // records ever written
  private taken = 0; // records ever handed out by take()
  private readonly sums = new Map<OpName, OpTotals>();

  constructor(readonly capacity = 4096) {
    this.op = new Uint8Array(capacity);
    this.group = new Uint16Array(capacity);
    this.algorithm = new Uint8Array(capacity);
    this.bytes = new Float64Array(capacity);
    this.start = new Float64Array(capacity);
    this.end = new Float64Array(capacity);
    for (const name of OP_NAMES) this.sums.set(name, { calls: 0, bytes: 0, ms: 0 });
  }

  private intern(name: string, names: string[], index: Map<string, number>): number {
    let i = index.get(name);
    if (i === undefined) {
      i = names.length;
      names.push(name);
      index.set(name, i);
    }
    return i;
  }

  add(op: OpName, group: string, bytes: number, start: number, end: number, algorithm: string): void {
    const at = this.written % this.capacity;
    this.op[at] = OP_NAMES.indexOf(op);
    this.group[at] = this.intern(group, this.groupNames, this.groupIndex);
    this.algorithm[at] = this.intern(algorithm, this.algorithmNames, this.algorithmIndex);
    this.bytes[at] = bytes;
    this.start[at] = start;
    this.end[at] = end;
    this.written++;
    const s = this.sums.get(op)!;
    s.calls++;
    s.bytes += bytes;
    s.ms += end - start;
  }

  private read(from: number, to: number): CallRecord[] {
    const out: CallRecord[] = [];
    for (let k = Math.max(from, to - this.capacity); k < to; k++) {
      const at = k % this.capacity;
      out.push({
        op: OP_NAMES[this.op[at]!]!,
        group: this.groupNames[this.group[at]!]!,
        bytes: this.bytes[at]!,
        start: this.start[at]!,
        end: this.end[at]!,
        algorithm: this.algorithmNames[this.algorithm[at]!]!,
      });
    }
    return out;
  }

  /** The most recent records still held (up to `capacity`), oldest first. */
  recent(): CallRecord[] {
    return this.read(0, this.written);
  }

  /** Records since the previous take() (older ones past `capacity` are dropped and counted in `dropped`). */
  take(): { records: CallRecord[]; dropped: number } {
    const dropped = Math.max(0, this.written - this.capacity - this.taken);
    const records = this.read(this.taken, this.written);
    this.taken = this.written;
    return { records, dropped };
  }

  totals(): Record<OpName, OpTotals> {
    return Object.fromEntries([...this.sums].map(([k, v]) => [k, { ...v }])) as Record<OpName, OpTotals>;
  }
}
