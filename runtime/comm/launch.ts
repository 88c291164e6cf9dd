// World launchers, for tests and the trainer:
//   launchThreadWorld(size, entry, options)   `size` worker threads over one shared-memory world (default)
//   launchProcessWorld(size, entry, options)  `size` child processes (fork) joined over sockets, each told
//                                             MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK like torchrun
// `entry` is a module path exporting main(comm, args). Both resolve with every rank's result or error and
// never leave ranks behind: when one rank fails, the world is aborted (peers blocked in a collective fail
// at once, naming it), survivors get `graceMs` to report, then whatever is left is terminated/killed.

import { randomBytes } from 'node:crypto';
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CommOptions } from './comm';
import type { SocketOptions } from './socket-backend';
import { COMM_SECRET_ENV } from './socket-proto';
import { abortShmWorld, createShmWorld, LAUNCHER_ORIGIN, type ShmWorldOptions } from './shm-world';
import { CommAbortedError, reviveError, type SerializedError } from './types';

export interface WorldOptions extends CommOptions {
  /** Given to every rank's main(comm, args); must be structured-cloneable. */
  args?: unknown;
  /** After a rank fails, how long the others get to report before they are terminated. */
  graceMs?: number;
}

export interface ThreadWorldOptions extends WorldOptions, ShmWorldOptions {
  /** Flag polls before sleeping; default: spin only when every rank can have a core. */
  spin?: number;
}

export interface ProcessWorldOptions extends WorldOptions {
  /** Extra environment for the ranks (merged over process.env). */
  env?: Record<string, string>;
  /** 'unix' (default where available) or 'tcp' sockets between ranks. */
  socket?: 'unix' | 'tcp';
  /** Bytes of shared memory per process (staging, registered buffers). */
  arenaBytes?: number;
  /** How long ranks wait for each other to start (default: the larger of timeoutMs and 60 s). */
  rendezvousTimeoutMs?: number;
  /** Algorithm thresholds and piece sizes of the socket transport. */
  socketOptions?: SocketOptions;
  execArgv?: string[];
}

/** A world being run: its outcome, which process each rank is, and a way to end it at once. */
export interface RunningWorld<R> {
  readonly result: Promise<WorldResult<R>>;
  /** The process id of each rank (a thread world: this process). */
  pids(): (number | undefined)[];
  /** Aborts the world and ends every rank now (threads terminated, processes SIGKILLed); `result` then resolves. */
  kill(reason: string): void;
}

export interface WorldResult<R> {
  ok: boolean;
  /** results[r]: rank r's return value, if it succeeded. */
  results: (R | undefined)[];
  /** errors[r]: why rank r failed (CommTimeoutError, CommAbortedError, ... revived with their classes). */
  errors: (Error | undefined)[];
}

type Report = { ok: true; result: unknown } | { ok: false; error: SerializedError };

/** Tracks reports and exits of `size` ranks and implements the fail-fast / tear-down policy. */
class WorldTracker<R> {
  readonly results: (R | undefined)[];
  readonly errors: (Error | undefined)[];
  private readonly reported: boolean[];
  private readonly exited: boolean[];
  private exits = 0;
  private failed = false;
  private grace: NodeJS.Timeout | undefined;
  private done!: (r: WorldResult<R>) => void;
  readonly promise: Promise<WorldResult<R>>;

  constructor(
    private readonly size: number,
    private readonly graceMs: number,
    private readonly onFirstFailure: (message: string) => void,
    private readonly kill: (rank: number) => void,
    private readonly finished: (rank: number) => void,
  ) {
    this.results = new Array(size).fill(undefined);
    this.errors = new Array(size).fill(undefined);
    this.reported = new Array(size).fill(false);
    this.exited = new Array(size).fill(false);
    this.promise = new Promise((resolve) => (this.done = resolve));
  }

  report(rank: number, r: Report): void {
    if (this.reported[rank]) return;
    this.reported[rank] = true;
    if (r.ok) {
      this.results[rank] = r.result as R;
      this.finished(rank);
    } else {
      this.fail(rank, reviveError(r.error));
    }
  }

  fail(rank: number, error: Error): void {
    this.reported[rank] = true;
    this.errors[rank] ??= error;
    if (this.failed) return;
    this.failed = true;
    this.onFirstFailure(`rank ${rank} failed: ${error.message}`);
    this.grace = setTimeout(() => {
      for (let r = 0; r < this.size; r++) {
        if (this.exited[r]) continue;
        this.errors[r] ??= new CommAbortedError(`rank ${r}: terminated by the launcher ${this.graceMs} ms after rank ${rank} failed`, r, '', '');
        this.kill(r);
      }
    }, this.graceMs);
  }

  exit(rank: number, how: string): void {
    if (this.exited[rank]) return;
    this.exited[rank] = true;
    if (!this.reported[rank]) this.fail(rank, new Error(`rank ${rank} exited (${how}) before reporting a result`));
    if (++this.exits === this.size) {
      clearTimeout(this.grace);
      this.done({ ok: this.errors.every((e) => e === undefined), results: this.results, errors: this.errors });
    }
  }
}

/** Runs `size` ranks as worker threads of this process over one shared-memory world. */
export function launchThreadWorld<R = unknown>(size: number, entry: string, options: ThreadWorldOptions = {}): Promise<WorldResult<R>> {
  return startThreadWorld<R>(size, entry, options).result;
}

