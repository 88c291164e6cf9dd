// The Planner tab's logic without the DOM: the form (model source, cluster, batch) over a config, resolved
// the way `scalelm plan` resolves a file and its flags (runtime/commands/plan-input.ts: the config is parsed
// with a one-GPU placeholder layout, then the cluster is put back and the layout searched), the search,
// and the patch a chosen layout makes to the config. Pure.
import { isHuggingFaceConfig, modelFromHuggingFace } from '../runtime/config/huggingface';
import { parseConfig } from '../runtime/config/parse';
import { GPU_PRESETS, MODEL_PRESETS, type GpuPresetName, type ModelPresetName } from '../runtime/config/presets';
import type { RunConfig } from '../runtime/config/types';
import { describeLayout, layoutParallel, searchLayouts, type SearchResult } from '../runtime/planner';
import type { Layout } from '../runtime/planner/types';
import type { JsonObject } from '../common/protocol';
import { formatBytes, formatTokensPerSec } from './format';

export type ModelSource = 'config' | 'preset' | 'hf';
export type Precision = 'fp32' | 'bf16-mixed' | 'fp16-mixed';

export interface PlanForm {
  modelSource: ModelSource;
  preset: ModelPresetName;
  /** A pasted HuggingFace config.json. */
  hfText: string;
  gpu: GpuPresetName;
  gpusPerNode: number;
  nodes: number;
  /** Sequences per step; null: about a million tokens per step, as `scalelm plan` picks. */
  globalBatch: number | null;
  /** null: the model's own. */
  seqLen: number | null;
  precision: Precision;
  flashAttention: boolean;
}

export const DEFAULT_FORM: PlanForm = {
  modelSource: 'preset',
  preset: 'llama-2-7b',
  hfText: '',
  gpu: 'H100-SXM',
  gpusPerNode: 8,
  nodes: 1,
  globalBatch: null,
  seqLen: null,
  precision: 'bf16-mixed',
  flashAttention: true,
};

export const MODEL_PRESET_LIST = Object.keys(MODEL_PRESETS) as ModelPresetName[];
export const GPU_PRESET_LIST = Object.keys(GPU_PRESETS) as GpuPresetName[];

type Raw = Record<string, unknown>;
const isObj = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface Issue {
  path: string;
  message: string;
}

export type Resolved = { ok: true; config: RunConfig; notes: string[]; defaultGlobalBatch: boolean; current?: Layout } | { ok: false; errors: Issue[] };

/** A resolved RunConfig (a run's hello.config) back into the input shape the parser takes. */
export function rawFromResolved(config: Raw): Raw {
  const pick = (src: unknown, keys: string[]): Raw => {
    const out: Raw = {};
    if (isObj(src)) for (const k of keys) if (src[k] !== undefined) out[k] = src[k];
    return out;
  };
  const cluster = isObj(config.cluster) ? config.cluster : {};
  return {
    ...(typeof config.name === 'string' ? { name: config.name } : {}),
    model: pick(config.model, [
      'name',
      'layers',
      'hidden',
      'heads',
      'kvHeads',
      'ffnHidden',
      'vocab',
      'seqLen',
      'activation',
      'norm',
      'tiedEmbeddings',
      'bias',
      'positionEmbedding',
      'dropout',
      'totalParams',
    ]),
    train: pick(config.train, ['microBatch', 'globalBatch', 'precision', 'optimizer', 'beta1', 'recompute', 'flashAttention']),
    parallel: pick(config.parallel, ['dp', 'tp', 'pp', 'vpp', 'zero', 'sequenceParallel', 'offloadOptimizer', 'offloadParams', 'bucketMB']),
    cluster: { ...pick(cluster, ['gpu', 'gpusPerNode', 'nodes', 'efficiency', 'headroom']) },
  };
}

/** Is this a resolved config (from a run) rather than a file as written? */
export function isResolvedConfig(config: Raw): boolean {
  return isObj(config.cluster) && isObj((config.cluster as Raw).spec);
}

