// Per-device memory by category for the heaviest rank, in each convention. `scalelm` is the estimator's own
// best estimate of a PyTorch/Megatron/DeepSpeed run; the other conventions reproduce one anchor each in its
// own terms (anchors.ts, runtime-model.ts). Pure.
import { attentionCoreBytes, korthikantiLayerBytes, layerActivationBytes, layersInFlight, microBatchesInFlight, type ActivationShape } from './activations';
import { accelerateTrainingUsage, deepspeedZero2, deepspeedZero3, megatronActivations, megatronWeightAndOptimizer, zeroPaperModelStates, type MegatronArgs } from './anchors';
import { countParams, largestModuleParams, layerShardParams, paramsPerStage, stageParams, type ParamCounts } from './params';
import { runtimeMemoryTerms, runtimeVocab } from './runtime-model';
import { torchMemoryTerms, torchVocab } from './torch-model';
import {
  CATEGORIES,
  type Category,
  type ConventionName,
  type EstimateOptions,
  type Layout,
  type MemoryBreakdown,
  type MemoryEstimate,
  type MemoryFigures,
  type MemoryTerm,
  type Overheads,
  type PlanInput,
} from './types';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

export const DEFAULT_OVERHEADS: Overheads = {
  cudaContext: 1 * GiB,
  allocatorSlack: 0.05,
  ncclPerCommunicator: 128 * MiB,
  reduceBucketElements: 5e8,
  allgatherBucketElements: 5e8,
  overlapComm: true,
  stage3MaxLiveParameters: 1e9,
  stage3PrefetchElements: 5e7,
  fp32LogitCopies: 2,
  hostPerProcess: 2 * GiB,
};

export function overheadsOf(options: EstimateOptions = {}): Overheads {
  return { ...DEFAULT_OVERHEADS, ...options.overheads };
}

export function layoutOf(input: PlanInput): Layout {
  const { parallel: p, train } = input;
  return {
    dp: p.dp,
    tp: p.tp,
    pp: p.pp,
    vpp: p.vpp,
    zero: p.zero,
    microBatch: train.microBatch,
    recompute: train.recompute,
    sequenceParallel: p.sequenceParallel,
    offloadOptimizer: p.offloadOptimizer,
    offloadParams: p.offloadParams,
  };
}

/** The parallel section a layout sets (layoutOf's inverse for that section): for estimates and config patches. */
export function layoutParallel(l: Layout): Pick<PlanInput['parallel'], 'dp' | 'tp' | 'pp' | 'vpp' | 'zero' | 'sequenceParallel' | 'offloadOptimizer' | 'offloadParams'> {
  return { dp: l.dp, tp: l.tp, pp: l.pp, vpp: l.vpp, zero: l.zero, sequenceParallel: l.sequenceParallel, offloadOptimizer: l.offloadOptimizer, offloadParams: l.offloadParams };
}

export function microBatchesPerStep(input: PlanInput, layout: Layout): number {
  return input.train.globalBatch / (layout.dp * layout.microBatch);
}

export const emptyBreakdown = (): MemoryBreakdown => ({ params: 0, grads: 0, optimizer: 0, activations: 0, buffers: 0, overhead: 0, total: 0 });

function sum(b: MemoryBreakdown): MemoryBreakdown {
  b.total = b.params + b.grads + b.optimizer + b.activations + b.buffers + b.overhead;
  return b;
}

function fromTerms(terms: MemoryTerm[]): MemoryBreakdown {
  const b = emptyBreakdown();
  for (const t of terms) if (t.category !== 'host') b[t.category] += t.bytes;
  return sum(b);
}

type Sink = ((category: MemoryTerm['category'], label: string, bytes: number) => void) | undefined;

/** Bytes per parameter by role for the `scalelm` convention. */
export function bytesPerParam(input: PlanInput, zero: number): { param: number; grad: number; optimizer: number; hostOptimizer: number } {
  const mixed = input.train.precision !== 'fp32';
  const momentum = (input.train.beta1 ?? 0.9) > 0;
  const states = input.train.optimizer === 'sgd' ? (momentum ? 4 : 0) : 8;
  const optimizer = states + (mixed ? 4 : 0); // + fp32 master weights in mixed precision
  // Megatron keeps fp32 main gradients (4 B); DeepSpeed ZeRO-2/3 keep a 16-bit partition and its fp32 copy (2 + 4).
  const grad = zero >= 2 && mixed ? 6 : 4;
  // Offloaded (ZeRO-Offload): fp32 gradient partition, optimizer states, and fp32 master weights on the host.
  const hostOptimizer = states + 4 + 4;
  return { param: mixed ? 2 : 4, grad, optimizer, hostOptimizer };
}

