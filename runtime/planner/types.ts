// The planner's inputs and outputs. A resolved RunConfig satisfies PlanInput as it is, so the CLI and the
// extension pass their config straight in; the search builds PlanInputs of its own. Bytes are bytes. Pure.
import type { GpuSpec, ModelShape } from '../config/presets';

export type Precision = 'fp32' | 'bf16-mixed' | 'fp16-mixed';
export type Recompute = 'none' | 'selective' | 'full';
export type OptimizerName = 'adamw' | 'adam' | 'sgd';
export type ZeroStage = 0 | 1 | 2 | 3;

export interface PlanModel extends ModelShape {
  name?: string;
  /** Dropout probability; 0 means no dropout masks are stored (the `korthikanti` and `megatron` conventions assume masks regardless). */
  dropout?: number;
  /** The parameter count when only that is known: the transformer layers absorb the difference to the shape's count. */
  totalParams?: number;
  /** Whether Q, K and V are one fused linear module (GPT-2, NeoX) or three (HF Llama); guessed from the activation when absent. */
  fusedQkv?: boolean;
}

export interface PlanTraining {
  microBatch: number;
  globalBatch: number;
  precision: Precision;
  optimizer: OptimizerName;
  recompute: Recompute;
  flashAttention: boolean;
  /** Adam β1, or SGD momentum (0: SGD keeps no momentum buffer). */
  beta1?: number;
}

export interface PlanParallel {
  dp: number;
  tp: number;
  pp: number;
  vpp: number;
  zero: ZeroStage;
  sequenceParallel: boolean;
  offloadOptimizer: boolean;
  offloadParams: boolean;
  /** DDP gradient bucket size in MB (10^6 bytes). */
  bucketMB?: number;
}

export interface PlanCluster {
  gpusPerNode: number;
  nodes: number;
  spec: GpuSpec;
  /** Fraction of peak FLOP/s reached by the matrix multiplications. */
  efficiency: number;
  /** Fraction of GPU memory kept free when deciding whether a layout fits. */
  headroom: number;
}

export interface PlanInput {
  model: PlanModel;
  train: PlanTraining;
  parallel: PlanParallel;
  cluster: PlanCluster;
}

/** Everything the layout search chooses. */
export interface Layout {
  dp: number;
  tp: number;
  pp: number;
  vpp: number;
  zero: ZeroStage;
  microBatch: number;
  recompute: Recompute;
  sequenceParallel: boolean;
  offloadOptimizer: boolean;
  offloadParams: boolean;
}

export const CONVENTIONS = ['scalelm', 'runtime', 'torch', 'zero-paper', 'deepspeed', 'megatron', 'korthikanti', 'accelerate'] as const;
export type ConventionName = (typeof CONVENTIONS)[number];

export const CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'buffers', 'overhead'] as const;
export type Category = (typeof CATEGORIES)[number];
export type MemoryBreakdown = Record<Category, number> & { total: number };

/** One visible term of an estimate: which category it belongs to, what it is, how many bytes. */
export interface MemoryTerm {
  category: Category | 'host';
  label: string;
  bytes: number;
}

/** Explicit, adjustable allowances for what real runs allocate beyond the textbook formulas (`scalelm`). */
export interface Overheads {
  /** CUDA context, cuBLAS/cuDNN workspaces and kernel images per process, outside the caching allocator. */
  cudaContext: number;
  /** Allocator fragmentation: reserved minus allocated, as a fraction of everything allocated. */
  allocatorSlack: number;
  /** NCCL buffers per communicator the rank belongs to (data-, tensor-, pipeline-parallel groups). */
  ncclPerCommunicator: number;
  /** DeepSpeed `reduce_bucket_size` in elements (ZeRO-2/3). */
  reduceBucketElements: number;
  /** DeepSpeed `allgather_bucket_size` in elements (ZeRO-2 parameter all-gather after the step). */
  allgatherBucketElements: number;
  /** DeepSpeed `overlap_comm`: doubles the reduce buckets. */
  overlapComm: boolean;
  /** DeepSpeed `stage3_max_live_parameters`: cap on gathered parameters (ZeRO-3). */
  stage3MaxLiveParameters: number;
  /** DeepSpeed `stage3_prefetch_bucket_size` in elements (ZeRO-3). */
  stage3PrefetchElements: number;
  /** fp32 copies of the logits kept by the loss (2 for `logits.float()` + log-softmax, 1 for Megatron's fused vocab-parallel loss); with 2 or more the loss's backward peak (3 fp32 copies) is counted too. */
  fp32LogitCopies: number;
  /** Host memory per training process (Python, PyTorch, data loader, pinned staging), counted per node. */
  hostPerProcess: number;
}

