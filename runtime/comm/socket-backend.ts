// Collectives between processes (one per GPU), over sockets, with the same blocking API as the threads.
//
// Design choice — blocking over sockets: every socket of a process belongs to one I/O worker thread
// (socket-io.ts). The compute thread (and the comm thread, for async calls) posts send/recv requests with
// buffers given as offsets into the process's shared memory, then sleeps in Atomics.wait on the request's
// cell; the I/O thread streams bytes between the sockets and that memory and flips the cell. So a collective
// blocks the calling thread exactly like the shared-memory transport does, works inside a synchronous
// backward function, and keeps moving bytes while the compute thread reduces the previous piece.
//
// Algorithms, chosen by size (every rank computes the same choice from the call descriptor):
//   all-reduce      <= smallBytes: direct (everyone sends to everyone; one step; member-order reduction)
//                   larger: ring reduce-scatter + ring all-gather, pipelined in pieces, in rounds of roundBytes
//   reduce-scatter  direct / ring;  all-gather  direct / ring;  reduce  binomial tree / ring + gather
//   broadcast       binomial tree / pipelined chain;  gather, scatter, barrier, send/recv  direct
// Every frame carries the sender's call descriptor; a receiver compares it with its own, so mismatched calls
// fail on the spot (and abort the world) instead of exchanging garbage.

import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import { Arena } from './arena';
import { groupHash, type Call, type GroupResources, type GroupSpec, type P2PWork } from './backend';
import type { BackendThreadSpec, CommBackend } from './comm';
import { abortError, readAbort, ABORT_WORD } from './shm-world';
import { reduceBlocks, reduceKernel, type ReduceKernel } from './simd-kernel';
import { CMD, collectiveChannel, F, G, GROUP_INTS, GROUPS_AT, MAX_GROUPS, p2pChannel, SLOT_DONE, SLOT_PENDING, SLOTS_AT, SLOTS_PER_CLIENT, type FrameFields, type Reply } from './socket-proto';
import {
  chunkRange,
  CommAbortedError,
  CommError,
  CommMismatchError,
  CommTimeoutError,
  CommUsageError,
  describeCall,
  now,
  opCode,
  opName,
  reduceCode,
  reduceName,
  type CallDescriptor,
  type ReduceOp,
} from './types';

export interface SocketOptions {
  /** Calls up to this size use the one-step direct/tree algorithms. */
  smallBytes?: number;
  /** Ring steps move data in pieces of this size, so reduction overlaps transfer. */
  pieceBytes?: number;
  /** Large calls run in rounds through a work area of this size per group. */
  roundBytes?: number;
  /** Point-to-point messages from plain buffers are staged in pieces of this size. */
  p2pBytes?: number;
}
const DEFAULTS: Required<SocketOptions> = { smallBytes: 64 * 1024, pieceBytes: 256 * 1024, roundBytes: 4 * 2 ** 20, p2pBytes: 1 * 2 ** 20 };

/** Element offsets of one thread's areas for one group. */
interface Areas {
  work: number;
  temp: number;
}

class SocketGroup implements GroupResources {
  readonly hash: number;
  private commThreadAreas: Areas | undefined;
  constructor(
    readonly spec: GroupSpec,
    readonly areas: Areas,
    private readonly allocate?: () => Areas,
  ) {
    this.hash = groupHash(spec.ranks);
  }
  /**
   * The comm thread's areas, allocated (on the compute thread, which owns the arena) when the group's
   * first async call is submitted: the compute thread and the comm thread may run collectives on
   * different groups at the same time, so each has its own.
   */
  get shareable(): Areas {
    this.commThreadAreas ??= this.allocate ? this.allocate() : this.areas;
    return this.commThreadAreas;
  }
}

export interface SocketThreadSpec {
  memory: WebAssembly.Memory;
  rank: number;
  worldSize: number;
  port: MessagePort;
  client: number;
  options: SocketOptions;
}
export function createSocketBackend(spec: SocketThreadSpec): SocketBackend {
  return new SocketBackend(spec.memory, spec.rank, spec.worldSize, spec.port, spec.client, spec.options);
}

/** One call's frame bookkeeping: header fields and per-peer frame counters (the `step` each frame carries). */
interface Ctx {
  g: SocketGroup;
  call: Call;
  seq: number;
  fields: FrameFields;
  sent: Map<number, number>;
  got: Map<number, number>;
  timeoutMs: number;
}

const mod = (a: number, n: number) => ((a % n) + n) % n;