/** The form's starting values from a config: its cluster, batch and precision. */
export function formFromConfig(config: Raw, base: PlanForm = DEFAULT_FORM): PlanForm {
  const form: PlanForm = { ...base, modelSource: 'config' };
  const cluster = isObj(config.cluster) ? config.cluster : {};
  const train = isObj(config.train) ? config.train : {};
  if (typeof cluster.gpu === 'string' && cluster.gpu in GPU_PRESETS) form.gpu = cluster.gpu as GpuPresetName;
  if (typeof cluster.gpusPerNode === 'number') form.gpusPerNode = cluster.gpusPerNode;
  if (typeof cluster.nodes === 'number') form.nodes = cluster.nodes;
  if (cluster.gpusPerNode === undefined && isObj(config.parallel)) {
    const p = config.parallel;
    const n = ((p.dp as number) ?? 1) * ((p.tp as number) ?? 1) * ((p.pp as number) ?? 1);
    if (Number.isInteger(n) && n >= 1) {
      form.gpusPerNode = Math.min(8, n);
      form.nodes = Math.max(1, Math.ceil(n / form.gpusPerNode));
    }
  }
  form.globalBatch = typeof train.globalBatch === 'number' ? train.globalBatch : null;
  form.seqLen = null;
  if (train.precision === 'fp32' || train.precision === 'bf16-mixed' || train.precision === 'fp16-mixed') form.precision = train.precision;
  if (typeof train.flashAttention === 'boolean') form.flashAttention = train.flashAttention;
  return form;
}

/** The config to plan: the chosen model source with the form's cluster and batch applied (a form field overrides the file). */
export function resolvePlan(form: PlanForm, openConfig: Raw | null): Resolved {
  const notes: string[] = [];
  let raw: Raw;
  if (form.modelSource === 'config') {
    if (!openConfig) return { ok: false, errors: [{ path: '', message: 'no config is open: open a *.scalelm.json in the editor, or pick a preset' }] };
    raw = isResolvedConfig(openConfig) ? rawFromResolved(openConfig) : structuredClone(openConfig);
    if (raw.model === undefined && isHuggingFaceConfig(raw)) {
      const hf = modelFromHuggingFace(raw);
      if (!hf.ok) return { ok: false, errors: hf.errors };
      notes.push(`read as a HuggingFace ${hf.family} config`, ...hf.notes);
      raw = { name: hf.model.name, model: hf.model, train: {} };
    }
  } else if (form.modelSource === 'hf') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(form.hfText);
    } catch (e) {
      return { ok: false, errors: [{ path: '', message: `the pasted config.json is not valid JSON: ${(e as Error).message}` }] };
    }
    const hf = modelFromHuggingFace(parsed);
    if (!hf.ok) return { ok: false, errors: hf.errors };
    notes.push(`read as a HuggingFace ${hf.family} config`, ...hf.notes);
    raw = { name: hf.model.name, model: hf.model, train: {} };
  } else {
    raw = { name: form.preset, model: { preset: form.preset }, train: {} };
  }
  for (const key of ['model', 'train', 'parallel', 'cluster'] as const) if (!isObj(raw[key])) raw[key] = {};
  const model = raw.model as Raw;
  const train = raw.train as Raw;
  const parallel = raw.parallel as Raw;
  if (form.seqLen !== null) model.seqLen = form.seqLen;
  train.precision = form.precision;
  train.flashAttention = form.flashAttention;
  if (form.globalBatch !== null) train.globalBatch = form.globalBatch;
  const N = form.gpusPerNode * form.nodes;
  if (!Number.isInteger(form.gpusPerNode) || form.gpusPerNode < 1 || !Number.isInteger(form.nodes) || form.nodes < 1) {
    return { ok: false, errors: [{ path: 'cluster', message: 'GPUs per node and nodes must be positive whole numbers' }] };
  }
  const cluster = { ...(raw.cluster as Raw), gpu: form.gpu, gpusPerNode: 1, nodes: 1 };
  // Parse with a one-GPU placeholder layout so the config's own layout rules do not reject the search.
  const placeholder: Raw = {
    ...raw,
    parallel: parallel.bucketMB !== undefined ? { bucketMB: parallel.bucketMB } : {},
    cluster,
    train: { ...train, microBatch: 1, recompute: 'none', globalBatch: train.globalBatch ?? 1 },
  };
  delete placeholder.devices;
  delete placeholder.data;
  delete placeholder.monitor;
  const result = parseConfig(placeholder);
  if (!result.ok) return { ok: false, errors: result.errors };
  const config = result.config;
  config.cluster = { ...config.cluster, gpusPerNode: form.gpusPerNode, nodes: form.nodes, explicit: true };
  config.parallel = { ...config.parallel, dp: N };
  const defaultGlobalBatch = train.globalBatch === undefined;
  if (defaultGlobalBatch) {
    config.train.globalBatch = N * Math.max(1, Math.ceil(2 ** 20 / (N * config.model.seqLen)));
    notes.push(`global batch ${config.train.globalBatch} sequences (about a million tokens per step); set it to plan another`);
  }
  // The open config's own layout on the planned cluster, so the result can say where it ranks.
  let current: Layout | undefined;
  const tp = typeof parallel.tp === 'number' ? parallel.tp : 1;
  const pp = typeof parallel.pp === 'number' ? parallel.pp : 1;
  if (form.modelSource === 'config' && Object.keys(parallel).length > 0 && N % (tp * pp) === 0) {
    current = {
      dp: N / (tp * pp),
      tp,
      pp,
      vpp: typeof parallel.vpp === 'number' ? parallel.vpp : 1,
      zero: (typeof parallel.zero === 'number' ? parallel.zero : 0) as Layout['zero'],
      microBatch: typeof train.microBatch === 'number' ? train.microBatch : 1,
      recompute: (typeof train.recompute === 'string' ? train.recompute : 'none') as Layout['recompute'],
      sequenceParallel: parallel.sequenceParallel === true,
      offloadOptimizer: parallel.offloadOptimizer === true,
      offloadParams: parallel.offloadParams === true,
    };
  }
  return { ok: true, config, notes, defaultGlobalBatch, ...(current ? { current } : {}) };
}

