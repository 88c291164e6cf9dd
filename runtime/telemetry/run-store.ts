// The run directory as telemetry sees it. The trainer's runtime/train/run-dir.ts owns creating it and
// writing config.json and checkpoints/; telemetry appends metrics.jsonl (and tensorboard/) and reads runs
// back for `scalelm serve` and `scalelm export`.
//
//   runs/<runId>/config.json        the resolved config
//   runs/<runId>/metrics.jsonl      protocol v1 messages, one per line, hello first; append-only
//   runs/<runId>/checkpoints/       safetensors
//   runs/<runId>/logs/              runtime and rank logs
//   runs/<runId>/tensorboard/       events.out.tfevents.* (scalars), when that sink is on
//   runs/<runId>/process.json       {pid, host, startedAt} of the process writing the run; removed when it
//                                   closes the run. A run without a final status whose writer is gone
//                                   (no such file, or its pid no longer lives) reads as "crashed".
//
// Durability: every event (hello, status, step, eval, log, alert, checkpoint) is written with write(2) as
// whole lines before publish() returns, so a `kill -9` of the runtime loses no step already published.
// Gauges (gpu, memory, comm) ride along with the next event's write, or go out at the end of the
// current tick: a kill -9 can cost at most the gauges of that tick. Status and checkpoint messages and
// close() also fdatasync, so those survive a power cut too.
import { closeSync, constants, createReadStream, existsSync, fdatasyncSync, fstatSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { decodeMessage, isEnded, type Message, type RunSummary, type StatusMessage } from '../../common/protocol';
import { FileReadError, openRunFile, READ_LIMITS, readTextBounded } from '../files';
import { timeDeferred } from './cost';
import { RunHistory } from './history';

export const RUN_LAYOUT = {
  config: 'config.json',
  metrics: 'metrics.jsonl',
  checkpoints: 'checkpoints',
  logs: 'logs',
  tensorboard: 'tensorboard',
  process: 'process.json',
} as const;

/** Marks the run as being written by this process (see process.json above). */
export function claimRun(dir: string, startedAt = Date.now()): void {
  writeFileSync(join(dir, RUN_LAYOUT.process), JSON.stringify({ pid: process.pid, host: hostname(), startedAt }) + '\n');
}

/** The run's writer has closed it (only the process that claimed it removes the file). */
export function releaseRun(dir: string): void {
  try {
    const owner = JSON.parse(readTextBounded(join(dir, RUN_LAYOUT.process), READ_LIMITS.state)) as { pid?: unknown; host?: unknown };
    if (owner.pid === process.pid && owner.host === hostname()) rmSync(join(dir, RUN_LAYOUT.process), { force: true });
  } catch {
    /* nothing to release */
  }
}

/**
 * Whether the process writing the run still lives: false when process.json is absent (closed or never
 * written) or names a pid that is gone on this host; undefined when another host writes it (cannot tell).
 */
export function writerAlive(dir: string): boolean | undefined {
  let owner: { pid?: unknown; host?: unknown };
  try {
    owner = JSON.parse(readTextBounded(join(dir, RUN_LAYOUT.process), READ_LIMITS.state)) as typeof owner;
  } catch {
    return false;
  }
  if (typeof owner.pid !== 'number' || !Number.isInteger(owner.pid) || owner.pid <= 0) return false;
  if (owner.host !== hostname()) return undefined;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The status a reader adds for a run whose metrics.jsonl has no final status and whose writer is gone:
 * "crashed" at the last message's time and step. Never written to the file (the run may still be resumed).
 */
export function crashedStatus(dir: string, last: { status: StatusMessage | null; t: number; step?: number }): StatusMessage | null {
  if (last.status && isEnded(last.status.state)) return null;
  if (writerAlive(dir) !== false) return null;
  return { type: 'status', state: 'crashed', t: Math.max(last.t, last.status?.t ?? 0), ...(last.step !== undefined ? { step: last.step } : {}), reason: 'the process is gone without a final status' };
}

export class MetricsLog {
  private fd: number | null;
  readonly path: string;

  constructor(runDir: string) {
    this.path = join(runDir, RUN_LAYOUT.metrics);
    this.fd = openRunFile(this.path, 'append');
  }

  private pending = '';
  private flushScheduled = false;

  /** Appends one encoded message as one line. An urgent one (an event) is on disk when this returns. */
  append(encoded: string, urgent = true): void {
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    this.pending += encoded + '\n';
    if (urgent) return this.flush();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => {
        this.flushScheduled = false;
        timeDeferred(() => this.flush());
      });
    }
  }

  /** Writes what is pending, whole lines in one write. */
  flush(): void {
    if (this.fd === null || this.pending === '') return;
    const buf = Buffer.from(this.pending, 'utf8');
    this.pending = '';
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
  }

  sync(): void {
    this.flush();
    if (this.fd !== null) fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    this.sync();
    closeSync(this.fd);
    this.fd = null;
  }
}

export interface LineProblem {
  line: number;
  reason: string;
}

export interface StoredRun {
  dir: string;
  /** config.json, parsed, or null when absent or unreadable (the hello line carries the config too). */
  config: unknown;
  messages: Message[];
  /** Lines that were not valid protocol messages (skipped, never half-read). */
  problems: LineProblem[];
  /** The last line was cut short (the runtime was killed mid-write); it was skipped. */
  truncatedTail: boolean;
}

export function hasMetrics(dir: string): boolean {
  return existsSync(join(dir, RUN_LAYOUT.metrics));
}

function readConfig(dir: string): unknown {
  try {
    return JSON.parse(readTextBounded(join(dir, RUN_LAYOUT.config), READ_LIMITS.config));
  } catch {
    return null;
  }
}

