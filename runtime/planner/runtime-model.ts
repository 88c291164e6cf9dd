// The `runtime` convention: exactly what ScaleLM's own local runtime (fp32 TensorFlow.js, explicit
// forward/backward GPT-2, runtime/model + runtime/train) allocates per rank. Every saved tensor is one line
// below, so the table can be tuned to the runtime's measured values (MemoryTracker categories) without
// touching anything else. Assumptions are listed in docs/planner.md. Pure.
import { countParams, layerShardParams, paddedVocab } from './params';
import type { Layout, MemoryTerm, PlanInput, PlanIssue } from './types';

/** Bytes per element: the runtime keeps every tensor in float32 (tfjs has no 16-bit training path). */
export const RUNTIME_ELEMENT_BYTES = 4;

export interface RuntimeDims {
  /** micro-batch (B), sequence (T), hidden (C), heads (NH), kv heads, head size, ffn, padded vocab, tp. */
  B: number;
  T: number;
  C: number;
  NH: number;
  KV: number;
  D: number;
  F: number;
  V: number;
  tp: number;
  gated: boolean;
}

export interface SavedTensor {
  name: string;
  /** Elements for one micro-batch on one tensor-parallel rank. */
  elements: (d: RuntimeDims) => number;
  /** Kept under which recompute settings. */
  keptBy: ('none' | 'selective' | 'full')[];
}

const NOT_FULL = ['none', 'selective'] as ('none' | 'selective' | 'full')[];

/**
 * What one transformer block keeps from forward for backward, as runtime/model/layers.ts does it: LayerNorm
 * keeps x̂ and rstd (not its input), each Linear keeps its input, the attention core keeps q, k, v and the
 * probabilities (selective recompute drops the probabilities), GELU keeps its input. Dropout keeps nothing:
 * masks are regenerated from the micro-batch's seed. Full recompute keeps only the block input.
 */
export const RUNTIME_LAYER_TENSORS: SavedTensor[] = [
  { name: 'block input (full recompute only, B·T·C)', elements: (d) => d.B * d.T * d.C, keptBy: ['full'] },
  { name: 'ln_1 x̂ (B·T·C)', elements: (d) => d.B * d.T * d.C, keptBy: NOT_FULL },
  { name: 'ln_1 rstd (B·T)', elements: (d) => d.B * d.T, keptBy: NOT_FULL },
  { name: 'c_attn input = ln_1 output (B·T·C)', elements: (d) => d.B * d.T * d.C, keptBy: NOT_FULL },
  { name: 'q, k, v ((NH+2·KV)·D/tp per token)', elements: (d) => (d.B * d.T * (d.NH + 2 * d.KV) * d.D) / d.tp, keptBy: NOT_FULL },
  { name: 'attention probabilities (B·NH/tp·T·T)', elements: (d) => (d.B * d.NH * d.T * d.T) / d.tp, keptBy: ['none'] },
  { name: 'attn c_proj input = attention output (B·T·C/tp)', elements: (d) => (d.B * d.T * d.NH * d.D) / d.tp, keptBy: NOT_FULL },
  { name: 'ln_2 x̂ (B·T·C)', elements: (d) => d.B * d.T * d.C, keptBy: NOT_FULL },
  { name: 'ln_2 rstd (B·T)', elements: (d) => d.B * d.T, keptBy: NOT_FULL },
  { name: 'c_fc input = ln_2 output (B·T·C)', elements: (d) => d.B * d.T * d.C, keptBy: NOT_FULL },
  { name: 'GELU input = c_fc output (B·T·F/tp)', elements: (d) => ((d.gated ? 2 : 1) * d.B * d.T * d.F) / d.tp, keptBy: NOT_FULL },
  { name: 'mlp c_proj input = GELU output (B·T·F/tp)', elements: (d) => (d.B * d.T * d.F) / d.tp, keptBy: NOT_FULL },
];

/** Kept once per model: the embedding's token ids, the final norm, and the output layer with its loss. */
export const RUNTIME_MODEL_TENSORS: { name: string; elements: (d: RuntimeDims) => number }[] = [
  { name: 'token and target ids (2·B·T int32)', elements: (d) => 2 * d.B * d.T },
  { name: 'ln_f x̂ and rstd (B·T·C + B·T)', elements: (d) => d.B * d.T * d.C + d.B * d.T },
  { name: 'lm_head input = ln_f output (B·T·C)', elements: (d) => d.B * d.T * d.C },
  { name: 'softmax probabilities kept for the loss (B·T·V/tp)', elements: (d) => (d.B * d.T * d.V) / d.tp },
];

/**
 * Transient tensors the runtime measures as temporaries, not activations; counted as overhead so a fit check
 * still sees them: the logits next to the kept probabilities (or their gradient), and under selective
 * recompute the probabilities one block rebuilds in its backward.
 */
