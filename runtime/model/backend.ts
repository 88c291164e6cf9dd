// Picks and starts the TensorFlow.js backend, and says which one ran and why. `auto` takes the fastest that
// loads: tfjs-node-gpu or tfjs-node when the user installed them (never an install-time dependency of
// ScaleLM: their install script downloads libtensorflow), else wasm with SIMD. cpu runs only on request
// (~40x slower than wasm). webgpu runs when its optional packages load.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { useKernelsFor } from './ops';

export type BackendRequest = 'auto' | 'wasm' | 'cpu' | 'tfjs-node-gpu' | 'webgpu';

export interface BackendInfo {
  /** tfjs's name for the backend that runs: wasm, cpu, tensorflow or webgpu. */
  name: string;
  /** What the user sees: "wasm (SIMD, 1 thread)". */
  label: string;
  requested: BackendRequest;
  /** Why this one: the choice, and what was tried and failed first. */
  reason: string;
  simd?: boolean;
  threads?: number;
  /** Where the wasm binaries were loaded from. */
  wasmDir?: string;
}

export class BackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendError';
  }
}

export interface BackendOptions {
  /** wasm threads (1 = no worker threads). Defaults to SCALELM_WASM_THREADS, else one per core up to 4. */
  threads?: number;
}

let active: BackendInfo | undefined;

/** The backend started by initBackend in this thread, if any. */
export function activeBackend(): BackendInfo | undefined {
  return active;
}

export async function initBackend(requested: BackendRequest, options: BackendOptions = {}): Promise<BackendInfo> {
  if (active) {
    if (requested === active.requested || requested === 'auto' || requested === active.name) return active;
    throw new BackendError(`backend ${active.label} is already running in this process; cannot switch to ${requested}`);
  }
  const notes: string[] = [];
  let info: BackendInfo;
  switch (requested) {
    case 'cpu':
      info = await startCpu(requested, 'requested (devices.backend="cpu"); the pure-JavaScript backend is ~40x slower than wasm');
      break;
    case 'wasm':
      info = await startWasm(requested, 'requested (devices.backend="wasm")', options);
      break;
    case 'tfjs-node-gpu': {
      const r = await tryNode('@tensorflow/tfjs-node-gpu');
      if (typeof r === 'string') throw new BackendError(`devices.backend="tfjs-node-gpu" but ${r}`);
      info = { ...r, requested, reason: 'requested (devices.backend="tfjs-node-gpu")' };
      break;
    }
    case 'webgpu': {
      const r = await tryWebgpu();
      if (typeof r === 'string') throw new BackendError(`devices.backend="webgpu" but ${r}`);
      info = { ...r, requested, reason: 'requested (devices.backend="webgpu")' };
      break;
    }
    case 'auto': {
      let picked: Omit<BackendInfo, 'requested' | 'reason'> | undefined;
      for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
        const r = await tryNode(pkg);
        if (typeof r === 'string') notes.push(r);
        else {
          picked = r;
          break;
        }
      }
      info = picked
        ? { ...picked, requested, reason: `auto: ${picked.label} is installed${notes.length ? ` (${notes.join('; ')})` : ''}` }
        : await startWasm(requested, `auto: wasm, since ${notes.join('; ')}`, options);
      break;
    }
    default:
      throw new BackendError(`unknown backend "${requested as string}"; choose auto, wasm, cpu, tfjs-node-gpu or webgpu`);
  }
  useKernelsFor(info.name);
  active = info;
  return info;
}

async function startCpu(requested: BackendRequest, reason: string): Promise<BackendInfo> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new BackendError('the cpu backend failed to start');
  return { name: 'cpu', label: 'cpu (pure JavaScript)', requested, reason };
}

/** Folders that may hold the wasm binaries: next to the bundled CLI (dist/), or in the installed package. */
export function wasmBinaryDirs(): string[] {
  const dirs: string[] = [];
  if (process.env.SCALELM_WASM_DIR) dirs.push(process.env.SCALELM_WASM_DIR);
  dirs.push(__dirname);
  try {
    dirs.push(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist'));
  } catch {
    // bundled without node_modules: only the folder next to the bundle counts
  }
  return dirs;
}

/** One XNNPACK thread per core, up to 4 (matmuls scale; the JavaScript kernels between them stay on one). */
export function defaultWasmThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];