export class SocketBackend implements CommBackend {
  readonly kind = 'socket' as const;
  private readonly i32: Int32Array;
  private readonly f32: Float32Array;
  private readonly kernel: ReduceKernel;
  private readonly opts: Required<SocketOptions>;
  private readonly freeSlots: number[] = [];
  private readonly replies = new Map<number, Reply>();
  private readonly ownArena: Arena | undefined;
  private clients = 1;
  private closedFlag = false;

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly rank: number,
    readonly worldSize: number,
    private readonly port: MessagePort,
    client: number,
    options: SocketOptions = {},
    owner?: { arena: Arena; io: Worker },
  ) {
    this.i32 = new Int32Array(memory.buffer);
    this.f32 = new Float32Array(memory.buffer);
    this.kernel = reduceKernel(memory);
    this.opts = { ...DEFAULTS, ...options };
    this.ownArena = owner?.arena;
    this.io = owner?.io;
    this.ioExited = this.io ? new Promise((resolve) => this.io!.once('exit', () => resolve())) : Promise.resolve();
    const base = SLOTS_AT / 4 + client * SLOTS_PER_CLIENT;
    for (let s = SLOTS_PER_CLIENT - 1; s >= 0; s--) this.freeSlots.push(base + s);
  }
  private readonly io: Worker | undefined;
  private readonly ioExited: Promise<void>;

  /** Resolves once the I/O thread has said goodbye to every peer and exited (after close()). */
  closed(): Promise<void> {
    return this.ioExited;
  }

  get arena(): Arena {
    if (!this.ownArena) throw new Error('internal: the comm thread cannot allocate');
    return this.ownArena;
  }

  threadSpec(): BackendThreadSpec {
    const channel = new MessageChannel();
    this.port.postMessage([CMD.client, channel.port2], [channel.port2]);
    const spec: SocketThreadSpec = { memory: this.memory, rank: this.rank, worldSize: this.worldSize, port: channel.port1, client: this.clients++, options: this.opts };
    return { kind: 'socket', spec, transfer: [channel.port1] };
  }

  // ---- groups ---------------------------------------------------------------------------------------------------

  /**
   * Per group and thread: a work area for plain buffers (one round), and a receive area for one ring step
   * (a part of a round) or for the n copies of a small call.
   */
  private areaSizes(n: number): { work: number; temp: number } {
    const round = Math.floor(this.opts.roundBytes / 4);
    const small = Math.floor(this.opts.smallBytes / 4);
    return { work: Math.max(round, small), temp: Math.max(Math.ceil(round / n) + 1, n * small) };
  }

  attach(spec: GroupSpec): SocketGroup {
    if (spec.id >= MAX_GROUPS) {
      throw new CommUsageError(`rank ${this.rank}: at most ${MAX_GROUPS} process groups`, this.rank, 'new_group', spec.name);
    }
    const hash = groupHash(spec.ranks);
    Atomics.store(this.i32, (GROUPS_AT + spec.id * GROUP_INTS * 4) / 4 + G.hash, hash);
    this.port.postMessage([CMD.group, spec.id, hash]);
    // A group of one never communicates (the front end copies locally): no areas.
    if (spec.ranks.length === 1) return new SocketGroup(spec, { work: 0, temp: 0 });
    const sizes = this.areaSizes(spec.ranks.length);
    const allocate = (): Areas => ({ work: this.arena.allocBytes(sizes.work * 4) / 4, temp: this.arena.allocBytes(sizes.temp * 4) / 4 });
    return new SocketGroup(spec, allocate(), allocate);
  }

  adopt(spec: GroupSpec, shareable: unknown): SocketGroup {
    return new SocketGroup(spec, shareable as Areas);
  }

  // ---- requests to the I/O thread -------------------------------------------------------------------------------

  private post(kind: number, ctx: Ctx, peer: number, offset: number, count: number, step: number): number {
    const slot = this.freeSlots.pop();
    if (slot === undefined) throw new Error('internal: too many socket requests in flight');
    Atomics.store(this.i32, slot, SLOT_PENDING);
    const f = ctx.fields;
    this.port.postMessage([kind, slot, peer, offset * 4, count * 4, f.channel, f.seq, f.op, f.count, f.reduce, f.root, step, f.tag, f.hash]);
    return slot;
  }
  private isend(ctx: Ctx, peer: number, offset: number, count: number): number {
    const step = ctx.sent.get(peer) ?? 0;
    ctx.sent.set(peer, step + 1);
    return this.post(CMD.send, ctx, peer, offset, count, step);
  }
  private irecv(ctx: Ctx, peer: number, offset: number, count: number): number {
    const step = ctx.got.get(peer) ?? 0;
    ctx.got.set(peer, step + 1);
    return this.post(CMD.recv, ctx, peer, offset, count, step);
  }

  private drainReplies(): void {
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const r = m.message as Reply;
      this.replies.set(r.slot, r);
    }
  }

  private checkAbort(ctx: { g: SocketGroup; call: Call }): void {
    if (Atomics.load(this.i32, ABORT_WORD) !== 0) throw abortError(readAbort(this.memory)!, this.rank, ctx.call.desc.op, ctx.g.spec.name);
  }

  /** Blocks until request `slot` completes; turns failures into named errors (and aborts the world). */
  private wait(ctx: Ctx, slot: number, peer: number): void {
    const i32 = this.i32;
    let v = Atomics.load(i32, slot);
    if (v === SLOT_PENDING) {
      const deadline = now() + ctx.timeoutMs;
      for (;;) {
        this.checkAbort(ctx);
        const left = deadline - now();
        if (left <= 0) throw this.timeout(ctx, peer);
        Atomics.wait(i32, slot, SLOT_PENDING, Math.min(left, 1000));
        v = Atomics.load(i32, slot);
        if (v !== SLOT_PENDING) break;
      }
    }
    if (v === SLOT_DONE) {
      this.freeSlots.push(slot);
      return;
    }
    this.drainReplies();
    const reply = this.replies.get(slot);
    this.replies.delete(slot);
    this.checkAbort(ctx);
    const error = reply && 'error' in reply ? reply.error : { kind: 'aborted' as const, message: 'request failed' };
    let e: CommError;
    const where = `${describeCall(ctx.call.desc)} on group ${ctx.g.spec.name} (call #${ctx.seq})`;
    if (error.kind === 'mismatch' && error.theirs) {
      e = new CommMismatchError(`rank ${this.rank}: ${this.describeMismatch(ctx, peer, error.theirs)}`, this.rank, ctx.call.desc.op, ctx.g.spec.name);
    } else if (error.kind === 'left') {
      e = new CommMismatchError(`rank ${this.rank}: ${where}: ${error.message}, but this rank still expects data from it`, this.rank, ctx.call.desc.op, ctx.g.spec.name);
    } else {
      e = new CommAbortedError(`rank ${this.rank}: ${where} failed: ${error.message}`, this.rank, ctx.call.desc.op, ctx.g.spec.name);
    }
    this.abort(e.message);
    throw e;
  }

  private describeMismatch(ctx: Ctx, peer: number, theirs: number[]): string {
    const d = ctx.call.desc;
    const group = ctx.g.spec.name;
    if (theirs[F.hash] !== ctx.fields.hash) {
      return `process group #${ctx.g.spec.id} is [${ctx.g.spec.ranks.join(',')}] here but has different members on rank ${peer}: every rank must create groups in the same order`;
    }
    if (d.op === 'send' || d.op === 'recv') {
      return `recv from rank ${peer} expected ${d.count} floats with tag ${ctx.call.tag}, but rank ${peer} sent ${theirs[F.count]} floats with tag ${theirs[F.tag]}`;
    }
    const other: CallDescriptor = { op: opName(theirs[F.op]!) as CallDescriptor['op'], count: theirs[F.count]!, reduce: reduceName(theirs[F.reduce]!), root: theirs[F.root]! };
    if (describeCall(other) !== describeCall(d) || other.op !== d.op) {
      return `mismatched collective on group ${group} (call #${ctx.seq}): this rank called ${describeCall(d)} but rank ${peer} called ${describeCall(other)}`;
    }
    if (theirs[F.seq] !== ctx.seq) {
      return `mismatched collective on group ${group}: this rank is at call #${ctx.seq} (${describeCall(d)}) but rank ${peer} sent data for its call #${theirs[F.seq]}`;
    }
    return `protocol error on group ${group} (call #${ctx.seq}, ${describeCall(d)}): frame ${theirs[F.step]} from rank ${peer} has ${theirs[F.bytes]} bytes`;
  }

  /** Asks the peers what they are doing on this group, and names the ones holding this call up. */
  private timeout(ctx: Ctx, waitingFor: number): CommTimeoutError {
    const { g, call, seq } = ctx;
    const slot = this.freeSlots.pop()!;
    Atomics.store(this.i32, slot, SLOT_PENDING);
    this.port.postMessage([CMD.probe, slot, g.spec.id]);
    // An abort arriving meanwhile wakes every cell: keep waiting for the probe's own answer.
    const until = now() + 3000;
    while (Atomics.load(this.i32, slot) === SLOT_PENDING && now() < until) Atomics.wait(this.i32, slot, SLOT_PENDING, 100);
    this.drainReplies();
    const reply = this.replies.get(slot);
    this.replies.delete(slot);
    const findings: string[] = [];
    if (reply && 'probe' in reply) {
      for (const a of reply.probe) {
        if (!g.spec.ranks.includes(a.rank)) continue;
        if (!a.answered || !a.progress) {
          findings.push(`rank ${a.rank} does not answer (stuck outside JavaScript, or dead)`);
          continue;
        }
        const [theirSeq, op, count, reduce, root, finished, hash] = a.progress as [number, number, number, number, number, number, number];
        if (hash !== g.hash) {
          findings.push(`process group #${g.spec.id} is [${g.spec.ranks.join(',')}] here but has different members on rank ${a.rank}: every rank must create groups in the same order`);
        } else if (call.desc.op === 'send' || call.desc.op === 'recv') {
          continue;
        } else if (theirSeq < seq) {
          const last =
            theirSeq === 0
              ? 'it has made no call on this group'
              : `its last call on this group was #${theirSeq} ${describeCall({ op: opName(op) as CallDescriptor['op'], count, reduce: reduceName(reduce), root })}${finished === theirSeq ? '' : ', still running'}`;
          findings.push(`rank ${a.rank} has not reached this call (${last})`);
        }
      }
    }
    const p2p = call.desc.op === 'send' || call.desc.op === 'recv';
    const why = findings.length ? findings.join('; ') : p2p ? `rank ${waitingFor} has not sent it` : `no data from rank ${waitingFor}`;
    const what = p2p
      ? `${call.desc.op} ${call.desc.op === 'send' ? 'to' : 'from'} rank ${waitingFor} (${call.desc.count} floats, tag ${call.tag}) on group ${g.spec.name}`
      : `${describeCall(call.desc)} on group ${g.spec.name} (call #${seq})`;
    const e = new CommTimeoutError(`rank ${this.rank}: ${what} timed out after ${ctx.timeoutMs} ms: ${why}`, this.rank, call.desc.op, g.spec.name);
    this.abort(e.message);
    return e;
  }

  /** The I/O thread records the abort and tells every peer. */
  abort(message: string): void {
    this.port.postMessage([CMD.abort, message]);
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    if (this.io) this.port.postMessage([CMD.bye]);
    else this.port.close();
  }

  // ---- helpers ----------------------------------------------------------------------------------------------------

  private registered(buf: Float32Array | null): number {
    return buf !== null && buf.buffer === this.memory.buffer ? buf.byteOffset / 4 : -1;
  }
  private copyIn(buf: Float32Array, from: number, count: number, to: number): void {
    if (count > 0 && this.registered(buf) + from !== to) this.f32.set(buf.subarray(from, from + count), to);
  }
  private copyOut(from: number, count: number, buf: Float32Array, to: number): void {
    if (count <= 0) return;
    const at = this.registered(buf);
    if (at >= 0) {
      if (at + to !== from) this.f32.copyWithin(at + to, from, from + count);
    } else {
      buf.set(this.f32.subarray(from, from + count), to);
    }
  }
  private pieces(len: number): Array<[number, number]> {
    const p = Math.max(1, Math.floor(this.opts.pieceBytes / 4));
    const out: Array<[number, number]> = [];
    for (let o = 0; o < len; o += p) out.push([o, Math.min(p, len - o)]);
    if (out.length === 0) out.push([0, 0]);
    return out;
  }
  private waitAll(ctx: Ctx, slots: Array<[number, number]>): void {
    for (const [slot, peer] of slots) this.wait(ctx, slot, peer);
  }

  // ---- execution ---------------------------------------------------------------------------------------------------

  execute(spec: GroupSpec, resources: GroupResources, call: Call, timeoutMs: number): string {
    const d = call.desc;
    if (d.op === 'send' || d.op === 'recv') return this.p2p(spec, resources, call, timeoutMs).wait();
    const g = resources as SocketGroup;
    // What this rank is doing on the group, for peers' timeout probes (socket-io.ts answers them).
    const cells = (GROUPS_AT + spec.id * GROUP_INTS * 4) / 4;
    const seq = (this.i32[cells + G.seq]! + 1) | 0;
    this.i32[cells + G.op] = opCode(d.op);
    this.i32[cells + G.count] = d.count;
    this.i32[cells + G.reduce] = reduceCode(d.reduce);
    this.i32[cells + G.root] = d.root;
    Atomics.store(this.i32, cells + G.seq, seq);
    const fields: FrameFields = {
      channel: collectiveChannel(spec.id),
      seq,
      op: opCode(d.op),
      count: d.count,
      reduce: reduceCode(d.reduce),
      root: d.root,
      step: 0,
      tag: 0,
      hash: g.hash,
    };
    const ctx: Ctx = { g, call, seq, fields, sent: new Map(), got: new Map(), timeoutMs };
    this.checkAbort(ctx);
    const algorithm = this.run(ctx);
    Atomics.store(this.i32, cells + G.finished, seq);
    return algorithm;
  }

  private run(ctx: Ctx): string {
    const { call } = ctx;
    const small = call.desc.count * 4 <= this.opts.smallBytes;
    switch (call.desc.op) {
      case 'all_reduce':
        return this.allReduce(ctx, small);
      case 'reduce':
        return this.reduce(ctx, small);
      case 'broadcast':
        return this.broadcast(ctx, small);
      case 'reduce_scatter':
        return this.reduceScatter(ctx, small);
      case 'all_gather':
        return this.allGather(ctx, small);
      case 'gather':
        return this.gather(ctx);
      case 'scatter':
        return this.scatter(ctx);
      case 'barrier':
        return this.barrier(ctx);
      case 'send':
      case 'recv':
        throw new Error('internal: point-to-point goes through p2p()');
    }
  }

  /**
   * Runs `body(work, len)` over rounds of a contiguous buffer (at least one, for zero-length calls). A
   * registered buffer is worked on in place when `inPlace`; otherwise each round is copied through the
   * group's work area.
   */
  private rounds(ctx: Ctx, buf: Float32Array, o: { copyIn: boolean; copyOut: boolean; inPlace: boolean }, body: (work: number, len: number) => void): void {
    const count = ctx.call.desc.count;
    const reg = o.inPlace ? this.registered(buf) : -1;
    const round = Math.floor(this.opts.roundBytes / 4);
    for (let r0 = 0; r0 === 0 || r0 < count; r0 += round) {
      const len = Math.min(round, count - r0);
      const work = reg >= 0 ? reg + r0 : ctx.g.areas.work;
      if (o.copyIn && reg < 0) this.copyIn(buf, r0, len, work);
      body(work, len);
      if (o.copyOut && reg < 0) this.copyOut(work, len, buf, r0);
    }
  }

  private partsOf(len: number, n: number): Array<{ start: number; len: number }> {
    return Array.from({ length: n }, (_, p) => {
      const r = chunkRange(len, n, p);
      return { start: r.start, len: r.end - r.start };
    });
  }

  private reduceOp(op: ReduceOp): ReduceOp {
    return op === 'avg' ? 'sum' : op;
  }

  // ---- all-reduce ----------------------------------------------------------------------------------------------------

  private allReduce(ctx: Ctx, small: boolean): string {
    const buf = ctx.call.output!;
    const n = ctx.g.spec.ranks.length;
    if (small) {
      this.rounds(ctx, buf, { copyIn: true, copyOut: true, inPlace: true }, (work, len) => this.directAllReduce(ctx, work, len));
      return 'socket-direct';
    }
    this.rounds(ctx, buf, { copyIn: true, copyOut: true, inPlace: true }, (work, len) => {
      const parts = this.partsOf(len, n);
      this.ringReduceScatter(ctx, work, parts);
      this.ringAllGather(ctx, work, parts);
    });
    return 'socket-ring';
  }

  /** Everyone sends its buffer to everyone, then reduces all n copies in member order. */
  private directAllReduce(ctx: Ctx, work: number, len: number): void {
    const { ranks, index: me } = ctx.g.spec;
    const temp = ctx.g.areas.temp;
    const slots: Array<[number, number]> = [];
    for (let j = 0; j < ranks.length; j++) {
      if (j === me) continue;
      slots.push([this.irecv(ctx, ranks[j]!, temp + j * len, len), ranks[j]!]);
      slots.push([this.isend(ctx, ranks[j]!, work, len), ranks[j]!]);
    }
    this.waitAll(ctx, slots);
    const srcs = ranks.map((_, j) => (j === me ? work : temp + j * len));
    reduceBlocks(this.kernel, this.f32, temp + me * len, srcs, len, ctx.call.desc.reduce);
    if (len > 0) this.f32.copyWithin(work, temp + me * len, temp + (me + 1) * len);
  }

  /** Ring reduce-scatter in the work area: afterwards member i's part i is reduced (divided, for AVG). */
  private ringReduceScatter(ctx: Ctx, work: number, parts: Array<{ start: number; len: number }>): void {
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const left = ranks[mod(me - 1, n)]!,
      right = ranks[mod(me + 1, n)]!;
    const temp = ctx.g.areas.temp;
    const op = this.reduceOp(ctx.call.desc.reduce);
    const sends: Array<[number, number]> = [];
    const first = parts[mod(me - 1, n)]!;
    for (const [o, l] of this.pieces(first.len)) sends.push([this.isend(ctx, right, work + first.start + o, l), right]);
    for (let s = 0; s < n - 1; s++) {
      const part = parts[mod(me - s - 2, n)]!;
      const ps = this.pieces(part.len);
      const recvs = ps.map(([o, l]) => this.irecv(ctx, left, temp + o, l));
      ps.forEach(([o, l], j) => {
        this.wait(ctx, recvs[j]!, left);
        const at = work + part.start + o;
        reduceBlocks(this.kernel, this.f32, at, [at, temp + o], l, op);
        if (s < n - 2) sends.push([this.isend(ctx, right, at, l), right]);
      });
    }
    this.waitAll(ctx, sends);
    if (ctx.call.desc.reduce === 'avg') {
      const mine = parts[me]!;
      if (mine.len) this.kernel.div((work + mine.start) * 4, (work + mine.start) * 4, mine.len, n);
    }
  }

  /** Ring all-gather in the work area: starts with member i's part i, ends with every part everywhere. */
  private ringAllGather(ctx: Ctx, work: number, parts: Array<{ start: number; len: number }>): void {
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const left = ranks[mod(me - 1, n)]!,
      right = ranks[mod(me + 1, n)]!;
    const recvs: Array<Array<[number, number, number]>> = [];
    for (let s = 0; s < n - 1; s++) {
      const part = parts[mod(me - s - 1, n)]!;
      recvs.push(this.pieces(part.len).map(([o, l]) => [this.irecv(ctx, left, work + part.start + o, l), work + part.start + o, l]));
    }
    const sends: Array<[number, number]> = [];
    const own = parts[me]!;
    for (const [o, l] of this.pieces(own.len)) sends.push([this.isend(ctx, right, work + own.start + o, l), right]);
    for (let s = 0; s < n - 1; s++) {
      for (const [slot, at, l] of recvs[s]!) {
        this.wait(ctx, slot, left);
        if (s < n - 2) sends.push([this.isend(ctx, right, at, l), right]);
      }
    }
    this.waitAll(ctx, sends);
  }

  // ---- reduce, broadcast --------------------------------------------------------------------------------------------

  /** Only the root's buffer changes: other ranks work on a copy. */
  private reduce(ctx: Ctx, small: boolean): string {
    const buf = ctx.call.output!;
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const root = ctx.call.desc.root;
    const how = { copyIn: true, copyOut: me === root, inPlace: me === root };
    if (small) {
      this.rounds(ctx, buf, how, (work, len) => this.treeReduce(ctx, work, len));
      return 'socket-tree';
    }
    this.rounds(ctx, buf, how, (work, len) => {
      const parts = this.partsOf(len, n);
      this.ringReduceScatter(ctx, work, parts);
      if (me === root) {
        const slots: Array<[number, number]> = [];
        for (let j = 0; j < n; j++) if (j !== me) slots.push([this.irecv(ctx, ranks[j]!, work + parts[j]!.start, parts[j]!.len), ranks[j]!]);
        this.waitAll(ctx, slots);
      } else {
        this.wait(ctx, this.isend(ctx, ranks[root]!, work + parts[me]!.start, parts[me]!.len), ranks[root]!);
      }
    });
    return 'socket-ring';
  }

  private treeReduce(ctx: Ctx, work: number, len: number): void {
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const root = ctx.call.desc.root;
    const v = mod(me - root, n);
    const temp = ctx.g.areas.temp;
    const op = this.reduceOp(ctx.call.desc.reduce);
    for (let mask = 1; mask < n; mask <<= 1) {
      if (v & mask) {
        const parent = ranks[mod(v - mask + root, n)]!;
        this.wait(ctx, this.isend(ctx, parent, work, len), parent);
        return;
      }
      if (v + mask < n) {
        const child = ranks[mod(v + mask + root, n)]!;
        this.wait(ctx, this.irecv(ctx, child, temp, len), child);
        reduceBlocks(this.kernel, this.f32, work, [work, temp], len, op);
      }
    }
    if (ctx.call.desc.reduce === 'avg' && len) this.kernel.div(work * 4, work * 4, len, n);
  }

  private broadcast(ctx: Ctx, small: boolean): string {
    const buf = ctx.call.output!;
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const root = ctx.call.desc.root;
    const v = mod(me - root, n);
    const how = { copyIn: me === root, copyOut: me !== root, inPlace: true };
    if (small) {
      this.rounds(ctx, buf, how, (work, len) => {
        let mask = 1;
        while (mask < n) {
          if (v & mask) {
            const parent = ranks[mod(v - mask + root, n)]!;
            this.wait(ctx, this.irecv(ctx, parent, work, len), parent);
            break;
          }
          mask <<= 1;
        }
        const sends: Array<[number, number]> = [];
        for (mask >>= 1; mask > 0; mask >>= 1) {
          if (v + mask < n) {
            const child = ranks[mod(v + mask + root, n)]!;
            sends.push([this.isend(ctx, child, work, len), child]);
          }
        }
        this.waitAll(ctx, sends);
      });
      return 'socket-tree';
    }
    // Pipelined chain root -> root+1 -> ... : each piece is forwarded as soon as it lands.
    const prev = ranks[mod(me - 1, n)]!,
      next = ranks[mod(me + 1, n)]!;
    this.rounds(ctx, buf, how, (work, len) => {
      const sends: Array<[number, number]> = [];
      const ps = this.pieces(len);
      if (v === 0) {
        for (const [o, l] of ps) sends.push([this.isend(ctx, next, work + o, l), next]);
      } else {
        const recvs = ps.map(([o, l]) => this.irecv(ctx, prev, work + o, l));
        ps.forEach(([o, l], j) => {
          this.wait(ctx, recvs[j]!, prev);
          if (v < n - 1) sends.push([this.isend(ctx, next, work + o, l), next]);
        });
      }
      this.waitAll(ctx, sends);
    });
    return 'socket-chain';
  }

  // ---- reduce-scatter, all-gather (split buffers, in rounds of sub-parts) ----------------------------------------------

  /** Rounds over sub-ranges of every member's part: round k holds sub-range k of part p at p*width. */
  private splitRounds(ctx: Ctx, body: (k: number, width: number, parts: Array<{ start: number; len: number }>, sub: (p: number) => { from: number; len: number }) => void): void {
    const n = ctx.g.spec.ranks.length;
    const count = ctx.call.desc.count;
    const width = Math.max(1, Math.floor(Math.floor(this.opts.roundBytes / 4) / n));
    const whole = this.partsOf(count, n);
    const maxPart = Math.max(...whole.map((p) => p.len));
    const rounds = Math.max(1, Math.ceil(maxPart / width));
    for (let k = 0; k < rounds; k++) {
      const sub = (p: number) => {
        const from = whole[p]!.start + k * width;
        return { from, len: Math.max(0, Math.min(width, whole[p]!.start + whole[p]!.len - from)) };
      };
      const parts = whole.map((_, p) => ({ start: p * width, len: sub(p).len }));
      body(k, width, parts, sub);
    }
  }

  private reduceScatter(ctx: Ctx, small: boolean): string {
    const input = ctx.call.input!;
    const output = ctx.call.output!;
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const work = ctx.g.areas.work;
    const temp = ctx.g.areas.temp;
    this.splitRounds(ctx, (k, width, parts, sub) => {
      for (let p = 0; p < n; p++) this.copyIn(input, sub(p).from, parts[p]!.len, work + parts[p]!.start);
      const mine = parts[me]!;
      if (small) {
        // Direct: send part p to member p; reduce my part from all members in member order.
        const slots: Array<[number, number]> = [];
        for (let j = 0; j < n; j++) {
          if (j === me) continue;
          slots.push([this.irecv(ctx, ranks[j]!, temp + j * mine.len, mine.len), ranks[j]!]);
          slots.push([this.isend(ctx, ranks[j]!, work + parts[j]!.start, parts[j]!.len), ranks[j]!]);
        }
        this.waitAll(ctx, slots);
        const srcs = ranks.map((_, j) => (j === me ? work + mine.start : temp + j * mine.len));
        reduceBlocks(this.kernel, this.f32, temp + me * mine.len, srcs, mine.len, ctx.call.desc.reduce);
        this.copyOut(temp + me * mine.len, mine.len, output, k * width);
      } else {
        this.ringReduceScatter(ctx, work, parts);
        this.copyOut(work + mine.start, mine.len, output, k * width);
      }
    });
    return small ? 'socket-direct' : 'socket-ring';
  }

  private allGather(ctx: Ctx, small: boolean): string {
    const input = ctx.call.input!;
    const output = ctx.call.output!;
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const work = ctx.g.areas.work;
    this.splitRounds(ctx, (k, width, parts, sub) => {
      const mine = parts[me]!;
      this.copyIn(input, k * width, mine.len, work + mine.start);
      if (small) {
        const slots: Array<[number, number]> = [];
        for (let j = 0; j < n; j++) {
          if (j === me) continue;
          slots.push([this.irecv(ctx, ranks[j]!, work + parts[j]!.start, parts[j]!.len), ranks[j]!]);
          slots.push([this.isend(ctx, ranks[j]!, work + mine.start, mine.len), ranks[j]!]);
        }
        this.waitAll(ctx, slots);
      } else {
        this.ringAllGather(ctx, work, parts);
      }
      for (let p = 0; p < n; p++) this.copyOut(work + parts[p]!.start, parts[p]!.len, output, sub(p).from);
    });
    return small ? 'socket-direct' : 'socket-ring';
  }

  private gather(ctx: Ctx): string {
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const root = ctx.call.desc.root;
    const work = ctx.g.areas.work;
    this.splitRounds(ctx, (k, width, parts, sub) => {
      if (me === root) {
        const slots: Array<[number, number]> = [];
        for (let j = 0; j < n; j++) if (j !== me) slots.push([this.irecv(ctx, ranks[j]!, work + parts[j]!.start, parts[j]!.len), ranks[j]!]);
        this.copyIn(ctx.call.input!, k * width, parts[me]!.len, work + parts[me]!.start);
        this.waitAll(ctx, slots);
        for (let p = 0; p < n; p++) this.copyOut(work + parts[p]!.start, parts[p]!.len, ctx.call.output!, sub(p).from);
      } else {
        this.copyIn(ctx.call.input!, k * width, parts[me]!.len, work);
        this.wait(ctx, this.isend(ctx, ranks[root]!, work, parts[me]!.len), ranks[root]!);
      }
    });
    return 'socket-direct';
  }

  private scatter(ctx: Ctx): string {
    const { ranks, index: me } = ctx.g.spec;
    const n = ranks.length;
    const root = ctx.call.desc.root;
    const work = ctx.g.areas.work;
    this.splitRounds(ctx, (k, width, parts, sub) => {
      if (me === root) {
        for (let p = 0; p < n; p++) this.copyIn(ctx.call.input!, sub(p).from, parts[p]!.len, work + parts[p]!.start);
        const slots: Array<[number, number]> = [];
        for (let j = 0; j < n; j++) if (j !== me) slots.push([this.isend(ctx, ranks[j]!, work + parts[j]!.start, parts[j]!.len), ranks[j]!]);
        this.copyOut(work + parts[me]!.start, parts[me]!.len, ctx.call.output!, k * width);
        this.waitAll(ctx, slots);
      } else {
        this.wait(ctx, this.irecv(ctx, ranks[root]!, work, parts[me]!.len), ranks[root]!);
        this.copyOut(work, parts[me]!.len, ctx.call.output!, k * width);
      }
    });
    return 'socket-direct';
  }

  private barrier(ctx: Ctx): string {
    const { ranks, index: me } = ctx.g.spec;
    const slots: Array<[number, number]> = [];
    for (let j = 0; j < ranks.length; j++) {
      if (j === me) continue;
      slots.push([this.irecv(ctx, ranks[j]!, 0, 0), ranks[j]!]);
      slots.push([this.isend(ctx, ranks[j]!, 0, 0), ranks[j]!]);
    }
    this.waitAll(ctx, slots);
    return 'socket-direct';
  }

  // ---- point to point ---------------------------------------------------------------------------------------------------
  // Every piece is posted to the I/O thread at once, so a message never waits for the receiver's program:
  // the receiving I/O thread reads and buffers frames that arrive before their recv is posted. Messages go
  // in pieces of p2pBytes (framing depends only on the length, so both sides agree).

  p2p(spec: GroupSpec, resources: GroupResources, call: Call, timeoutMs: number): P2PWork {
    const g = resources as SocketGroup;
    const send = call.desc.op === 'send';
    const buf = (send ? call.input : call.output)!;
    const peer = spec.ranks[call.peer]!;
    const fields: FrameFields = {
      channel: p2pChannel(spec.id),
      seq: 0,
      op: opCode('send'),
      count: buf.length,
      reduce: 0,
      root: 0,
      step: 0,
      tag: call.tag,
      hash: g.hash,
    };
    const ctx: Ctx = { g, call, seq: 0, fields, sent: new Map(), got: new Map(), timeoutMs };
    this.checkAbort(ctx);
    const reg = this.registered(buf);
    const temp = reg >= 0 ? -1 : this.arena.allocBytes(buf.length * 4) / 4;
    const at = reg >= 0 ? reg : temp;
    if (send && temp >= 0) this.copyIn(buf, 0, buf.length, temp);
    const piece = Math.max(1, Math.floor(this.opts.p2pBytes / 4));
    const slots: number[] = [];
    for (let o = 0; o === 0 || o < buf.length; o += piece) {
      const l = Math.min(piece, buf.length - o);
      slots.push(send ? this.isend(ctx, peer, at + o, l) : this.irecv(ctx, peer, at + o, l));
    }
    let finished = false;
    const wait = (): string => {
      if (!finished) {
        finished = true;
        try {
          for (const slot of slots) this.wait(ctx, slot, peer);
          if (!send && temp >= 0) this.copyOut(temp, buf.length, buf, 0);
        } finally {
          if (temp >= 0) this.arena.freeBytes(temp * 4);
        }
      }
      return 'socket-p2p';
    };
    return {
      test: () => {
        if (finished) return true;
        if (slots.some((slot) => Atomics.load(this.i32, slot) === SLOT_PENDING)) return false;
        wait();
        return true;
      },
      wait,
    };
  }
}
