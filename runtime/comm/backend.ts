// The one interface both transports implement. A Backend runs a call synchronously on the calling thread
// (the rank's compute thread, or its comm thread for async calls) and returns the algorithm it chose.
// Argument checking, accounting, async handles and groups of one live in the front end (comm.ts).

import type { CallDescriptor } from './types';

export interface GroupSpec {
  /** Creation index; every rank creates groups in the same order, so ids agree (as torch.new_group). */
  id: number;
  /** Global ranks, ascending. */
  ranks: readonly number[];
  /** This rank's index in `ranks`. */
  index: number;
  name: string;
}

export interface Call {
  desc: CallDescriptor;
  /** Reduce ops and broadcast work in place: input === output. */
  input: Float32Array | null;
  output: Float32Array | null;
  /** send/recv: group-local peer index and a tag both sides must agree on. */
  peer: number;
  tag: number;
}

/** Per-group state a backend keeps, created once on the compute thread and re-creatable on the comm thread. */
export interface GroupResources {
  /** Plain data (numbers, arrays) that the comm thread needs to rebuild the same group view. */
  readonly shareable: unknown;
}

export interface P2PWork {
  /** True once complete; throws the failure. Never blocks. */
  test(): boolean;
  /** Blocks until complete; returns the algorithm name. */
  wait(): string;
}

export interface Backend {
  readonly kind: 'shm' | 'socket';
  readonly rank: number;
  readonly worldSize: number;
  /** The rank's shared memory: buffers inside it are "registered" and may be used without copies. */
  readonly memory: WebAssembly.Memory;
  /** Prepare a group (compute thread). Must be called in the same order on every rank of the world. */
  attach(spec: GroupSpec): GroupResources;
  /** Rebuild a group view from `attach`'s shareable part (comm thread). */
  adopt(spec: GroupSpec, shareable: unknown): GroupResources;
  /**
   * Runs a collective. `timeoutMs`: how long any single wait may go without progress before the call
   * fails (and the world is aborted).
   */
  execute(spec: GroupSpec, resources: GroupResources, call: Call, timeoutMs: number): string;
  /**
   * Starts a send or recv without blocking (compute thread only). Blocking send/recv are p2p(...).wait():
   * every wait advances all of the rank's pending messages, so isend/irecv exchanges cannot deadlock.
   * Messages between a pair of ranks are matched in the order they were started.
   */
  p2p(spec: GroupSpec, resources: GroupResources, call: Call, timeoutMs: number): P2PWork;
  /** Make every rank fail fast: used after a local failure so peers do not wait for the timeout. */
  abort(message: string): void;
  close(): void;
}

/** A non-zero hash of a member list (FNV-1a). */
export function groupHash(ranks: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const r of [ranks.length, ...ranks]) {
    h ^= r;
    h = Math.imul(h, 0x01000193);
  }
  return h === 0 ? 1 : h;
}
