// Collectives between worker threads of one process, over the shared-memory world (shm-world.ts).
//
// Every rank can read every peer's memory, so a literal ring would only add steps: the bandwidth-optimal
// schedule here is reduce-scatter + all-gather *through* shared memory (member i reduces part i of the
// buffer from all members' copies, then everybody copies the reduced parts out), which moves the same
// 2(n-1)/n of the buffer per rank as a ring but in 2 synchronisation steps instead of 2(n-1).
// Paths, chosen from the call's size (so every member picks the same one):
//   shm-oneshot   size <= smallBytes: copy in, one barrier, each member reduces the whole buffer itself.
//   shm-chunked   larger: pipelined in chunkBytes steps through double-buffered staging areas.
//   shm-zerocopy  larger, and every member's buffer is registered (comm.alloc): no staging, no copies in
//                 or out; member i reduces part i straight from the peers' buffers into all of them.
// Calls on one group are serialised with per-member arrival counters; the call descriptor (op, count,
// reduce op, root) is published at arrival and compared, so mismatched calls fail on every member before
// any data moves. Reduction order is always member 0, 1, ..., n-1, so every member gets identical bits.

import { groupHash, type Call, type GroupResources, type GroupSpec, type P2PWork } from './backend';
import type { BackendThreadSpec, CommBackend } from './comm';
import { Arena } from './arena';
import { reduceBlocks, reduceKernel, type ReduceKernel } from './simd-kernel';
import { ABORT_WORD, abortError, abortShmWorld, DESC_INTS, GH, GROUP_HEADER_BYTES, M, MEMBER_BYTES, P, P2P_BYTES, rankArena, readAbort, readLayout, type ShmWorldLayout } from './shm-world';
import { chunkRange, CommMismatchError, CommTimeoutError, CommUsageError, describeCall, now, opCode, opName, reduceCode, reduceName, type CallDescriptor, type ReduceOp } from './types';

export interface ShmBackendOptions {
  /** Polls of a flag before sleeping in Atomics.wait. Spinning only pays when every rank has a core. */
  spin?: number;
}

/** Wrap-safe "a >= b" for the monotonic int32 counters. */
const reached = (a: number, b: number) => ((a - b) | 0) >= 0;

class ShmGroup implements GroupResources {
  readonly shareable = null;
  /** Element offsets of members' staging areas, read once they have published them. */
  readonly staging: number[];
  constructor(
    readonly spec: GroupSpec,
    readonly lines: number[],
  ) {
    this.staging = lines.map(() => 0);
  }
}

interface Member {
  /** Element offset of the member's buffer when it is registered (in shared memory), else -1. */
  src: number;
  dst: number;
}

/** What the comm thread needs to rebuild this rank's shm backend. */
export interface ShmThreadSpec {
  memory: WebAssembly.Memory;
  rank: number;
  options: ShmBackendOptions;
}
export function createShmBackend(spec: ShmThreadSpec): ShmBackend {
  return new ShmBackend(spec.memory, spec.rank, spec.options);
}