/** Everything the scalelm stage estimate needs that does not depend on the stage. */
export interface ScalelmContext {
  input: PlanInput;
  layout: Layout;
  counts: ParamCounts;
  overheads: Overheads;
  microBatches: number;
  shape: ActivationShape;
  layerShard: number;
}

export function scalelmContext(input: PlanInput, layout: Layout, overheads: Overheads, counts?: ParamCounts): ScalelmContext {
  const m = input.model;
  const c = counts ?? countParams(m, layout.tp);
  const layerShard = c.givenTotal ? (c.perLayer / c.layer.total) * layerShardParams(c.layer, layout.tp) : layerShardParams(c.layer, layout.tp);
  const e = input.train.precision === 'fp32' ? 4 : 2;
  return {
    input,
    layout,
    counts: c,
    overheads,
    layerShard,
    microBatches: microBatchesPerStep(input, layout),
    shape: {
      s: m.seqLen,
      b: layout.microBatch,
      h: m.hidden,
      heads: m.heads,
      kvHeads: m.kvHeads,
      ffn: m.ffnHidden,
      gated: m.activation === 'swiglu',
      tp: layout.tp,
      sequenceParallel: layout.sequenceParallel,
      e,
      mask: (m.dropout ?? 0) > 0 ? 1 : 0,
      flashAttention: input.train.flashAttention,
    },
  };
}

/**
 * ScaleLM's estimate for one pipeline stage's rank. Every term goes to `sink` when given (the search passes
 * none and gets only the sums).
 */
