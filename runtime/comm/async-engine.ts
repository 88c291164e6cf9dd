// Async calls: the rank's comm thread. The compute thread posts a call (buffers already in shared memory:
// registered ones as they are, plain ones copied into a temporary), the comm thread runs it with its own
// backend instance, posts the result on a MessagePort and flips a completion cell in shared memory. Work.wait()
// sleeps on that cell with Atomics.wait and reads the result with receiveMessageOnPort, so it works on a
// thread whose event loop is blocked (inside a synchronous backward pass).

import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { join } from 'node:path';
import type { Call, GroupSpec } from './backend';
import type { CommBackend, Work } from './comm';
import type { CallLog } from './records';
import { CommAbortedError, CommUsageError, reviveError, type CallDescriptor, type OpName, type SerializedError } from './types';

export interface AsyncSubmission {
  spec: GroupSpec;
  shareable: unknown;
  call: Call;
  timeoutMs: number;
}

/** What crosses to the comm thread for one call. Buffers are [byteOffset, length] in the shared memory. */
export interface CommThreadCall {
  id: number;
  cell: number;
  spec: GroupSpec;
  shareable: unknown;
  desc: CallDescriptor;
  input: [number, number] | null;
  output: [number, number] | null;
  peer: number;
  tag: number;
  timeoutMs: number;
}
export type CommThreadResult = { id: number; algorithm: string; start: number; end: number } | { id: number; error: SerializedError };

const CELLS = 1024; // completion cells; cell 0 says whether the comm thread is alive
const PENDING = 0,
  DONE = 1,
  FAILED = 2,
  THREAD_GONE = 1;

export class AsyncEngine {
  private readonly worker: Worker;
  private readonly results: MessagePort;
  private readonly cells: Int32Array;
  private readonly cellsOffset: number;
  private readonly freeCells: number[] = [];
  private readonly finished = new Map<number, CommThreadResult>();
  private readonly works = new Map<number, AsyncWork>();
  private nextId = 1;

  get memory(): WebAssembly.Memory {
    return this.backend.memory;
  }
  get rank(): number {
    return this.backend.rank;
  }

  constructor(
    private readonly backend: CommBackend,
    private readonly log: CallLog,
  ) {
    this.cellsOffset = backend.arena.allocBytes(CELLS * 4);
    this.cells = new Int32Array(backend.memory.buffer, this.cellsOffset, CELLS);
    this.cells.fill(0);
    for (let c = CELLS - 1; c >= 1; c--) this.freeCells.push(c);
    const channel = new MessageChannel();
    this.results = channel.port1;
    this.results.unref();
    const thread = backend.threadSpec();
    this.worker = new Worker(join(__dirname, 'comm-thread.js'), {
      workerData: { kind: thread.kind, spec: thread.spec, memory: backend.memory, cellsOffset: this.cellsOffset, cells: CELLS, results: channel.port2 },
      transferList: [channel.port2, ...thread.transfer],
    });
    this.worker.unref();
  }

  submit(sub: AsyncSubmission, groupName: string): Work {
    const cell = this.freeCells.pop();
    if (cell === undefined) throw new CommUsageError(`more than ${CELLS - 1} async calls in flight; wait() some`, this.backend.rank, sub.call.desc.op, groupName);
    const { call } = sub;
    const arena = this.backend.arena;
    const temps: number[] = [];
    const place = (buf: Float32Array | null, copyIn: boolean): [number, number] | null => {
      if (!buf) return null;
      if (buf.buffer === this.backend.memory.buffer) return [buf.byteOffset, buf.length];
      const offset = arena.allocBytes(buf.length * 4);
      temps.push(offset);
      if (copyIn && buf.length) new Float32Array(this.backend.memory.buffer, offset, buf.length).set(buf);
      return [offset, buf.length];
    };
    const input = place(call.input, true);
    const output = call.output === call.input ? input : place(call.output, false);
    const id = this.nextId++;
    Atomics.store(this.cells, cell, PENDING);
    const message: CommThreadCall = {
      id,
      cell: this.cellsOffset / 4 + cell,
      spec: sub.spec,
      shareable: sub.shareable,
      desc: call.desc,
      input,
      output,
      peer: call.peer,
      tag: call.tag,
      timeoutMs: sub.timeoutMs,
    };
    this.worker.postMessage(message);
    const work = new AsyncWork(this, id, cell, call, output, temps, groupName);
    this.works.set(id, work);
    return work;
  }

  /** Blocks until `cell` leaves PENDING. */
  waitCell(cell: number): number {
    for (;;) {
      const v = Atomics.load(this.cells, cell);
      if (v !== PENDING) return v;
      if (Atomics.load(this.cells, 0) === THREAD_GONE) return FAILED;
      Atomics.wait(this.cells, cell, PENDING, 1000);
    }
  }
  peekCell(cell: number): number {
    return Atomics.load(this.cells, cell);
  }

  /** Reads every result the comm thread has posted; records them in the call log. */
  drain(): void {
    for (let m = receiveMessageOnPort(this.results); m; m = receiveMessageOnPort(this.results)) {
      const result = m.message as CommThreadResult;
      this.finished.set(result.id, result);
      const work = this.works.get(result.id);
      if (work && 'algorithm' in result) this.log.add(work.op, work.groupName, work.call.desc.count * 4, result.start, result.end, result.algorithm);
    }
  }

  /** @internal */
  result(id: number): CommThreadResult | undefined {
    this.drain();
    const r = this.finished.get(id);
    if (r) {
      this.finished.delete(id);
      this.works.delete(id);
    }
    return r;
  }

  /** @internal */
  release(cell: number, temps: number[]): void {
    for (const t of temps) this.backend.arena.freeBytes(t);
    this.freeCells.push(cell);
  }

  close(): void {
    this.worker.postMessage('close');
    void this.worker.terminate();
  }
}

class AsyncWork implements Work {
  readonly op: OpName;
  private state: 'pending' | 'done' | 'failed' = 'pending';
  private error: Error | undefined;

  constructor(
    private readonly engine: AsyncEngine,
    private readonly id: number,
    private readonly cell: number,
    readonly call: Call,
    private readonly placed: [number, number] | null,
    private readonly temps: number[],
    readonly groupName: string,
  ) {
    this.op = call.desc.op;
  }

  wait(): void {
    if (this.state === 'pending') this.finish(this.engine.waitCell(this.cell));
    if (this.error) throw this.error;
  }

  test(): boolean {
    if (this.state === 'pending') {
      const v = this.engine.peekCell(this.cell);
      if (v === PENDING) return false;
      this.finish(v);
    }
    if (this.error) throw this.error;
    return true;
  }

  private finish(cellValue: number): void {
    const result = this.engine.result(this.id);
    if (cellValue === DONE && result && 'algorithm' in result) {
      const out = this.call.output;
      const memory = this.engine.memory;
      // A plain (heap) output went through a temporary: copy it back to the caller's buffer.
      if (out && this.placed && out.buffer !== memory.buffer && out.length) {
        out.set(new Float32Array(memory.buffer, this.placed[0], this.placed[1]));
      }
      this.state = 'done';
    } else {
      this.state = 'failed';
      if (result && 'error' in result) {
        this.error = reviveError(result.error);
      } else {
        const rank = this.engine.rank;
        this.error = new CommAbortedError(`rank ${rank}: the comm thread exited during ${this.op} on group ${this.groupName}`, rank, this.op, this.groupName);
      }
    }
    this.engine.release(this.cell, this.temps);
  }
}
