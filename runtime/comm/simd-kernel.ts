// The reduction arithmetic of every collective: a WebAssembly SIMD kernel, hand-assembled here.
//
// Why WebAssembly: a plain JS add loop (~0.5 G elements/s) capped all-reduce bus bandwidth near 3.5 GB/s in
// a prototype, a SIMD kernel reached ~85% of memcpy (docs/comm.md). Why hand-assembled: no
// assembler (wabt) at build or run time; the module is ~500 bytes and is emitted below by a tiny encoder
// whose opcode names follow the WebAssembly text format, so each function reads like its WAT.
//
// The module imports the rank's shared memory (`env.mem`, a shared WebAssembly.Memory), so the kernel works
// in place on the buffers collectives exchange: no copy into a private wasm heap. All pointers are byte
// offsets into that memory; counts are float32 elements. Exports:
//   add(dst, a, b, n)   dst[i] = a[i] + b[i]        max(...)/min(...) likewise (IEEE: NaN propagates)
//   div(dst, src, n, d) dst[i] = src[i] / d          (AVG = SUM then divide, exactly as torch does)
// dst may alias a or b (each element is read before it is written).

const I32 = 0x7f,
  F32 = 0x7d,
  V128 = 0x7b;

const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  i32Const: 0x41,
  i32Add: 0x6a,
  i32Shl: 0x74,
  i32GtU: 0x4b,
  f32Load: 0x2a,
  f32Store: 0x38,
  f32Add: 0x92,
  f32Div: 0x95,
  f32Min: 0x96,
  f32Max: 0x97,
} as const;
const simd = { v128Load: 0x00, v128Store: 0x0b, f32x4Splat: 0x13, f32x4Add: 0xe4, f32x4Div: 0xe7, f32x4Min: 0xe8, f32x4Max: 0xe9 } as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => vec([...Buffer.from(s, 'utf8')].map((b) => [b]));
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

const get = (i: number) => [op.localGet, i];
const set = (i: number) => [op.localSet, i];
const i32c = (n: number) => [op.i32Const, ...sleb(n)];
const simdOp = (code: number) => [0xfd, ...uleb(code)];
const v128Load = (offset: number) => [...simdOp(simd.v128Load), 4, ...uleb(offset)];
const v128Store = (offset: number) => [...simdOp(simd.v128Store), 4, ...uleb(offset)];
const addr = (base: number, index: number) => [...get(base), ...get(index), op.i32Add];

/**
 * `while (i + step <= total) { body; i += step }` — with i in local `index`, total bytes in local `total`.
 * br_if 1 leaves the enclosing block; br 0 repeats the loop.
 */
function stride(index: number, total: number, step: number, body: number[]): number[] {
  return [
    ...op.block,
    ...op.loop,
    ...get(index),
    ...i32c(step),
    op.i32Add,
    ...get(total),
    op.i32GtU,
    op.brIf,
    1,
    ...body,
    ...get(index),
    ...i32c(step),
    op.i32Add,
    ...set(index),
    op.br,
    0,
    ...op.end,
    ...op.end,
  ];
}

/** (dst, a, b, n) -> dst[i] = a[i] OP b[i]; 64 bytes per iteration, then 16, then scalar. */
function binaryBody(vectorOp: number, scalarOp: number): number[] {
  const [dst, a, b, n, i, total] = [0, 1, 2, 3, 4, 5];
  const vector = (offset: number) => [...addr(dst, i), ...addr(a, i), ...v128Load(offset), ...addr(b, i), ...v128Load(offset), ...simdOp(vectorOp), ...v128Store(offset)];
  const scalar = [...addr(dst, i), ...addr(a, i), op.f32Load, 2, 0, ...addr(b, i), op.f32Load, 2, 0, scalarOp, op.f32Store, 2, 0];
  const code = [
    ...get(n),
    ...i32c(2),
    op.i32Shl,
    ...set(total),
    ...stride(i, total, 64, [...vector(0), ...vector(16), ...vector(32), ...vector(48)]),
    ...stride(i, total, 16, vector(0)),
    ...stride(i, total, 4, scalar),
    ...op.end,
  ];
  return [...vec([[2, I32]]), ...code];
}

