// Activation memory: Korthikanti et al. 2022 (Table 2) as published, and ScaleLM's per-tensor generalisation of
// the same accounting (GQA, SwiGLU, any ffn size, fp32, dropout on/off, FlashAttention). Plus how many
// micro-batches each pipeline stage holds in flight under 1F1B and the interleaved schedule. Pure.
import type { Recompute } from './types';

/**
 * Korthikanti et al. Table 2, bytes stored per transformer layer for one micro-batch: 16-bit activations
 * (`elementBytes` 4 scales the tensor terms by 2; dropout masks stay 1 byte). Flash attention removes the
 * 5as²b attention-score term.
 */
export function korthikantiLayerBytes(s: number, b: number, h: number, a: number, t: number, sequenceParallel: boolean, recompute: Recompute, flashAttention = false, elementBytes = 2): number {
  const sbh = s * b * h;
  const scale = elementBytes / 2;
  const spDiv = sequenceParallel ? t : 1;
  if (recompute === 'full') return (2 * scale * sbh) / spDiv;
  // 34 = 10 outside the tensor-parallel region (two norm inputs 4, QKV and MLP inputs 4, two dropout masks 2)
  //    + 24 inside it (Q, K, V 6, projection input 2, fc1 output 8, fc2 input 8).
  const outside = (8 * scale + 2) / spDiv;
  const inside = (24 * scale) / t;
  // 5as²b = softmax output 2 + its dropout mask 1 + dropout output 2.
  const scores = recompute === 'selective' || flashAttention ? 0 : ((4 * scale + 1) * a * s) / (h * t);
  return sbh * (outside + inside + scores);
}

/** Dimensions for ScaleLM's per-tensor activation accounting. */
export interface ActivationShape {
  s: number;
  b: number;
  h: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  gated: boolean;
  tp: number;
  sequenceParallel: boolean;
  /** Bytes per activation element (2 for 16-bit, 4 for fp32). */
  e: number;
  /** Bytes per dropout-mask element; 0 without dropout. */
  mask: number;
  flashAttention: boolean;
}

export type TermSink = (label: string, bytes: number) => void;

/** The attention-core tensors (a·s² terms, or FlashAttention's statistics) for one layer and one micro-batch. */
export function attentionCoreBytes(x: ActivationShape, add?: TermSink): number {
  const { s, b, heads, tp } = x;
  if (x.flashAttention) {
    const stats = (4 * heads * s * b) / tp;
    add?.('FlashAttention softmax statistics (fp32 log-sum-exp, 4·a·s·b/t)', stats);
    return stats;
  }
  const scores = (heads * s * s * b) / tp;
  let total = x.e * scores;
  add?.('attention probabilities (softmax output, a·s²·b/t)', x.e * scores);
  if (x.mask > 0) {
    add?.('attention-dropout mask and output (a·s²·b/t)', (x.mask + x.e) * scores);
    total += (x.mask + x.e) * scores;
  }
  return total;
}

/**
 * Bytes one transformer layer stores for one micro-batch under `recompute`, term by term. Full recompute
 * keeps only the layer input; selective drops the attention core (recomputed in backward).
 */
export function layerActivationBytes(x: ActivationShape, recompute: Recompute, add?: TermSink): number {
  const { s, b, h, tp } = x;
  const sbh = s * b * h;
  const spDiv = x.sequenceParallel ? tp : 1;
  if (recompute === 'full') {
    const input = (x.e * sbh) / spDiv;
    add?.('layer input (kept for full recompute)', input);
    return input;
  }
  const d = h / x.heads;
  const terms: [string, number][] = [
    ['two norm inputs', (2 * x.e * sbh) / spDiv],
    ['QKV input (norm output)', (x.e * sbh) / spDiv],
    ['Q, K, V', (x.e * s * b * (x.heads + 2 * x.kvHeads) * d) / tp],
    ['attention output (projection input)', (x.e * sbh) / tp],
    ['MLP input (norm output)', (x.e * sbh) / spDiv],
    [x.gated ? 'gate and up projections (SwiGLU input)' : 'fc1 output (GELU input)', (x.e * s * b * x.ffn * (x.gated ? 2 : 1)) / tp],
    ['activation output (fc2 input)', (x.e * s * b * x.ffn) / tp],
  ];
  if (x.mask > 0) terms.push(['two residual-dropout masks', (2 * x.mask * sbh) / spDiv]);
  let total = 0;
  for (const [label, bytes] of terms) {
    add?.(label, bytes);
    total += bytes;
  }
  if (recompute === 'none') total += attentionCoreBytes(x, add);
  return total;
}

/**
 * Transformer layers' worth of activations a pipeline stage holds at its peak, in units of "one layer for one
 * micro-batch". 1F1B: stage i keeps min(m, p−i) micro-batches of its L/p layers. Interleaved (v chunks of
 * L/(p·v) layers): Megatron's warm-up keeps 2(p−i−1) + (v−1)p + 1 chunks, capped at m·v; for stage 0 with
 * enough micro-batches that is L·(1 + (p−1)/(p·v)).
 */
export function layersInFlight(layers: number, pp: number, vpp: number, microBatches: number, stage: number): number {
  if (pp === 1) return layers;
  if (vpp === 1) return (layers / pp) * Math.min(microBatches, pp - stage);
  const chunks = Math.min(microBatches * vpp, 2 * (pp - stage - 1) + (vpp - 1) * pp + 1);
  return (layers / (pp * vpp)) * chunks;
}

/** Micro-batches whose embedding output stage 0 holds (for the ids and embedding-dropout terms). */
export function microBatchesInFlight(layers: number, pp: number, vpp: number, microBatches: number, stage: number): number {
  return layersInFlight(layers, pp, vpp, microBatches, stage) / (layers / pp);
}
