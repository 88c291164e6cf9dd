// The front end every rank uses: a Comm (one per rank) and its ProcessGroups, the torch.distributed of
// ScaleLM. Argument checks, groups of one, accounting and async handles live here; moving bytes is the
// backend's job (shm-backend.ts between threads, socket-backend.ts between processes).
//
// Blocking calls run on the calling thread and block it (Atomics.wait), so they work inside a synchronous
// backward function of a worker. Async collectives (`*Async`) run on the rank's comm thread — a worker
// started on first use, like a CUDA communication stream — and return a Work whose wait() blocks until
// done, so gradient reduction overlaps the rest of the backward pass. They run in issue order; a blocking
// collective on a group first waits for that group's pending async ones, so every rank sees one order per
// group. isend/irecv progress on the calling thread (every p2p wait advances all pending messages), so an
// exchange of isend + irecv cannot deadlock. Buffers given to an async call must not be touched until
// wait() returns.
// Buffers from comm.alloc() live in shared memory ("registered"): collectives use them without the copy
// in and out that a plain Float32Array needs, and async calls need no temporary.

import type { Backend, Call, GroupResources, GroupSpec } from './backend';
import type { Arena } from './arena';
import { AsyncEngine, type AsyncSubmission } from './async-engine';
import { CallLog, type OpTotals } from './records';
import { meshCoords, meshGroups, resolveMesh, type MeshCoords, type MeshShape } from './mesh';
import { ABORT_WORD, LAUNCHER_ORIGIN, readAbort } from './shm-world';
import { chunkRange, CommUsageError, now, REDUCE_OPS, type CallDescriptor, type CallRecord, type OpName, type ReduceOp } from './types';

export interface CommOptions {
  /** A wait that makes no progress for this long fails the call (and aborts the world). */
  timeoutMs?: number;
  /** Records kept for telemetry (a ring; older ones are dropped). */
  recordCapacity?: number;
}

/** The descriptor the comm thread needs to build its own backend for this rank. */
export interface BackendThreadSpec {
  kind: 'shm' | 'socket';
  /** Structured-cloneable data from which comm-thread.ts rebuilds the backend. */
  spec: unknown;
  transfer: import('node:worker_threads').TransferListItem[];
}

export interface CommBackend extends Backend {
  readonly arena: Arena;
  /** How the comm thread rebuilds this backend (called once, when the first async call is made). */
  threadSpec(): BackendThreadSpec;
}

/** The handle of an async call. */
export interface Work {
  readonly op: OpName;
  /** Blocks until the call completes; throws its error if it failed. Idempotent. */
  wait(): void;
  /** True once complete (throws its error if it failed); never blocks. */
  test(): boolean;
}

const DEFAULT_TIMEOUT_MS = 120_000;

export class Comm {
  readonly rank: number;
  readonly size: number;
  readonly world: ProcessGroup;
  readonly timeoutMs: number;
  /** @internal */ readonly log: CallLog;
  /** @internal Async works not yet known to be complete, by ordering key (see ProcessGroup.key). */
  readonly pending = new Map<string, Work[]>();
  private nextGroupId = 0;
  private engine: AsyncEngine | undefined;
  private closed = false;

  constructor(
    readonly backend: CommBackend,
    options: CommOptions = {},
  ) {
    this.rank = backend.rank;
    this.size = backend.worldSize;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.log = new CallLog(options.recordCapacity);
    this.world = this.newGroup(
      Array.from({ length: this.size }, (_, r) => r),
      'world',
    )!;
  }

  get transport(): 'shm' | 'socket' {
    return this.backend.kind;
  }

