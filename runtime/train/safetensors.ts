// The safetensors format (HuggingFace): an 8-byte little-endian header length, a JSON header mapping each
// tensor name to {dtype, shape, data_offsets: [begin, end)} relative to the data that follows, an optional
// "__metadata__" of strings, then the raw little-endian data. Reading validates everything a corrupt or
// foreign file can get wrong and says which file, which tensor and what.
import { jsonShape } from '../config/parse';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { READ_LIMITS, readBounded, type FileReadError } from '../files';
import { numel } from '../model/params';

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'SafetensorsError';
  }
}

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1 };

export interface StoredTensor {
  dtype: string;
  shape: number[];
  /** The tensor's bytes (a view into the file's buffer). */
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, StoredTensor>;
  metadata: Record<string, string>;
}

export interface TensorToWrite {
  shape: number[];
  data: Float32Array;
}

/** Serialises F32 tensors (in the given order) with optional string metadata. */
export function encodeSafetensors(tensors: Iterable<[string, TensorToWrite]>, metadata: Record<string, string> = {}): Buffer[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (t.data.length !== numel(t.shape)) throw new Error(`${name}: ${t.data.length} values for shape [${t.shape}]`);
    const bytes = t.data.byteLength;
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
    const b = Buffer.from(t.data.buffer, t.data.byteOffset, bytes);
    parts.push(littleEndian ? b : swap32(b));
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // keep the data 8-byte aligned, as HF does
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return [head, Buffer.from(json, 'utf8'), ...parts];
}

/** Writes and fsyncs (atomicity is the caller's: write into a temporary folder, then rename). */
export function writeSafetensors(file: string, tensors: Iterable<[string, TensorToWrite]>, metadata: Record<string, string> = {}): number {
  const fd = openSync(file, 'w');
  let total = 0;
  try {
    for (const b of encodeSafetensors(tensors, metadata)) {
      let off = 0;
      while (off < b.length) off += writeSync(fd, b, off, b.length - off);
      total += b.length;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return total;
}

/** A header's size and entry count limits, checked before it is parsed (the format's own cap is 100 MB). */
export const MAX_HEADER_BYTES = 16 * 2 ** 20;
export const MAX_TENSORS = 65_536;

export function readSafetensors(file: string): SafetensorsFile {
  let buf: Buffer;
  try {
    // A regular file of bounded size: /dev/zero behind a symlink or a FIFO is refused, not read.
    buf = readBounded(file, READ_LIMITS.safetensors);
  } catch (e) {
    const fe = e as FileReadError;
    throw new SafetensorsError(file, fe.code === 'ENOENT' ? 'no such file' : fe.message.startsWith(`${file}: `) ? fe.message.slice(file.length + 2) : fe.message);
  }
  return parseSafetensors(buf, file);
}

export function parseSafetensors(buf: Uint8Array, file: string): SafetensorsFile {
  const fail = (detail: string): never => {
    throw new SafetensorsError(file, detail);
  };
  if (buf.length < 8) fail(`${buf.length} bytes is too short for a safetensors file (the 8-byte header length is missing): the file is truncated or not safetensors`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > buf.length - 8) fail(`the header claims ${headerLen} bytes but the file has ${buf.length - 8} after the length field: the file is truncated or not safetensors`);
  if (headerLen > MAX_HEADER_BYTES) fail(`the header is ${headerLen} bytes, more than the ${MAX_HEADER_BYTES} this reader accepts`);
  const headerText = Buffer.from(buf.buffer, buf.byteOffset + 8, headerLen).toString('utf8');
  const shape = jsonShape(headerText);
  if (shape.objects > MAX_TENSORS + 2) fail(`the header has ${shape.objects} entries, more than the ${MAX_TENSORS} tensors this reader accepts`);
  if (shape.depth > 3) fail(`the header is nested ${shape.depth} levels deep; a safetensors header has 3`);
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    fail(`the header is not valid JSON (${(e as Error).message}): the file is corrupt or not safetensors`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;
  const tensors = new Map<string, StoredTensor>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Object.values(raw).some((v) => typeof v !== 'string')) fail('__metadata__ must map names to strings');
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(`tensor ${name}: entry is not an object`);
    if (typeof e.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, e.dtype)) fail(`tensor ${name}: unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor ${name}: shape ${JSON.stringify(e.shape)} is not a list of sizes`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) fail(`tensor ${name}: data_offsets ${JSON.stringify(off)} is not [begin, end]`);
    const [begin, end] = off as [number, number];
    const shape = e.shape as number[];
    const expected = numel(shape) * DTYPE_BYTES[e.dtype as string]!;
    if (end - begin !== expected) fail(`tensor ${name}: ${end - begin} bytes of data for ${e.dtype} [${shape}], which needs ${expected}`);
    if (end > dataLen) fail(`tensor ${name}: data ends at byte ${end} but the file holds ${dataLen} bytes of data: the file is truncated`);
    spans.push([begin, end, name]);
    tensors.set(name, { dtype: e.dtype as string, shape, bytes: new Uint8Array(buf.buffer, buf.byteOffset + dataStart + begin, end - begin) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) if (spans[i]![0] < spans[i - 1]![1]) fail(`tensors ${spans[i - 1]![2]} and ${spans[i]![2]} overlap`);
  return { tensors, metadata };
}

/** A stored F32, F16 or BF16 tensor as float32 values. */
export function toFloat32(t: StoredTensor, name: string, file: string): Float32Array {
  const n = numel(t.shape);
  const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      return out;
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      return out;
    }
    default:
      throw new SafetensorsError(file, `tensor ${name} is ${t.dtype}; weights must be F32, F16 or BF16`);
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
function swap32(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c.swap32();
  return c;
}
