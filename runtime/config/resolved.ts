// A resolved RunConfig read back from where a run recorded it (its hello's `config`, a checkpoint's state.json):
// typed only after the config parser has checked it. The resolved form carries derived fields (cluster.spec,
// cluster.explicit) the parser does not take, so it goes back to the input form first, then through
// parseConfig — the same rules as any config file. Pure (the webview uses it too).
import { GPU_PRESETS, type GpuPresetName } from './presets';
import { parseConfig, type ParseResult } from './parse';

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The parser's input for a resolved config (derived fields dropped, the cluster's overrides kept). */
export function inputOfResolved(resolved: Record<string, unknown>): Record<string, unknown> {
  const { cluster, model, ...rest } = resolved;
  const out: Record<string, unknown> = { ...rest };
  if (isObj(model)) out.model = model;
  if (isObj(cluster)) {
    const { spec, explicit, ...given } = cluster;
    // A cluster the config did not have was derived from the layout: leaving it out derives it again.
    if (explicit !== false) {
      const c: Record<string, unknown> = { ...given };
      const base = typeof given.gpu === 'string' ? GPU_PRESETS[given.gpu as GpuPresetName] : undefined;
      if (isObj(spec) && base) {
        if (spec.memory !== base.memory) c.gpuMemory = spec.memory;
        if (spec.peakFlops !== base.peakFlops && typeof spec.peakFlops === 'number') c.peakTflops = spec.peakFlops / 1e12;
        if (spec.intraNodeBandwidth !== base.intraNodeBandwidth && typeof spec.intraNodeBandwidth === 'number') c.intraNodeGBps = spec.intraNodeBandwidth / 1e9;
        if (spec.interNodeBandwidth !== base.interNodeBandwidth && typeof spec.interNodeBandwidth === 'number') c.interNodeGBps = spec.interNodeBandwidth / 1e9;
      }
      out.cluster = c;
    }
  }
  return out;
}

/** The first path where two JSON values differ (numbers to 1e-12 relative: the cluster's unit conversions). */
function firstDifference(a: unknown, b: unknown, path: string): string | undefined {
  if (typeof a === 'number' && typeof b === 'number') return a === b || Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(a), Math.abs(b)) ? undefined : path;
  if (isObj(a) && isObj(b)) {
    // Keys the record lacks are ones its (older) runtime did not have yet: the parser's defaults fill them.
    for (const k of Object.keys(b)) {
      const d = firstDifference(a[k], b[k], path ? `${path}.${k}` : k);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => firstDifference(x, b[i], `${path}[${i}]`) === undefined) ? undefined : path;
  return a === b ? undefined : path || '(root)';
}

/**
 * A recorded resolved config, checked by the config parser: the typed RunConfig, or the parser's problems.
 * It must be what the parser resolves it to, field for recorded field (a partial or hand-edited config is not
 * a run's config); fields a newer parser added take its defaults.
 */
export function readResolvedConfig(v: unknown): ParseResult {
  if (!isObj(v)) return { ok: false, stage: 'shape', errors: [{ path: '', message: 'a run config must be a JSON object' }] };
  const r = parseConfig(inputOfResolved(v));
  if (!r.ok) return r;
  for (const k of ['model', 'train', 'parallel', 'cluster', 'devices', 'data'] as const) {
    if (!isObj(v[k])) return { ok: false, stage: 'shape', errors: [{ path: k, message: `${k} is missing: not a run's resolved config` }] };
  }
  // A cluster the config did not have is derived again from the layout (its efficiency and headroom are the
  // defaults of the reading runtime): only an explicit one must come back as recorded.
  const recorded = (v.cluster as Record<string, unknown>).explicit === false ? { ...v, cluster: {} } : v;
  const diff = firstDifference(JSON.parse(JSON.stringify(r.config)), recorded, '');
  if (diff !== undefined) return { ok: false, stage: 'shape', errors: [{ path: diff, message: `${diff} is not what the config parser resolves it to: not a run's resolved config` }] };
  return r;
}