export class ShmBackend implements CommBackend {
  readonly kind = 'shm' as const;
  readonly worldSize: number;
  readonly layout: ShmWorldLayout;
  readonly arena: Arena;
  private readonly i32: Int32Array;
  private readonly f32: Float32Array;
  private readonly kernel: ReduceKernel;
  private readonly spin: number;
  private readonly chunk: number; // elements
  private readonly small: number; // elements
  private readonly p2pElems: number;

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly rank: number,
    private readonly options: ShmBackendOptions = {},
    arena?: Arena,
  ) {
    this.layout = readLayout(memory);
    this.worldSize = this.layout.worldSize;
    this.arena = arena ?? rankArena(memory, this.layout, rank);
    this.i32 = new Int32Array(memory.buffer);
    this.f32 = new Float32Array(memory.buffer);
    this.kernel = reduceKernel(memory);
    this.spin = options.spin ?? 0;
    this.chunk = this.layout.chunkBytes / 4;
    this.small = Math.floor(this.layout.smallBytes / 4);
    this.p2pElems = this.layout.p2pBytes / 4;
  }

  threadSpec(): BackendThreadSpec {
    return { kind: 'shm', spec: { memory: this.memory, rank: this.rank, options: this.options } satisfies ShmThreadSpec, transfer: [] };
  }

  // ---- groups -------------------------------------------------------------------------------------------

  private lineIndex(groupId: number, member: number): number {
    return (this.layout.groupsBase + groupId * this.layout.groupBlockBytes + GROUP_HEADER_BYTES + member * MEMBER_BYTES) / 4;
  }

  attach(spec: GroupSpec): ShmGroup {
    if (spec.id >= this.layout.maxGroups) {
      throw new CommUsageError(
        `rank ${this.rank}: cannot create process group #${spec.id}: the world was made for ${this.layout.maxGroups} groups (launch option maxGroups)`,
        this.rank,
        'new_group',
        spec.name,
      );
    }
    const block = (this.layout.groupsBase + spec.id * this.layout.groupBlockBytes) / 4;
    const hash = groupHash(spec.ranks);
    const seen = Atomics.compareExchange(this.i32, block + GH.hash, 0, hash);
    if (seen !== 0 && seen !== hash) {
      const error = new CommMismatchError(
        `rank ${this.rank}: process group #${spec.id} is [${spec.ranks.join(',')}] here but another rank created group #${spec.id} ` +
          `with different members: every rank must create groups in the same order`,
        this.rank,
        'new_group',
        spec.name,
      );
      this.abort(error.message);
      throw error;
    }
    const group = new ShmGroup(
      spec,
      spec.ranks.map((_, j) => this.lineIndex(spec.id, j)),
    );
    const mine = group.lines[spec.index]!;
    // Staging: two halves (double buffering), each a data area and a result area of one chunk. A group
    // of one never communicates (the front end copies locally).
    if (spec.ranks.length > 1) Atomics.store(this.i32, mine + M.staging, this.arena.allocBytes(4 * this.chunk * 4) / 4);
    if (spec.id === 0) this.attachMailboxes();
    return group;
  }

  adopt(spec: GroupSpec): ShmGroup {
    return new ShmGroup(
      spec,
      spec.ranks.map((_, j) => this.lineIndex(spec.id, j)),
    );
  }

  private attachMailboxes(): void {
    for (let peer = 0; peer < this.worldSize; peer++) {
      if (peer === this.rank) continue;
      const slot = this.mailbox(this.rank, peer);
      Atomics.store(this.i32, slot + P.buffer, this.arena.allocBytes(this.p2pElems * 4) / 4);
    }
  }

  private mailbox(src: number, dst: number): number {
    return (this.layout.p2pBase + (src * this.worldSize + dst) * P2P_BYTES) / 4;
  }

  private stagingOf(g: ShmGroup, member: number): number {
    let s = g.staging[member]!;
    if (s === 0) {
      s = Atomics.load(this.i32, g.lines[member]! + M.staging);
      g.staging[member] = s;
    }
    return s;
  }
  private dataArea(g: ShmGroup, member: number, gen: number): number {
    return this.stagingOf(g, member) + (gen & 1) * 2 * this.chunk;
  }
  private resultArea(g: ShmGroup, member: number, gen: number): number {
    return this.dataArea(g, member, gen) + this.chunk;
  }

  // ---- failure ------------------------------------------------------------------------------------------

  abort(message: string): void {
    abortShmWorld(this.memory, this.rank, message);
  }

  close(): void {}

  private checkAbort(g: ShmGroup | undefined, op: string): void {
    if (Atomics.load(this.i32, ABORT_WORD) === 0) return;
    throw abortError(readAbort(this.memory)!, this.rank, op, g?.spec.name ?? 'world');
  }

  // ---- waiting ------------------------------------------------------------------------------------------

  /** Blocks until the counter at `index` reaches `target`, or fails (abort, timeout via `onTimeout`). */
  private waitFor(index: number, target: number, timeoutMs: number, onTimeout: () => Error, g: ShmGroup | undefined, op: string): void {
    const i32 = this.i32;
    let v = Atomics.load(i32, index);
    if (reached(v, target)) return;
    for (let s = this.spin; s > 0; s--) {
      v = Atomics.load(i32, index);
      if (reached(v, target)) return;
    }
    const deadline = now() + timeoutMs;
    for (;;) {
      this.checkAbort(g, op);
      const left = deadline - now();
      if (left <= 0) {
        const error = onTimeout();
        this.abort(error.message);
        throw error;
      }
      Atomics.wait(i32, index, v, Math.min(left, 1000));
      v = Atomics.load(i32, index);
      if (reached(v, target)) return;
    }
  }

  // ---- arrival and barriers -------------------------------------------------------------------------------

  /**
   * Enters a call: publishes the descriptor, waits for every member to enter the same call, compares the
   * descriptors. Returns each member's registered buffer offsets.
   */
  private arrive(g: ShmGroup, call: Call, src: number, dst: number, timeoutMs: number): Member[] {
    const { i32 } = this;
    const me = g.spec.index;
    const mine = g.lines[me]!;
    const seq = (Atomics.load(i32, mine + M.seq) + 1) | 0;
    const d = mine + M.desc + (seq & 1) * DESC_INTS;
    i32[d] = opCode(call.desc.op);
    i32[d + 1] = call.desc.count;
    i32[d + 2] = reduceCode(call.desc.reduce);
    i32[d + 3] = call.desc.root;
    i32[d + 4] = src;
    i32[d + 5] = dst;
    Atomics.store(i32, mine + M.seq, seq);
    Atomics.notify(i32, mine + M.seq);
    const members: Member[] = [];
    for (let j = 0; j < g.lines.length; j++) {
      const line = g.lines[j]!;
      if (j !== me) this.waitFor(line + M.seq, seq, timeoutMs, () => this.timeoutError(g, call, seq, 'enter'), g, call.desc.op);
      const pd = line + M.desc + (seq & 1) * DESC_INTS;
      const theirs = readDesc(i32, pd);
      if (theirs.op !== call.desc.op || theirs.count !== call.desc.count || theirs.reduce !== call.desc.reduce || theirs.root !== call.desc.root) {
        const error = new CommMismatchError(
          `rank ${this.rank}: mismatched collective on group ${g.spec.name} (call #${seq}): this rank called ${describeCall(call.desc)} ` +
            `but rank ${g.spec.ranks[j]} called ${describeCall(theirs)}`,
          this.rank,
          call.desc.op,
          g.spec.name,
        );
        this.abort(error.message);
        throw error;
      }
      members.push({ src: i32[pd + 4]!, dst: i32[pd + 5]! });
    }
    return members;
  }

  private barrier(g: ShmGroup, call: Call, timeoutMs: number): void {
    const { i32 } = this;
    const me = g.spec.index;
    const mine = g.lines[me]!;
    const phase = (Atomics.load(i32, mine + M.phase) + 1) | 0;
    Atomics.store(i32, mine + M.phase, phase);
    Atomics.notify(i32, mine + M.phase);
    for (let j = 0; j < g.lines.length; j++) {
      if (j === me) continue;
      const seq = Atomics.load(i32, mine + M.seq);
      this.waitFor(g.lines[j]! + M.phase, phase, timeoutMs, () => this.timeoutError(g, call, seq, 'finish'), g, call.desc.op);
    }
  }

  private nextGen(g: ShmGroup): number {
    const index = g.lines[g.spec.index]! + M.gen;
    const gen = (this.i32[index]! + 1) | 0;
    this.i32[index] = gen;
    return gen;
  }

  private timeoutError(g: ShmGroup, call: Call, seq: number, stage: 'enter' | 'finish'): CommTimeoutError {
    const lagging: string[] = [];
    for (let j = 0; j < g.lines.length; j++) {
      if (j === g.spec.index) continue;
      const line = g.lines[j]!;
      const theirs = Atomics.load(this.i32, line + M.seq);
      const rank = g.spec.ranks[j];
      if (!reached(theirs, seq)) {
        const last = theirs === 0 ? 'it has made no call on this group' : `its last call on this group was #${theirs} ${describeCall(readDesc(this.i32, line + M.desc + (theirs & 1) * DESC_INTS))}`;
        lagging.push(`rank ${rank} has not reached this call (${last})`);
      } else if (stage === 'finish' && theirs === seq) {
        lagging.push(`rank ${rank} entered this call but has not finished its part`);
      }
    }
    const why = lagging.length ? lagging.join('; ') : 'no progress';
    return new CommTimeoutError(`rank ${this.rank}: ${describeCall(call.desc)} on group ${g.spec.name} (call #${seq}) timed out: ${why}`, this.rank, call.desc.op, g.spec.name);
  }

  // ---- data movement helpers --------------------------------------------------------------------------------

  /** Element offset of `buf` in the shared memory, or -1 if it lives on this thread's heap. */
  private registered(buf: Float32Array | null): number {
    return buf !== null && buf.buffer === this.memory.buffer ? buf.byteOffset / 4 : -1;
  }
  /** Copies `count` elements of `buf` from `from` into shared memory at element `to`. */
  private copyIn(buf: Float32Array, from: number, count: number, to: number): void {
    if (count > 0) this.f32.set(buf.subarray(from, from + count), to);
  }
  /** Copies `count` shared elements at `from` into `buf` at `to`. */
  private copyOut(from: number, count: number, buf: Float32Array, to: number): void {
    if (count <= 0) return;
    const at = this.registered(buf);
    if (at >= 0) {
      if (at + to !== from) this.f32.copyWithin(at + to, from, from + count);
    } else {
      buf.set(this.f32.subarray(from, from + count), to);
    }
  }

  private reduceInto(dst: number, srcs: number[], count: number, op: ReduceOp, copies: number[] = [], scratch = false): void {
    reduceBlocks(this.kernel, this.f32, dst, srcs, count, op, copies, scratch);
  }

  // ---- the calls ----------------------------------------------------------------------------------------------

  execute(spec: GroupSpec, resources: GroupResources, call: Call, timeoutMs: number): string {
    const g = resources as ShmGroup;
    this.checkAbort(g, call.desc.op);
    switch (call.desc.op) {
      case 'all_reduce':
        return this.reduceCall(g, call, timeoutMs, true);
      case 'reduce':
        return this.reduceCall(g, call, timeoutMs, false);
      case 'broadcast':
        return this.broadcast(g, call, timeoutMs);
      case 'reduce_scatter':
        return this.reduceScatter(g, call, timeoutMs);
      case 'all_gather':
        return this.gatherCall(g, call, timeoutMs, 'all');
      case 'gather':
        return this.gatherCall(g, call, timeoutMs, 'root');
      case 'scatter':
        return this.scatter(g, call, timeoutMs);
      case 'barrier':
        this.arrive(g, call, -1, -1, timeoutMs);
        return 'shm-arrival';
      case 'send':
      case 'recv':
        return this.p2p(spec, resources, call, timeoutMs).wait();
    }
  }

  /** all-reduce (everyone gets the result) and reduce (only the root does). In place. */
  private reduceCall(g: ShmGroup, call: Call, timeoutMs: number, everyone: boolean): string {
    const buf = call.output!;
    const { count, reduce, root } = call.desc;
    const n = g.lines.length;
    const me = g.spec.index;
    const isDest = everyone || me === root;

    if (count <= this.small) {
      // One step: everybody publishes a copy; each destination reduces the whole buffer itself.
      const gen = this.nextGen(g);
      this.copyIn(buf, 0, count, this.dataArea(g, me, gen));
      this.arrive(g, call, -1, -1, timeoutMs);
      if (isDest && count > 0) {
        const srcs = g.lines.map((_, j) => this.dataArea(g, j, gen));
        const at = this.registered(buf);
        const dst = at >= 0 ? at : this.resultArea(g, me, gen);
        this.reduceInto(dst, srcs, count, reduce);
        if (at < 0) this.copyOut(dst, count, buf, 0);
      }
      return 'shm-oneshot';
    }

    const mine = this.registered(buf);
    let gen = this.nextGen(g);
    if (mine < 0) this.copyIn(buf, 0, Math.min(this.chunk, count), this.dataArea(g, me, gen));
    const members = this.arrive(g, call, mine, mine, timeoutMs);
    const allRegistered = members.every((m) => m.src >= 0);
    if (allRegistered) {
      this.sharedReduce(g, call, members, everyone, gen, timeoutMs);
      return 'shm-zerocopy';
    }
    const step = allRegistered ? count : this.chunk;
    // Destinations written by the reducers directly: registered members (all-reduce) or a registered root.
    const directDests = members.map((m, j) => (m.dst >= 0 && (everyone || j === root) ? m.dst : -1));
    const heapDests = members.some((m, j) => m.dst < 0 && (everyone || j === root));

    for (let c0 = 0; c0 < count; c0 += step) {
      const len = Math.min(step, count - c0);
      if (c0 > 0) {
        gen = this.nextGen(g);
        if (mine < 0) this.copyIn(buf, c0, len, this.dataArea(g, me, gen));
        this.barrier(g, call, timeoutMs);
      }
      const part = chunkRange(len, n, me);
      const plen = part.end - part.start;
      const srcs = members.map((m, j) => (m.src >= 0 ? m.src + c0 : this.dataArea(g, j, gen)) + part.start);
      const copies = directDests.filter((d) => d >= 0).map((d) => d + c0 + part.start);
      if (heapDests) {
        this.reduceInto(this.resultArea(g, me, gen) + part.start, srcs, plen, reduce, copies);
      } else if (directDests[0]! >= 0 && srcs[0] === copies[0]) {
        // Member 0 is a registered destination: reduce in place into its buffer, then copy to the others.
        this.reduceInto(copies[0]!, srcs, plen, reduce, copies);
      } else {
        // Only other members are destinations (a reduce to root >= 1): block-sized scratch, then copies.
        this.reduceInto(this.resultArea(g, me, gen), srcs, plen, reduce, copies, true);
      }
      this.barrier(g, call, timeoutMs);
      if (isDest && mine < 0) {
        for (let j = 0; j < n; j++) {
          const pj = chunkRange(len, n, j);
          this.copyOut(this.resultArea(g, j, gen) + pj.start, pj.end - pj.start, buf, c0 + pj.start);
        }
      }
    }
    return allRegistered ? 'shm-zerocopy' : 'shm-chunked';
  }

  /**
   * The zero-copy reduction, shared out dynamically: members claim blocks from a counter in the group
   * block as they get CPU time, so a member that is descheduled (more ranks than cores, a loaded machine)
   * does not hold the others up — whoever runs does the work. Each block is still reduced in member
   * order, so the result does not depend on who computed it. Every member claims until the counter runs
   * out (exactly one failed claim each), then waits until every block is done: the peers write into its
   * buffer.
   */
  private sharedReduce(g: ShmGroup, call: Call, members: Member[], everyone: boolean, gen: number, timeoutMs: number): void {
    const { i32 } = this;
    const { count, reduce, root } = call.desc;
    const n = members.length;
    const header = (this.layout.groupsBase + g.spec.id * this.layout.groupBlockBytes) / 4;
    const mine = g.lines[g.spec.index]!;
    const claimBase = i32[mine + M.claimBase]!;
    const doneBase = i32[mine + M.doneBase]!;
    const blockElems = 16384;
    const blocks = Math.ceil(count / blockElems);
    const srcs = members.map((m) => m.src);
    const dests = everyone ? members.map((m) => m.dst) : [members[root]!.dst];
    // Reduce in place into member 0's (or 1's) buffer when it is a destination; else through a scratch block.
    const inPlace = dests[0] === srcs[0] || (dests.length === 1 && dests[0] === srcs[1]);
    const scratch = this.resultArea(g, g.spec.index, gen);
    const target = (doneBase + blocks) | 0;
    for (;;) {
      const b = (Atomics.add(i32, header + GH.claim, 1) - claimBase) | 0;
      if (b >= blocks) break;
      const start = b * blockElems;
      const len = Math.min(blockElems, count - start);
      const at = srcs.map((s) => s + start);
      const to = dests.map((d) => d + start);
      if (inPlace) this.reduceInto(to[0]!, at, len, reduce, to);
      else this.reduceInto(scratch, at, len, reduce, to, true);
      if (reached((Atomics.add(i32, header + GH.done, 1) + 1) | 0, target)) Atomics.notify(i32, header + GH.done);
    }
    i32[mine + M.claimBase] = (claimBase + blocks + n) | 0;
    i32[mine + M.doneBase] = target;
    this.waitFor(header + GH.done, target, timeoutMs, () => this.timeoutError(g, call, Atomics.load(i32, mine + M.seq), 'finish'), g, call.desc.op);
  }

  private broadcast(g: ShmGroup, call: Call, timeoutMs: number): string {
    const buf = call.output!;
    const { count, root } = call.desc;
    const me = g.spec.index;
    const small = count <= this.small;
    const mine = small ? -1 : this.registered(buf);
    let gen = this.nextGen(g);
    if (me === root && mine < 0) this.copyIn(buf, 0, Math.min(this.chunk, count), this.dataArea(g, me, gen));
    const members = this.arrive(g, call, mine, -1, timeoutMs);
    const rootBuf = members[root]!.src;
    const step = rootBuf >= 0 ? count : this.chunk;
    for (let c0 = 0; c0 < count; c0 += step) {
      const len = Math.min(step, count - c0);
      if (c0 > 0) {
        gen = this.nextGen(g);
        if (me === root && mine < 0) this.copyIn(buf, c0, len, this.dataArea(g, me, gen));
        this.barrier(g, call, timeoutMs);
      }
      if (me !== root) this.copyOut(rootBuf >= 0 ? rootBuf + c0 : this.dataArea(g, root, gen), len, buf, c0);
    }
    // A registered root's buffer was read in place: it may not change until everyone has it.
    if (rootBuf >= 0) this.barrier(g, call, timeoutMs);
    return small ? 'shm-oneshot' : rootBuf >= 0 ? 'shm-zerocopy' : 'shm-chunked';
  }

  /**
   * Steps of a split call: step k moves sub-range [k*width, (k+1)*width) of every member's part; the staging
   * area holds n sub-ranges, member p's at p*width.
   */
  private splitWidth(count: number, n: number, allRegistered: boolean): { width: number; steps: number } {
    const maxPart = Math.ceil(count / n);
    const width = allRegistered ? Math.max(1, maxPart) : Math.max(1, Math.floor(this.chunk / n));
    return { width, steps: Math.max(1, Math.ceil(maxPart / width)) };
  }

  /** Copies step `k` of every part of `buf` (length count) into member staging at p*width. */
  private copyInParts(buf: Float32Array, count: number, n: number, width: number, k: number, to: number): void {
    for (let p = 0; p < n; p++) {
      const r = chunkRange(count, n, p);
      const a = r.start + k * width;
      this.copyIn(buf, a, Math.min(width, r.end - a), to + p * width);
    }
  }

  private reduceScatter(g: ShmGroup, call: Call, timeoutMs: number): string {
    const input = call.input!;
    const output = call.output!;
    const { count, reduce } = call.desc;
    const n = g.lines.length;
    const me = g.spec.index;
    const small = count <= this.small;
    const mineIn = small ? -1 : this.registered(input);
    const mineOut = this.registered(output);
    const first = this.splitWidth(count, n, false);
    let gen = this.nextGen(g);
    if (mineIn < 0) this.copyInParts(input, count, n, first.width, 0, this.dataArea(g, me, gen));
    const members = this.arrive(g, call, mineIn, -1, timeoutMs);
    const allRegistered = members.every((m) => m.src >= 0);
    const { width, steps } = this.splitWidth(count, n, allRegistered);
    const part = chunkRange(count, n, me);
    for (let k = 0; k < steps; k++) {
      if (k > 0) {
        gen = this.nextGen(g);
        if (mineIn < 0) this.copyInParts(input, count, n, width, k, this.dataArea(g, me, gen));
        this.barrier(g, call, timeoutMs);
      }
      const len = Math.min(width, part.end - part.start - k * width);
      if (len <= 0) continue;
      const srcs = members.map((m, j) => (m.src >= 0 ? m.src + part.start + k * width : this.dataArea(g, j, gen) + me * width));
      if (mineOut >= 0) {
        const dst = mineOut + k * width;
        // An output inside this rank's own input (in-place reduce-scatter) must not be written mid-reduction.
        if (srcs.indexOf(dst) >= 2) this.reduceInto(this.resultArea(g, me, gen), srcs, len, reduce, [dst], true);
        else this.reduceInto(dst, srcs, len, reduce);
      } else {
        const dst = this.resultArea(g, me, gen);
        this.reduceInto(dst, srcs, len, reduce);
        this.copyOut(dst, len, output, k * width);
      }
    }
    const anyRegistered = members.some((m) => m.src >= 0);
    if (anyRegistered) this.barrier(g, call, timeoutMs);
    return small ? 'shm-oneshot' : allRegistered ? 'shm-zerocopy' : 'shm-chunked';
  }

  /** all-gather (everyone assembles the whole buffer) and gather (only the root does). */
  private gatherCall(g: ShmGroup, call: Call, timeoutMs: number, who: 'all' | 'root'): string {
    const input = call.input!;
    const output = call.output;
    const { count, root } = call.desc;
    const n = g.lines.length;
    const me = g.spec.index;
    const small = count <= this.small;
    const mineIn = small ? -1 : this.registered(input);
    const first = this.splitWidth(count, n, false);
    const copyMine = (k: number, width: number, gen: number) => {
      const r = chunkRange(count, n, me);
      this.copyIn(input, k * width, Math.min(width, r.end - r.start - k * width), this.dataArea(g, me, gen));
    };
    let gen = this.nextGen(g);
    if (mineIn < 0) copyMine(0, first.width, gen);
    const members = this.arrive(g, call, mineIn, -1, timeoutMs);
    const allRegistered = members.every((m) => m.src >= 0);
    const { width, steps } = this.splitWidth(count, n, allRegistered);
    const receives = who === 'all' || me === root;
    for (let k = 0; k < steps; k++) {
      if (k > 0) {
        gen = this.nextGen(g);
        if (mineIn < 0) copyMine(k, width, gen);
        this.barrier(g, call, timeoutMs);
      }
      if (!receives) continue;
      for (let p = 0; p < n; p++) {
        const r = chunkRange(count, n, p);
        const len = Math.min(width, r.end - r.start - k * width);
        if (len <= 0) continue;
        const from = members[p]!.src >= 0 ? members[p]!.src + k * width : this.dataArea(g, p, gen);
        this.copyOut(from, len, output!, r.start + k * width);
      }
    }
    if (members.some((m) => m.src >= 0)) this.barrier(g, call, timeoutMs);
    return small ? 'shm-oneshot' : allRegistered ? 'shm-zerocopy' : 'shm-chunked';
  }

  private scatter(g: ShmGroup, call: Call, timeoutMs: number): string {
    const output = call.output!;
    const { count, root } = call.desc;
    const n = g.lines.length;
    const me = g.spec.index;
    const small = count <= this.small;
    const rootIn = me === root && !small ? this.registered(call.input) : -1;
    const first = this.splitWidth(count, n, false);
    let gen = this.nextGen(g);
    if (me === root && rootIn < 0) this.copyInParts(call.input!, count, n, first.width, 0, this.dataArea(g, me, gen));
    const members = this.arrive(g, call, rootIn, -1, timeoutMs);
    const source = members[root]!.src;
    const { width, steps } = this.splitWidth(count, n, source >= 0);
    const part = chunkRange(count, n, me);
    for (let k = 0; k < steps; k++) {
      if (k > 0) {
        gen = this.nextGen(g);
        if (me === root && rootIn < 0) this.copyInParts(call.input!, count, n, width, k, this.dataArea(g, me, gen));
        this.barrier(g, call, timeoutMs);
      }
      const len = Math.min(width, part.end - part.start - k * width);
      if (len <= 0) continue;
      const from = source >= 0 ? source + part.start + k * width : this.dataArea(g, root, gen) + me * width;
      this.copyOut(from, len, output, k * width);
    }
    if (source >= 0) this.barrier(g, call, timeoutMs);
    return small ? 'shm-oneshot' : source >= 0 ? 'shm-zerocopy' : 'shm-chunked';
  }

  // ---- point to point -------------------------------------------------------------------------------------------
  // One mailbox per ordered pair of ranks, with a buffer owned by the sender: a message goes through it in
  // pieces of p2pBytes, each taken by the receiver before the next is put. Pending sends and receives are
  // state machines advanced by every p2p wait of this rank, so isend + irecv exchanges of any size progress
  // on both sides. Two messages on one pair go in the order they were started.

  private readonly active: ShmMessage[] = [];

  p2p(spec: GroupSpec, resources: GroupResources, call: Call, timeoutMs: number): P2PWork {
    const g = resources as ShmGroup;
    const peer = spec.ranks[call.peer]!;
    const send = call.desc.op === 'send';
    const m: ShmMessage = {
      send,
      g,
      call,
      peer,
      slot: send ? this.mailbox(this.rank, peer) : this.mailbox(peer, this.rank),
      buf: (send ? call.input : call.output)!,
      pos: 0,
      pieces: 0,
      done: false,
      error: undefined,
    };
    this.checkAbort(g, call.desc.op);
    this.active.push(m);
    this.progress();
    return {
      test: () => {
        this.progress();
        if (m.error) throw m.error;
        return m.done;
      },
      wait: () => {
        this.waitMessage(m, timeoutMs);
        return 'shm-mailbox';
      },
    };
  }

  /** Advances every pending message as far as the mailboxes allow, without blocking. */
  private progress(): void {
    const busy = new Set<number>();
    for (const m of this.active) {
      // Only the oldest pending message of a mailbox may use it.
      if (m.done || m.error || busy.has(m.slot)) continue;
      busy.add(m.slot);
      try {
        if (m.send) this.stepSend(m);
        else this.stepRecv(m);
      } catch (e) {
        m.error = e as Error;
      }
    }
    for (let k = this.active.length - 1; k >= 0; k--) if (this.active[k]!.done || this.active[k]!.error) this.active.splice(k, 1);
  }

  private stepSend(m: ShmMessage): void {
    const { i32 } = this;
    const slot = m.slot;
    const total = m.buf.length;
    while (!m.done) {
      const posted = Atomics.load(i32, slot + P.posted);
      if (Atomics.load(i32, slot + P.taken) !== posted) return; // the receiver has not taken the last piece
      const len = Math.min(this.p2pElems, total - m.pos);
      this.copyIn(m.buf, m.pos, len, Atomics.load(i32, slot + P.buffer));
      i32[slot + P.total] = total;
      i32[slot + P.tag] = m.call.tag;
      i32[slot + P.pieceStart] = m.pos;
      i32[slot + P.pieceLen] = len;
      Atomics.store(i32, slot + P.posted, (posted + 1) | 0);
      Atomics.notify(i32, slot + P.posted);
      m.pos += len;
      m.pieces++;
      if (m.pos >= total) m.done = true;
    }
  }

  private stepRecv(m: ShmMessage): void {
    const { i32 } = this;
    const slot = m.slot;
    while (!m.done) {
      const taken = Atomics.load(i32, slot + P.taken);
      if (Atomics.load(i32, slot + P.posted) === taken) return; // nothing new
      const total = i32[slot + P.total]!;
      const tag = i32[slot + P.tag]!;
      if (total !== m.buf.length || tag !== m.call.tag) {
        const error = new CommMismatchError(
          `rank ${this.rank}: recv from rank ${m.peer} expected ${m.buf.length} floats with tag ${m.call.tag}, ` + `but rank ${m.peer} sent ${total} floats with tag ${tag}`,
          this.rank,
          'recv',
          m.g.spec.name,
        );
        this.abort(error.message);
        throw error;
      }
      const start = i32[slot + P.pieceStart]!;
      const len = i32[slot + P.pieceLen]!;
      this.copyOut(Atomics.load(i32, slot + P.buffer), len, m.buf, start);
      Atomics.store(i32, slot + P.taken, (taken + 1) | 0);
      Atomics.notify(i32, slot + P.taken);
      m.pos = start + len;
      m.pieces++;
      if (m.pos >= total) m.done = true;
    }
  }

  private waitMessage(m: ShmMessage, timeoutMs: number): void {
    let deadline = now() + timeoutMs;
    let seen = -1;
    for (;;) {
      this.progress();
      if (m.error) throw m.error;
      if (m.done) return;
      this.checkAbort(m.g, m.call.desc.op);
      if (m.pieces !== seen) {
        seen = m.pieces;
        deadline = now() + timeoutMs;
      } else if (now() > deadline) {
        const error = this.p2pTimeout(m, timeoutMs);
        this.abort(error.message);
        throw error;
      }
      // Sleep until the peer touches this message's mailbox; short, because other pending messages
      // (an isend paired with this irecv) also need this thread to advance them.
      const cell = m.slot + (m.send ? P.taken : P.posted);
      Atomics.wait(this.i32, cell, Atomics.load(this.i32, cell), this.active.length > 1 ? 1 : 50);
    }
  }

  private p2pTimeout(m: ShmMessage, timeoutMs: number): CommTimeoutError {
    const what = m.send ? 'send' : 'recv';
    const why = m.send
      ? `rank ${m.peer} has not taken ${m.pieces === 0 ? 'the previous message' : 'the next piece'} (a message longer than the mailbox waits for its receiver)`
      : `rank ${m.peer} has not sent ${m.pieces === 0 ? 'a message' : 'the rest of the message'} to rank ${this.rank}`;
    return new CommTimeoutError(
      `rank ${this.rank}: ${what} ${m.send ? 'to' : 'from'} rank ${m.peer} (${m.buf.length} floats, tag ${m.call.tag}) timed out after ${timeoutMs} ms: ${why}`,
      this.rank,
      what,
      m.g.spec.name,
    );
  }
}

interface ShmMessage {
  send: boolean;
  g: ShmGroup;
  call: Call;
  peer: number;
  slot: number;
  buf: Float32Array;
  pos: number;
  pieces: number;
  done: boolean;
  error: Error | undefined;
}

function readDesc(i32: Int32Array, at: number): CallDescriptor {
  return { op: opName(i32[at]!) as CallDescriptor['op'], count: i32[at + 1]!, reduce: reduceName(i32[at + 2]!), root: i32[at + 3]! };
}
