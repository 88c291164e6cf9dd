// Shared definitions of the socket transport: the per-process shared memory layout, the wire frame, and
// the commands a compute/comm thread posts to the process's I/O thread.
//
// Process memory (a shared WebAssembly.Memory, so the SIMD kernel reduces in place):
//   [0, 4096)        header: same layout as the shm world's (abort record), see shm-world.ts
//   [GROUPS, ..)     per process group: what this rank is doing on it (answers peers' timeout probes)
//   [SLOTS, ..)      request cells, one range per client thread: 0 pending, 1 done, 2 failed
//   [ARENA, ..)      staging, work areas and registered buffers

/** The environment variable that hands every rank the run's membership secret (see socket-io.ts). */
export const COMM_SECRET_ENV = 'SCALELM_COMM_SECRET';
export const isCommSecret = (s: string): boolean => /^[0-9a-f]{64}$/.test(s);

export const SOCKET_MAGIC = 0x53434b31; // "SCK1"
export const MAX_GROUPS = 256;
export const GROUP_INTS = 8;
/** Per group: [seq entered, op, count, reduce, root, seq finished, member hash, -]. */
export const G = { seq: 0, op: 1, count: 2, reduce: 3, root: 4, finished: 5, hash: 6 } as const;
export const GROUPS_AT = 4096;
export const SLOTS_PER_CLIENT = 2048;
export const MAX_CLIENTS = 4;
export const SLOTS_AT = GROUPS_AT + MAX_GROUPS * GROUP_INTS * 4;
export const ARENA_AT = Math.ceil((SLOTS_AT + MAX_CLIENTS * SLOTS_PER_CLIENT * 4) / 65536) * 65536;

export const SLOT_PENDING = 0,
  SLOT_DONE = 1,
  SLOT_FAILED = 2;

/** Frame header: 12 little-endian int32. */
export const HEADER_BYTES = 48;
export const F = { kind: 0, channel: 1, seq: 2, op: 3, count: 4, reduce: 5, root: 6, step: 7, tag: 8, bytes: 9, hash: 10, from: 11 } as const;
export const FRAME = { data: 0x44415441, hello: 0x48454c4f, abort: 0x41425254, bye: 0x42594521, probe: 0x50524f42, probeReply: 0x50524f52, challenge: 0x43484c47 } as const;

/** Collectives of group g use channel 2g; point-to-point messages on group g use 2g + 1 (per direction). */
export const collectiveChannel = (group: number) => 2 * group;
export const p2pChannel = (group: number) => 2 * group + 1;

/** What a receive expects (and a send states): everything in the header but kind, bytes and from. */
export interface FrameFields {
  channel: number;
  seq: number;
  op: number;
  count: number;
  reduce: number;
  root: number;
  step: number;
  tag: number;
  hash: number;
}

/** Commands to the I/O thread (posted as arrays: cheap to clone). */
export const CMD = { send: 1, recv: 2, abort: 3, probe: 4, bye: 5, client: 6, group: 7 } as const;
// [CMD.send | CMD.recv, slot, peer, byteOffset, bytes, channel, seq, op, count, reduce, root, step, tag, hash]
export type TransferCommand = [number, number, number, number, number, number, number, number, number, number, number, number, number, number];

/** Replies from the I/O thread, read by the client with receiveMessageOnPort after a cell says FAILED. */
export type Reply =
  { slot: number; error: { kind: 'mismatch' | 'aborted' | 'left'; message: string; theirs?: number[] } } | { slot: number; probe: Array<{ rank: number; answered: boolean; progress?: number[] }> };