export function scalelmStage(ctx: ScalelmContext, stage: number, sink?: Sink): MemoryBreakdown & { host: number; stageParams: number; allocated: number; slack: number } {
  const { input, layout, counts, overheads: ov, shape } = ctx;
  const { dp, tp, pp, vpp, zero } = layout;
  const L = input.model.layers;
  const b = emptyBreakdown();
  const put = (category: Category, label: string, bytes: number) => {
    b[category] += bytes;
    sink?.(category, label, bytes);
  };
  const sp = stageParams(counts, L, tp, pp, stage).params;
  const bpp = bytesPerParam(input, zero);
  const part = zero >= 1 ? dp : 1;

  // Model states.
  if (zero === 3 && layout.offloadParams) put('params', 'parameters: offloaded to host (ZeRO-Infinity)', 0);
  else put('params', zero === 3 ? `${bpp.param}-byte parameters, partitioned over dp (ZeRO-3)` : `${bpp.param}-byte parameters`, (bpp.param * sp) / (zero === 3 ? dp : 1));
  if (layout.offloadOptimizer) {
    // ZeRO-1 keeps full 16-bit gradients until the last micro-batch; ZeRO-2/3 stream each reduced bucket to the host.
    put('grads', zero === 1 ? 'gradients before the reduce (then copied to host)' : 'gradients: streamed to host after each reduce', zero === 1 ? bpp.param * sp : 0);
    put('optimizer', 'optimizer states: offloaded to host (ZeRO-Offload)', 0);
  } else {
    put('grads', zero >= 2 ? `gradients (${bpp.grad} B: 16-bit partition + fp32 copy), partitioned over dp` : 'fp32 main gradients', (bpp.grad * sp) / (zero >= 2 ? dp : 1));
    put(
      'optimizer',
      zero >= 1
        ? `optimizer states (${bpp.optimizer} B), partitioned over dp`
        : `optimizer states (${bpp.optimizer} B: ${input.train.precision === 'fp32' ? '' : 'fp32 master + '}${input.train.optimizer === 'sgd' ? 'momentum' : 'Adam m, v'})`,
      (bpp.optimizer * sp) / part,
    );
  }

  // Activations.
  const m = ctx.microBatches;
  const perLayer = layerActivationBytes(shape, layout.recompute);
  const inFlightLayers = layersInFlight(L, pp, vpp, m, stage);
  if (sink) {
    const note = pp > 1 ? ` × ${inFlightLayers} layer-micro-batches in flight` : ` × ${L} layers`;
    layerActivationBytes(shape, layout.recompute, (label, bytes) => sink('activations', `${label}${note}`, bytes * inFlightLayers));
  }
  b.activations += perLayer * inFlightLayers;
  const spDiv = layout.sequenceParallel ? tp : 1;
  const { s } = shape;
  const mb = layout.microBatch;
  const sbh = s * mb * shape.h;
  if (layout.recompute === 'full') put('activations', 'recompute working set: one layer rebuilt in backward', layerActivationBytes(shape, 'none'));
  else if (layout.recompute === 'selective' && !shape.flashAttention) put('activations', "recompute working set: one layer's attention core", attentionCoreBytes(shape));
  if (stage === 0) {
    const inFlight = microBatchesInFlight(L, pp, vpp, m, stage);
    put('activations', 'token ids (int64) of micro-batches in flight', 8 * s * mb * inFlight);
    if (shape.mask > 0) put('activations', 'embedding-dropout masks of micro-batches in flight', (sbh * inFlight) / spDiv);
  }
  if (stage === pp - 1) {
    const V = counts.paddedVocab;
    put('activations', 'final norm input and output-layer input', (2 * shape.e * sbh) / spDiv);
    put('activations', `logits (${shape.e}-byte, s·b·V/t)`, (shape.e * s * mb * V) / tp);
    put('activations', `fp32 logits for the loss (× ${ov.fp32LogitCopies})`, (4 * ov.fp32LogitCopies * s * mb * V) / tp);
    // An unfused loss (logits.float() + log-softmax) peaks in its backward, not its forward: the saved log-softmax
    // output, the gradient arriving at it and the gradient it produces are three fp32 logit-sized tensors (4 + 4 + 4
    // bytes per logit, the 16-bit logits freed by then), against e + 4·copies in the forward (measured by
    // python/tests/test_loss_peak.py). Megatron's fused loss (1 copy) computes its gradient in place.
    const lossBackward = ov.fp32LogitCopies >= 2 ? Math.max(0, 4 * (ov.fp32LogitCopies + 1) - (shape.e + 4 * ov.fp32LogitCopies)) : 0;
    if (lossBackward > 0) put('activations', "loss backward: the log-softmax's fp32 gradients, beyond the forward's logits", (lossBackward * s * mb * V) / tp);
  }

  // Buffers.
  const layerUnit = ctx.layerShard;
  if (dp > 1 && zero <= 1) put('buffers', 'DDP gradient buckets in flight (2 × bucketMB)', Math.min(2 * (input.parallel.bucketMB ?? 25) * 1e6, 4 * sp));
  if (dp > 1 && zero >= 2) {
    const halfGrad = shape.e;
    put('buffers', `ZeRO reduce bucket (reduce_bucket_size${ov.overlapComm ? ' × 2, overlap_comm' : ''})`, Math.min(ov.reduceBucketElements, sp) * halfGrad * (ov.overlapComm ? 2 : 1));
    if (zero === 2) put('buffers', 'ZeRO-2 all-gather bucket (allgather_bucket_size)', Math.min(ov.allgatherBucketElements, sp) * bpp.param);
    if (zero === 3) {
      const unit = Math.max(layerUnit, counts.embedding / tp, counts.outputLayer / tp);
      put('buffers', 'ZeRO-3 gathered and prefetched parameters (capped by stage3_max_live_parameters)', Math.min(ov.stage3MaxLiveParameters, unit + ov.stage3PrefetchElements) * bpp.param);
      put('buffers', 'ZeRO-3 full gradient of the gathered unit before its reduce-scatter', unit * halfGrad);
    }
  }
  if (pp > 1) put('buffers', 'pipeline send/receive buffers', (2 * shape.e * sbh) / tp);
  // Overhead: what nvidia-smi counts beyond PyTorch's allocated tensors. The slack is reserved − allocated
  // (the caching allocator's free blocks); the context and NCCL's buffers are outside the allocator.
  const allocated = b.params + b.grads + b.optimizer + b.activations + b.buffers;
  const slack = gpuOverhead(layout, ov, allocated, put);

  // Host memory for this rank.
  let host = ov.hostPerProcess;
  sink?.('host', 'process baseline (Python, PyTorch, data loader)', ov.hostPerProcess);
  if (layout.offloadOptimizer) {
    const bytes = (bpp.hostOptimizer * sp) / part;
    host += bytes;
    sink?.('host', `offloaded optimizer: fp32 master, gradients and states (${bpp.hostOptimizer} B/param partition)`, bytes);
  }
  if (layout.offloadParams) {
    const bytes = (bpp.param * sp) / dp;
    host += bytes;
    sink?.('host', 'offloaded 16-bit parameter partition', bytes);
  }
  return { ...sum(b), host, stageParams: sp, allocated, slack };
}