  /**
   * A sub-group of the world. Every rank must call newGroup with the same lists in the same order (as
   * torch.distributed.new_group), members or not; non-members get undefined.
   */
  newGroup(ranks: readonly number[], name?: string): ProcessGroup | undefined {
    const sorted = [...new Set(ranks)].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.length !== ranks.length || sorted.some((r) => !Number.isInteger(r) || r < 0 || r >= this.size)) {
      throw new CommUsageError(`rank ${this.rank}: newGroup([${ranks.join(',')}]) needs distinct ranks in 0..${this.size - 1}`, this.rank, 'new_group', String(name));
    }
    const id = this.nextGroupId++;
    const index = sorted.indexOf(this.rank);
    if (index < 0) return undefined;
    const spec: GroupSpec = { id, ranks: sorted, index, name: name ?? `[${sorted.join(',')}]` };
    return new ProcessGroup(this, spec, this.backend.attach(spec));
  }

  /**
   * The TP, DP and PP groups of a device mesh in Megatron's order (tp fastest, then dp, then pp), created
   * on every rank in the same order. dp defaults to size / (tp * pp).
   */
  mesh(shape: Partial<MeshShape>): { shape: MeshShape; coords: MeshCoords; tp: ProcessGroup; dp: ProcessGroup; pp: ProcessGroup } {
    const resolved = resolveMesh(this.size, shape);
    const all = meshGroups(resolved);
    const mine = {} as Record<'tp' | 'dp' | 'pp', ProcessGroup>;
    for (const kind of ['tp', 'dp', 'pp'] as const) {
      all[kind].forEach((ranks, i) => {
        const g = this.newGroup(ranks, `${kind}${i}[${ranks.join(',')}]`);
        if (g) mine[kind] = g;
      });
    }
    return { shape: resolved, coords: meshCoords(this.rank, resolved), ...mine };
  }

  /** A Float32Array in this rank's shared memory ("registered"): collectives use it without copies. */
  alloc(count: number): Float32Array {
    return this.backend.arena.floats(count);
  }
  free(buf: Float32Array): void {
    this.backend.arena.release(buf);
  }
  isRegistered(buf: Float32Array): boolean {
    return buf.buffer === this.backend.memory.buffer;
  }

  /** Records not yet taken (telemetry drains them); `dropped` counts those lost to the ring's capacity. */
  takeRecords(): { records: CallRecord[]; dropped: number } {
    this.drainEngine();
    return this.log.take();
  }
  /** The most recent records (up to the capacity), without draining. */
  records(): CallRecord[] {
    this.drainEngine();
    return this.log.recent();
  }
  totals(): Record<OpName, OpTotals> {
    this.drainEngine();
    return this.log.totals();
  }

  /** Why the world was aborted (by which rank), or undefined while it is healthy. Never blocks. */
  abortReason(): string | undefined {
    const header = new Int32Array(this.backend.memory.buffer, 0, 16);
    if (Atomics.load(header, ABORT_WORD) === 0) return undefined;
    const record = readAbort(this.backend.memory)!;
    return `${record.origin === LAUNCHER_ORIGIN ? 'the launcher' : `rank ${record.origin}`}: ${record.message}`;
  }

  /** Fail every rank's pending and future calls with `message` (e.g. after a local error). */
  abort(message: string): void {
    this.backend.abort(message);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.engine?.close();
    this.backend.close();
  }

  /** @internal */
  asyncEngine(): AsyncEngine {
    this.engine ??= new AsyncEngine(this.backend, this.log);
    return this.engine;
  }
  private drainEngine(): void {
    this.engine?.drain();
  }
}

/** Completed (successfully or not) without throwing: failures surface in the caller's own wait(). */
function settled(w: Work): boolean {
  try {
    return w.test();
  } catch {
    return true;
  }
}

export class ProcessGroup {
  readonly size: number;
  /** This rank's index in the group. */
  readonly rank: number;
  readonly ranks: readonly number[];
  readonly name: string;
  /** @internal */
  constructor(
    private readonly comm: Comm,
    readonly spec: GroupSpec,
    private readonly resources: GroupResources,
  ) {
    this.size = spec.ranks.length;
    this.rank = spec.index;
    this.ranks = spec.ranks;
    this.name = spec.name;
  }

  /** The part of a buffer of `length` that member `index` owns in reduce-scatter / all-gather / scatter / gather. */
  chunk(length: number, index = this.rank): { start: number; end: number } {
    return chunkRange(length, this.size, index);
  }

  // ---- blocking -------------------------------------------------------------------------------------------------

  broadcast(buf: Float32Array, root = 0): void {
    this.run(this.prepBroadcast(buf, root));
  }
  reduce(buf: Float32Array, root = 0, op: ReduceOp = 'sum'): void {
    this.run(this.prepReduce(buf, root, op));
  }
  allReduce(buf: Float32Array, op: ReduceOp = 'sum'): void {
    this.run(this.prepAllReduce(buf, op));
  }
  /** output = this rank's part (see chunk()) of the reduction of every member's input. */
  reduceScatter(output: Float32Array, input: Float32Array, op: ReduceOp = 'sum'): void {
    this.run(this.prepReduceScatter(output, input, op));
  }
  /** output = concatenation of every member's input (member i's input is its chunk() of output). */
  allGather(output: Float32Array, input: Float32Array): void {
    this.run(this.prepAllGather(output, input));
  }
  /** The root's input is split by chunk(); each member receives its part. `total` defaults to output.length * size. */
  scatter(output: Float32Array, input: Float32Array | null, root = 0, total?: number): void {
    this.run(this.prepScatter(output, input, root, total));
  }
  /** Each member's input lands at its chunk() of the root's output. `total` defaults to input.length * size. */
  gather(input: Float32Array, output: Float32Array | null, root = 0, total?: number): void {
    this.run(this.prepGather(input, output, root, total));
  }
  barrier(): void {
    this.run(this.prep('barrier', 0, 'sum', 0, null, null));
  }
  /** Messages between a pair are received in the order sent; tags must match (no reordering by tag). */
  send(buf: Float32Array, dst: number, tag = 0): void {
    this.run(this.prepP2P('send', buf, dst, tag));
  }
  recv(buf: Float32Array, src: number, tag = 0): void {
    this.run(this.prepP2P('recv', buf, src, tag));
  }

