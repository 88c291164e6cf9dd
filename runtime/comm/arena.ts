// A first-fit allocator over one rank's region of its shared memory. Collective staging areas and the
// "registered" buffers a caller asks for (comm.alloc) come from here. Only the rank's compute thread
// allocates; other threads (the comm thread, the socket I/O thread) are handed offsets.

const ALIGN = 64; // a cache line: staging areas of different ranks never share one

export class Arena {
  /** Free extents as [offset, bytes], sorted by offset, coalesced. */
  private free: Array<[number, number]>;
  private readonly used = new Map<number, number>();
  /**
   * Every buffer object this arena has handed out views on. A WebAssembly.Memory that grows returns a new
   * buffer object from `memory.buffer` (a new SharedArrayBuffer over the same memory), so a view made
   * before the growth is still ours although `view.buffer !== memory.buffer`.
   */
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly base: number,
    readonly bytes: number,
  ) {
    const start = Math.ceil(base / ALIGN) * ALIGN;
    this.free = [[start, base + bytes - start]];
  }

  get bytesInUse(): number {
    let total = 0;
    for (const b of this.used.values()) total += b;
    return total;
  }

  /** Byte offset of a fresh 64-aligned block of at least `bytes` (zero-length gets a 64-byte block). */
  allocBytes(bytes: number): number {
    const want = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const [offset, size] = this.free[i]!;
      if (size < want) continue;
      if (size === want) this.free.splice(i, 1);
      else this.free[i] = [offset + want, size - want];
      this.used.set(offset, want);
      return offset;
    }
    const largest = this.free.reduce((m, [, s]) => Math.max(m, s), 0);
    throw new RangeError(
      `comm arena exhausted: asked for ${want} bytes, largest free block is ${largest} of ${this.bytes}; ` +
        `raise the arena size (launch option arenaBytes / env SCALELM_COMM_ARENA_BYTES) or free registered buffers`,
    );
  }

  freeBytes(offset: number): void {
    const size = this.used.get(offset);
    if (size === undefined) throw new Error(`comm arena: offset ${offset} was not allocated here (double free?)`);
    this.used.delete(offset);
    let i = 0;
    while (i < this.free.length && this.free[i]![0] < offset) i++;
    this.free.splice(i, 0, [offset, size]);
    // Coalesce with the neighbours.
    if (i + 1 < this.free.length && offset + size === this.free[i + 1]![0]) {
      this.free[i]![1] += this.free[i + 1]![1];
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1]![0] + this.free[i - 1]![1] === offset) {
      this.free[i - 1]![1] += this.free[i]![1];
      this.free.splice(i, 1);
    }
  }

  floats(count: number): Float32Array {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return new Float32Array(buffer, this.allocBytes(count * 4), count);
  }

  release(view: Float32Array): void {
    if (!this.buffers.has(view.buffer)) throw new Error('comm arena: this buffer was not allocated by comm.alloc');
    this.freeBytes(view.byteOffset);
  }
}