/**
 * What nvidia-smi counts on a GPU beyond PyTorch's allocated tensors, as `overhead` terms: the caching
 * allocator's slack (reserved − allocated), the CUDA context, NCCL's buffers (both outside the allocator).
 * Returns the slack. Shared by the scalelm convention and the torch convention's GPU (bf16-mixed) runs.
 */
export function gpuOverhead(layout: Layout, ov: Overheads, allocated: number, put: (category: 'overhead', label: string, bytes: number) => void): number {
  const { dp, tp, pp } = layout;
  const slack = ov.allocatorSlack * allocated;
  put('overhead', `allocator slack, reserved − allocated (${Math.round(ov.allocatorSlack * 100)}% of allocated)`, slack);
  put('overhead', 'CUDA context, cuBLAS workspaces (outside the allocator)', ov.cudaContext);
  const communicators = (dp > 1 ? 1 : 0) + (tp > 1 ? 1 : 0) + (pp > 1 ? 2 : 0);
  if (communicators > 0) put('overhead', `NCCL buffers (${communicators} communicator${communicators > 1 ? 's' : ''}, outside the allocator)`, communicators * ov.ncclPerCommunicator);
  return slack;
}

/** allocated / reserved / device from a scalelm stage estimate. */
export function figuresOf(r: MemoryBreakdown & { allocated: number; slack: number }): MemoryFigures {
  return {
    allocated: r.allocated,
    reserved: r.allocated + r.slack,
    device: r.total,
    allocatedBy: { params: r.params, grads: r.grads, optimizer: r.optimizer, activations: r.activations, buffers: r.buffers },
  };
}

function scalelmEstimate(input: PlanInput, layout: Layout, options: EstimateOptions): MemoryEstimate {
  const ctx = scalelmContext(input, layout, overheadsOf(options));
  const stages = layout.pp === 1 ? [0] : [0, layout.pp - 1];
  let best: { stage: number; total: number } = { stage: 0, total: -1 };
  for (const st of stages) {
    const r = scalelmStage(ctx, st);
    if (r.total > best.total) best = { stage: st, total: r.total };
  }
  const terms: MemoryTerm[] = [];
  const r = scalelmStage(ctx, best.stage, (category, label, bytes) => terms.push({ category, label, bytes }));
  const notes: string[] = [];
  if (ctx.counts.givenTotal) notes.push(`model.totalParams=${input.model.totalParams} given: the transformer layers hold ${Math.round(ctx.counts.perLayer)} parameters each so that the total matches`);
  return {
    convention: 'scalelm',
    figures: figuresOf(r),
    totalIs: 'device',
    perDevice: { params: r.params, grads: r.grads, optimizer: r.optimizer, activations: r.activations, buffers: r.buffers, overhead: r.overhead, total: r.total },
    heaviestStage: best.stage,
    stages: layout.pp,
    host: { perRank: r.host, perNode: r.host * Math.min(input.cluster.gpusPerNode, layout.dp * layout.tp * layout.pp) },
    hostCovered: true,
    params: { total: ctx.counts.total, perDevice: r.stageParams, paddedVocab: ctx.counts.paddedVocab, perStage: paramsPerStage(ctx.counts, input.model.layers, layout.tp, layout.pp) },
    terms,
    notCovered: [],
    notes,
  };
}