async function startWasm(requested: BackendRequest, reason: string, options: BackendOptions): Promise<BackendInfo> {
  const dirs = wasmBinaryDirs();
  const dir = dirs.find((d) => WASM_FILES.every((f) => existsSync(join(d, f))));
  if (!dir) throw new BackendError(`the wasm backend's binaries (${WASM_FILES.join(', ')}) are in none of: ${dirs.join(', ')}. Set SCALELM_WASM_DIR to the folder that holds them.`);
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(dir.endsWith('/') ? dir : `${dir}/`);
  const threads = Math.max(1, Math.floor(options.threads ?? Number(process.env.SCALELM_WASM_THREADS ?? defaultWasmThreads())));
  let threadNote = '';
  if (threads > 1) {
    const { enableWasmThreadsInNode } = await import('./wasm-threads');
    threadNote = enableWasmThreadsInNode();
    wasm.setThreadsCount(threads);
  }
  // tfjs caps its thread pool at os.cpus().length / 2 (it assumes two hyper-threads per core); report enough
  // logical CPUs while the module starts so the requested count is what runs.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the module object itself (os.cpus is patched), not an import binding
  const os = require('node:os') as typeof import('node:os');
  const cpus = os.cpus;
  if (threads > 1) os.cpus = () => Array.from({ length: Math.max(2 * threads, cpus().length) }, (_, i) => cpus()[i % Math.max(1, cpus().length)]!);
  try {
    if (!(await tf.setBackend('wasm'))) throw new BackendError(`the wasm backend failed to start (binaries in ${dir})`);
  } finally {
    os.cpus = cpus;
  }
  const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  const actual = wasm.getThreadsCount();
  const label = `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${actual} thread${actual === 1 ? '' : 's'})`;
  return { name: 'wasm', label, requested, reason: reason + (threadNote ? `; ${threadNote}` : ''), simd, threads: actual, wasmDir: dir };
}

/** Requires an optional package from the user's project (cwd) or next to ScaleLM; undefined when absent. */
function optionalRequire(pkg: string): unknown {
  const bases = [join(process.cwd(), 'noop.js'), __filename];
  let lastError: unknown;
  for (const base of bases) {
    try {
      return createRequire(base)(pkg);
    } catch (e) {
      lastError = e;
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND' || !String((e as Error).message).includes(`'${pkg}'`)) throw e;
    }
  }
  void lastError;
  return undefined;
}

async function tryNode(pkg: string): Promise<Omit<BackendInfo, 'requested' | 'reason'> | string> {
  try {
    if (optionalRequire(pkg) === undefined) return `${pkg} is not installed`;
  } catch (e) {
    return `${pkg} failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  if (!tf.findBackendFactory('tensorflow')) {
    return `${pkg} loaded but registered its backend with another copy of @tensorflow/tfjs-core (ScaleLM uses ${tf.version_core}); install a ${pkg} built on tfjs-core ${tf.version_core}`;
  }
  try {
    if (!(await tf.setBackend('tensorflow'))) return `${pkg} is installed but its backend failed to start`;
  } catch (e) {
    return `${pkg} is installed but failed to start: ${(e as Error).message.split('\n')[0]}`;
  }
  return { name: 'tensorflow', label: pkg.replace('@tensorflow/', '') };
}

async function tryWebgpu(): Promise<Omit<BackendInfo, 'requested' | 'reason'> | string> {
  let dawn: { create(options: string[]): unknown; globals?: Record<string, unknown> } | undefined;
  try {
    dawn = optionalRequire('webgpu') as typeof dawn;
  } catch (e) {
    return `the "webgpu" package (Dawn for Node) failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  if (!dawn) return 'the "webgpu" package (Dawn for Node) is not installed (npm install webgpu @tensorflow/tfjs-backend-webgpu)';
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (!g.navigator?.gpu) {
    if (dawn.globals) Object.assign(globalThis, dawn.globals);
    const options = (process.env.SCALELM_DAWN_OPTIONS ?? '').split(/\s+/).filter(Boolean);
    const gpu = dawn.create(options) as { requestAdapter(o?: object): Promise<unknown> };
    // Dawn's OpenGL(ES) backend (e.g. Mesa's llvmpipe on a machine without Vulkan) offers only
    // compatibility-mode adapters; tfjs asks for a core one, so fall back when that finds none.
    const request = gpu.requestAdapter.bind(gpu);
    gpu.requestAdapter = async (o?: object) => (await request(o)) ?? (await request({ ...o, featureLevel: 'compatibility' }));
    if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  }
  // tfjs registers the backend at import time, and only when navigator.gpu exists.
  try {
    if (!optionalRequire('@tensorflow/tfjs-backend-webgpu')) return '@tensorflow/tfjs-backend-webgpu is not installed (npm install @tensorflow/tfjs-backend-webgpu)';
  } catch (e) {
    return `@tensorflow/tfjs-backend-webgpu failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  if (!tf.findBackendFactory('webgpu')) return '@tensorflow/tfjs-backend-webgpu did not register a backend';
  try {
    if (!(await tf.setBackend('webgpu')))
      return 'no WebGPU adapter is available (on Linux without a GPU or Vulkan, set SCALELM_DAWN_OPTIONS="backend=opengl" and EGL_PLATFORM=surfaceless for Mesa\'s software renderer)';
  } catch (e) {
    return `WebGPU failed to start: ${(e as Error).message.split('\n')[0]}`;
  }
  const adapter = (tf.backend() as unknown as { adapterInfo?: { description?: string; vendor?: string } }).adapterInfo;
  return { name: 'webgpu', label: `webgpu (Dawn${adapter?.description ? `: ${adapter.description}` : ''})` };
}