/** Bandwidth-latency model constants that are not in the GPU preset. */
export interface CommModel {
  /** Latency per collective step inside a node, seconds. */
  intraNodeLatency: number;
  /** Latency per collective step between nodes, seconds. */
  interNodeLatency: number;
  /** Host <-> GPU bandwidth per GPU for offload, bytes/s (PCIe 4.0 x16 moves about 25 GB/s). */
  hostBandwidth: number;
  /** Parameters per second one GPU's share of the host CPU updates with a CPU Adam (offload). */
  cpuOptimizerParamsPerSec: number;
  /** Achieved NCCL bus bandwidth over the link's nominal bandwidth, inside a node (NVLink/PCIe). */
  intraNodeCollectiveEfficiency: number;
  /** The same between nodes (InfiniBand/RoCE), where thousands of ranks share the fabric. */
  interNodeCollectiveEfficiency: number;
  /** Rows or columns of a GEMM at which it reaches half of `cluster.efficiency`: small GEMMs (short micro-batches, thin tensor-parallel shards) run slower. */
  gemmHalfSize: number;
  /** HBM bytes moved per token per layer per hidden unit by the forward's non-matrix ops that are not split over tp (norms, dropout, residual adds), backward 2×. */
  elementwiseBytesReplicated: number;
  /** The same for the ops split over tp (bias + GELU/SwiGLU on the ffn, Q/K/V reshapes). */
  elementwiseBytesSharded: number;
  /** HBM bytes per logit of the loss (fp32 softmax, cross-entropy) in forward; backward the same again. */
  lossBytesPerLogit: number;
  /** HBM bytes per attention score (a·s²·b) of the forward's scale/mask/softmax/dropout without FlashAttention. */
  attentionBytesPerScore: number;
  /** Fraction of the communication hidden behind compute that it slows compute down by (NCCL kernels take SMs and HBM bandwidth). */
  overlapSlowdown: number;
}

/**
 * What a HuggingFace model saves for backward in the `torch` convention's activations, in place of ScaleLM's own
 * model (runtime/planner/torch-model.ts): the HF implementation that runs (eager or sdpa attention) and which
 * dropouts are on (each one that is saves its fp32 noise on CPU). From the HF config (config/huggingface.ts).
 */
export interface HfActivations {
  impl: 'hf-eager' | 'hf-sdpa';
  family: 'gpt2' | 'llama';
  embdDropout: boolean;
  residDropout: boolean;
  attnDropout: boolean;
}

export interface EstimateOptions {
  convention?: ConventionName;
  /** The `torch` convention's activations for a HuggingFace model (absent: ScaleLM's own model). */
  hfActivations?: HfActivations;
  overheads?: Partial<Overheads>;
  comm?: Partial<CommModel>;
  /** The largest single module's parameter count (DeepSpeed's `largest_layer_params`); derived from the shape when absent. */
  largestLayerParams?: number;
  /** DeepSpeed's `zero_init` (ZeRO-3 host memory); its estimator's default is true. */
  deepspeedZeroInit?: boolean;
  /** DeepSpeed's `additional_buffer_factor` for host memory (1.5). */
  deepspeedBufferFactor?: number;
  /** Use DeepSpeed's older ZeRO-2 formula 4Ψ + 16Ψ/N (the one behind the printed docs table) instead of the current 2Ψ + 18Ψ/N. */
  deepspeedLegacyZero2?: boolean;
}