/** An engine's own convention: its memory terms on one stage, fp32 tensors as it allocates them. */
function engineEstimate(input: PlanInput, layout: Layout, convention: 'torch' | 'runtime', terms: MemoryTerm[], paddedVocab: number, note: string): MemoryEstimate {
  const counts = countParams(input.model, layout.tp, layout.tp === 1 ? 1 : 128);
  const perDevice = stageParams(counts, input.model.layers, layout.tp, 1, 0).params;
  return {
    convention,
    totalIs: 'allocated',
    perDevice: fromTerms(terms),
    heaviestStage: 0,
    stages: 1,
    host: { perRank: 0, perNode: 0 },
    hostCovered: true,
    params: { total: counts.total, perDevice, paddedVocab },
    terms,
    notCovered: [],
    notes: [note],
  };
}

function torchEstimate(input: PlanInput, layout: Layout, options: EstimateOptions): MemoryEstimate {
  const hf = options.hfActivations;
  const terms = torchMemoryTerms(input, layout, hf);
  if (input.train.precision === 'fp32')
    return engineEstimate(
      input,
      layout,
      'torch',
      terms,
      torchVocab(input.model.vocab, layout.tp),
      `${hf ? `a HuggingFace ${hf.family} (${hf.impl} activations)` : 'the torch engine'} on CPU (fp32): tensors the rank owns and what autograd saves; on GPUs the allocator's temporaries, cache and CUDA context come on top`,
    );
  // bf16-mixed runs on GPUs: the engine's tensors are the allocated figure; the allocator's slack, the CUDA
  // context and NCCL's buffers come on top as in the scalelm convention (the same overheads), so the total is
  // nvidia-smi's device figure and the three figures are given.
  const allocated = fromTerms(terms).total;
  const slack = gpuOverhead(layout, overheadsOf(options), allocated, (category, label, bytes) => terms.push({ category, label, bytes }));
  const r = engineEstimate(
    input,
    layout,
    'torch',
    terms,
    torchVocab(input.model.vocab, layout.tp),
    'the torch engine on GPUs (bf16-mixed, torch.autocast): fp32 parameters, gradients and optimizer state, activations as autocast saves them; allocator slack, CUDA context and NCCL buffers as overhead (activations: the allocator peak adds temporaries)',
  );
  return { ...r, totalIs: 'device', figures: figuresOf({ ...r.perDevice, allocated, slack }) };
}

function runtimeEstimate(input: PlanInput, layout: Layout): MemoryEstimate {
  return engineEstimate(
    input,
    layout,
    'runtime',
    runtimeMemoryTerms(input, layout),
    runtimeVocab(input.model.vocab, layout.tp),
    'fp32 TensorFlow.js runtime: every tensor 4 bytes; framework overhead is not counted (CPU devices count tensor allocations only)',
  );
}

