// parseConfig: text or object in, a typed RunConfig or every error (JSON path + what to do) out. Pure.
import { checkShape, type AnyNode, type ConfigIssue } from './dsl';
import { GPU_PRESETS, MODEL_PRESETS, type ModelShape } from './presets';
import { runConfigSchema, type RunConfigInput } from './schema';
import { crossFieldIssues } from './rules';
import type { RunConfig } from './types';
import { parseBytes } from '../../common/units';

export type { ConfigIssue } from './dsl';
/**
 * `stage` says which check failed: `json` (not JSON), `shape` (types, enums, unknown keys — what the JSON
 * Schema also catches in an editor) or `rules` (cross-field rules only ScaleLM knows).
 */
export type ParseResult = { ok: true; config: RunConfig } | { ok: false; stage: 'json' | 'shape' | 'rules'; errors: ConfigIssue[] };

export class ConfigError extends Error {
  constructor(
    readonly issues: ConfigIssue[],
    source?: string,
  ) {
    super(`${source ? `${source}: ` : ''}${issues.length} problem${issues.length === 1 ? '' : 's'} in the config:\n${issues.map((i) => `  - ${i.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses JSON text or an already-parsed value. Never throws. */
export function parseConfig(input: string | unknown): ParseResult {
  let value: unknown = input;
  if (typeof input === 'string') {
    const parsed = parseJsonText(input);
    if (!parsed.ok) return { ok: false, stage: 'json', errors: [parsed.error] };
    value = parsed.value;
  }
  const errors: ConfigIssue[] = [];
  checkShape(runConfigSchema, value, '', errors);
  if (errors.length) return { ok: false, stage: 'shape', errors };
  const resolved = resolve(value as RunConfigInput, errors);
  if (!resolved) return { ok: false, stage: 'rules', errors };
  errors.push(...crossFieldIssues(resolved, value as RunConfigInput));
  return errors.length ? { ok: false, stage: 'rules', errors } : { ok: true, config: resolved };
}

/** parseConfig, throwing a ConfigError that lists every problem. */
export function loadConfig(input: string | unknown, source?: string): RunConfig {
  const r = parseConfig(input);
  if (!r.ok) throw new ConfigError(r.errors, source);
  return r.config;
}

export function parseJsonText(text: string): { ok: true; value: unknown } | { ok: false; error: ConfigIssue } {
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) return { ok: false, error: { path: '', message: `nested ${depth} levels deep; a config has at most ${MAX_JSON_DEPTH}` } };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    const message = (e as Error).message;
    const pos = /position (\d+)/.exec(message);
    let where = '';
    if (pos) {
      const offset = Number(pos[1]);
      const before = text.slice(0, offset).split('\n');
      where = ` at line ${before.length}, column ${before[before.length - 1]!.length + 1}`;
    }
    return { ok: false, error: { path: '', message: `not valid JSON${where}: ${message}` } };
  }
}

/**
 * Objects in JSON text and its deepest nesting of arrays/objects, by one linear scan (strings skipped). Checked
 * before JSON.parse so a 200k-deep document (or a header with millions of entries) is refused with a sentence
 * instead of overflowing a recursive walk or filling memory.
 */
export function jsonShape(text: string): { objects: number; depth: number } {
  let objects = 0;
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (c === 0x7b) objects++;
      max = Math.max(max, ++depth);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return { objects, depth: max };
}

export const jsonDepth = (text: string): number => jsonShape(text).depth;

/** Deepest nesting a config, state or header file may have. */
export const MAX_JSON_DEPTH = 64;

const MODEL_SHAPE_KEYS: (keyof ModelShape)[] = ['layers', 'hidden', 'heads', 'kvHeads', 'ffnHidden', 'vocab', 'seqLen', 'activation', 'norm', 'tiedEmbeddings', 'bias', 'positionEmbedding'];

/** Fills every schema default into a copy of `value` (objects recursively). */
function withDefaults(node: AnyNode, value: unknown): unknown {
  if (node.kind !== 'object') return value === undefined && 'default' in node ? node.default : value;
  const record = (value ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(node.properties as Record<string, AnyNode>)) {
    const v = withDefaults(child, record[key]);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function resolve(input: RunConfigInput, errors: ConfigIssue[]): RunConfig | undefined {
  const filled = withDefaults(runConfigSchema, input) as Required<{ [K in keyof RunConfigInput]: NonNullable<RunConfigInput[K]> }>;
  const m = input.model ?? {};
  const preset: Partial<ModelShape> = m.preset ? MODEL_PRESETS[m.preset] : {};
  const shape: Partial<ModelShape> = { ...preset };
  for (const key of MODEL_SHAPE_KEYS) if (m[key] !== undefined) (shape as Record<string, unknown>)[key] = m[key];
  // kvHeads and ffnHidden have natural defaults; the structural fields do not.
  if (shape.kvHeads === undefined && shape.heads !== undefined) shape.kvHeads = shape.heads;
  if (shape.ffnHidden === undefined && shape.hidden !== undefined) shape.ffnHidden = 4 * shape.hidden;
  shape.activation ??= 'gelu';
  shape.norm ??= 'layernorm';
  shape.tiedEmbeddings ??= true;
  shape.bias ??= true;
  shape.positionEmbedding ??= 'learned';
  for (const key of ['layers', 'hidden', 'heads', 'vocab', 'seqLen'] as const) {
    if (shape[key] === undefined)
      errors.push({ path: `model.${key}`, message: `model.${key} is required: set it, or start from a preset with model.preset (one of ${Object.keys(MODEL_PRESETS).join(', ')})` });
  }
  if (errors.length) return undefined;

  const parallel = filled.parallel as RunConfig['parallel'];
  const world = parallel.dp * parallel.tp * parallel.pp;
  const train = filled.train as RunConfig['train'];
  train.globalBatch = input.train?.globalBatch ?? train.microBatch * parallel.dp;
  train.minLr = input.train?.minLr ?? train.lr / 10;

  const c = input.cluster;
  const gpu = filled.cluster.gpu!;
  const base = GPU_PRESETS[gpu];
  const gpusPerNode = c?.gpusPerNode ?? Math.min(8, world);
  const cluster: RunConfig['cluster'] = {
    gpu,
    gpusPerNode,
    nodes: c?.nodes ?? Math.ceil(world / gpusPerNode),
    spec: {
      memory: c?.gpuMemory !== undefined ? parseBytes(c.gpuMemory) : base.memory,
      peakFlops: c?.peakTflops !== undefined ? c.peakTflops * 1e12 : base.peakFlops,
      memoryBandwidth: base.memoryBandwidth,
      intraNodeBandwidth: c?.intraNodeGBps !== undefined ? c.intraNodeGBps * 1e9 : base.intraNodeBandwidth,
      interNodeBandwidth: c?.interNodeGBps !== undefined ? c.interNodeGBps * 1e9 : base.interNodeBandwidth,
    },
    efficiency: filled.cluster.efficiency!,
    headroom: filled.cluster.headroom!,
    explicit: c !== undefined,
  };

  const d = filled.devices;
  return {
    name: input.name ?? m.name ?? m.preset ?? 'run',
    model: {
      ...(shape as ModelShape),
      name: m.name ?? m.preset ?? 'custom',
      dropout: m.dropout ?? 0,
      ...(m.totalParams !== undefined ? { totalParams: m.totalParams } : {}),
    },
    train,
    parallel,
    cluster,
    devices: { engine: d.engine!, backend: d.backend!, count: d.count ?? world, memory: parseBytes(d.memory!), transport: d.transport! },
    data: { source: filled.data.source!, valFraction: filled.data.valFraction!, ...(filled.data.path !== undefined ? { path: filled.data.path } : {}) },
    monitor: filled.monitor as RunConfig['monitor'],
    ...(input.launch?.command ? { launch: { command: [...input.launch.command], env: { ...input.launch.env }, ...(input.launch.cwd !== undefined ? { cwd: input.launch.cwd } : {}) } } : {}),
  };
}
