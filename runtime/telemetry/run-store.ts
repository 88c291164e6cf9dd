// The run directory as telemetry sees it. The trainer's runtime/train/run-dir.ts owns creating it and
// writing config.json and checkpoints/; telemetry appends metrics.jsonl (and tensorboard/) and reads runs
// back for `scalelm serve` and `scalelm export`.
//
//   runs/<runId>/config.json        the resolved config
//   runs/<runId>/metrics.jsonl      protocol v1 messages, one per line, hello first; append-only
//   runs/<runId>/checkpoints/       safetensors
//   runs/<runId>/logs/              runtime and rank logs
//   runs/<runId>/tensorboard/       events.out.tfevents.* (scalars), when that sink is on
//
// Durability: every event (hello, status, step, eval, log, alert, checkpoint) is written with write(2) as
// whole lines before publish() returns, so a `kill -9` of the runtime loses no step already published.
// Gauges (gpu, memory, comm) ride along with the next event's write, or go out at the end of the
// current tick: a kill -9 can cost at most the gauges of that tick. Status and checkpoint messages and
// close() also fdatasync, so those survive a power cut too.
import { closeSync, constants, createReadStream, existsSync, fdatasyncSync, fstatSync, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { FileReadError, READ_LIMITS, readTextBounded } from '../files';
import { join } from 'node:path';
import { decodeMessage, type Message } from '../../common/protocol';
import { timeDeferred } from './cost';

export const RUN_LAYOUT = {
  config: 'config.json',
  metrics: 'metrics.jsonl',
  checkpoints: 'checkpoints',
  logs: 'logs',
  tensorboard: 'tensorboard',
} as const;

export class MetricsLog {
  private fd: number | null;
  readonly path: string;

  constructor(runDir: string) {
    this.path = join(runDir, RUN_LAYOUT.metrics);
    this.fd = openSync(this.path, 'a', 0o644);
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
export async function streamMessages(dir: string, onMessage: (m: Message) => void | Promise<void>, onProblem: (p: LineProblem) => void = () => undefined): Promise<{ lines: number; truncatedTail: boolean }> {
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

export async function readRun(dir: string): Promise<StoredRun> {
  const messages: Message[] = [];
  const problems: LineProblem[] = [];
  const { truncatedTail } = await streamMessages(dir, (m) => void messages.push(m), (p) => problems.push(p));
  return { dir, config: readConfig(dir), messages, problems, truncatedTail };
}

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
