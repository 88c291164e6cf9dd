// How each GPT-2 parameter is split over a tensor-parallel group, and the slicing both ways: a rank's shard
// from the full tensor (every layout starts from the single-device initial weights), and the full tensor
// from the shards (consolidation). Pure: typed arrays only.
//   qkv      c_attn weight [C, 3C] / bias [3C]: per head — rank r gets [Q_r | K_r | V_r], never a naive
//            column split of concat(Q, K, V) (which would give rank 0 only Q)
//   cols     mlp.c_fc weight [C, F] / bias [F]: the output dimension
//   rows     attn.c_proj and mlp.c_proj weights [in, C]: the input dimension
//   vocab    wte [V, C]: rows of the vocabulary padded to a multiple of 128·tp (padding rows are zero)
//   replicate  LayerNorms, wpe, row-parallel biases
import { numel } from '../model/params';

export type ShardRule = 'replicate' | 'rows' | 'cols' | 'qkv' | 'vocab';

export function shardRule(name: string): ShardRule {
  if (name === 'wte.weight') return 'vocab';
  if (/^h\.\d+\.attn\.c_attn\.(weight|bias)$/.test(name)) return 'qkv';
  if (/^h\.\d+\.mlp\.c_fc\.(weight|bias)$/.test(name)) return 'cols';
  if (/^h\.\d+\.(attn|mlp)\.c_proj\.weight$/.test(name)) return 'rows';
  return 'replicate';
}

/** Whether the parameter is split over the tensor-parallel group (else every member holds all of it). */
export const isSharded = (name: string, tp: number): boolean => tp > 1 && shardRule(name) !== 'replicate';

/** The shard's shape on one rank. `paddedRows`: the padded vocabulary (wte only). */
export function shardShape(name: string, full: readonly number[], tp: number, paddedRows = full[0]!): number[] {
  const rule = tp === 1 ? 'replicate' : shardRule(name);
  switch (rule) {
    case 'replicate':
      return [...full];
    case 'vocab':
      return [paddedRows / tp, full[1]!];
    case 'rows':
      return [full[0]! / tp, ...full.slice(1)];
    case 'cols':
    case 'qkv':
      return [...full.slice(0, -1), full[full.length - 1]! / tp];
  }
}

/** Column index in the full last dimension of local column j (qkv: per head, three sections). */
function fullColumn(rule: 'cols' | 'qkv', width: number, tp: number, rank: number, j: number): number {
  if (rule === 'cols') return rank * (width / tp) + j;
  const section = width / 3; // Q, K or V: heads · headDim columns each
  const local = section / tp;
  const s = Math.floor(j / local);
  return s * section + rank * local + (j % local);
}

/** This rank's shard of a full tensor. */
export function sliceShard(name: string, fullShape: readonly number[], full: Float32Array, tp: number, rank: number, paddedRows = fullShape[0]!): Float32Array {
  const rule = tp === 1 ? 'replicate' : shardRule(name);
  const shape = shardShape(name, fullShape, tp, paddedRows);
  const out = new Float32Array(numel(shape));
  switch (rule) {
    case 'replicate':
      out.set(full);
      break;
    case 'vocab':
    case 'rows': {
      const rowLen = numel(fullShape.slice(1));
      const rows = shape[0]!;
      const first = rank * rows;
      // Rows past the real vocabulary stay zero.
      const realRows = Math.max(0, Math.min(rows, fullShape[0]! - first));
      out.set(full.subarray(first * rowLen, (first + realRows) * rowLen));
      break;
    }
    case 'cols':
    case 'qkv': {
      const width = fullShape[fullShape.length - 1]!;
      const localWidth = width / tp;
      const rows = full.length / width;
      const map = Int32Array.from({ length: localWidth }, (_, j) => fullColumn(rule, width, tp, rank, j));
      for (let r = 0; r < rows; r++) for (let j = 0; j < localWidth; j++) out[r * localWidth + j] = full[r * width + map[j]!]!;
      break;
    }
  }
  return out;
}

/** The full tensor from every rank's shard (index = tp rank); padding rows of wte are dropped. */
export function joinShards(name: string, fullShape: readonly number[], shards: Float32Array[], tp: number): Float32Array {
  const rule = tp === 1 ? 'replicate' : shardRule(name);
  const out = new Float32Array(numel(fullShape));
  switch (rule) {
    case 'replicate':
      out.set(shards[0]!);
      break;
    case 'vocab':
    case 'rows': {
      const rowLen = numel(fullShape.slice(1));
      const rows = shards[0]!.length / rowLen;
      for (let r = 0; r < tp; r++) {
        const first = r * rows;
        const realRows = Math.max(0, Math.min(rows, fullShape[0]! - first));
        if (realRows > 0) out.set(shards[r]!.subarray(0, realRows * rowLen), first * rowLen);
      }
      break;
    }
    case 'cols':
    case 'qkv': {
      const width = fullShape[fullShape.length - 1]!;
      const localWidth = width / tp;
      const rows = out.length / width;
      for (let rank = 0; rank < tp; rank++) {
        const s = shards[rank]!;
        for (let j = 0; j < localWidth; j++) {
          const c = fullColumn(rule, width, tp, rank, j);
          for (let r = 0; r < rows; r++) out[r * width + c] = s[r * localWidth + j]!;
        }
      }
      break;
    }
  }
  return out;
}