export const RUNTIME_TRANSIENT_TENSORS: { name: string; elements: (d: RuntimeDims) => number; only?: 'selective' }[] = [
  { name: 'logits in forward, or their gradient at the start of backward (B·T·V/tp, transient)', elements: (d) => (d.B * d.T * d.V) / d.tp },
  { name: 'attention probabilities one block rebuilds in backward (selective recompute, transient)', elements: (d) => (d.B * d.NH * d.T * d.T) / d.tp, only: 'selective' },
];

/**
 * How the runtime groups its gradient units (ln_f, blocks from the last, embedding) into buckets: in order,
 * closing a bucket once it holds `firstBytes` (the first) or `bytes` (the others), like PyTorch DDP's small
 * first bucket. runtime/parallel/flat.ts builds its buckets with this very function.
 */
export function formBuckets(unitBytes: readonly number[], firstBytes: number, bytes: number): number[][] {
  const buckets: number[][] = [];
  let current: number[] = [];
  let size = 0;
  unitBytes.forEach((b, i) => {
    current.push(i);
    size += b;
    if (size >= (buckets.length === 0 ? firstBytes : bytes)) {
      buckets.push(current);
      current = [];
      size = 0;
    }
  });
  if (current.length) buckets.push(current);
  return buckets;
}

/** What the runtime cannot run: these layouts get a reason, not a number. */
export function runtimeIssues(input: PlanInput, layout: Layout): PlanIssue[] {
  const issues: PlanIssue[] = [];
  const why = 'the local runtime';
  if (input.train.precision !== 'fp32')
    issues.push({ path: 'train.precision', message: `${why} trains in fp32 only; train.precision="${input.train.precision}" has no runtime allocation to model (use --convention scalelm)` });
  if (layout.pp > 1) issues.push({ path: 'parallel.pp', message: `${why} has no pipeline parallelism (data, tensor and ZeRO only); parallel.pp=${layout.pp} cannot run there` });
  if (layout.offloadOptimizer || layout.offloadParams) issues.push({ path: 'parallel.offloadOptimizer', message: `${why} does not offload to host memory; turn offload off` });
  if (layout.sequenceParallel) issues.push({ path: 'parallel.sequenceParallel', message: `${why} has no sequence parallelism; set parallel.sequenceParallel=false` });
  if (input.train.flashAttention) issues.push({ path: 'train.flashAttention', message: `${why} materialises attention scores (no FlashAttention); set train.flashAttention=false` });
  return issues;
}

export function runtimeDims(input: PlanInput, layout: Layout): RuntimeDims {
  const m = input.model;
  return {
    B: layout.microBatch,
    T: m.seqLen,
    C: m.hidden,
    NH: m.heads,
    KV: m.kvHeads,
    D: m.hidden / m.heads,
    F: m.ffnHidden,
    V: runtimeVocab(m.vocab, layout.tp),
    tp: layout.tp,
    gated: m.activation === 'swiglu',
  };
}

/** Assumption: no padding at tp = 1 (GPT-2 keeps 50257), Megatron's multiple of 128·tp otherwise. */
export function runtimeVocab(vocab: number, tp: number): number {
  return tp === 1 ? vocab : paddedVocab(vocab, tp);
}

/** One rank's gradient units (runtime/parallel/flat.ts), in backward order: ln_f, the blocks, the embedding — elements, padded for ZeRO. */
export function runtimeUnits(input: PlanInput, layout: Layout): { numel: number; padded: number }[] {
  const { model } = input;
  const { dp, tp, zero } = layout;
  const counts = countParams(model, tp, tp === 1 ? 1 : 128);
  const layer = counts.givenTotal ? (counts.perLayer / counts.layer.total) * layerShardParams(counts.layer, tp) : layerShardParams(counts.layer, tp);
  const parts = zero >= 1 ? dp : 1;
  const unit = (n: number) => ({ numel: n, padded: Math.ceil(n / parts) * parts });
  return [unit(counts.finalNorm), ...Array.from({ length: model.layers }, () => unit(layer)), unit(counts.embedding / tp + counts.positions + counts.outputLayer / tp)];
}

/** Bytes of the two rotating staging buckets ZeRO 2/3 reduce-scatter through (each as large as the largest bucket it takes). */
export function runtimeStagingBytes(input: PlanInput, layout: Layout): number {
  const E = RUNTIME_ELEMENT_BYTES;
  const bucket = (input.parallel.bucketMB ?? 25) * 1e6;
  const units = runtimeUnits(input, layout);
  const buckets = formBuckets(
    units.map((u) => E * u.padded),
    Math.min(2 ** 20, bucket),
    bucket,
  );
  const slots = [0, 0];
  buckets.forEach(
    (b, i) =>
      (slots[i % 2] = Math.max(
        slots[i % 2]!,
        b.reduce((n, u) => n + units[u]!.padded, 0),
      )),
  );
  return E * (slots[0]! + slots[1]!);
}