/** launchThreadWorld, with the handle to end the world early. */
export function startThreadWorld<R = unknown>(size: number, entry: string, options: ThreadWorldOptions = {}): RunningWorld<R> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`world size must be a positive whole number, got ${size}`);
  const memory = createShmWorld(size, options);
  const spin = options.spin ?? (size <= availableParallelism() ? 2000 : 0);
  const workers: Worker[] = [];
  const tracker = new WorldTracker<R>(
    size,
    options.graceMs ?? 2000,
    (message) => abortShmWorld(memory, LAUNCHER_ORIGIN, message),
    (rank) => void workers[rank]?.terminate(),
    // Done: terminate it so nothing the entry left open (a timer, a handle) keeps the thread alive.
    (rank) => void workers[rank]?.terminate(),
  );
  try {
    for (let rank = 0; rank < size; rank++) {
      const worker = new Worker(join(__dirname, 'thread-rank.js'), {
        workerData: {
          memory,
          rank,
          entry: resolve(entry),
          args: options.args,
          comm: { timeoutMs: options.timeoutMs, recordCapacity: options.recordCapacity },
          shm: { spin },
        },
      });
      workers.push(worker);
      worker.on('message', (m: Report) => tracker.report(rank, m));
      worker.on('error', (e) => tracker.fail(rank, e));
      worker.on('exit', (code) => tracker.exit(rank, `code ${code}`));
    }
  } catch (e) {
    // E.g. args that cannot be cloned: stop the ranks already started.
    abortShmWorld(memory, LAUNCHER_ORIGIN, `the launcher failed: ${(e as Error).message}`);
    for (const w of workers) void w.terminate();
    throw e;
  }
  return {
    result: tracker.promise,
    pids: () => workers.map(() => process.pid),
    kill: (reason) => {
      abortShmWorld(memory, LAUNCHER_ORIGIN, reason);
      workers.forEach((w, rank) => {
        tracker.fail(rank, new CommAbortedError(`rank ${rank}: ${reason}`, rank, '', ''));
        void w.terminate();
      });
    },
  };
}

/** A free TCP port on 127.0.0.1 for the rendezvous (there is a small window in which another process could take it). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * Runs `size` ranks as child processes that rendezvous like torchrun (MASTER_ADDR, MASTER_PORT,
 * WORLD_SIZE, RANK, LOCAL_RANK) and talk over sockets: the layout for one process per GPU.
 */
export async function launchProcessWorld<R = unknown>(size: number, entry: string, options: ProcessWorldOptions = {}): Promise<WorldResult<R>> {
  return (await startProcessWorld<R>(size, entry, options)).result;
}

/** launchProcessWorld, with the handle to end the world early. */
export async function startProcessWorld<R = unknown>(size: number, entry: string, options: ProcessWorldOptions = {}): Promise<RunningWorld<R>> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`world size must be a positive whole number, got ${size}`);
  const port = await freePort();
  // One membership secret per world (socket-io.ts): only processes started here can join it.
  const secret = options.env?.[COMM_SECRET_ENV] ?? randomBytes(32).toString('hex');
  const children: ChildProcess[] = [];
  const tracker = new WorldTracker<R>(
    size,
    options.graceMs ?? 2000,
    // Killing a rank closes its sockets, which aborts the peers' calls at once (socket-backend.ts).
    () => {},
    (rank) => {
      const c = children[rank];
      if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    },
    // Done: the rank exits by itself once its sockets are flushed (process-rank.ts).
    () => {},
  );
  try {
    for (let rank = 0; rank < size; rank++) {
      const env: Record<string, string> = {
        ...(process.env as Record<string, string>),
        ...options.env,
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        WORLD_SIZE: String(size),
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        LOCAL_WORLD_SIZE: String(size),
        [COMM_SECRET_ENV]: secret,
      };
      if (options.timeoutMs !== undefined) env.SCALELM_COMM_TIMEOUT_MS = String(options.timeoutMs);
      if (options.socket) env.SCALELM_COMM_SOCKET = options.socket;
      if (options.rendezvousTimeoutMs !== undefined) env.SCALELM_COMM_RENDEZVOUS_TIMEOUT_MS = String(options.rendezvousTimeoutMs);
      if (options.arenaBytes !== undefined) env.SCALELM_COMM_ARENA_BYTES = String(options.arenaBytes);
      const child = fork(join(__dirname, 'process-rank.js'), [resolve(entry)], {
        env,
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: options.execArgv ?? [],
      });
      children.push(child);
      child.on('message', (m: Report) => tracker.report(rank, m));
      child.on('error', (e) => tracker.fail(rank, e));
      child.on('exit', (code, signal) => tracker.exit(rank, signal ? `signal ${signal}` : `code ${code}`));
      child.send({ args: options.args, recordCapacity: options.recordCapacity, socketOptions: options.socketOptions });
    }
  } catch (e) {
    for (const c of children) c.kill('SIGKILL');
    throw e;
  }
  return {
    result: tracker.promise,
    pids: () => children.map((c) => c.pid),
    kill: (reason) => {
      children.forEach((c, rank) => {
        tracker.fail(rank, new CommAbortedError(`rank ${rank}: ${reason}`, rank, '', ''));
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      });
    },
  };
}
