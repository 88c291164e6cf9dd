// The shared-memory world: one shared WebAssembly.Memory that every rank (a worker thread of one process)
// maps. Layout, in bytes:
//
//   [0, 4096)              header: magic, world size, limits, the abort record (who aborted and why)
//   [4096, +groups)        one control block per process group (arrival/phase counters, call descriptors)
//   [.., +n*n*64)          point-to-point mailboxes, one per ordered pair of ranks
//   [partitions)           one arena per rank: its staging areas and its registered buffers
//
// It is a WebAssembly.Memory rather than a bare SharedArrayBuffer so the SIMD reduction kernel can work on
// the exchanged data in place. Sizes are fixed at creation (no grow): the memory is reserved once and pages
// are committed by the OS only when touched.
//
// Waiting: every wait is Atomics.wait in slices, re-checking the abort record and the call's deadline, so a
// dead or absent rank makes the others fail with a named error instead of hanging. The launcher (which sees
// worker exits) and any rank that detects a failure write the abort record and notify every cell.

import { Arena } from './arena';
import { CommAbortedError } from './types';

const MAGIC = 0x53434d31; // "SCM1"
export const HEADER_BYTES = 4096;
/** Int32 index of the abort word in the header (non-zero once the world is aborted). */
export const ABORT_WORD = 8;
const H = { magic: 0, worldSize: 1, maxGroups: 2, groupBlockBytes: 3, partitionBase64: 4, arenaBytes64: 5, chunkBytes: 6, smallBytes: 7, p2pBytes: 11, abortOrigin: 8, abortReady: 9, abortLen: 10 };
const ABORT_TEXT_AT = 1024;
const ABORT_TEXT_BYTES = HEADER_BYTES - ABORT_TEXT_AT;
/** Written in abortOrigin (as origin + 1 for ranks) when the launcher, not a rank, aborts. */
export const LAUNCHER_ORIGIN = -1;

/** Per member of a group: three 64-byte lines. The phase counter owns the first line alone. */
export const MEMBER_BYTES = 192;
export const M = {
  phase: 0, // barrier phases passed (monotonic, wraps)
  seq: 16, // calls entered on this group (monotonic)
  staging: 17, // element offset of this member's staging area in the memory
  gen: 18, // staging generations used (selects the double-buffer half)
  desc: 20, // two descriptors (by call parity), DESC_INTS each
  claimBase: 32, // the group's block-claim counter at the start of this member's next shared-work call
  doneBase: 33, // the group's block-done counter likewise
} as const;
export const DESC_INTS = 6; // op, count, reduce, root, source element offset (-1: heap), dest element offset (-1)
/**
 * Group block header, three lines: [1] member hash (CAS from 0 by the first creator); [16] block-claim
 * counter and [32] block-done counter of shared-work calls (members take blocks of a zero-copy reduction
 * as they get CPU time). Members follow at +192.
 */
export const GROUP_HEADER_BYTES = 192;
export const GH = { hash: 1, claim: 16, done: 32 } as const;

/** Per ordered pair (src -> dst): sender's posted count, receiver's taken count, piece header, buffer. */
export const P2P_BYTES = 64;
export const P = { posted: 0, taken: 1, total: 2, tag: 3, pieceStart: 4, pieceLen: 5, buffer: 6 } as const;

export interface ShmWorldOptions {
  /** Bytes of shared memory per rank for staging and registered buffers. */
  arenaBytes?: number;
  /** Process groups that can be created (including the world group). */
  maxGroups?: number;
  /** Staging chunk per member per group (the pipeline step of large calls). */
  chunkBytes?: number;
  /** Calls up to this size take the one-step path: latency over bandwidth. */
  smallBytes?: number;
  /** Buffer per ordered pair of ranks for send/recv; larger messages go in pieces. */
  p2pBytes?: number;
}

