// The slicing of a tensor-parallel split both ways: a rank's shard from the full tensor (every layout starts
// from the single-device initial weights), and the full tensor from the shards (consolidation). Which
// dimension is split is not decided here: the layer that creates a parameter declares it on its ParamSpec
// (`tp`, see model/params.ts); GPT-2's declarations are in model/tp-layers.ts and model/layers.ts:
//   c_attn weight [C, 3C] / bias [3C]   dim last, 3 sections (per head: rank r gets [Q_r | K_r | V_r])
//   mlp.c_fc weight [C, F] / bias [F]   dim last (column-parallel: the output dimension)
//   attn/mlp c_proj weight [in, C]      dim 0 (row-parallel: the input dimension)
//   wte [V, C]                          dim 0, padded: vocabulary rows padded to a multiple of 128·tp (zero)
//   LayerNorms, wpe, row-parallel biases: no split (replicated)
// Pure: typed arrays only.
import { numel, type TpSplit } from '../model/params';

/** Whether a parameter with this declaration is split over a group of `tp` (else every member holds all of it). */
export const isSplit = (split: TpSplit | undefined, tp: number): split is TpSplit => tp > 1 && split !== undefined;

/** The split dimension's geometry: [outer, width (real), padded width, inner]. */
function geometry(split: TpSplit, full: readonly number[], paddedRows: number): [number, number, number, number] {
  const width = full[split.dim]!;
  return [numel(full.slice(0, split.dim)), width, split.padded ? paddedRows : width, numel(full.slice(split.dim + 1))];
}

/** Index along the full (padded) dimension of a rank's local index j (sections: each split on its own). */
function fullIndex(split: TpSplit, padded: number, tp: number, rank: number, j: number): number {
  const section = padded / (split.sections ?? 1);
  const local = section / tp;
  return Math.floor(j / local) * section + rank * local + (j % local);
}

/** The shard's shape on one rank. `paddedRows`: the padded vocabulary (a `padded` split only). */
export function shardShape(split: TpSplit | undefined, full: readonly number[], tp: number, paddedRows = full[0]!): number[] {
  if (!isSplit(split, tp)) return [...full];
  const shape = [...full];
  shape[split.dim] = geometry(split, full, paddedRows)[2] / tp;
  return shape;
}

/** Copies between the full tensor and one rank's shard along the split dimension (padding is skipped). */
function copy(split: TpSplit, fullShape: readonly number[], full: Float32Array, shard: Float32Array, tp: number, rank: number, paddedRows: number, toShard: boolean): void {
  const [outer, width, padded, inner] = geometry(split, fullShape, paddedRows);
  const local = padded / tp;
  for (let j = 0; j < local; j++) {
    const c = fullIndex(split, padded, tp, rank, j);
    if (c >= width) continue; // a padding row: zero in the shard, absent from the full tensor
    for (let o = 0; o < outer; o++) {
      const f = (o * width + c) * inner;
      const s = (o * local + j) * inner;
      if (inner === 1) {
        if (toShard) shard[s] = full[f]!;
        else full[f] = shard[s]!;
      } else if (toShard) shard.set(full.subarray(f, f + inner), s);
      else full.set(shard.subarray(s, s + inner), f);
    }
  }
}

/** This rank's shard of a full tensor. */
export function sliceShard(split: TpSplit | undefined, fullShape: readonly number[], full: Float32Array, tp: number, rank: number, paddedRows = fullShape[0]!): Float32Array {
  if (!isSplit(split, tp)) return full.slice();
  const out = new Float32Array(numel(shardShape(split, fullShape, tp, paddedRows)));
  copy(split, fullShape, full, out, tp, rank, paddedRows, true);
  return out;
}

/** The full tensor from every rank's shard (index = tp rank); padding rows are dropped. */
export function joinShards(split: TpSplit | undefined, fullShape: readonly number[], shards: Float32Array[], tp: number): Float32Array {
  if (!isSplit(split, tp)) return shards[0]!.slice();
  const out = new Float32Array(numel(fullShape));
  // The padded width follows from a shard's length: it holds padded/tp of the dimension.
  const [, width, , inner] = geometry(split, fullShape, 0);
  const rest = numel(fullShape) / (width * inner);
  const paddedRows = (shards[0]!.length / (rest * inner)) * tp;
  for (let rank = 0; rank < tp; rank++) copy(split, fullShape, out, shards[rank]!, tp, rank, paddedRows, false);
  return out;
}
