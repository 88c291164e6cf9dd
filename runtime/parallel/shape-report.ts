// The `shape` line of the rank channel (docs/rank-channel.md): what a monitored script's rank 0 can tell the
// planner, once, on its first step — the HuggingFace config's planning fields (python/scalelm/shape.py
// HF_KEYS), the layout it detected or was told (world, strategy, ZeRO stage, tp, micro-batch, sequence length,
// accumulation, precision, optimizer, recompute, attention) and the run's length. It is separate from the
// hello because the micro-batch, sequence length and autocast are known only after the first forward.
// Checked field by field like every channel line: a wrong type drops the socket; unknown keys are left out.

export type ReportedStrategy = 'single' | 'ddp' | 'fsdp' | 'fsdp2' | 'deepspeed' | 'dtensor' | 'zero1';
const STRATEGIES: readonly ReportedStrategy[] = ['single', 'ddp', 'fsdp', 'fsdp2', 'deepspeed', 'dtensor', 'zero1'];

export interface ReportedLayout {
  world: number;
  strategy?: ReportedStrategy;
  zero?: 0 | 1 | 2 | 3;
  tp?: number;
  microBatch?: number;
  seqLen?: number;
  gradAccum?: number;
  precision?: 'fp32' | 'bf16-mixed' | 'fp16-mixed';
  optimizer?: 'adamw' | 'adam' | 'sgd';
  momentum?: number;
  recompute?: 'none' | 'selective' | 'full';
  /** HuggingFace's `_attn_implementation`: eager, sdpa, flash_attention_2, … */
  attention?: string;
  paramDtype?: 'fp32' | 'bf16' | 'fp16';
}

/** A HuggingFace config's planning fields, as the model's `config.to_dict()` has them. */
export type ReportedModel = Record<string, string | number | boolean | string[]>;

export interface ShapeLine {
  k: 'shape';
  rank: number;
  model?: ReportedModel;
  layout: ReportedLayout;
  totalSteps?: number;
}

const HF_KEYS = new Set([
  'model_type',
  'architectures',
  '_name_or_path',
  'n_layer',
  'n_embd',
  'n_head',
  'n_inner',
  'n_positions',
  'n_ctx',
  'activation_function',
  'vocab_size',
  'num_hidden_layers',
  'hidden_size',
  'num_attention_heads',
  'num_key_value_heads',
  'intermediate_size',
  'max_position_embeddings',
  'hidden_act',
  'tie_word_embeddings',
  // What the HuggingFace activation model reads (config/huggingface.ts hfActivationModel).
  'embd_pdrop',
  'resid_pdrop',
  'attn_pdrop',
  'attention_dropout',
  'reorder_and_upcast_attn',
  'head_dim',
]);
const MAX = 2 ** 31 - 1;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= MAX;

/** The typed line, or which field is wrong. */
export function parseShapeLine(v: Record<string, unknown> & { rank: number }): { ok: true; value: ShapeLine } | { ok: false; what: string } {
  if (!isObj(v.layout)) return { ok: false, what: 'layout' };
  const l = v.layout;
  if (!isCount(l.world)) return { ok: false, what: 'layout.world' };
  const layout: ReportedLayout = { world: l.world };
  const oneOf = <T extends string>(key: keyof ReportedLayout, choices: readonly T[]): boolean => {
    if (l[key] === undefined) return true;
    if (!(choices as readonly unknown[]).includes(l[key])) return false;
    (layout as unknown as Record<string, unknown>)[key] = l[key];
    return true;
  };
  for (const key of ['tp', 'microBatch', 'seqLen', 'gradAccum'] as const) {
    if (l[key] === undefined) continue;
    if (!isCount(l[key])) return { ok: false, what: `layout.${key}` };
    layout[key] = l[key];
  }
  if (l.zero !== undefined) {
    if (l.zero !== 0 && l.zero !== 1 && l.zero !== 2 && l.zero !== 3) return { ok: false, what: 'layout.zero' };
    layout.zero = l.zero;
  }
  if (l.momentum !== undefined) {
    if (typeof l.momentum !== 'number' || !(l.momentum >= 0 && l.momentum < 1)) return { ok: false, what: 'layout.momentum' };
    layout.momentum = l.momentum;
  }
  if (l.attention !== undefined) {
    if (typeof l.attention !== 'string' || l.attention.length > 64) return { ok: false, what: 'layout.attention' };
    layout.attention = l.attention;
  }
  if (!oneOf('strategy', STRATEGIES)) return { ok: false, what: 'layout.strategy' };
  if (!oneOf('precision', ['fp32', 'bf16-mixed', 'fp16-mixed'])) return { ok: false, what: 'layout.precision' };
  if (!oneOf('optimizer', ['adamw', 'adam', 'sgd'])) return { ok: false, what: 'layout.optimizer' };
  if (!oneOf('recompute', ['none', 'selective', 'full'])) return { ok: false, what: 'layout.recompute' };
  if (!oneOf('paramDtype', ['fp32', 'bf16', 'fp16'])) return { ok: false, what: 'layout.paramDtype' };
  const out: ShapeLine = { k: 'shape', rank: v.rank, layout };
  if (v.totalSteps !== undefined) {
    if (!isCount(v.totalSteps)) return { ok: false, what: 'totalSteps' };
    out.totalSteps = v.totalSteps;
  }
  if (v.model !== undefined) {
    if (!isObj(v.model)) return { ok: false, what: 'model' };
    const model: ReportedModel = {};
    for (const [key, value] of Object.entries(v.model)) {
      if (!HF_KEYS.has(key)) continue;
      const ok =
        (typeof value === 'number' && Number.isFinite(value)) ||
        typeof value === 'boolean' ||
        (typeof value === 'string' && value.length <= 200) ||
        (Array.isArray(value) && value.length <= 4 && value.every((a) => typeof a === 'string' && a.length <= 200));
      if (!ok) return { ok: false, what: `model.${key}` };
      model[key] = value as ReportedModel[string];
    }
    out.model = model;
  }
  return { ok: true, value: out };
}
