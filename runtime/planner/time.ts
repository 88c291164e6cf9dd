// Step-time model: matrix work from model FLOPs (Megatron's accounting, with recompute) at peak × efficiency,
// slower for small GEMMs (short micro-batches, thin tensor-parallel shards), plus the memory-bound ops
// (norms, dropout, activations, softmax) at HBM bandwidth; tensor-parallel all-reduces on the critical path;
// pipeline bubble (p−1)/(v·m) and point-to-point sends; data-parallel / ZeRO collectives hidden behind backward
// (or forward) up to its length, slowing the compute they overlap; optimizer step and offload transfers.
// Collectives are α-β at the achieved fraction of the link's bandwidth. Pure.
import { bytesPerParam } from './memory';
import { countParams, stageParams, type ParamCounts } from './params';
import type { CommModel, Layout, Overheads, PlanInput, TimeEstimate } from './types';

// The efficiency constants are set so that the model lands on Narayanan et al. 2021's measured Tables 1 and 2
// (A100, DGX nodes with 8 × HDR): see docs/planner.md, "Golden runs". `scalelm calibrate` refits them.
export const DEFAULT_COMM: CommModel = {
  intraNodeLatency: 5e-6,
  interNodeLatency: 15e-6,
  hostBandwidth: 25e9,
  cpuOptimizerParamsPerSec: 5e8,
  intraNodeCollectiveEfficiency: 0.8,
  interNodeCollectiveEfficiency: 0.7,
  gemmHalfSize: 64,
  elementwiseBytesReplicated: 30,
  elementwiseBytesSharded: 32,
  attentionBytesPerScore: 9,
  lossBytesPerLogit: 16,
  overlapSlowdown: 0.35,
};

export type Collective = 'all-reduce' | 'reduce-scatter' | 'all-gather';

/** Seconds for one collective over n ranks of a buffer of `bytes` (the full buffer), in `chunks` launches. */
export function collectiveTime(kind: Collective, n: number, bytes: number, bandwidth: number, latency: number, chunks = 1): number {
  if (n <= 1 || bytes <= 0) return 0;
  const volume = kind === 'all-reduce' ? (2 * (n - 1)) / n : (n - 1) / n;
  const depth = Math.ceil(Math.log2(n)) * (kind === 'all-reduce' ? 2 : 1);
  return (volume * bytes) / bandwidth + chunks * depth * latency;
}

/** Forward FLOPs of one transformer layer for b sequences: 2·b·s·(matmul weights) + 4·b·s²·(a·d) for QKᵀ and A·V. */
export function layerForwardFlops(input: PlanInput, b: number, counts: ParamCounts): number {
  const m = input.model;
  const weights = (counts.layer.attentionWeights + counts.layer.mlpWeights) * (counts.givenTotal ? counts.perLayer / counts.layer.total : 1);
  return 2 * b * m.seqLen * weights + 4 * b * m.seqLen * m.seqLen * m.hidden;
}

/** Forward FLOPs of the output layer (logits) for b sequences. */
export function logitsForwardFlops(input: PlanInput, b: number, counts: ParamCounts): number {
  return 2 * b * input.model.seqLen * input.model.hidden * counts.paddedVocab;
}

/**
 * Model FLOPs per step without recompute (3 × forward), and with the layout's recompute. For GPT shapes these
 * are Megatron's 72BsLh²(1 + s/6h + V/12Lh) and, with full recompute, 96BsLh²(1 + s/6h + V/16Lh).
 */
export function stepFlops(input: PlanInput, recompute: Layout['recompute'], counts = countParams(input.model)): { model: number; hardware: number } {
  const B = input.train.globalBatch;
  const L = input.model.layers;
  const layer = layerForwardFlops(input, 1, counts);
  const logits = logitsForwardFlops(input, 1, counts);
  const model = B * 3 * (L * layer + logits);
  let extra = 0;
  if (recompute === 'full') extra = B * L * layer;
  else if (recompute === 'selective' && !input.train.flashAttention) extra = B * L * 4 * input.model.seqLen ** 2 * input.model.hidden;
  return { model, hardware: model + extra };
}

export function commOf(partial?: Partial<CommModel>): CommModel {
  return { ...DEFAULT_COMM, ...partial };
}

/** Whether a group of `size` ranks with consecutive members `stride` apart sits inside one node. */
function groupInNode(size: number, stride: number, gpusPerNode: number): boolean {
  const span = size * stride;
  return span <= gpusPerNode && gpusPerNode % span === 0;
}