function anchorEstimate(convention: Exclude<ConventionName, 'scalelm' | 'runtime' | 'torch'>, input: PlanInput, layout: Layout, options: EstimateOptions): MemoryEstimate {
  const model = input.model;
  const counts = countParams(model, layout.tp);
  const psi = counts.total;
  const terms: MemoryTerm[] = [];
  const add = (category: MemoryTerm['category'], label: string, bytes: number) => terms.push({ category, label, bytes });
  const notes: string[] = [];
  let notCovered: Category[];
  let perDeviceParams = psi / (layout.tp * layout.pp);
  let host = 0;
  let reportedTotal: number | undefined;
  const N = input.cluster.gpusPerNode * input.cluster.nodes;

  if (convention === 'zero-paper') {
    const mixed = input.train.precision !== 'fp32';
    const momentum = (input.train.beta1 ?? 0.9) > 0;
    const K = input.train.optimizer === 'sgd' ? (mixed ? 4 : 0) + (momentum ? 4 : 0) : mixed ? 12 : 8;
    const psiMp = psi / (layout.tp * layout.pp);
    const r = zeroPaperModelStates(psiMp, layout.dp, layout.zero, K, mixed ? 2 : 4, mixed ? 2 : 4);
    add('params', `${mixed ? 2 : 4}Ψ parameters${layout.zero === 3 ? ' / d' : ''}`, r.params);
    add('grads', `${mixed ? 2 : 4}Ψ gradients${layout.zero >= 2 ? ' / d' : ''}`, r.grads);
    add('optimizer', `KΨ optimizer states, K=${K}${layout.zero >= 1 ? ' / d' : ''}`, r.optimizer);
    notCovered = ['activations', 'buffers', 'overhead'];
    if (layout.tp * layout.pp > 1) notes.push(`Ψ divided by the model-parallel degree tp·pp = ${layout.tp * layout.pp}, as the paper's N_m`);
    perDeviceParams = psiMp;
  } else if (convention === 'deepspeed') {
    const { gpusPerNode, nodes } = input.cluster;
    const factor = options.deepspeedBufferFactor ?? 1.5;
    if (layout.zero === 2) {
      const r = deepspeedZero2(psi, gpusPerNode, nodes, layout.offloadOptimizer, factor, options.deepspeedLegacyZero2 ?? false);
      if (layout.offloadOptimizer) add('params', '2Ψ fp16 parameters', r.gpu);
      else if (options.deepspeedLegacyZero2) {
        add('params', '4Ψ (legacy formula)', 4 * psi);
        add('optimizer', '16Ψ/N (legacy formula)', r.gpu - 4 * psi);
      } else {
        add('params', '2Ψ fp16 parameters', 2 * psi);
        add('optimizer', '18Ψ/N: fp16 + fp32 grads, fp32 params, Adam states', r.gpu - 2 * psi);
      }
      add('host', `host per node (× ${factor} buffer factor)`, r.cpu);
      host = r.cpu;
    } else {
      const largest = options.largestLayerParams ?? largestModuleParams(model);
      const r = deepspeedZero3(psi, largest, gpusPerNode, nodes, layout.offloadOptimizer, layout.offloadParams, options.deepspeedZeroInit ?? true, factor);
      add('buffers', `4 × largest layer (${largest} params: fp16 gathered params + fp16 grads)`, r.largestLayerMemory);
      const rest = r.gpu - r.largestLayerMemory;
      // DeepSpeed's estimator reads cpu_offload_params only inside its cpu_offload branch: parameter offload
      // without optimizer offload is its no-offload branch (18Ψ/N on the GPU, the no-offload host figure).
      if (layout.offloadOptimizer && layout.offloadParams) add('params', 'parameters offloaded', 0);
      else if (layout.offloadOptimizer) add('params', '2Ψ/N fp16 parameter partition', rest);
      else add('optimizer', '18Ψ/N: params, grads, fp32 params, Adam states', rest);
      if (layout.offloadParams && !layout.offloadOptimizer)
        notes.push("DeepSpeed's estimator has no branch for parameter offload without optimizer offload (its table skips that pair): GPU and host follow its no-offload branch");
      add('host', `host per node (× ${factor} buffer factor, zero_init=${options.deepspeedZeroInit ?? true})`, r.cpu);
      host = r.cpu;
    }
    notCovered = ['activations', 'overhead'];
    notes.push(`DeepSpeed's estimator takes N = all GPUs (${N}); its "GB" are GiB`);
    perDeviceParams = psi;
  } else if (convention === 'megatron') {
    const args = megatronArgs(input, layout);
    const w = megatronWeightAndOptimizer(args);
    const shard = w.mostLoadedShardParams;
    add('params', '2-byte parameters of the most loaded shard', 2 * shard);
    add('grads', '4-byte main gradients', 4 * shard);
    add('optimizer', args.useDistributedOptimizer ? `12/d bytes optimizer (distributed optimizer, d=${layout.dp})` : '12-byte optimizer (fp32 master, Adam m, v)', (w.bytesPerParameter - 6) * shard);
    const act = megatronActivations(args, microBatchesPerStep(input, layout));
    add(
      'activations',
      act.formula === 'with-sp' ? 'compute_activation_memory (sequence parallel + selective recompute)' : 'compute_activation_memory_without_sp (sbh(10 + 24/t) per layer, × 1.05)',
      act.bytes,
    );
    notCovered = ['buffers', 'overhead'];
    notes.push('Megatron counts no linear biases and no learned positions; its MB are MiB');
    if (input.train.precision === 'fp32' || input.train.optimizer === 'sgd')
      notes.push("Megatron's formula assumes 16-bit Adam (18 bytes per parameter) whatever train.precision and train.optimizer say");
    perDeviceParams = shard;
  } else if (convention === 'korthikanti') {
    const e = input.train.precision === 'fp32' ? 4 : 2;
    const per = korthikantiLayerBytes(model.seqLen, layout.microBatch, model.hidden, model.heads, layout.tp, layout.sequenceParallel, layout.recompute, input.train.flashAttention, e);
    const layers = layersInFlight(model.layers, layout.pp, layout.vpp, microBatchesPerStep(input, layout), 0);
    add('activations', `Table 2 per-layer bytes × ${layers} layer-micro-batches (first stage)`, per * layers);
    notCovered = ['params', 'grads', 'optimizer', 'buffers', 'overhead'];
  } else {
    // accelerate builds the model with AutoModel: no LM head, so an untied output layer is not counted.
    const counted = psi - (model.tiedEmbeddings ? 0 : model.vocab * model.hidden);
    const dtype = input.train.precision === 'fp32' ? 'float32' : 'float16';
    const r = accelerateTrainingUsage(4 * counted, dtype);
    add('params', `model (${dtype === 'float32' ? 'fp32' : 'fp32 master for mixed precision'})`, r.model);
    add('grads', dtype === 'float32' ? 'gradients' : 'gradients (1.5×: fp32 + fp16)', r.gradients);
    add('optimizer', 'Adam states (2×)', r.optimizer);
    add('buffers', '"step" (optimizer step)', r.step);
    reportedTotal = r.reported;
    notCovered = ['activations', 'overhead'];
    notes.push('accelerate reports the MAX of model, gradients, optimizer and step, not their sum: total is that max');
    if (!model.tiedEmbeddings) notes.push('accelerate counts AutoModel, which has no LM head: the untied output layer is left out');
    perDeviceParams = counted;
  }
  const perDevice = fromTerms(terms);
  if (reportedTotal !== undefined) perDevice.total = reportedTotal;
  return {
    convention,
    totalIs: 'allocated',
    perDevice,
    heaviestStage: 0,
    stages: layout.pp,
    host: { perRank: host / input.cluster.gpusPerNode, perNode: host },
    hostCovered: convention === 'deepspeed',
    params: { total: psi, perDevice: perDeviceParams, paddedVocab: counts.paddedVocab },
    terms,
    notCovered,
    notes,
  };
}

