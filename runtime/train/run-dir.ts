// The run directory, in one place:
//
//   DIR/config.json            the resolved config (RunConfig as JSON)
//   DIR/config.source.json     what the run was started from: the config file, its folder (data paths are
//                              relative to it), the raw JSON with --set applied; `--resume DIR` reads this
//   DIR/metrics.jsonl          protocol v1 messages (common/protocol.ts), one per line, hello first
//   DIR/logs/train.log         the human-readable lines the CLI prints
//   DIR/checkpoints/step-NNNNNN/{model.safetensors, optimizer.safetensors, config.json, state.json}
//   DIR/checkpoints/latest.json
import { accessSync, closeSync, constants, type Stats, existsSync, fdatasyncSync, ftruncateSync, lstatSync, mkdirSync, readSync, statSync, writeSync } from 'node:fs';
import { FileReadError, openRunFile, READ_LIMITS, readTextBounded } from '../files';
import { basename, dirname, join, resolve } from 'node:path';
import type { RunConfig } from '../config/types';
import { encodeMessage, validateMessage, type Message } from '../../common/protocol';
import { latestCheckpoint, writeAtomic } from './checkpoint';

export const RUN_FILES = {
  config: 'config.json',
  source: 'config.source.json',
  metrics: 'metrics.jsonl',
  logs: 'logs',
  trainLog: join('logs', 'train.log'),
  checkpoints: 'checkpoints',
} as const;

export class RunDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunDirError';
  }
}

export interface RunSource {
  /** The config file the run started from (absolute), if any. */
  file?: string;
  /** Folder that relative data paths resolve against. */
  baseDir: string;
  /** The config JSON as given, with --set overrides applied. */
  raw: Record<string, unknown>;
}

/** `<config folder>/<monitor.runDir>/<name>-<UTC timestamp>`. */
export function defaultRunDir(baseDir: string, config: RunConfig, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const name = config.name.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 64) || 'run';
  return resolve(baseDir, config.monitor.runDir, `${name}-${stamp}`);
}

export class RunDir {
  readonly path: string;
  private metricsFd: number | null = null;
  private logFd: number | null = null;

  private constructor(path: string) {
    this.path = resolve(path);
  }

  /**
   * A fresh run: refuses a folder that holds a run with a checkpoint (that one continues with --resume).
   * A run that died before its first checkpoint has nothing to resume: starting again in its folder is
   * allowed, and its metrics.jsonl starts over (those steps are trained again).
   */
  static create(path: string): RunDir {
    const dir = new RunDir(path);
    checkRunDirPath(dir.path);
    if (existsSync(dir.file('metrics')) && statSync(dir.file('metrics')).size > 0) {
      if (latestCheckpoint(dir.checkpoints)) throw new RunDirError(`${dir.path} already holds a run with a checkpoint; continue it with --resume ${dir.path}, or pick another --run-dir`);
      const fd = openRunFile(dir.file('metrics'), 'update');
      try {
        ftruncateSync(fd, 0);
      } finally {
        closeSync(fd);
      }
    }
    mkdirSync(join(dir.path, RUN_FILES.logs), { recursive: true });
    mkdirSync(join(dir.path, RUN_FILES.checkpoints), { recursive: true });
    return dir;
  }

  /** An existing run to continue. */
  static open(path: string): RunDir {
    const dir = new RunDir(path);
    checkRunDirPath(dir.path);
    if (!existsSync(dir.file('metrics')) && !existsSync(dir.checkpoints)) {
      throw new RunDirError(`${dir.path} is not a ScaleLM run directory (no ${RUN_FILES.metrics} or ${RUN_FILES.checkpoints}/); --resume takes the --run-dir of an earlier \`scalelm train\``);
    }
    // A resume appends to metrics.jsonl and writes checkpoints: asked before anything is touched, so a
    // read-only run directory is refused in one sentence rather than by whichever write came first.
    for (const folder of [dir.path, dir.checkpoints]) {
      if (!existsSync(folder)) continue;
      try {
        accessSync(folder, constants.W_OK);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'EROFS' ? 'is on a read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'is not writable (permission denied)' : (e as Error).message;
        throw new RunDirError(`cannot continue ${dir.path}: ${folder} ${why}; nothing was changed`);
      }
    }
    mkdirSync(join(dir.path, RUN_FILES.logs), { recursive: true });
    return dir;
  }

  file(which: keyof typeof RUN_FILES): string {
    return join(this.path, RUN_FILES[which]);
  }

  get checkpoints(): string {
    return this.file('checkpoints');
  }