/**
 * The runtime's per-rank memory, term by term, as runtime/parallel allocates it: fp32 params 4 B, grads 4 B,
 * AdamW m+v 8 B (SGD momentum 4 B), partitioned by ZeRO over dp (each unit padded to a multiple of dp);
 * every saved activation tensor; communication buffers — none for DDP and ZeRO-1 (the gradient buckets are
 * the gradients), two staging buckets for ZeRO 2/3, ZeRO-3's gather staging and gathered layer, the TP
 * all-reduce buffer; no framework overhead beyond the loss's transient logits (CPU devices count tensors).
 */
export function runtimeMemoryTerms(input: PlanInput, layout: Layout): MemoryTerm[] {
  const { model, train } = input;
  const { dp, tp, zero } = layout;
  const E = RUNTIME_ELEMENT_BYTES;
  const counts = countParams(model, tp, tp === 1 ? 1 : 128);
  const units = runtimeUnits(input, layout);
  const rankParams = units.reduce((n, u) => n + u.numel, 0);
  const partition = units.reduce((n, u) => n + u.padded, 0) / (zero >= 1 ? dp : 1);
  const terms: MemoryTerm[] = [];
  const add = (category: MemoryTerm['category'], label: string, bytes: number) => terms.push({ category, label, bytes });

  add(
    'params',
    zero === 3 ? `fp32 parameter partition (4 B × ${Math.round(rankParams)} / dp ${dp}, padded)` : `fp32 parameters (4 B × ${Math.round(rankParams)})`,
    E * (zero === 3 ? partition : rankParams),
  );
  add(
    'grads',
    zero >= 2 ? `fp32 gradient partition (4 B / dp ${dp}, padded)` : `fp32 gradients = the bucket buffers (4 B${zero === 1 ? ', padded for ZeRO-1' : ''})`,
    E * (zero >= 2 ? partition : zero === 1 ? partition * dp : rankParams),
  );
  if (zero >= 2 && model.tiedEmbeddings) add('grads', "output layer's wte gradient held until the embedding adds its own (tied)", (E * counts.embedding) / tp);
  const stateBytes = train.optimizer === 'sgd' ? ((train.beta1 ?? 0.9) > 0 ? E : 0) : 2 * E;
  add(
    'optimizer',
    train.optimizer === 'sgd' ? `SGD momentum (${stateBytes} B${zero >= 1 ? ` / dp ${dp}` : ''})` : `AdamW m and v (8 B${zero >= 1 ? ` / dp ${dp}` : ''})`,
    stateBytes * (zero >= 1 ? partition : rankParams),
  );

  const d = runtimeDims(input, layout);
  const recompute = train.recompute;
  for (const t of RUNTIME_LAYER_TENSORS) {
    if (t.keptBy.includes(recompute)) add('activations', `${model.layers} × ${t.name}`, model.layers * E * t.elements(d));
  }
  if (recompute === 'full') {
    // The most is either the end of forward (the output layer's tensors) or the last block's replay in
    // backward (one block's tensors back; the output layer's and the targets are gone by then).
    const block = RUNTIME_LAYER_TENSORS.filter((t) => t.keptBy.includes('none')).reduce((n, t) => n + t.elements(d), 0);
    const top = RUNTIME_MODEL_TENSORS.reduce((n, t) => n + t.elements(d), 0);
    const replay = d.B * d.T + block;
    add('activations', replay > top ? "token ids and the last block's saved tensors, rebuilt in backward" : RUNTIME_MODEL_TENSORS.map((t) => t.name).join('; '), E * Math.max(top, replay));
  } else for (const t of RUNTIME_MODEL_TENSORS) add('activations', t.name, E * t.elements(d));
  for (const t of RUNTIME_TRANSIENT_TENSORS) if (!t.only || t.only === recompute) add('overhead', t.name, E * t.elements(d));

  if (zero >= 2) add('buffers', 'two staging buckets for the reduce-scatter (ZeRO 2/3)', runtimeStagingBytes(input, layout));
  if (zero === 3) {
    const largest = units.reduce((m, u) => Math.max(m, u.padded), 0);
    add('buffers', 'ZeRO-3 all-gather staging of the next layer (prefetch)', E * largest);
    add('buffers', 'ZeRO-3 gathered layer (block or embedding)', E * units.reduce((m, u) => Math.max(m, u.numel), 0));
  }
  if (tp > 1) add('buffers', 'tensor-parallel all-reduce buffer (B·T·C)', E * d.B * d.T * d.C);
  return terms;
}