export interface ParamSummary {
  /** The model's parameter count (vocabulary unpadded; `model.totalParams` when given). */
  total: number;
  /** Parameters the heaviest rank computes with: its pipeline stage's tensor-parallel shard (padded vocabulary), before any ZeRO partitioning. */
  perDevice: number;
  /** Vocabulary after padding to a multiple of 128·tp. */
  paddedVocab: number;
  /** What one tensor-parallel rank of each pipeline stage holds (scalelm only). */
  perStage?: { stage: number; layers: number; params: number; embedding: number; output: number }[];
}

/**
 * The three numbers a GPU run reports, for the heaviest rank. `allocated`: what PyTorch's
 * `torch.cuda.max_memory_allocated()` reports (tensors: params, grads, optimizer, activations, buffers);
 * `reserved`: `torch.cuda.max_memory_reserved()` (the caching allocator's segments: allocated + slack);
 * `device`: nvidia-smi's used memory (reserved + CUDA context, cuBLAS workspaces, NCCL buffers, which live
 * outside the allocator). `perDevice.total` is `device`. Per category, `allocatedBy` (overhead is not allocated).
 */
export interface MemoryFigures {
  allocated: number;
  reserved: number;
  device: number;
  allocatedBy: Record<Exclude<Category, 'overhead'>, number>;
}

export interface MemoryEstimate {
  convention: ConventionName;
  /** The three figures (scalelm, and torch for bf16-mixed GPU runs; the other conventions' totals are partial allocated figures). */
  figures?: MemoryFigures;
  /** Which figure `perDevice.total` is: nvidia-smi's device memory (scalelm; torch in bf16-mixed), or a partial PyTorch allocated figure (anchors, runtime). */
  totalIs: 'device' | 'allocated';
  /** The heaviest rank's memory (the one that decides whether the layout fits). */
  perDevice: MemoryBreakdown;
  /** Pipeline stage of the heaviest rank (0-based) and the number of stages. */
  heaviestStage: number;
  stages: number;
  host: { perRank: number; perNode: number };
  /** False when the convention does not model host memory (then host is 0, not "nothing needed"). */
  hostCovered: boolean;
  params: ParamSummary;
  /** Every term that makes up perDevice and host, in order. */
  terms: MemoryTerm[];
  /** Categories this convention does not model (reported as 0, not as "nothing needed"). */
  notCovered: Category[];
  notes: string[];
}

export interface TimeBreakdown {
  /** Forward + backward work (matrix and memory-bound ops) of the slowest stage over all micro-batches, without recompute. */
  compute: number;
  recompute: number;
  tensorParallelComm: number;
  pipelineComm: number;
  bubble: number;
  /** Data-parallel / ZeRO communication not hidden behind compute. */
  dataParallelExposed: number;
  /** All data-parallel / ZeRO communication, hidden or not. */
  dataParallelTotal: number;
  /** Compute slowed by the communication it hides (NCCL kernels sharing SMs and HBM). */
  contention: number;
  optimizer: number;
  offload: number;
}

export interface TimeEstimate {
  stepMs: number;
  tokensPerSec: number;
  /** Model FLOPs utilisation: model FLOPs without recompute over step time × GPUs × peak. */
  mfu: number;
  /** Hardware FLOPs (with recompute) per GPU per second, comparable with Megatron's reported TFLOP/s. */
  tflopsPerGpu: number;
  microBatches: number;
  /** Seconds per step in each part. */
  breakdown: TimeBreakdown;
  tensorParallelAcrossNodes: boolean;
  dataParallelAcrossNodes: boolean;
}

export interface PlanIssue {
  path: string;
  message: string;
}

export type EstimateResult = { ok: true; layout: Layout; memory: MemoryEstimate; time: TimeEstimate; fits: boolean; usable: number } | { ok: false; issues: PlanIssue[] };