export interface ShmWorldLayout {
  worldSize: number;
  maxGroups: number;
  groupBlockBytes: number;
  groupsBase: number;
  p2pBase: number;
  partitionBase: number;
  arenaBytes: number;
  chunkBytes: number;
  smallBytes: number;
  p2pBytes: number;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;
const PAGE = 65536;

export function computeLayout(worldSize: number, options: ShmWorldOptions = {}): ShmWorldLayout {
  const maxGroups = options.maxGroups ?? 64;
  const groupBlockBytes = align(GROUP_HEADER_BYTES + worldSize * MEMBER_BYTES, 64);
  const groupsBase = HEADER_BYTES;
  const p2pBase = align(groupsBase + maxGroups * groupBlockBytes, 64);
  const partitionBase = align(p2pBase + worldSize * worldSize * P2P_BYTES, PAGE);
  const arenaBytes = align(options.arenaBytes ?? 64 * 2 ** 20, PAGE);
  const chunkBytes = align(options.chunkBytes ?? 1024 * 1024, 64);
  const smallBytes = options.smallBytes ?? 32 * 1024;
  const p2pBytes = align(options.p2pBytes ?? 1024 * 1024, 64);
  if (smallBytes > chunkBytes) throw new RangeError(`smallBytes (${smallBytes}) must not exceed chunkBytes (${chunkBytes})`);
  if (chunkBytes < 64 * 1024) throw new RangeError(`chunkBytes (${chunkBytes}) must be at least 64 KiB`);
  return { worldSize, maxGroups, groupBlockBytes, groupsBase, p2pBase, partitionBase, arenaBytes, chunkBytes, smallBytes, p2pBytes };
}

/** Creates the world's memory (launcher side). Throws if it would exceed wasm32's 4 GiB. */
export function createShmWorld(worldSize: number, options: ShmWorldOptions = {}): WebAssembly.Memory {
  const layout = computeLayout(worldSize, options);
  const bytes = layout.partitionBase + worldSize * layout.arenaBytes;
  const pages = bytes / PAGE;
  if (pages > 65536) {
    throw new RangeError(`shared-memory world of ${worldSize} ranks x ${layout.arenaBytes} arena bytes needs ${bytes} bytes; ` + `the limit is 4 GiB (wasm32): lower arenaBytes`);
  }
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const h = new Int32Array(memory.buffer, 0, 16);
  h[H.worldSize] = worldSize;
  h[H.maxGroups] = layout.maxGroups;
  h[H.groupBlockBytes] = layout.groupBlockBytes;
  h[H.partitionBase64] = layout.partitionBase / 64;
  h[H.arenaBytes64] = layout.arenaBytes / 64;
  h[H.chunkBytes] = layout.chunkBytes;
  h[H.smallBytes] = layout.smallBytes;
  h[H.p2pBytes] = layout.p2pBytes;
  Atomics.store(h, H.magic, MAGIC);
  return memory;
}

export function readLayout(memory: WebAssembly.Memory): ShmWorldLayout {
  const h = new Int32Array(memory.buffer, 0, 16);
  if (Atomics.load(h, H.magic) !== MAGIC) throw new Error('not a ScaleLM shared-memory world (bad magic)');
  const worldSize = h[H.worldSize]!;
  return computeLayout(worldSize, {
    maxGroups: h[H.maxGroups]!,
    arenaBytes: h[H.arenaBytes64]! * 64,
    chunkBytes: h[H.chunkBytes]!,
    smallBytes: h[H.smallBytes]!,
    p2pBytes: h[H.p2pBytes]!,
  });
}

/** The rank's arena: its partition of the world memory. */
export function rankArena(memory: WebAssembly.Memory, layout: ShmWorldLayout, rank: number): Arena {
  return new Arena(memory, layout.partitionBase + rank * layout.arenaBytes, layout.arenaBytes);
}

export interface AbortRecord {
  origin: number; // rank, or LAUNCHER_ORIGIN
  message: string;
}

/**
 * Writes the abort record (first writer wins): origin and message in the header. The socket transport's
 * per-process memory uses the same header layout, so readAbort/abortError serve both transports.
 */
export function writeAbortRecord(memory: WebAssembly.Memory, origin: number, message: string): boolean {
  const h = new Int32Array(memory.buffer, 0, HEADER_BYTES / 4);
  if (Atomics.compareExchange(h, H.abortOrigin, 0, origin + 2) !== 0) return false;
  const text = Buffer.from(message, 'utf8').subarray(0, ABORT_TEXT_BYTES);
  new Uint8Array(memory.buffer, ABORT_TEXT_AT, text.length).set(text);
  h[H.abortLen] = text.length;
  Atomics.store(h, H.abortReady, 1);
  Atomics.notify(h, H.abortReady);
  return true;
}

/**
 * Aborts a shared-memory world and wakes every waiter. Callable from the launcher's main thread: it only
 * stores and notifies, never waits.
 */
export function abortShmWorld(memory: WebAssembly.Memory, origin: number, message: string): boolean {
  if (!writeAbortRecord(memory, origin, message)) return false;
  wakeEveryone(memory);
  return true;
}

function wakeEveryone(memory: WebAssembly.Memory): void {
  const layout = readLayout(memory);
  const i32 = new Int32Array(memory.buffer);
  Atomics.notify(i32, H.abortReady);
  for (let g = 0; g < layout.maxGroups; g++) {
    const block = (layout.groupsBase + g * layout.groupBlockBytes) / 4;
    Atomics.notify(i32, block + GH.done);
    for (let m = 0; m < layout.worldSize; m++) {
      const line = block + (GROUP_HEADER_BYTES + m * MEMBER_BYTES) / 4;
      Atomics.notify(i32, line + M.phase);
      Atomics.notify(i32, line + M.seq);
    }
  }
  for (let pair = 0; pair < layout.worldSize * layout.worldSize; pair++) {
    const slot = (layout.p2pBase + pair * P2P_BYTES) / 4;
    Atomics.notify(i32, slot + P.posted);
    Atomics.notify(i32, slot + P.taken);
  }
}

export function readAbort(memory: WebAssembly.Memory): AbortRecord | undefined {
  const h = new Int32Array(memory.buffer, 0, HEADER_BYTES / 4);
  const origin = Atomics.load(h, H.abortOrigin);
  if (origin === 0) return undefined;
  // The writer sets abortReady after the text; it is a handful of stores away.
  while (Atomics.load(h, H.abortReady) === 0) Atomics.wait(h, H.abortReady, 0, 1);
  const text = Buffer.from(new Uint8Array(memory.buffer, ABORT_TEXT_AT, h[H.abortLen]!)).toString('utf8');
  return { origin: origin - 2, message: text };
}

export function abortError(record: AbortRecord, rank: number, op: string, group: string): CommAbortedError {
  const who = record.origin === LAUNCHER_ORIGIN ? 'the launcher aborted the world: ' : record.origin === rank ? '' : `rank ${record.origin} aborted the world: `;
  return new CommAbortedError(`rank ${rank}: ${op} on group ${group} stopped: ${who}${record.message}`, rank, op, group);
}