export function search(config: RunConfig, top = 8, current?: Layout): SearchResult {
  return searchLayouts(config, { top, ...(current ? { current } : {}) });
}

/** One line on where the config's own layout stands against #1 (a tie within the model's error counts as one). */
export function currentLine(r: SearchResult): string | null {
  const c = r.current;
  if (!c) return null;
  const what = `Your layout (${describeLayout(c.layout)})`;
  if (c.rank === null) return `${what} is not ranked: ${c.reason}.`;
  if (c.rank === 1) return `${what} is #1.`;
  const vs = c.vsBest ?? 1;
  const gap = `${Math.round((1 - vs) * 100)}% slower than #1`;
  return `${what} ranks #${c.rank} of ${r.ranking.length}: ${gap}${vs >= 1 - r.tieTolerance ? ` — a tie within the model's ${Math.round(r.tieTolerance * 100)}% error` : ''}.`;
}

/** What choosing a layout changes in the config file (and what the browser shows to copy). */
export function configPatch(layout: Layout, config: RunConfig): JsonObject {
  return {
    parallel: layoutParallel(layout),
    train: { microBatch: layout.microBatch, globalBatch: config.train.globalBatch, recompute: layout.recompute },
    cluster: { gpu: config.cluster.gpu, gpusPerNode: config.cluster.gpusPerNode, nodes: config.cluster.nodes },
  };
}

export function layoutSummary(layout: Layout, memoryBytes: number, tokensPerSec: number): string {
  return `${describeLayout(layout)} — ${formatBytes(memoryBytes, 1)} per GPU, ${formatTokensPerSec(tokensPerSec)}`;
}

/** Keeps a form read back from saved state safe to use (older or hand-edited state). */
export function sanitizeForm(v: unknown): PlanForm {
  const f: PlanForm = { ...DEFAULT_FORM };
  if (!isObj(v)) return f;
  if (v.modelSource === 'config' || v.modelSource === 'preset' || v.modelSource === 'hf') f.modelSource = v.modelSource;
  if (typeof v.preset === 'string' && v.preset in MODEL_PRESETS) f.preset = v.preset as ModelPresetName;
  if (typeof v.hfText === 'string') f.hfText = v.hfText.slice(0, 100_000);
  if (typeof v.gpu === 'string' && v.gpu in GPU_PRESETS) f.gpu = v.gpu as GpuPresetName;
  const whole = (x: unknown, max: number): number | null => (typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= max ? x : null);
  f.gpusPerNode = whole(v.gpusPerNode, 1024) ?? f.gpusPerNode;
  f.nodes = whole(v.nodes, 100_000) ?? f.nodes;
  f.globalBatch = whole(v.globalBatch, 1e9);
  f.seqLen = whole(v.seqLen, 1e7);
  if (v.precision === 'fp32' || v.precision === 'bf16-mixed' || v.precision === 'fp16-mixed') f.precision = v.precision;
  if (typeof v.flashAttention === 'boolean') f.flashAttention = v.flashAttention;
  return f;
}
