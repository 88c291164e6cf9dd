// The public anchors, each in its own terms and nothing more: the ZeRO paper's model-state formulas,
// DeepSpeed's estimators, Megatron-LM's theoretical_memory_usage.py, and accelerate's estimate-memory.
// They take plain numbers so they can be checked against the published figures directly. Pure.

/**
 * ZeRO paper (Rajbhandari et al. 2020), model states per device: Ψ params with `paramBytes` + `gradBytes` +
 * K optimizer bytes each; stage 1 partitions the optimizer states over d, stage 2 also the gradients, stage 3
 * also the parameters. Mixed-precision Adam: 2 + 2 + 12 = 16 bytes.
 */
export function zeroPaperModelStates(psi: number, d: number, stage: 0 | 1 | 2 | 3, K = 12, paramBytes = 2, gradBytes = 2): { params: number; grads: number; optimizer: number; total: number } {
  const params = (paramBytes * psi) / (stage >= 3 ? d : 1);
  const grads = (gradBytes * psi) / (stage >= 2 ? d : 1);
  const optimizer = (K * psi) / (stage >= 1 ? d : 1);
  return { params, grads, optimizer, total: params + grads + optimizer };
}

const int = Math.trunc; // Python's int() on a float

/**
 * DeepSpeed `estimate_zero2_model_states_mem_needs` (deepspeed/runtime/zero/stage_1_and_2.py). Current code:
 * GPU 2Ψ + 18Ψ/N without offload (2 fp16 params, then 2 fp16 grads + 4 fp32 grads + 4 fp32 params + 8 Adam
 * states partitioned). `legacy` is the older 4Ψ + 16Ψ/N that the printed docs table (15.93GB for t5-3b) shows.
 * Host: Ψ·max(4N, 16)·factor with offload, else Ψ·4·gpus_per_node·factor (model init). Bytes per node.
 */
export function deepspeedZero2(totalParams: number, gpusPerNode: number, nodes: number, cpuOffload: boolean, bufferFactor = 1.5, legacy = false): { gpu: number; cpu: number } {
  const totalGpus = nodes * gpusPerNode;
  let gpu: number;
  let cpu: number;
  if (cpuOffload) {
    gpu = 2 * totalParams;
    cpu = totalParams * Math.max(4 * totalGpus, 16) * bufferFactor;
  } else {
    gpu = legacy ? 4 * totalParams + int((16 * totalParams) / totalGpus) : 2 * totalParams + int((18 * totalParams) / totalGpus);
    cpu = totalParams * 4 * gpusPerNode * bufferFactor;
  }
  return { gpu: int(gpu), cpu: int(cpu) };
}

/**
 * DeepSpeed `estimate_zero3_model_states_mem_needs` (deepspeed/runtime/zero/stage3.py). GPU: 4·largest layer
 * (its fp16 params gathered and fp16 grads) + 18Ψ/N, or + 2Ψ/N with the optimizer offloaded, or + 0 with
 * parameters offloaded too. Host per node as DeepSpeed computes it (zero_init changes it).
 */
export function deepspeedZero3(
  totalParams: number,
  largestLayerParams: number,
  gpusPerNode: number,
  nodes: number,
  cpuOffload: boolean,
  cpuOffloadParams: boolean,
  zeroInit = true,
  bufferFactor = 1.5,
): { gpu: number; cpu: number; largestLayerMemory: number } {
  const totalGpus = nodes * gpusPerNode;
  const gpusFactor = 1 / nodes;
  const largestLayerMemory = 4 * largestLayerParams;
  let gpu: number;
  let cpu: number;
  if (cpuOffload) {
    if (cpuOffloadParams) {
      gpu = largestLayerMemory;
      cpu = zeroInit ? totalParams * 18 * gpusFactor * bufferFactor : totalParams * Math.max(4 * gpusPerNode, 18 * gpusFactor) * bufferFactor;
    } else {
      gpu = largestLayerMemory + int((2 * totalParams) / totalGpus);
      cpu = zeroInit ? totalParams * 16 * gpusFactor * bufferFactor : totalParams * Math.max(4 * gpusPerNode, 16 * gpusFactor) * bufferFactor;
    }
  } else {
    gpu = largestLayerMemory + int((18 * totalParams) / totalGpus);
    cpu = zeroInit ? largestLayerParams * 4 * gpusPerNode * bufferFactor : totalParams * 4 * gpusPerNode * bufferFactor;
  }
  return { gpu: int(gpu), cpu: int(cpu), largestLayerMemory };
}

/** The Megatron-LM arguments its theoretical memory formula reads. */
export interface MegatronArgs {
  numLayers: number;
  hiddenSize: number;
  numAttentionHeads: number;
  numQueryGroups: number;
  kvChannels: number;
  ffnHiddenSize: number;
  swiglu: boolean;
  normalization: 'LayerNorm' | 'RMSNorm';
  paddedVocabSize: number;
  untieEmbeddingsAndOutputWeights: boolean;
  tensorModelParallelSize: number;
  pipelineModelParallelSize: number;
  /** null when the schedule is not interleaved (Megatron's None). */
  virtualPipelineModelParallelSize: number | null;
  dataParallelSize: number;
  useDistributedOptimizer: boolean;
  seqLength: number;
  microBatchSize: number;
  sequenceParallel: boolean;
  recomputeGranularity: 'selective' | 'full' | null;
  /** The formula before Megatron-LM PR #4687: norms divided by tp like the linear weights. */
  legacyNormsSharded?: boolean;
}

