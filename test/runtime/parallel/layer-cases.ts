// Deterministic inputs for the tensor-parallel layer tests, shared by the test (tp = 1 reference) and the
// ranks (layers-entry.ts). Dimensions like 13·tp and 17·tp: primes catch slicing bugs.
import { Block, gpt2BlockLayers, type GptShape } from '../../../runtime/model/gpt';
import { Embedding } from '../../../runtime/model/layers';
import type { ParamSpec } from '../../../runtime/model/params';
import { Rng } from '../../../runtime/model/rng';
import { ColumnParallelLinear, RowParallelLinear, SINGLE_DEVICE, tpVocab } from '../../../runtime/model/tp-layers';

export interface LayerCase {
  kind: 'column' | 'row' | 'block' | 'embedding' | 'ce';
  specs: ParamSpec[];
  params: Map<string, Float32Array>;
  seq: number;
  x?: Float32Array;
  dy?: Float32Array;
  inFeatures?: number;
  outFeatures?: number;
  shape?: GptShape;
  ids?: number[];
  logits?: Float32Array;
  vocab?: number;
  paddedVocab?: number;
  hidden?: number;
}

const normals = (n: number, stream: string, std = 0.5) => new Rng(97, stream).normals(n, std);
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function randomParams(specs: ParamSpec[]): Map<string, Float32Array> {
  return new Map(specs.map((s) => [s.name, normals(numel(s.shape), `param/${s.name}`)]));
}

/** The full (tp = 1) specs of the lone Linear cases, with the split the column- or row-parallel layer declares. */
export function linearSpecs(kind: 'column' | 'row', inFeatures: number, outFeatures: number): ParamSpec[] {
  const Layer = kind === 'column' ? ColumnParallelLinear : RowParallelLinear;
  return new Layer('lin', inFeatures, outFeatures, SINGLE_DEVICE).paramSpecs();
}

export function layerCase(name: string, tp: number): LayerCase {
  const seq = 5;
  const rows = 2 * seq;
  switch (name) {
    case 'column':
    case 'row': {
      const inFeatures = name === 'column' ? 17 * tp : 13 * tp;
      const outFeatures = name === 'column' ? 13 * tp : 17 * tp;
      const specs = linearSpecs(name, inFeatures, outFeatures);
      return { kind: name, specs, params: randomParams(specs), seq, inFeatures, outFeatures, x: normals(rows * inFeatures, 'x', 1), dy: normals(rows * outFeatures, 'dy', 1) };
    }
    case 'block': {
      const shape: GptShape = { layers: 2, hidden: 4 * 13, heads: 4, vocab: 100, positions: seq, ffnHidden: 4 * 17, eps: 1e-5 };
      const specs = new Block('h.0', gpt2BlockLayers(0, shape, 'none')).paramSpecs();
      return { kind: 'block', specs, params: randomParams(specs), seq, shape, x: normals(rows * shape.hidden, 'x', 1), dy: normals(rows * shape.hidden, 'dy', 1) };
    }
    case 'embedding': {
      const vocab = 100;
      const hidden = 17;
      const specs = new Embedding(vocab, seq, hidden).paramSpecs();
      // Ids on both sides of every shard boundary of a 128·tp-padded vocabulary, and the last real one.
      const ids = [0, 63, 64, 99, 1, 98, 50, 64, 63, 0];
      return { kind: 'embedding', specs, params: randomParams(specs), seq, ids, vocab, paddedVocab: tpVocab(vocab, tp), hidden, dy: normals(rows * hidden, 'dy', 1) };
    }
    case 'ce': {
      // Logits scaled by 1000: only a correct max-subtraction survives.
      const vocab = 13 * tp + 5;
      const logits = normals(rows * vocab, 'logits', 1000);
      const ids = Array.from({ length: rows }, (_, i) => (i * 7 + 3) % vocab);
      return { kind: 'ce', specs: [], params: new Map(), seq, logits, ids, vocab, paddedVocab: tpVocab(vocab, tp) };
    }
  }
  throw new Error(`no layer case ${name}`);
}

/** Columns [rank·cols/tp, (rank+1)·cols/tp) of a row-major [rows, cols] matrix. */
export function colSlice(values: Float32Array, cols: number, tp: number, rank: number): Float32Array {
  const rows = values.length / cols;
  const w = cols / tp;
  const out = new Float32Array(rows * w);
  for (let r = 0; r < rows; r++) out.set(values.subarray(r * cols + rank * w, r * cols + (rank + 1) * w), r * w);
  return out;
}
