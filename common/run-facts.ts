// What a runs table says about a run's setup, read from the config in its hello line: the layout
// ("dp2 × tp1 · ZeRO-1"), the device ("2 × cpu (wasm)", "128 × H100-SXM") and the engine that trained it.
// Tolerant: configs from older runtimes may lack any field, and a missing field is simply left out.

interface LooseConfig {
  parallel?: { dp?: number; tp?: number; pp?: number; zero?: number };
  devices?: { backend?: string; count?: number };
  cluster?: { gpu?: string; gpusPerNode?: number; nodes?: number };
}

export function runFacts(config: unknown, world: number, backend?: string): { layout?: string; engine?: string; device?: string } {
  const c = (typeof config === 'object' && config !== null ? config : {}) as LooseConfig;
  const out: { layout?: string; engine?: string; device?: string } = {};
  const p = c.parallel;
  if (p) out.layout = `dp${p.dp ?? 1} × tp${p.tp ?? 1}${(p.pp ?? 1) > 1 ? ` × pp${p.pp}` : ''}${p.zero ? ` · ZeRO-${p.zero}` : ''}`;
  const engine = backend ?? c.devices?.backend;
  if (engine && engine !== 'auto') out.engine = engine;
  const gpu = c.cluster?.gpu;
  // The local runtime trains on CPU cores; the cluster's GPU is only the device when the engine says CUDA.
  out.device = `${world} × ${gpu && /cuda|gpu/i.test(engine ?? '') ? gpu : 'cpu'}`;
  return out;
}