/** (dst, src, n, d: f32) -> dst[i] = src[i] / d. */
function divideBody(): number[] {
  const [dst, src, n, d, i, total, divisor] = [0, 1, 2, 3, 4, 5, 6];
  const vector = (offset: number) => [...addr(dst, i), ...addr(src, i), ...v128Load(offset), ...get(divisor), ...simdOp(simd.f32x4Div), ...v128Store(offset)];
  const scalar = [...addr(dst, i), ...addr(src, i), op.f32Load, 2, 0, ...get(d), op.f32Div, op.f32Store, 2, 0];
  const code = [
    ...get(n),
    ...i32c(2),
    op.i32Shl,
    ...set(total),
    ...get(d),
    ...simdOp(simd.f32x4Splat),
    ...set(divisor),
    ...stride(i, total, 64, [...vector(0), ...vector(16), ...vector(32), ...vector(48)]),
    ...stride(i, total, 16, vector(0)),
    ...stride(i, total, 4, scalar),
    ...op.end,
  ];
  return [
    ...vec([
      [2, I32],
      [1, V128],
    ]),
    ...code,
  ];
}

/** The module's bytes. Exported so a test can check they validate and a build step could snapshot them. */
export function reduceKernelWasm(): Uint8Array<ArrayBuffer> {
  const types = vec([
    [0x60, ...vec([[I32], [I32], [I32], [I32]]), ...vec([])], // (i32 i32 i32 i32) -> ()
    [0x60, ...vec([[I32], [I32], [I32], [F32]]), ...vec([])], // (i32 i32 i32 f32) -> ()
  ]);
  // Shared memory import: flags 0x03 = has maximum + shared. 65536 pages = 4 GiB, the wasm32 limit, so any
  // shared memory the caller made fits.
  const imports = vec([[...str('env'), ...str('mem'), 0x02, 0x03, ...uleb(1), ...uleb(65536)]]);
  const bodies = [binaryBody(simd.f32x4Add, op.f32Add), binaryBody(simd.f32x4Max, op.f32Max), binaryBody(simd.f32x4Min, op.f32Min), divideBody()];
  const functions = vec([[0], [0], [0], [1]]);
  const exports = vec(['add', 'max', 'min', 'div'].map((name, index) => [...str(name), 0x00, ...uleb(index)]));
  const code = vec(bodies.map((body) => [...uleb(body.length), ...body]));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...section(1, types), ...section(2, imports), ...section(3, functions), ...section(7, exports), ...section(10, code)]);
}

type Binary = (dst: number, a: number, b: number, n: number) => void;
export interface ReduceKernel {
  readonly add: Binary;
  readonly max: Binary;
  readonly min: Binary;
  readonly div: (dst: number, src: number, n: number, divisor: number) => void;
}

let compiled: WebAssembly.Module | undefined;

/** Instantiates the kernel over `memory` (which must be a shared WebAssembly.Memory). One per thread. */
export function reduceKernel(memory: WebAssembly.Memory): ReduceKernel {
  compiled ??= new WebAssembly.Module(reduceKernelWasm());
  const instance = new WebAssembly.Instance(compiled, { env: { mem: memory } });
  return instance.exports as unknown as ReduceKernel;
}

const BLOCK = 4096; // elements per reduction block: the accumulator stays in L1 across the sources

/**
 * f32[dst..+count) = reduce(f32[srcs[k]..+count)) over k in order (so every rank that reduces the same
 * sources gets identical bits), block by block; each finished block is then copied to every `copies`
 * offset. dst may alias srcs[0] or srcs[1] (the first pass reads both before writing), not a later source.
 * With `scratch`, dst is a one-block scratch area reused for every block (results only reach `copies`);
 * then a copy target may alias its own member's source, because a block is read completely before any
 * of it is written. Offsets are in elements.
 */
export function reduceBlocks(
  k: ReduceKernel,
  f32: Float32Array,
  dst: number,
  srcs: readonly number[],
  count: number,
  op: 'sum' | 'max' | 'min' | 'avg',
  copies: readonly number[] = [],
  scratch = false,
): void {
  const f = op === 'max' ? k.max : op === 'min' ? k.min : k.add;
  const n = srcs.length;
  for (let b = 0; b < count; b += BLOCK) {
    const len = Math.min(BLOCK, count - b);
    const at = scratch ? dst : dst + b;
    const d = at * 4;
    if (n === 1) {
      if (srcs[0]! + b !== at) f32.copyWithin(at, srcs[0]! + b, srcs[0]! + b + len);
    } else {
      f(d, (srcs[0]! + b) * 4, (srcs[1]! + b) * 4, len);
      for (let s = 2; s < n; s++) f(d, d, (srcs[s]! + b) * 4, len);
    }
    if (op === 'avg') k.div(d, d, len, n);
    for (const c of copies) if (c + b !== at) f32.copyWithin(c + b, at, at + len);
  }
}

/** Elements in a reduction block (a scratch area for reduceBlocks must hold this many). */
export const REDUCE_BLOCK = BLOCK;
