// What a runs table says about a run's setup, read from its hello line: the layout ("dp2 × tp1 · ZeRO-1"),
// the device ("2 × cpu", "128 × H100-SXM"), and the engine that trained it (hello.engine.name: local, torch,
// monitor) with the backend it trained on as the engine's detail ("wasm (SIMD, 2 threads)").
// Tolerant: configs from older runtimes may lack any field, and a missing field is simply left out.

interface LooseConfig {
  parallel?: { dp?: number; tp?: number; pp?: number; zero?: number };
  devices?: { backend?: string; count?: number };
  cluster?: { gpu?: string; gpusPerNode?: number; nodes?: number };
}

export interface EngineFacts {
  /** hello.engine.name. */
  name?: string | undefined;
  /** hello.backend.name (or, for runs recorded before the typed hello, the "backend: …" log line's). */
  backend?: string | undefined;
  /** hello.backend.label: what a person reads. */
  backendLabel?: string | undefined;
}

export function runFacts(config: unknown, world: number, engine: EngineFacts = {}): { layout?: string; engine?: string; engineDetail?: string; device?: string } {
  const c = (typeof config === 'object' && config !== null ? config : {}) as LooseConfig;
  const out: { layout?: string; engine?: string; engineDetail?: string; device?: string } = {};
  const p = c.parallel;
  if (p) out.layout = `dp${p.dp ?? 1} × tp${p.tp ?? 1}${(p.pp ?? 1) > 1 ? ` × pp${p.pp}` : ''}${p.zero ? ` · ZeRO-${p.zero}` : ''}`;
  const backend = engine.backend ?? c.devices?.backend;
  const known = backend && backend !== 'auto' ? backend : undefined;
  if (engine.name) {
    out.engine = engine.name;
    const detail = engine.backendLabel ?? known;
    if (detail) out.engineDetail = detail;
  } else if (known) {
    // A run recorded before the hello named its engine: the backend is all there is to show.
    out.engine = known;
  }
  const gpu = c.cluster?.gpu;
  // The local runtime trains on CPU cores; the cluster's GPU is only the device when the backend says CUDA.
  out.device = `${world} × ${gpu && /cuda|gpu/i.test(backend ?? '') ? gpu : 'cpu'}`;
  return out;
}