export function megatronArgs(input: PlanInput, layout: Layout): MegatronArgs {
  const m = input.model;
  return {
    numLayers: m.layers,
    hiddenSize: m.hidden,
    numAttentionHeads: m.heads,
    numQueryGroups: m.kvHeads,
    kvChannels: m.hidden / m.heads,
    ffnHiddenSize: m.ffnHidden,
    swiglu: m.activation === 'swiglu',
    normalization: m.norm === 'rmsnorm' ? 'RMSNorm' : 'LayerNorm',
    paddedVocabSize: countParams(m, layout.tp).paddedVocab,
    untieEmbeddingsAndOutputWeights: !m.tiedEmbeddings,
    tensorModelParallelSize: layout.tp,
    pipelineModelParallelSize: layout.pp,
    virtualPipelineModelParallelSize: layout.vpp > 1 ? layout.vpp : null,
    dataParallelSize: layout.dp,
    useDistributedOptimizer: layout.zero === 1,
    seqLength: m.seqLen,
    microBatchSize: layout.microBatch,
    sequenceParallel: layout.sequenceParallel,
    recomputeGranularity: layout.recompute === 'none' ? null : layout.recompute,
  };
}

/** The memory estimate in the given convention. Assumes the layout passed `planIssues` (see validate.ts). */
export function estimateMemory(input: PlanInput, layout: Layout, options: EstimateOptions = {}): MemoryEstimate {
  const convention = options.convention ?? 'scalelm';
  if (convention === 'scalelm') return scalelmEstimate(input, layout, options);
  if (convention === 'runtime') return runtimeEstimate(input, layout);
  if (convention === 'torch') return torchEstimate(input, layout, options);
  return anchorEstimate(convention, input, layout, options);
}

export { CATEGORIES };
