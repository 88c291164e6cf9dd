// Parameter counting for dense GPT-style models, and what each pipeline stage's tensor-parallel shard holds.
// Pure.
import type { ModelShape } from '../config/presets';
import type { PlanModel } from './types';

/** Megatron pads the vocabulary to a multiple of 128·tp so every vocab shard is a multiple of 128. */
export function paddedVocab(vocab: number, tp: number, multiple = 128): number {
  const m = multiple * tp;
  return Math.ceil(vocab / m) * m;
}

export interface LayerParams {
  /** Q, K, V and output projection weights: 2h² + 2h·g·d with d = h/a. */
  attentionWeights: number;
  /** Q/K/V biases (column parallel, split by tp). */
  qkvBias: number;
  /** Output projection bias (row parallel: replicated on every tensor-parallel rank). */
  projBias: number;
  /** fc1 (and the gate for SwiGLU) and fc2 weights. */
  mlpWeights: number;
  /** fc1 (and gate) biases (column parallel). */
  fc1Bias: number;
  /** fc2 bias (row parallel: replicated). */
  fc2Bias: number;
  /** The two norms' weights (and biases for LayerNorm with bias); replicated. */
  norms: number;
  total: number;
}

export function normParams(model: Pick<ModelShape, 'norm' | 'bias' | 'hidden'>): number {
  return model.norm === 'layernorm' && model.bias ? 2 * model.hidden : model.hidden;
}

export function layerParams(model: ModelShape): LayerParams {
  const { hidden: h, heads: a, kvHeads: g, ffnHidden: f } = model;
  const d = h / a;
  const gated = model.activation === 'swiglu';
  const attentionWeights = 2 * h * h + 2 * h * g * d;
  const qkvBias = model.bias ? h + 2 * g * d : 0;
  const projBias = model.bias ? h : 0;
  const mlpWeights = (gated ? 3 : 2) * h * f;
  const fc1Bias = model.bias ? (gated ? 2 : 1) * f : 0;
  const fc2Bias = model.bias ? h : 0;
  const norms = 2 * normParams(model);
  return { attentionWeights, qkvBias, projBias, mlpWeights, fc1Bias, fc2Bias, norms, total: attentionWeights + qkvBias + projBias + mlpWeights + fc1Bias + fc2Bias + norms };
}

/** One transformer layer's parameters on one tensor-parallel rank. */
export function layerShardParams(p: LayerParams, tp: number): number {
  return (p.attentionWeights + p.qkvBias + p.mlpWeights + p.fc1Bias) / tp + p.projBias + p.fc2Bias + p.norms;
}

export interface ParamCounts {
  vocab: number;
  paddedVocab: number;
  /** Token embedding, padded vocabulary. */
  embedding: number;
  positions: number;
  /** Parameters per transformer layer (scaled when model.totalParams overrides the shape). */
  perLayer: number;
  layer: LayerParams;
  finalNorm: number;
  /** The untied output layer (0 when tied to the embedding). */
  outputLayer: number;
  /** Count with the unpadded vocabulary: the model's true size (or model.totalParams). */
  total: number;
  /** Count with the padded vocabulary: what the ranks hold between them. */
  paddedTotal: number;
  /** True when model.totalParams replaced the shape's count. */
  givenTotal: boolean;
}

export class ParamCountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParamCountError';
  }
}

/**
 * Counts a dense GPT. `vocabMultiple` is the padding multiple (1 = no padding). When the model states
 * totalParams, the layers absorb the difference between it and the shape's count (embeddings stay as shaped).
 */
export function countParams(model: PlanModel, tp = 1, vocabMultiple = 128): ParamCounts {
  const h = model.hidden;
  const Vp = vocabMultiple <= 1 ? model.vocab : paddedVocab(model.vocab, tp, vocabMultiple);
  const layer = layerParams(model);
  const positions = model.positionEmbedding === 'learned' ? model.seqLen * h : 0;
  const finalNorm = normParams(model);
  const embedFor = (V: number) => V * h + positions + finalNorm + (model.tiedEmbeddings ? 0 : V * h);
  const shapeTotal = embedFor(model.vocab) + model.layers * layer.total;
  let perLayer = layer.total;
  let total = shapeTotal;
  const givenTotal = model.totalParams !== undefined;
  if (model.totalParams !== undefined) {
    const rest = model.totalParams - embedFor(model.vocab);
    if (rest <= 0) {
      throw new ParamCountError(
        `model.totalParams=${model.totalParams} is not more than the embeddings alone (${embedFor(model.vocab)} parameters for vocab ${model.vocab} × hidden ${h}); check the count or the shape`,
      );
    }
    perLayer = rest / model.layers;
    total = model.totalParams;
  }
  return {
    vocab: model.vocab,
    paddedVocab: Vp,
    embedding: Vp * h,
    positions,
    perLayer,
    layer,
    finalNorm,
    outputLayer: model.tiedEmbeddings ? 0 : Vp * h,
    total,
    paddedTotal: total + (Vp - model.vocab) * h * (model.tiedEmbeddings ? 1 : 2),
    givenTotal,
  };
}