  // ---- async ----------------------------------------------------------------------------------------------------

  broadcastAsync(buf: Float32Array, root = 0): Work {
    return this.submit(this.prepBroadcast(buf, root));
  }
  reduceAsync(buf: Float32Array, root = 0, op: ReduceOp = 'sum'): Work {
    return this.submit(this.prepReduce(buf, root, op));
  }
  allReduceAsync(buf: Float32Array, op: ReduceOp = 'sum'): Work {
    return this.submit(this.prepAllReduce(buf, op));
  }
  reduceScatterAsync(output: Float32Array, input: Float32Array, op: ReduceOp = 'sum'): Work {
    return this.submit(this.prepReduceScatter(output, input, op));
  }
  allGatherAsync(output: Float32Array, input: Float32Array): Work {
    return this.submit(this.prepAllGather(output, input));
  }
  scatterAsync(output: Float32Array, input: Float32Array | null, root = 0, total?: number): Work {
    return this.submit(this.prepScatter(output, input, root, total));
  }
  gatherAsync(input: Float32Array, output: Float32Array | null, root = 0, total?: number): Work {
    return this.submit(this.prepGather(input, output, root, total));
  }
  barrierAsync(): Work {
    return this.submit(this.prep('barrier', 0, 'sum', 0, null, null));
  }
  isend(buf: Float32Array, dst: number, tag = 0): Work {
    return this.submit(this.prepP2P('send', buf, dst, tag));
  }
  irecv(buf: Float32Array, src: number, tag = 0): Work {
    return this.submit(this.prepP2P('recv', buf, src, tag));
  }

  // ---- argument checks ------------------------------------------------------------------------------------------

