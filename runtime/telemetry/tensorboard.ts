// TensorBoard event files (scalars), written without TensorFlow: a TFRecord stream of `Event` protos.
//   record  = uint64 length (LE) · uint32 masked CRC32C(length) · data · uint32 masked CRC32C(data)
//   Event   = wall_time:double(1) · step:int64(2) · file_version:string(3) | summary:Summary(5)
//   Summary = repeated Value(1);  Value = tag:string(1) · simple_value:float(2)
// TensorBoard reads any file whose name contains "tfevents" under the logdir, recursively.
import { openRunFile, READ_LIMITS, readBounded } from '../files';
import { closeSync, fdatasyncSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Message } from '../../common/protocol';

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// -- protobuf, just what an Event needs

function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

function lengthDelimited(field: number, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(payload.length)]), payload]);
}

function encodeValue(tag: string, value: number): Buffer {
  const f = Buffer.alloc(5);
  f[0] = (2 << 3) | 5;
  f.writeFloatLE(value, 1);
  return Buffer.concat([lengthDelimited(1, Buffer.from(tag, 'utf8')), f]);
}

export function encodeEvent(e: { wallTime: number; step?: number; fileVersion?: string; scalars?: Record<string, number> }): Buffer {
  const wall = Buffer.alloc(9);
  wall[0] = (1 << 3) | 1;
  wall.writeDoubleLE(e.wallTime, 1);
  const parts: Buffer[] = [wall];
  if (e.step !== undefined && e.step !== 0) parts.push(Buffer.from([2 << 3, ...varint(e.step)]));
  if (e.fileVersion !== undefined) parts.push(lengthDelimited(3, Buffer.from(e.fileVersion, 'utf8')));
  if (e.scalars) {
    const values = Object.entries(e.scalars).map(([tag, v]) => lengthDelimited(1, encodeValue(tag, v)));
    parts.push(lengthDelimited(5, Buffer.concat(values)));
  }
  return Buffer.concat(parts);
}

export function encodeRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, data, footer]);
}

export class TensorBoardWriter {
  private fd: number | null;
  readonly path: string;

  constructor(dir: string, now = Date.now()) {
    this.path = join(dir, `events.out.tfevents.${Math.floor(now / 1000)}.${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}.${process.pid}.scalelm`);
    this.fd = openRunFile(this.path, 'append');
    this.write(encodeEvent({ wallTime: now / 1000, fileVersion: 'brain.Event:2' }));
  }

  scalars(step: number, wallTimeMs: number, values: Record<string, number>): void {
    if (Object.keys(values).length > 0) this.write(encodeEvent({ wallTime: wallTimeMs / 1000, step, scalars: values }));
  }

  private write(event: Buffer): void {
    if (this.fd === null) return;
    const rec = encodeRecord(event);
    let off = 0;
    while (off < rec.length) off += writeSync(this.fd, rec, off, rec.length - off);
  }

  close(): void {
    if (this.fd === null) return;
    fdatasyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
  }
}

const GiB = 2 ** 30;

/**
 * A bus listener that writes the scalars TensorBoard users look for: one event per step record (train,
 * perf and memory scalars, with the latest per-rank and GPU gauges folded in), one per evaluation.
 * Gauges never cost a write of their own.
 */
export function tensorBoardSink(writer: TensorBoardWriter): ((msg: Message) => void) & { flush(): void } {
  let lastStep = 0;
  let lastT = Date.now();
  let gauges: Record<string, number> = {};
  const flushGauges = (): void => {
    if (Object.keys(gauges).length) writer.scalars(lastStep, lastT, gauges);
    gauges = {};
  };
  const sink = (msg: Message): void => {
    const t = (msg as { t?: number }).t ?? Date.now();
    switch (msg.type) {
      case 'step': {
        lastStep = msg.step;
        lastT = t;
        const values: Record<string, number> = {
          ...gauges,
          'train/loss': msg.loss,
          'train/lr': msg.lr,
          'train/grad_norm': msg.gradNorm,
          'perf/tokens_per_sec': msg.tokensPerSec,
          'perf/step_ms': msg.stepMs,
        };
        gauges = {};
        for (const [category, bytes] of Object.entries(msg.memory)) values[`memory/${category}_gib`] = bytes / GiB;
        writer.scalars(msg.step, t, values);
        break;
      }
      case 'eval':
        writer.scalars(msg.step, t, { 'eval/loss': msg.loss });
        break;
      case 'memory':
        gauges[`memory/rank${msg.rank}/step_peak_gib`] = msg.stepPeak / GiB;
        break;
      case 'gpu': {
        // Device indices repeat on every machine: a multi-node run's GPUs are node<K>/gpu<N>/….
        const at = msg.node ? `node${msg.node.rank}/` : '';
        for (const d of msg.devices) {
          if (d.memoryUsed !== null) gauges[`${at}gpu${d.index}/memory_used_gib`] = d.memoryUsed / GiB;
          if (d.utilPercent !== null) gauges[`${at}gpu${d.index}/util_percent`] = d.utilPercent;
          if (d.powerW !== null) gauges[`${at}gpu${d.index}/power_w`] = d.powerW;
        }
        break;
      }
    }
  };
  return Object.assign(sink, { flush: flushGauges });
}