/** Fraction of the large-GEMM rate a GEMM whose smaller dimension is `x` reaches: x / (x + half). */
export function gemmSizeFactor(x: number, half: number): number {
  return x / (x + half);
}

export function estimateTime(input: PlanInput, layout: Layout, overheads: Overheads, commModel: CommModel, counts?: ParamCounts): TimeEstimate {
  const { model, train, cluster } = input;
  const { dp, tp, pp, vpp, zero, microBatch: b } = layout;
  const c = counts ?? countParams(model, tp);
  const N = dp * tp * pp;
  const peak = cluster.spec.peakFlops;
  const hbm = cluster.spec.memoryBandwidth;
  const m = train.globalBatch / (dp * b);
  const L = model.layers;
  const perStage = L / pp;
  const s = model.seqLen;
  const h = model.hidden;
  const e = train.precision === 'fp32' ? 4 : 2;
  const gpn = cluster.gpusPerNode;
  const cm = commModel;

  const tpIntra = groupInNode(tp, 1, gpn);
  const dpIntra = groupInNode(dp, tp, gpn);
  const ppIntra = tp * dp * pp <= gpn;
  const link = (intra: boolean) =>
    intra
      ? { bw: cluster.spec.intraNodeBandwidth * cm.intraNodeCollectiveEfficiency, lat: cm.intraNodeLatency, raw: cluster.spec.intraNodeBandwidth }
      : { bw: cluster.spec.interNodeBandwidth * cm.interNodeCollectiveEfficiency, lat: cm.interNodeLatency, raw: cluster.spec.interNodeBandwidth };
  const tpLink = link(tpIntra);
  const dpLink = link(dpIntra);
  const ppLink = link(ppIntra);

  // One layer, one micro-batch, one GPU: matrix work at a rate that falls for small GEMMs, memory-bound ops at HBM bandwidth.
  const g = (x: number) => gemmSizeFactor(x, cm.gemmHalfSize);
  const tokens = b * s;
  const fp32Scale = train.precision === 'fp32' ? 2 : 1;
  const gemmRate = (peak * cluster.efficiency * g(tokens) * g(h / tp)) / fp32Scale;
  const attnRate = (peak * cluster.efficiency * g(s)) / fp32Scale;
  const weightF = layerForwardFlops(input, b, c) - 4 * b * s * s * h;
  const attnCoreF = 4 * b * s * s * h;
  const spDiv = layout.sequenceParallel ? tp : 1;
  const eltBytes = (tokens * h * (cm.elementwiseBytesReplicated / spDiv + cm.elementwiseBytesSharded / tp) * e) / 2;
  const scoreBytes = train.flashAttention ? 0 : (cm.attentionBytesPerScore * b * (model.heads / tp) * s * s * e) / 2;
  const tGemm = weightF / tp / gemmRate;
  const tAttn = attnCoreF / tp / attnRate;
  const tElt = eltBytes / hbm;
  const tScore = scoreBytes / hbm;
  const layerFwd = tGemm + tAttn + tElt + tScore;
  const layerBwd = 2 * (tGemm + tAttn + tElt + tScore);
  // Logits: a GEMM over V/tp columns, then the loss's fp32 softmax over them (memory-bound).
  const logitsF = logitsForwardFlops(input, b, c) / tp / ((peak * cluster.efficiency * g(tokens) * g(h)) / fp32Scale) + (cm.lossBytesPerLogit * tokens * c.paddedVocab) / tp / hbm;

  const actBytes = tokens * h * e;
  const arLayer = collectiveTime('all-reduce', tp, actBytes, tpLink.bw, tpLink.lat);
  const tpOpsPerLayer = 4 + (layout.recompute === 'full' ? 2 : 0);
  const p2p = pp > 1 ? 2 * vpp * (ppLink.lat + actBytes / tp / ppLink.raw) : 0;

  // One micro-batch on a stage, per GPU: forward, backward, recompute, TP collectives, p2p.
  const stageTimes = (last: boolean, first: boolean) => {
    const fwd = perStage * layerFwd + (last ? logitsF : 0);
    const bwd = perStage * layerBwd + (last ? 2 * logitsF : 0);
    let re = 0;
    if (layout.recompute === 'full') re = perStage * layerFwd;
    else if (layout.recompute === 'selective' && !train.flashAttention) re = perStage * (tAttn + tScore);
    const tpc = perStage * tpOpsPerLayer * arLayer + (first ? arLayer : 0);
    return { fwd, bwd, re, tpc, total: fwd + bwd + re + tpc + p2p };
  };
  const firstT = stageTimes(pp === 1, true);
  const lastT = pp === 1 ? firstT : stageTimes(true, false);
  const slow = lastT.total > firstT.total ? lastT : firstT;
  const tMb = slow.total;
  const bubble = ((pp - 1) / vpp) * tMb;
  const pipeline = m * tMb + bubble;

  // Data-parallel / ZeRO communication of the rank holding the most parameters.
  const rankParams = Math.max(stageParams(c, L, tp, pp, 0).params, stageParams(c, L, tp, pp, pp - 1).params);
  const bpp = bytesPerParam(input, zero);
  const mixed = train.precision !== 'fp32';
  const gradBytes = rankParams * (mixed && zero >= 2 ? 2 : 4);
  const paramBytes = rankParams * bpp.param;
  const bucket = zero <= 1 ? (input.parallel.bucketMB ?? 25) * 1e6 : overheads.reduceBucketElements * (mixed ? 2 : 4);
  // ZeRO-3 fetches module by module (four linears per layer, the embedding and the head): one launch each.
  const modules = 4 * perStage + 2;
  const chunks = (bytes: number) => Math.max(zero === 3 ? modules : 1, Math.ceil(bytes / bucket));
  const tb = slow.bwd + slow.re;
  const tf = slow.fwd;
  let dpTotal = 0;
  let dpExposed = 0;
  if (dp > 1) {
    const ar = collectiveTime('all-reduce', dp, gradBytes, dpLink.bw, dpLink.lat, chunks(gradBytes));
    const rs = collectiveTime('reduce-scatter', dp, gradBytes, dpLink.bw, dpLink.lat, chunks(gradBytes));
    const ag = collectiveTime('all-gather', dp, paramBytes, dpLink.bw, dpLink.lat, chunks(paramBytes));
    if (zero === 0) {
      dpTotal = ar;
      dpExposed = Math.max(0, ar - tb);
    } else if (zero === 1) {
      dpTotal = rs + ag;
      dpExposed = Math.max(0, rs - tb) + Math.max(0, ag - tf);
    } else if (zero === 2) {
      dpTotal = m * rs + ag;
      dpExposed = m * Math.max(0, rs - tb) + Math.max(0, ag - tf);
    } else {
      // Every micro-batch gathers the parameters for forward and again for backward, where the gradients'
      // reduce-scatter shares the same links.
      dpTotal = m * (2 * ag + rs);
      dpExposed = m * (Math.max(0, ag - tf) + Math.max(0, ag + rs - tb));
    }
  }
  const contention = cm.overlapSlowdown * (dpTotal - dpExposed);

  // Optimizer step: memory-bound on the GPU, or CPU Adam plus PCIe transfers when offloaded.
  const optParams = rankParams / (zero >= 1 ? dp : 1);
  let optimizer: number;
  let offload = 0;
  if (layout.offloadOptimizer) {
    optimizer = optParams / cm.cpuOptimizerParamsPerSec;
    offload += (optParams * ((mixed ? 2 : 4) + bpp.param)) / cm.hostBandwidth;
  } else {
    const touched = bpp.param * 2 + 4 + 2 * bpp.optimizer;
    optimizer = (optParams * touched) / hbm;
  }
  if (layout.offloadParams) offload += (m * (2 * paramBytes + gradBytes)) / dp / cm.hostBandwidth;

  const step = pipeline + dpExposed + contention + optimizer + offload;
  const flops = stepFlops(input, layout.recompute, c);
  return {
    stepMs: step * 1e3,
    tokensPerSec: (train.globalBatch * s) / step,
    mfu: flops.model / (step * N * peak),
    tflopsPerGpu: flops.hardware / (step * N) / 1e12,
    microBatches: m,
    breakdown: {
      compute: m * (slow.fwd + slow.bwd),
      recompute: m * slow.re,
      tensorParallelComm: m * slow.tpc,
      pipelineComm: m * p2p,
      bubble,
      dataParallelExposed: dpExposed,
      dataParallelTotal: dpTotal,
      contention,
      optimizer,
      offload,
    },
    tensorParallelAcrossNodes: tp > 1 && !tpIntra,
    dataParallelAcrossNodes: dp > 1 && !dpIntra,
  };
}