  private usage(op: OpName, message: string): CommUsageError {
    return new CommUsageError(`rank ${this.comm.rank}: ${op} on group ${this.name}: ${message}`, this.comm.rank, op, this.name);
  }
  private checkRoot(op: OpName, root: number): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) {
      throw this.usage(op, `root ${root} is not a member index (0..${this.size - 1}; roots are indices within the group)`);
    }
  }
  private checkReduceOp(op: OpName, reduce: ReduceOp): void {
    if (!REDUCE_OPS.includes(reduce)) throw this.usage(op, `unknown reduce op "${String(reduce)}"; use one of ${REDUCE_OPS.join(', ')}`);
  }
  private checkPart(op: OpName, what: string, buf: Float32Array, total: number): void {
    const { start, end } = this.chunk(total);
    if (buf.length !== end - start) {
      throw this.usage(op, `${what} has ${buf.length} elements but member ${this.rank}'s part of ${total} is ${end - start} ` + `(parts are split like numpy.array_split; see group.chunk())`);
    }
  }

  private prep(op: OpName, count: number, reduce: ReduceOp, root: number, input: Float32Array | null, output: Float32Array | null, peer = -1, tag = 0): Call {
    const desc: CallDescriptor = { op, count, reduce, root };
    return { desc, input, output, peer, tag };
  }
  private prepBroadcast(buf: Float32Array, root: number): Call {
    this.checkRoot('broadcast', root);
    return this.prep('broadcast', buf.length, 'sum', root, buf, buf);
  }
  private prepReduce(buf: Float32Array, root: number, op: ReduceOp): Call {
    this.checkRoot('reduce', root);
    this.checkReduceOp('reduce', op);
    return this.prep('reduce', buf.length, op, root, buf, buf);
  }
  private prepAllReduce(buf: Float32Array, op: ReduceOp): Call {
    this.checkReduceOp('all_reduce', op);
    return this.prep('all_reduce', buf.length, op, 0, buf, buf);
  }
  private prepReduceScatter(output: Float32Array, input: Float32Array, op: ReduceOp): Call {
    this.checkReduceOp('reduce_scatter', op);
    this.checkPart('reduce_scatter', 'output', output, input.length);
    return this.prep('reduce_scatter', input.length, op, 0, input, output);
  }
  private prepAllGather(output: Float32Array, input: Float32Array): Call {
    this.checkPart('all_gather', 'input', input, output.length);
    return this.prep('all_gather', output.length, 'sum', 0, input, output);
  }
  private prepScatter(output: Float32Array, input: Float32Array | null, root: number, total?: number): Call {
    this.checkRoot('scatter', root);
    const isRoot = this.rank === root;
    if (isRoot && !input) throw this.usage('scatter', 'the root must pass the input to scatter');
    const count = isRoot ? input!.length : (total ?? output.length * this.size);
    if (isRoot && total !== undefined && total !== count) throw this.usage('scatter', `total ${total} differs from the root's input length ${count}`);
    this.checkPart('scatter', 'output', output, count);
    return this.prep('scatter', count, 'sum', root, isRoot ? input : null, output);
  }
  private prepGather(input: Float32Array, output: Float32Array | null, root: number, total?: number): Call {
    this.checkRoot('gather', root);
    const isRoot = this.rank === root;
    if (isRoot && !output) throw this.usage('gather', 'the root must pass the output to gather into');
    const count = isRoot ? output!.length : (total ?? input.length * this.size);
    if (isRoot && total !== undefined && total !== count) throw this.usage('gather', `total ${total} differs from the root's output length ${count}`);
    this.checkPart('gather', 'input', input, count);
    return this.prep('gather', count, 'sum', root, input, isRoot ? output : null);
  }
  private prepP2P(op: 'send' | 'recv', buf: Float32Array, peer: number, tag: number): Call {
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.size || peer === this.rank) {
      throw this.usage(op, `peer ${peer} must be another member index (0..${this.size - 1}, not ${this.rank})`);
    }
    if (!Number.isInteger(tag) || tag < 0 || tag > 0x7fffffff) throw this.usage(op, `tag ${tag} must be a whole number >= 0`);
    return this.prep(op, buf.length, 'sum', 0, op === 'send' ? buf : null, op === 'recv' ? buf : null, peer, tag);
  }

  // ---- execution --------------------------------------------------------------------------------------------------

  private run(call: Call): void {
    const op = call.desc.op;
    if (op === 'send' || op === 'recv') {
      const start = now();
      const algorithm = this.comm.backend.p2p(this.spec, this.resources, call, this.comm.timeoutMs).wait();
      this.comm.log.add(op, this.name, call.desc.count * 4, start, now(), algorithm);
      return;
    }
    // Collectives of a group run in issue order: first finish the async ones still in flight.
    const key = `c${this.spec.id}`;
    const pending = this.comm.pending;
    const before = pending.get(key);
    if (before) {
      pending.delete(key);
      for (const w of before) w.wait();
    }
    const start = now();
    const algorithm = this.size === 1 ? this.local(call) : this.comm.backend.execute(this.spec, this.resources, call, this.comm.timeoutMs);
    this.comm.log.add(op, this.name, call.desc.count * 4, start, now(), algorithm);
  }

  /** A group of one: every call is a local copy (or nothing). */
  private local(call: Call): string {
    const { input, output } = call;
    if (input && output && input !== output) output.set(input.subarray(0, output.length));
    return 'local';
  }

  private submit(call: Call): Work {
    const op = call.desc.op;
    if (op === 'send' || op === 'recv') return this.submitP2P(call);
    if (this.size === 1) {
      this.run(call);
      return { op, wait: () => {}, test: () => true };
    }
    const key = `c${this.spec.id}`;
    const pending = this.comm.pending;
    const list = pending.get(key) ?? [];
    const submission: AsyncSubmission = { spec: this.spec, shareable: this.resources.shareable, call, timeoutMs: this.comm.timeoutMs };
    const work = this.comm.asyncEngine().submit(submission, this.name);
    // Forget completed works so the list does not grow without bound.
    const live = list.filter((w) => !settled(w));
    live.push(work);
    pending.set(key, live);
    return work;
  }

  /** Point-to-point messages progress on this thread (never on the comm thread): see Backend.p2p. */
  private submitP2P(call: Call): Work {
    const start = now();
    const p2p = this.comm.backend.p2p(this.spec, this.resources, call, this.comm.timeoutMs);
    const op = call.desc.op;
    let recorded = false;
    const record = (algorithm: string) => {
      if (recorded) return;
      recorded = true;
      this.comm.log.add(op, this.name, call.desc.count * 4, start, now(), algorithm);
    };
    return {
      op,
      wait: () => record(p2p.wait()),
      test: () => {
        if (!p2p.test()) return false;
        record(p2p.wait());
        return true;
      },
    };
  }
}