// -- reading back (tests and `scalelm export --format tensorboard` checks)

export interface DecodedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Record<string, number>;
}

/** Reads every complete, CRC-valid record; stops at a truncated or corrupt tail. */
export function readEventFile(path: string): { events: DecodedEvent[]; clean: boolean } {
  const buf = readBounded(path, READ_LIMITS.data);
  const events: DecodedEvent[] = [];
  let off = 0;
  while (off + 12 <= buf.length) {
    const len = Number(buf.readBigUInt64LE(off));
    if (buf.readUInt32LE(off + 8) !== maskedCrc32c(buf.subarray(off, off + 8))) return { events, clean: false };
    if (off + 12 + len + 4 > buf.length) return { events, clean: false };
    const data = buf.subarray(off + 12, off + 12 + len);
    if (buf.readUInt32LE(off + 12 + len) !== maskedCrc32c(data)) return { events, clean: false };
    events.push(decodeEvent(data));
    off += 12 + len + 4;
  }
  return { events, clean: off === buf.length };
}

function readVarint(b: Buffer, pos: { i: number }): bigint {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = b[pos.i++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return result;
    shift += 7n;
  }
}

function fields(b: Buffer, onField: (field: number, wire: number, pos: { i: number }) => void): void {
  const pos = { i: 0 };
  while (pos.i < b.length) {
    const key = Number(readVarint(b, pos));
    onField(key >> 3, key & 7, pos);
  }
}

function decodeEvent(b: Buffer): DecodedEvent {
  const e: DecodedEvent = { wallTime: 0, step: 0, scalars: {} };
  fields(b, (field, wire, pos) => {
    if (field === 1 && wire === 1) {
      e.wallTime = b.readDoubleLE(pos.i);
      pos.i += 8;
    } else if (field === 2 && wire === 0) e.step = Number(BigInt.asIntN(64, readVarint(b, pos)));
    else if (wire === 2) {
      const len = Number(readVarint(b, pos));
      const payload = b.subarray(pos.i, pos.i + len);
      pos.i += len;
      if (field === 3) e.fileVersion = payload.toString('utf8');
      if (field === 5) decodeSummary(payload, e.scalars);
    } else if (wire === 0) readVarint(b, pos);
    else if (wire === 1) pos.i += 8;
    else if (wire === 5) pos.i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  });
  return e;
}

function decodeSummary(b: Buffer, into: Record<string, number>): void {
  fields(b, (field, wire, pos) => {
    if (wire !== 2) throw new Error('unexpected Summary field');
    const len = Number(readVarint(b, pos));
    const value = b.subarray(pos.i, pos.i + len);
    pos.i += len;
    if (field !== 1) return;
    let tag = '';
    let v = NaN;
    fields(value, (f, w, p) => {
      if (f === 1 && w === 2) {
        const l = Number(readVarint(value, p));
        tag = value.subarray(p.i, p.i + l).toString('utf8');
        p.i += l;
      } else if (f === 2 && w === 5) {
        v = value.readFloatLE(p.i);
        p.i += 4;
      } else if (w === 2) p.i += Number(readVarint(value, p));
      else if (w === 0) readVarint(value, p);
      else if (w === 1) p.i += 8;
      else p.i += 4;
    });
    into[tag] = v;
  });
}
