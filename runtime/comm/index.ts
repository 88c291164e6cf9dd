// runtime/comm: process groups, transports and collectives — the torch.distributed of ScaleLM.
// See docs/comm.md. Tensor wrappers live in ./tensor (they load tfjs; this module does not).

export { Comm, ProcessGroup, type CommOptions, type Work } from './comm';
export { launchThreadWorld, launchProcessWorld, freePort, type ThreadWorldOptions, type ProcessWorldOptions, type WorldResult } from './launch';
export { initProcessWorld, type ProcessInitOptions } from './process-world';
export type { RankMain } from './entry';
export { meshGroups, meshCoords, meshRank, resolveMesh, type MeshShape, type MeshCoords, type MeshGroups } from './mesh';
export type { OpTotals } from './records';
export type { SocketOptions } from './socket-backend';
export type { ShmWorldOptions } from './shm-world';
export { ReduceOp, REDUCE_OPS, chunkRange, CommError, CommTimeoutError, CommMismatchError, CommAbortedError, CommUsageError, type CallRecord, type OpName } from './types';

/**
 * Worker/child entry files the comm library starts by path (resolved next to the compiled module with
 * __dirname). A bundle must emit each as its own file beside the bundle that contains launch.ts:
 * e.g. esbuild entryPoints runtime/comm/{thread-rank,process-rank,comm-thread,socket-io}.ts -> dist/.
 */
export const COMM_WORKER_ENTRIES = ['thread-rank', 'process-rank', 'comm-thread', 'socket-io'] as const;
