// Reads a HuggingFace `config.json` (GPT-2, GPT-NeoX, Llama, Mistral, Qwen2 key names) into the model
// section of a run config, for planning. Pure.
import type { HfActivations } from '../planner/types';
import type { ConfigIssue } from './dsl';
import type { RunConfigInput } from './schema';

type ModelInput = NonNullable<RunConfigInput['model']>;
export type HfResult = { ok: true; model: ModelInput; family: string; notes: string[] } | { ok: false; errors: ConfigIssue[] };

/** Largest count read from a config.json (layers, sizes, vocabulary, positions); the run config's own bounds apply after. */
const HF_MAX = 2 ** 31 - 1;

const FAMILIES: Record<string, 'gpt2' | 'neox' | 'llama'> = {
  gpt2: 'gpt2',
  gpt_neox: 'neox',
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'llama',
};

export function isHuggingFaceConfig(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.model_type === 'string' || Array.isArray(v.architectures) || 'n_embd' in v || 'hidden_size' in v;
}

export function modelFromHuggingFace(value: unknown): HfResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, errors: [{ path: '', message: 'a HuggingFace config.json must be a JSON object' }] };
  const hf = value as Record<string, unknown>;
  const modelType = typeof hf.model_type === 'string' ? hf.model_type : guessType(hf);
  // Own keys only: model_type "toString" or "constructor" must not find Object.prototype's members.
  const family = modelType && Object.hasOwn(FAMILIES, modelType) ? FAMILIES[modelType] : undefined;
  if (!family) {
    return {
      ok: false,
      errors: [{ path: 'model_type', message: `model_type ${JSON.stringify(hf.model_type)} is not supported; ScaleLM reads ${Object.keys(FAMILIES).join(', ')} (dense GPT-style models)` }],
    };
  }
  const errors: ConfigIssue[] = [];
  const notes: string[] = [];
  const need = (key: string): number => {
    const v = hf[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > HF_MAX) {
      errors.push({ path: key, message: `${key} must be a whole number from 1 to ${HF_MAX} in a ${modelType} config, got ${JSON.stringify(v)}` });
      return 1;
    }
    return v;
  };
  const optional = (key: string): number | undefined => {
    const v = hf[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > HF_MAX) {
      errors.push({ path: key, message: `${key} must be a whole number from 1 to ${HF_MAX} in a ${modelType} config, got ${JSON.stringify(v)}` });
      return undefined;
    }
    return v;
  };
  let model: ModelInput;
  if (family === 'gpt2') {
    const hidden = need('n_embd');
    const act = String(hf.activation_function ?? 'gelu_new');
    if (!act.startsWith('gelu')) notes.push(`activation_function "${act}" is modelled as GELU (same memory and FLOPs)`);
    model = {
      layers: need('n_layer'),
      hidden,
      heads: need('n_head'),
      ffnHidden: optional('n_inner') ?? 4 * hidden,
      vocab: need('vocab_size'),
      seqLen: optional('n_positions') ?? optional('n_ctx') ?? 1024,
      activation: 'gelu',
      norm: 'layernorm',
      tiedEmbeddings: hf.tie_word_embeddings !== false,
      bias: true,
      positionEmbedding: 'learned',
    };
  } else if (family === 'neox') {
    model = {
      layers: need('num_hidden_layers'),
      hidden: need('hidden_size'),
      heads: need('num_attention_heads'),
      ffnHidden: need('intermediate_size'),
      vocab: need('vocab_size'),
      seqLen: optional('max_position_embeddings') ?? 2048,
      activation: 'gelu',
      norm: 'layernorm',
      tiedEmbeddings: hf.tie_word_embeddings === true,
      bias: true,
      positionEmbedding: 'rope',
    };
  } else {
    const heads = need('num_attention_heads');
    const act = String(hf.hidden_act ?? 'silu');
    model = {
      layers: need('num_hidden_layers'),
      hidden: need('hidden_size'),
      heads,
      kvHeads: optional('num_key_value_heads') ?? heads,
      ffnHidden: need('intermediate_size'),
      vocab: need('vocab_size'),
      seqLen: optional('max_position_embeddings') ?? 4096,
      activation: act === 'silu' || act === 'swiglu' ? 'swiglu' : 'gelu',
      norm: 'rmsnorm',
      tiedEmbeddings: hf.tie_word_embeddings === true,
      bias: false,
      positionEmbedding: 'rope',
    };
    if (modelType === 'qwen2') notes.push("Qwen2's q/k/v biases (3·h + 2·kv·head_dim per layer) are left out of the count: under 0.01% of parameters");
    if ((model.seqLen ?? 0) > 32768) notes.push(`max_position_embeddings=${model.seqLen} is the longest context, not the training length: set --seq-len`);
  }
  if (errors.length) return { ok: false, errors };
  const name = typeof hf._name_or_path === 'string' && hf._name_or_path ? hf._name_or_path : Array.isArray(hf.architectures) ? String(hf.architectures[0]) : modelType!;
  return { ok: true, model: { name, ...model }, family: modelType!, notes };
}

