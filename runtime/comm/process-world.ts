// Joining a socket world from the environment, as torchrun sets it: MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
// RANK. Optional: SCALELM_COMM_SOCKET=unix|tcp (default unix), SCALELM_COMM_TIMEOUT_MS (a wait without
// progress fails the call), SCALELM_COMM_RENDEZVOUS_TIMEOUT_MS (how long ranks wait for each other to
// start; default the larger of the call timeout and 60 s — starting a process takes a while on a busy
// machine), SCALELM_COMM_ARENA_BYTES (shared memory for staging and registered buffers, default 128 MiB).
// Required when WORLD_SIZE > 1: SCALELM_COMM_SECRET, the run's membership secret (64 hex digits, the same on
// every rank; launchProcessWorld makes one per world). Ranks prove they hold it by HMAC before anything
// they send is read (socket-io.ts), so another local user cannot join, disturb or abort the world.

import { join } from 'node:path';
import { COMM_SECRET_ENV, isCommSecret } from './socket-proto';
import { MessageChannel, Worker } from 'node:worker_threads';
import { Arena } from './arena';
import { Comm, type CommOptions } from './comm';
import { SocketBackend, type SocketOptions } from './socket-backend';
import type { IoData } from './socket-io';
import { ARENA_AT, SOCKET_MAGIC } from './socket-proto';
import { CommError } from './types';

export interface ProcessInitOptions extends CommOptions, SocketOptions {
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  arenaBytes?: number;
  socket?: 'unix' | 'tcp';
  rendezvousTimeoutMs?: number;
}

function envInt(env: NodeJS.ProcessEnv, name: string, fallback?: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`${name} is not set: a socket world needs MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK (as torchrun sets them)`);
  }
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name}=${raw} is not a whole number`);
  return v;
}

/** Joins the world described by the environment; resolves once every rank is connected. */
export async function initProcessWorld(options: ProcessInitOptions = {}): Promise<Comm> {
  const env = options.env ?? process.env;
  const size = envInt(env, 'WORLD_SIZE');
  const rank = envInt(env, 'RANK');
  if (size < 1 || rank >= size) throw new Error(`RANK=${rank} must be below WORLD_SIZE=${size}`);
  const masterPort = envInt(env, 'MASTER_PORT', size === 1 ? 0 : undefined);
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const socket = options.socket ?? (env.SCALELM_COMM_SOCKET === 'tcp' ? 'tcp' : 'unix');
  const timeoutMs = options.timeoutMs ?? (env.SCALELM_COMM_TIMEOUT_MS ? envInt(env, 'SCALELM_COMM_TIMEOUT_MS') : undefined);
  const arenaBytes = options.arenaBytes ?? envInt(env, 'SCALELM_COMM_ARENA_BYTES', 128 * 2 ** 20);
  const secret = env[COMM_SECRET_ENV] ?? '';
  if (size > 1 && !isCommSecret(secret)) {
    throw new Error(
      `${COMM_SECRET_ENV} ${secret ? 'must be 64 hex digits' : 'is not set'}: the ranks of a socket world prove they belong to the run with a shared secret (launchProcessWorld sets one; with another launcher, export the same \`openssl rand -hex 32\` to every rank)`,
    );
  }

  const pages = Math.ceil((ARENA_AT + arenaBytes) / 65536);
  if (pages > 65536) throw new RangeError(`SCALELM_COMM_ARENA_BYTES=${arenaBytes} exceeds the 4 GiB limit of wasm32 shared memory`);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  Atomics.store(new Int32Array(memory.buffer), 0, SOCKET_MAGIC);

  const channel = new MessageChannel();
  const data: IoData = {
    memory,
    rank,
    size,
    masterAddr,
    masterPort,
    socket,
    secret,
    rendezvousTimeoutMs: options.rendezvousTimeoutMs ?? envInt(env, 'SCALELM_COMM_RENDEZVOUS_TIMEOUT_MS', Math.max(timeoutMs ?? 0, 60_000)),
    client: channel.port2,
  };
  const io = new Worker(join(__dirname, 'socket-io.js'), { workerData: data, transferList: [channel.port2] });
  await new Promise<void>((resolve, reject) => {
    const fail = (message: string) => reject(new CommError(`rank ${rank}: ${message}`, rank, 'init', 'world'));
    io.once('message', (m: { ready?: boolean; error?: string }) => (m.ready ? resolve() : fail(m.error ?? 'I/O thread failed')));
    io.once('error', (e) => fail(`I/O thread crashed: ${e.message}`));
    io.once('exit', (code) => fail(`I/O thread exited (code ${code}) during the rendezvous`));
  });
  io.removeAllListeners();
  io.on('error', () => {}); // the I/O thread reports its own failures through the abort record
  const arena = new Arena(memory, ARENA_AT, pages * 65536 - ARENA_AT);
  const backend = new SocketBackend(memory, rank, size, channel.port1, 0, options, { arena, io });
  return new Comm(backend, { timeoutMs, recordCapacity: options.recordCapacity });
}
