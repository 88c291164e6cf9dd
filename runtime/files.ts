// Bounded reads of files a user, a run directory or a workspace hands us. Every read refuses what is not a
// regular file (a FIFO would block the reader forever, /dev/zero behind a symlink would fill memory) and
// anything larger than the limit for its kind, before reading a byte of it.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

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
