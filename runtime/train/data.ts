// Training data: a deterministic synthetic stream, a UTF-8 text file read as bytes (vocab 256), or a
// pre-tokenized nanoGPT .bin of little-endian uint16. The tail valFraction of the stream is held out.
// Which window a batch row reads is a pure function of (seed, step, row), so the data order is the same
// on every run, after a resume, and for any split of a step's rows over micro-batches or data-parallel
// ranks. Nothing is downloaded.
import { READ_LIMITS, readBounded, type FileReadError } from '../files';
import { isAbsolute, resolve } from 'node:path';
import type { DataConfig } from '../config/types';
import { Rng, uniformAt } from '../model/rng';

export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataError';
  }
}

export interface TokenStream {
  /** What the data is, for the log: "text data/tiny.txt (1.1 MB)". */
  description: string;
  train: Uint16Array;
  val: Uint16Array;
  /** Token ids are below this. */
  vocab: number;
}

export interface DataShape {
  vocab: number;
  seqLen: number;
}

/** Byte-level tokenizer: a token is one byte of the UTF-8 encoding. */
export const byteTokenizer = {
  vocab: 256,
  encode(text: string): Uint16Array {
    return Uint16Array.from(Buffer.from(text, 'utf8'));
  },
  decode(tokens: ArrayLike<number>): string {
    return Buffer.from(Array.from(tokens, (t) => t & 0xff)).toString('utf8');
  },
};

export function loadTokens(data: DataConfig, baseDir: string, shape: DataShape, seed: number, needVal: boolean): TokenStream {
  let all: Uint16Array;
  let description: string;
  if (data.source === 'synthetic') {
    all = syntheticTokens(shape.vocab, seed, 1 << 20);
    description = `synthetic (${all.length.toLocaleString('en-US')} tokens, seed ${seed})`;
  } else {
    if (!data.path) throw new DataError(`data.source="${data.source}" needs data.path (a local file, relative to the config)`);
    const file = isAbsolute(data.path) ? data.path : resolve(baseDir, data.path);
    let bytes: Buffer;
    try {
      bytes = readBounded(file, READ_LIMITS.data);
    } catch (e) {
      const fe = e as FileReadError;
      if (fe.code === 'ENOTREG') throw new DataError(`data.path ${file} is not a file`);
      throw new DataError(`cannot read data.path ${fe.message}`);
    }
    if (data.source === 'text') {
      if (shape.vocab < 256) throw new DataError(`data.source="text" uses byte-level tokens (256 ids) but model.vocab=${shape.vocab}; set model.vocab to 256 or more`);
      all = Uint16Array.from(bytes);
      description = `text ${data.path} (${bytes.length.toLocaleString('en-US')} bytes, byte-level tokens)`;
    } else {
      if (bytes.length % 2 !== 0) throw new DataError(`${file}: a nanoGPT token file holds uint16 values, but its size (${bytes.length} bytes) is odd`);
      all = new Uint16Array(bytes.length / 2);
      for (let i = 0; i < all.length; i++) all[i] = bytes.readUInt16LE(2 * i);
      for (let i = 0; i < all.length; i++) {
        if (all[i]! >= shape.vocab)
          throw new DataError(`${file}: token ${all[i]} at position ${i} (byte offset ${2 * i}) is not below model.vocab=${shape.vocab}; is this file tokenized for this model?`);
      }
      description = `tokens ${data.path} (${all.length.toLocaleString('en-US')} uint16 tokens)`;
    }
  }
  const need = shape.seqLen + 1;
  const valLen = Math.floor(all.length * data.valFraction);
  const trainLen = all.length - valLen;
  if (trainLen < need) throw new DataError(`${description}: ${trainLen} training tokens, fewer than one sequence of model.seqLen+1=${need}; use more data or a shorter model.seqLen`);
  if (needVal && valLen < need) {
    throw new DataError(
      `${description}: the held-out split (data.valFraction=${data.valFraction}) has ${valLen} tokens, fewer than one sequence of ${need}; raise data.valFraction, add data, or set train.evalEvery to 0`,
    );
  }
  return { description, train: all.subarray(0, trainLen), val: all.subarray(trainLen), vocab: shape.vocab };
}

/**
 * A learnable but not trivial stream: a random sparse Markov chain where each token has four possible
 * successors (entropy ln 4 ≈ 1.386 nats per token once learned; ln(vocab) at the start).
 */
export function syntheticTokens(vocab: number, seed: number, length: number): Uint16Array {
  const rng = new Rng(seed, 'data/synthetic');
  const successors = new Uint16Array(vocab * 4);
  for (let i = 0; i < successors.length; i++) successors[i] = rng.nextUint32() % vocab;
  const out = new Uint16Array(length);
  let t = rng.nextUint32() % vocab;
  for (let i = 0; i < length; i++) {
    out[i] = t;
    t = successors[t * 4 + (rng.nextUint32() & 3)]!;
  }
  return out;
}

export interface Batch {
  /** int32 [rows·seq], row-major. */
  tokens: Int32Array;
  targets: Int32Array;
  rows: number;
  seq: number;
}

/** Random windows of a token stream (nanoGPT's sampling), addressed by (step, row): no hidden cursor. */
export class BatchSampler {
  constructor(
    readonly stream: Uint16Array,
    readonly seq: number,
    readonly seed: number,
    /** Separates the training and evaluation sequences. */
    readonly split: 'train' | 'val',
  ) {
    if (stream.length < seq + 1) throw new DataError(`the ${split} split has ${stream.length} tokens, fewer than seq+1=${seq + 1}`);
  }

  /** Start of row `row` of step `step`. */
  offset(step: number, row: number): number {
    const span = this.stream.length - this.seq; // starts 0 .. len-seq-1 leave room for the shifted target
    return Math.floor(uniformAt(this.seed, this.split === 'train' ? 1 : 2, step, row) * span);
  }

  /** Rows [firstRow, firstRow + rows) of step `step`. */
  batch(step: number, firstRow: number, rows: number): Batch {
    const T = this.seq;
    const tokens = new Int32Array(rows * T);
    const targets = new Int32Array(rows * T);
    for (let r = 0; r < rows; r++) {
      const o = this.offset(step, firstRow + r);
      for (let t = 0; t < T; t++) {
        tokens[r * T + t] = this.stream[o + t]!;
        targets[r * T + t] = this.stream[o + t + 1]!;
      }
    }
    return { tokens, targets, rows, seq: T };
  }
}
