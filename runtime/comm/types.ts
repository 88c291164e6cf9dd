// Vocabulary shared by every part of runtime/comm: operations, reduce ops, errors, call records.

export type ReduceOp = 'sum' | 'max' | 'min' | 'avg';
export const ReduceOp = { SUM: 'sum', MAX: 'max', MIN: 'min', AVG: 'avg' } as const;
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'max', 'min', 'avg'];

/** Operation names as torch.distributed spells them; they appear in errors and call records. */
export type OpName = 'broadcast' | 'reduce' | 'all_reduce' | 'reduce_scatter' | 'all_gather' | 'scatter' | 'gather' | 'barrier' | 'send' | 'recv';
export const OP_NAMES: readonly OpName[] = ['broadcast', 'reduce', 'all_reduce', 'reduce_scatter', 'all_gather', 'scatter', 'gather', 'barrier', 'send', 'recv'];
/** Codes travel in shared memory and frame headers; 0 means "no call". */
export const opCode = (name: OpName): number => OP_NAMES.indexOf(name) + 1;
export const opName = (code: number): OpName | 'nothing' => OP_NAMES[code - 1] ?? 'nothing';
export const reduceCode = (op: ReduceOp): number => REDUCE_OPS.indexOf(op);
export const reduceName = (code: number): ReduceOp => REDUCE_OPS[code] ?? 'sum';

/**
 * What every member of a group must agree on for one call; compared across ranks to detect mismatched
 * calls. `count` is the op's size in float32 elements as nccl-tests counts it: the buffer for broadcast,
 * reduce and all-reduce, the full (unsplit) buffer for reduce-scatter, all-gather, scatter and gather.
 */
export interface CallDescriptor {
  op: OpName;
  count: number;
  reduce: ReduceOp;
  root: number;
}

export function describeCall(d: CallDescriptor): string {
  const parts = [`count=${d.count}`];
  if (d.op === 'reduce' || d.op === 'all_reduce' || d.op === 'reduce_scatter') parts.push(`op=${d.reduce.toUpperCase()}`);
  if (d.op === 'broadcast' || d.op === 'reduce' || d.op === 'scatter' || d.op === 'gather') parts.push(`root=${d.root}`);
  return `${d.op}(${parts.join(', ')})`;
}

export function sameCall(a: CallDescriptor, b: CallDescriptor): boolean {
  return a.op === b.op && a.count === b.count && a.reduce === b.reduce && a.root === b.root;
}

/** Base of every error a collective raises. `rank` is the global rank that raised it. */
export class CommError extends Error {
  constructor(
    message: string,
    readonly rank: number,
    readonly op: string,
    readonly group: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
/** A peer did not reach (or finish) the call within the configured timeout. */
export class CommTimeoutError extends CommError {}
/** Members of a group made different calls (op, size, reduce op or root), or built groups differently. */
export class CommMismatchError extends CommError {}
/** The world was aborted: a peer died, its connection closed, or another rank failed and aborted it. */
export class CommAbortedError extends CommError {}
/** Bad arguments (wrong output length, root out of range, ...): raised locally before communicating. */
export class CommUsageError extends CommError {}

/** One entry of the accounting log, for telemetry. Times are epoch milliseconds with sub-ms precision. */
export interface CallRecord {
  op: OpName;
  group: string;
  bytes: number;
  start: number;
  end: number;
  algorithm: string;
}

/** The chunk of `length` elements owned by group member `index` of `size`: numpy.array_split's rule. */
export function chunkRange(length: number, size: number, index: number): { start: number; end: number } {
  const base = Math.floor(length / size);
  const extra = length % size;
  const start = index * base + Math.min(index, extra);
  return { start, end: start + base + (index < extra ? 1 : 0) };
}

/** Epoch milliseconds with sub-ms precision, comparable across threads (performance.now() is per thread). */
export const now = (): number => performance.timeOrigin + performance.now();

/** An error as it crosses a thread or process boundary (structured clone drops custom classes). */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  rank?: number;
  op?: string;
  group?: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof CommError) return { name: e.name, message: e.message, stack: e.stack, rank: e.rank, op: e.op, group: e.group };
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: String(e) };
}

const COMM_ERRORS: Record<string, new (m: string, r: number, o: string, g: string) => CommError> = {
  CommError,
  CommTimeoutError,
  CommMismatchError,
  CommAbortedError,
  CommUsageError,
};

/** Rebuilds the error class (CommTimeoutError etc.) so `instanceof` works on the receiving side. */
export function reviveError(s: SerializedError): Error {
  const E = COMM_ERRORS[s.name];
  const e = E ? new E(s.message, s.rank ?? -1, s.op ?? '', s.group ?? '') : Object.assign(new Error(s.message), { name: s.name });
  if (s.stack) e.stack = s.stack;
  return e;
}