/**
 * `compute_weight_and_optimizer_memory` (megatron/training/theoretical_memory_usage.py, dense, no MTP), current
 * code (Megatron-LM PR #4687, mirrored in Megatron-Bridge): the most loaded shard holds
 * (tp-sharded block/pp + one embedding)/tp + replicated block/pp (the norms: 2·h·norm_size per layer and the
 * final norm, on every tp rank) (+ the untied head/tp when pp = 1), at 18 bytes per parameter, or 6 + 12/d with
 * the distributed optimizer. `legacyNormsSharded`: the code before that PR, which divided the norms by tp too.
 * No linear biases, no learned positions.
 */
export function megatronWeightAndOptimizer(args: MegatronArgs): { mostLoadedShardParams: number; bytesPerParameter: number; bytes: number; totalParams: number } {
  const h = args.hiddenSize;
  const queryProjectionToHidden = (args.kvChannels * args.numAttentionHeads) / h;
  const gated = args.swiglu ? 3 / 2 : 1;
  const normSize = args.normalization === 'RMSNorm' ? 1 : 2;
  const selfAttn = 2 * h * h * ((1 + args.numQueryGroups / args.numAttentionHeads) * queryProjectionToHidden);
  // Linear weights are split over tp; the two norms per layer and the final norm are replicated on every tp rank.
  const tpSharded = 2 * h * args.ffnHiddenSize * gated + selfAttn;
  const replicatedPerLayer = 2 * h * normSize;
  const embeddingSize = h * args.paddedVocabSize;
  const finalNorm = normSize * h;
  const tpShardedBlock = tpSharded * args.numLayers;
  const replicatedBlock = replicatedPerLayer * args.numLayers + finalNorm;
  const block = tpShardedBlock + replicatedBlock;
  const embeddingLayers = args.untieEmbeddingsAndOutputWeights ? 2 * embeddingSize : embeddingSize;
  const p = args.pipelineModelParallelSize;
  const t = args.tensorModelParallelSize;
  let shard = args.legacyNormsSharded ? (block / p + embeddingSize) / t : (tpShardedBlock / p + embeddingSize) / t + replicatedBlock / p;
  if (args.untieEmbeddingsAndOutputWeights && p === 1) shard += embeddingSize / t;
  const bytesPerParameter = args.useDistributedOptimizer ? 6 + 12 / args.dataParallelSize : 18;
  return { mostLoadedShardParams: shard, bytesPerParameter, bytes: shard * bytesPerParameter, totalParams: block + embeddingLayers };
}

/**
 * Megatron's activation estimate for the first pipeline stage. With sequence parallelism and selective
 * recompute: `compute_activation_memory`, sbh(18 + 4f/h) per layer, all divided by tp. Otherwise
 * `compute_activation_memory_without_sp`: sbh(10 + 24/t) per layer (whatever the recompute setting), the
 * output layer in 2-byte terms, times 1.05.
 */
export function megatronActivations(args: MegatronArgs, numMicrobatches: number | null): { bytes: number; formula: 'with-sp' | 'without-sp' } {
  const s = args.seqLength;
  const b = args.microBatchSize;
  const h = args.hiddenSize;
  const p = args.pipelineModelParallelSize;
  const v = args.virtualPipelineModelParallelSize;
  const t = args.tensorModelParallelSize;
  const withSp = args.sequenceParallel && args.recomputeGranularity === 'selective';
  let mem = withSp ? s * b * h * (18 + 4 * (args.ffnHiddenSize / h)) : s * b * h * (10 + 24 / t);
  mem *= args.numLayers;
  mem += 8 * s * b * p; // input ids, p micro-batches in flight
  mem += s * b * h * p; // embedding dropout mask
  if (v !== null) mem *= 1 + (p - 1) / (p * v);
  if (v === null && p > 1 && numMicrobatches !== null) mem *= Math.min(1, numMicrobatches / p);
  if (withSp) {
    if (p === 1) mem += s * b * h * 4 * (1 + args.paddedVocabSize / h);
    return { bytes: mem / t, formula: 'with-sp' };
  }
  if (p === 1) mem += ((s * b * args.paddedVocabSize) / t + s * b * h) * 2;
  return { bytes: mem * 1.05, formula: 'without-sp' };
}

/**
 * accelerate `estimate_training_usage` (src/accelerate/commands/estimate.py) for a model whose fp32 size is
 * `fp32Bytes`; its "Training using Adam" column is the MAX of these four, not their sum.
 */
export function accelerateTrainingUsage(fp32Bytes: number, dtype: 'float32' | 'float16'): { model: number; gradients: number; optimizer: number; step: number; reported: number } {
  const fp16 = Math.floor(fp32Bytes / 2);
  const r =
    dtype === 'float32'
      ? { model: fp32Bytes, gradients: fp32Bytes, optimizer: 2 * fp32Bytes, step: 4 * fp32Bytes }
      : { model: fp32Bytes, gradients: fp32Bytes + fp16, optimizer: 2 * fp32Bytes, step: 2 * fp32Bytes };
  return { ...r, reported: Math.max(r.model, r.gradients, r.optimizer, r.step) };
}