/** Megatron's closed form for GPT (f = 4h, tied, learned positions, biases): 12Lh²(1 + 13/(12h) + (V+s)/(12Lh)). It leaves out the final LayerNorm (2h). */
export function megatronClosedForm(layers: number, hidden: number, vocab: number, seqLen: number): number {
  return 12 * layers * hidden * hidden + 13 * layers * hidden + (vocab + seqLen) * hidden;
}

export interface StageParams {
  /** Parameters one tensor-parallel rank of this stage holds. */
  params: number;
  layers: number;
  /** Of which: embedding (and positions), output layer (or the tied embedding's copy), final norm. */
  embedding: number;
  output: number;
}

/**
 * What one tensor-parallel rank of pipeline stage `stage` holds. The first stage holds the (vocab-parallel)
 * embedding and the positions; the last holds the final norm and the output layer — for tied embeddings with
 * pp > 1 that is a copy of the embedding, kept in sync by an all-reduce (as Megatron does).
 */
export function stageParams(counts: ParamCounts, layers: number, tp: number, pp: number, stage: number): StageParams {
  const perStage = layers / pp;
  const layerShard = counts.givenTotal ? (counts.perLayer / counts.layer.total) * layerShardParams(counts.layer, tp) : layerShardParams(counts.layer, tp);
  const first = stage === 0;
  const last = stage === pp - 1;
  const embedding = first ? counts.embedding / tp + counts.positions : 0;
  let output = 0;
  if (last) {
    output = counts.finalNorm;
    if (counts.outputLayer > 0) output += counts.outputLayer / tp;
    else if (pp > 1) output += counts.embedding / tp;
  }
  return { params: perStage * layerShard + embedding + output, layers: perStage, embedding, output };
}

/**
 * Whether the model's HuggingFace modules fuse Q, K and V into one linear: GPT-2's `c_attn`, GPT-NeoX's
 * `query_key_value` (GELU families). Llama, Mistral and Qwen2 (SwiGLU) have separate `q_proj`, `k_proj`,
 * `v_proj` and separate `gate_proj` / `up_proj`. `model.fusedQkv` overrides the guess.
 */
export function hasFusedQkv(model: ModelShape & { fusedQkv?: boolean }): boolean {
  return model.fusedQkv ?? model.activation !== 'swiglu';
}

/**
 * The largest single module (DeepSpeed's `largest_layer_params`: the max over modules of their own,
 * non-recursive parameters): the embedding, an untied head, positions, or the largest linear — fused QKV for
 * GPT-2/NeoX, a single q/o projection (h·h) for Llama-style models, whose gate and up projections are separate too.
 */
export function largestModuleParams(model: ModelShape & { fusedQkv?: boolean }): number {
  const { hidden: h, heads: a, kvHeads: g, ffnHidden: f } = model;
  const d = h / a;
  const bias = model.bias ? 1 : 0;
  const attention = hasFusedQkv(model)
    ? h * (h + 2 * g * d) + bias * (h + 2 * g * d) // one fused QKV linear
    : h * h + bias * h; // q_proj and o_proj (k/v are smaller with GQA, equal without)
  const candidates = [
    model.vocab * h,
    model.positionEmbedding === 'learned' ? model.seqLen * h : 0,
    attention,
    h * f + bias * f, // fc1, or one of gate/up/down (each h·f)
  ];
  return Math.max(...candidates);
}

/** Every pipeline stage's share on one tensor-parallel rank (first and last hold the embedding and output layer). */
export function paramsPerStage(counts: ParamCounts, layers: number, tp: number, pp: number): (StageParams & { stage: number })[] {
  return Array.from({ length: pp }, (_, stage) => ({ stage, ...stageParams(counts, layers, tp, pp, stage) }));
}
