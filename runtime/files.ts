// Bounded reads of files a user, a run directory or a workspace hands us. Every read refuses what is not a
// regular file (a FIFO would block the reader forever, /dev/zero behind a symlink would fill memory) and
// anything larger than the limit for its kind, before reading a byte of it.
import { closeSync, constants, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';

export class FileReadError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'FileReadError';
  }
}

/** Size limits by kind of file (bytes). */
export const READ_LIMITS = {
  /** A *.scalelm.json, a HuggingFace config.json, config.source.json. */
  config: 16 * 2 ** 20,
  /** state.json, latest.json of a checkpoint. */
  state: 16 * 2 ** 20,
  /** model.safetensors / optimizer.safetensors: a wasm32/Buffer-addressable file. */
  safetensors: 2 ** 32 - 1,
  /** A text or token data file. */
  data: 2 ** 31 - 1,
} as const;

const MiB = 2 ** 20;
const human = (n: number): string => (n >= MiB ? `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB` : `${n} bytes`);

/**
 * The whole file, if it is a regular file of at most `maxBytes`. Opened non-blocking, so a FIFO is
 * refused instead of waiting for a writer. Throws FileReadError with one clear sentence (ENOENT kept in
 * `code` for callers that word "missing" their own way).
 */
export function readBounded(file: string, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'ENOENT'
        ? 'no such file'
        : err.code === 'EACCES'
          ? 'permission denied'
          : err.code === 'EISDIR'
            ? 'is a directory, not a file'
            : err.code === 'ENOTDIR'
              ? 'a part of the path is not a directory'
              : err.message;
    throw new FileReadError(`${file}: ${why}`, err.code);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const kind = st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw new FileReadError(`${file}: is ${kind}, not a regular file`, 'ENOTREG');
    }
    if (st.size > maxBytes) throw new FileReadError(`${file}: is ${human(st.size)}, more than the ${human(maxBytes)} this file may have`, 'EFBIG');
    // Read what fstat promised (a file growing meanwhile is read up to that size, never past the limit).
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return off === buf.length ? buf : buf.subarray(0, off);
  } catch (e) {
    if (e instanceof FileReadError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new FileReadError(`${file}: ${err.code === 'EISDIR' ? 'is a directory, not a file' : err.message}`, err.code);
  } finally {
    closeSync(fd);
  }
}

export const readTextBounded = (file: string, maxBytes: number): string => readBounded(file, maxBytes).toString('utf8');

export const SYSTEM_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENOENT: 'no such file or directory',
  EEXIST: 'already exists',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links',
  EIO: 'input/output error',
  EFBIG: 'the file is too large',
};
const SYSCALL_VERBS: Record<string, string> = {
  open: 'cannot open',
  mkdir: 'cannot create the folder',
  write: 'cannot write',
  read: 'cannot read',
  rename: 'cannot rename',
  unlink: 'cannot remove',
  fsync: 'cannot flush',
  fdatasync: 'cannot flush',
  ftruncate: 'cannot truncate',
  scandir: 'cannot list',
  stat: 'cannot examine',
};

/** One line for a Node file-system error ("cannot write /x: the file system is read-only"), or null. */
export function describeSystemError(e: unknown): string | null {
  const err = e as NodeJS.ErrnoException;
  if (!(e instanceof Error) || typeof err.code !== 'string' || !Object.hasOwn(SYSTEM_REASONS, err.code)) return null;
  const verb = err.syscall && Object.hasOwn(SYSCALL_VERBS, err.syscall) ? SYSCALL_VERBS[err.syscall] : err.syscall ? `${err.syscall} failed on` : 'failed on';
  const where = err.path ?? (err as { dest?: string }).dest ?? 'a file';
  return `${verb} ${where}: ${SYSTEM_REASONS[err.code]}`;
}

/** How a run's own file is opened: appended to, rewritten in place (truncation), read, or created afresh. */
const OPEN_FLAGS = {
  append: constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT,
  update: constants.O_RDWR,
  read: constants.O_RDONLY,
  create: constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC,
} as const;

/**
 * Opens a file ScaleLM writes into a folder it did not create itself — a run directory (metrics.jsonl, logs,
 * state files, a profile) or a config's folder (`export --write`) — refusing a symbolic link (a run directory
 * or a cloned repository from elsewhere could point it at any file of the user's, which would be truncated or
 * overwritten) and anything that is not a regular file (a FIFO would block the open until a reader came).
 * Throws FileReadError with one sentence; the caller closes the descriptor.
 */
export function openRunFile(file: string, how: keyof typeof OPEN_FLAGS, mode = 0o644): number {
  let fd: number;
  try {
    fd = openSync(file, OPEN_FLAGS[how] | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'ELOOP'
        ? 'is a symbolic link, not followed (it could point at any file)'
        : err.code === 'ENXIO'
          ? 'is a FIFO, not a regular file'
          : err.code !== undefined && Object.hasOwn(SYSTEM_REASONS, err.code)
            ? SYSTEM_REASONS[err.code]!
            : err.message;
    throw new FileReadError(`${file}: ${why}`, err.code);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new FileReadError(`${file}: is ${st.isFIFO() ? 'a FIFO' : st.isDirectory() ? 'a directory' : 'not a regular file'}, not a regular file`, 'ENOTREG');
  }
  return fd;
}

/** Writes `text` and fsyncs it (never through a symbolic link: openRunFile); returns the bytes written. */
export function writeFileSynced(file: string, text: string, mode?: number): number {
  const fd = openRunFile(file, 'create', mode);
  const b = Buffer.from(text, 'utf8');
  try {
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return b.length;
}