  /** Run id for the protocol: the folder's name, in the characters an id may use. */
  get runId(): string {
    const id = basename(this.path)
      .replace(/[^A-Za-z0-9._:@+-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 512);
    return id || 'run';
  }

  writeConfig(config: RunConfig, source: RunSource): void {
    writeAtomic(this.file('config'), JSON.stringify(config, null, 2) + '\n');
    writeAtomic(this.file('source'), JSON.stringify(source, null, 2) + '\n');
  }

  readSource(): RunSource {
    let v: unknown;
    try {
      v = JSON.parse(readTextBounded(this.file('source'), READ_LIMITS.config));
    } catch (e) {
      const missing = e instanceof FileReadError && e.code === 'ENOENT';
      throw new RunDirError(
        missing
          ? `${this.file('source')}: missing, so the run's config is unknown (was it started by \`scalelm train\`?)`
          : e instanceof FileReadError
            ? e.message
            : `${this.file('source')}: not valid JSON (${(e as Error).message})`,
      );
    }
    const s = v as Partial<RunSource> | null;
    if (
      typeof s !== 'object' ||
      s === null ||
      typeof s.baseDir !== 'string' ||
      typeof s.raw !== 'object' ||
      s.raw === null ||
      Array.isArray(s.raw) ||
      (s.file !== undefined && typeof s.file !== 'string')
    ) {
      throw new RunDirError(`${this.file('source')}: not a run source (needs baseDir, raw and optionally file)`);
    }
    return s as RunSource;
  }

  /** Appends one protocol message as one line (one write, no user-space buffer). Invalid messages throw. */
  publish(msg: Message): void {
    const checked = validateMessage(msg);
    if (!checked.ok) throw new RunDirError(`refusing to record an invalid ${msg.type} message: ${checked.reason}`);
    // Every line carries its time: a replay's time axis and elapsed time come from the file, not the clock then.
    const v = checked.value as { type: string; t?: number };
    if (v.t === undefined && (v.type === 'step' || v.type === 'eval' || v.type === 'hello')) v.t = Date.now();
    this.metricsFd ??= openRunFile(this.file('metrics'), 'append');
    writeAll(this.metricsFd, encodeMessage(checked.value) + '\n');
    if (msg.type === 'status' || msg.type === 'checkpoint') fdatasyncSync(this.metricsFd);
  }

  metricsBytes(): number {
    return existsSync(this.file('metrics')) ? statSync(this.file('metrics')).size : 0;
  }

  /**
   * Drops what was recorded after a checkpoint, so a resumed run's log reads like an uninterrupted one.
   * Refuses (changing nothing) an offset that is not a line end inside metrics.jsonl: it came from a
   * state.json that does not belong with this file.
   */
  truncateMetrics(bytes: number): void {
    if (this.checkTruncation(bytes)) return;
    const fd = openRunFile(this.file('metrics'), 'update');
    try {
      ftruncateSync(fd, bytes);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Throws unless `bytes` is a line end inside metrics.jsonl; true when it is the end (nothing to cut). */
  checkTruncation(bytes: number): boolean {
    const size = this.metricsBytes();
    if (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > size) {
      throw new RunDirError(
        `${this.file('metrics')} has ${size} bytes, but the checkpoint says it had ${bytes} when it was taken: the checkpoint does not belong to this run's metrics; nothing was changed`,
      );
    }
    if (bytes === size) return true;
    const last = Buffer.alloc(1);
    const rfd = openRunFile(this.file('metrics'), 'read');
    try {
      readSync(rfd, last, 0, 1, bytes - 1);
    } finally {
      closeSync(rfd);
    }
    if (last[0] !== 0x0a) throw new RunDirError(`${this.file('metrics')}: the checkpoint's offset ${bytes} is not the end of a line; nothing was changed`);
    return false;
  }

  log(line: string): void {
    this.logFd ??= openRunFile(this.file('trainLog'), 'append');
    writeAll(this.logFd, line.endsWith('\n') ? line : line + '\n');
  }

  close(): void {
    for (const fd of [this.metricsFd, this.logFd]) {
      if (fd !== null) {
        try {
          fdatasyncSync(fd);
        } catch {
          // closing anyway
        }
        closeSync(fd);
      }
    }
    this.metricsFd = this.logFd = null;
  }
}

/** What --resume says about a run that stopped before its first checkpoint (one answer everywhere). */
export function noCheckpointMessage(checkpointsDir: string): string {
  const dir = dirname(checkpointsDir);
  return `${dir} has no complete checkpoint yet (the run stopped before its first), so there is nothing to resume; start it again in the same folder with \`scalelm train <config> --run-dir ${dir}\``;
}

/** Kernel pseudo-filesystems (/proc, /sys, /dev) are never run directories: reads there can block or never end. */
function checkRunDirPath(path: string): void {
  if (/^\/(proc|sys|dev)(\/|$)/.test(path)) throw new RunDirError(`${path} is inside /${path.split('/')[1]}, a kernel filesystem: not a place for a run directory`);
  // The run's own folders must be its own: a `checkpoints` linked to another run's made a resume write its
  // checkpoints there and prune that run's (the files in them are opened without following links).
  for (const sub of [RUN_FILES.checkpoints, RUN_FILES.logs, 'tensorboard']) {
    let link = false;
    try {
      link = lstatSync(join(path, sub)).isSymbolicLink();
    } catch {
      // absent (created later) or unreadable (the writes say why)
    }
    if (link) throw new RunDirError(`${join(path, sub)} is a symbolic link: a run's folders must be inside its directory; nothing was changed`);
  }
  // Its own files are opened without following links (openRunFile); asked here too, so such a run is refused
  // before config.json or anything else is written.
  for (const file of [RUN_FILES.metrics, RUN_FILES.trainLog]) {
    let st: Stats | undefined;
    try {
      st = lstatSync(join(path, file));
    } catch {
      // absent: created when first written
    }
    if (st && !st.isFile())
      throw new RunDirError(
        `${join(path, file)} is ${st.isSymbolicLink() ? 'a symbolic link' : st.isFIFO() ? 'a FIFO' : 'not a regular file'}: a run's files must be regular files; nothing was changed`,
      );
  }
}

function writeAll(fd: number, text: string): void {
  const b = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off);
}