/** Longest metrics.jsonl line read (a hello carries the config; nothing legitimate comes near this). */
export const MAX_LINE_BYTES = 4 * 2 ** 20;

/**
 * The lines of a regular file, each at most `maxBytes`: a longer one is yielded as null (and never held in
 * memory whole), so a 700 MB line without a newline costs one chunk of memory, not a crash.
 */
async function* boundedLines(path: string, maxBytes: number): AsyncGenerator<string | null> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new FileReadError(`${path}: is not a regular file (a FIFO or a device?)`, 'ENOTREG');
  }
  let parts: Buffer[] = [];
  let length = 0;
  let tooLong = false;
  for await (const chunk of createReadStream('', { fd, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      if (!tooLong && length + nl - start <= maxBytes) {
        parts.push(chunk.subarray(start, nl));
        yield Buffer.concat(parts).toString('utf8');
      } else yield null;
      parts = [];
      length = 0;
      tooLong = false;
      start = nl + 1;
    }
    const rest = chunk.length - start;
    if (tooLong || length + rest > maxBytes) {
      tooLong = true;
      parts = [];
    } else if (rest > 0) {
      parts.push(chunk.subarray(start));
      length += rest;
    }
  }
  if (tooLong) yield null;
  else if (length > 0) yield Buffer.concat(parts).toString('utf8');
}

/**
 * Streams a run's messages in order; invalid lines go to onProblem, a cut-off last line is reported as
 * such. When onMessage returns a promise, reading waits for it (backpressure).
 */
export async function streamMessages(
  dir: string,
  onMessage: (m: Message) => void | Promise<void>,
  onProblem: (p: LineProblem) => void = () => undefined,
): Promise<{ lines: number; truncatedTail: boolean }> {
  const path = join(dir, RUN_LAYOUT.metrics);
  const endsWithNewline = fileEndsWithNewline(path);
  let lineNo = 0;
  let pendingProblem: LineProblem | null = null;
  for await (const read of boundedLines(path, MAX_LINE_BYTES)) {
    if (pendingProblem) onProblem(pendingProblem);
    pendingProblem = null;
    lineNo++;
    if (read === null) {
      pendingProblem = { line: lineNo, reason: `longer than ${MAX_LINE_BYTES} bytes; skipped` };
      continue;
    }
    const line = read.endsWith('\r') ? read.slice(0, -1) : read;
    if (line.trim() === '') continue;
    const r = decodeMessage(line);
    if (r.ok) {
      const wait = onMessage(r.value);
      if (wait) await wait;
    } else pendingProblem = { line: lineNo, reason: r.reason };
  }
  // A bad final line without its newline is a write the runtime did not finish: expected after kill -9.
  const truncatedTail = pendingProblem !== null && !endsWithNewline;
  if (pendingProblem && !truncatedTail) onProblem(pendingProblem);
  return { lines: lineNo, truncatedTail };
}

function fileEndsWithNewline(path: string): boolean {
  const st = statSync(path);
  if (!st.isFile()) throw new FileReadError(`${path}: is not a regular file (a FIFO or a device?)`, 'ENOTREG');
  const size = st.size;
  if (size === 0) return true;
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    const n = readSync(fd, b, 0, 1, size - 1);
    return n === 1 && b[0] === 0x0a;
  } finally {
    closeSync(fd);
  }
}

/** Reads a whole run; a crashed run (see crashedStatus) ends with its synthesized "crashed" status. */
export async function readRun(dir: string): Promise<StoredRun> {
  const messages: Message[] = [];
  const problems: LineProblem[] = [];
  let status: StatusMessage | null = null;
  let t = 0;
  let step: number | undefined;
  const { truncatedTail } = await streamMessages(
    dir,
    (m) => {
      messages.push(m);
      if (m.type === 'status') status = m;
      if (m.type === 'step') step = m.step;
      const mt = (m as { t?: number }).t;
      if (typeof mt === 'number' && mt > t) t = mt;
    },
    (p) => problems.push(p),
  );
  const crashed = crashedStatus(dir, { status, t, ...(step !== undefined ? { step } : {}) });
  if (crashed) messages.push(crashed);
  return { dir, config: readConfig(dir), messages, problems, truncatedTail };
}

/**
 * A recorded run's row for a runs table (RunHistory.summary over every line: best loss, eval loss, …),
 * "crashed" when it has no final status and its writer is gone. Cached per file size and mtime.
 */
export async function summarizeRun(dir: string): Promise<RunSummary> {
  const st = statSync(join(dir, RUN_LAYOUT.metrics));
  const hit = summaries.get(dir);
  const alive = writerAlive(dir);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs && hit.alive === alive) return hit.summary;
  const h = new RunHistory({ stepBuckets: 1, gaugeBuckets: 1, logs: 1, alerts: 1, checkpoints: 1 }, basename(dir));
  for (const m of (await readRun(dir)).messages) h.add(m);
  const summary = h.summary();
  summaries.set(dir, { size: st.size, mtimeMs: st.mtimeMs, alive, summary });
  return summary;
}
const summaries = new Map<string, { size: number; mtimeMs: number; alive: boolean | undefined; summary: RunSummary }>();

/** DIR itself when it is a run, else its subdirectories that are runs, newest first. */
export function listRunDirs(dir: string): string[] {
  if (hasMetrics(dir)) return [dir];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries
    .map((name) => join(dir, name))
    .filter((p) => {
      try {
        return statSync(p).isDirectory() && hasMetrics(p);
      } catch {
        return false;
      }
    })
    .sort((a, b) => statSync(join(b, RUN_LAYOUT.metrics)).mtimeMs - statSync(join(a, RUN_LAYOUT.metrics)).mtimeMs);
}