function guessType(hf: Record<string, unknown>): string | undefined {
  if ('n_embd' in hf && 'n_layer' in hf) return 'gpt2';
  const arch = Array.isArray(hf.architectures) ? String(hf.architectures[0]).toLowerCase() : '';
  if (arch.includes('llama')) return 'llama';
  if (arch.includes('mistral')) return 'mistral';
  if (arch.includes('qwen2')) return 'qwen2';
  if (arch.includes('neox')) return 'gpt_neox';
  return undefined;
}

/**
 * Which HuggingFace implementation's saved activations the `torch` convention counts for this config and
 * attention (`_attn_implementation`), or why none is modelled (then ScaleLM's own model's are). Only what was
 * derived from the modeling code and checked by measurement: GPT-2 with gelu_new and Llama with SiLU, eager or
 * sdpa; dropout on where its probability is above 0 (GPT-2's embd/resid/attn_pdrop default 0.1, Llama's
 * attention_dropout 0).
 */
export function hfActivationModel(
  hf: Record<string, unknown>,
  attention: string | undefined,
  run: { tp: number; recompute: string; precision?: string },
): { ok: true; model: HfActivations } | { ok: false; why: string } {
  // The HF terms are measured in fp32; under autocast the modeling code's casts are not modelled.
  if (run.precision !== undefined && run.precision !== 'fp32') return { ok: false, why: `train.precision ${run.precision} is not modelled (fp32 only)` };
  if (run.tp > 1) return { ok: false, why: 'tp > 1 is not modelled' };
  if (run.recompute !== 'none') return { ok: false, why: 'gradient checkpointing is not modelled' };
  const type = hf.model_type;
  if (type !== 'gpt2' && type !== 'llama') return { ok: false, why: `model_type ${JSON.stringify(type)}: only gpt2 and llama have a HuggingFace activation model` };
  if (attention !== 'eager' && attention !== 'sdpa') return { ok: false, why: `attention ${JSON.stringify(attention ?? 'not reported')}: only eager and sdpa are modelled` };
  const on = (key: string, dflt: number): boolean => {
    const v = hf[key] ?? dflt;
    return typeof v === 'number' && v > 0;
  };
  const impl = attention === 'eager' ? 'hf-eager' : 'hf-sdpa';
  if (type === 'gpt2') {
    const act = hf.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new') return { ok: false, why: `activation_function ${JSON.stringify(act)}: only gelu_new is modelled` };
    if (hf.reorder_and_upcast_attn === true) return { ok: false, why: 'reorder_and_upcast_attn is not modelled' };
    return { ok: true, model: { impl, family: 'gpt2', embdDropout: on('embd_pdrop', 0.1), residDropout: on('resid_pdrop', 0.1), attnDropout: on('attn_pdrop', 0.1) } };
  }
  const act = hf.hidden_act ?? 'silu';
  if (act !== 'silu') return { ok: false, why: `hidden_act ${JSON.stringify(act)}: only silu is modelled` };
  const hidden = hf.hidden_size;
  const heads = hf.num_attention_heads;
  if (hf.head_dim !== undefined && hf.head_dim !== null && typeof hidden === 'number' && typeof heads === 'number' && hf.head_dim !== hidden / heads)
    return { ok: false, why: `head_dim ${String(hf.head_dim)} is not hidden_size / num_attention_heads` };
  return { ok: true, model: { impl, family: 'llama', embdDropout: false, residDropout: false, attnDropout: on('attention_dropout', 0) } };
}
