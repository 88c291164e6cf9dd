// devices.engine → the engine a run uses, and why. `auto` takes torch only where it pays: the configured
// Python has a usable torch that sees CUDA GPUs; otherwise the zero-install local engine. An explicit
// "torch" with no usable torch is refused with one message (nothing is started).
import { existsSync } from 'node:fs';
import type { RunConfig } from '../../config/types';
import { probeTorch, resolvePython, torchProblem, type PythonChoice, type TorchProbe } from './python';

export class TorchEngineError extends Error {
  override name = 'TorchEngineError';
}

export type EngineChoice = { name: 'local'; reason: string } | { name: 'torch'; reason: string; python: PythonChoice; probe: TorchProbe; device: 'cuda' | 'cpu'; backend: string };

/** Ranks per node the layout needs (one machine: all of them). */
const ranksOf = (config: RunConfig): number => config.parallel.dp * config.parallel.tp * config.parallel.pp;

function torchChoice(config: RunConfig, python: PythonChoice, probe: TorchProbe, why: string): EngineChoice {
  const ranks = ranksOf(config);
  const cuda = probe.cudaGpus >= ranks && probe.ncclAvailable;
  const gpus = probe.cudaGpus ? `${probe.cudaGpus} CUDA GPU${probe.cudaGpus === 1 ? '' : 's'}${probe.gpuNames[0] ? ` (${probe.gpuNames[0]})` : ''}` : 'no CUDA GPU';
  const device = cuda ? 'cuda' : 'cpu';
  const where = cuda
    ? `${ranks} rank${ranks === 1 ? '' : 's'} on CUDA with NCCL`
    : `${ranks} rank${ranks === 1 ? '' : 's'} on CPU with gloo${probe.cudaGpus ? ` (${ranks} ranks need ${ranks} GPUs)` : ''}`;
  return {
    name: 'torch',
    reason: `${why}: torch ${probe.torch} in ${probe.executable} sees ${gpus}; ${where}`,
    python,
    probe,
    device,
    backend: cuda ? `cuda (${probe.gpuNames[0] ?? 'GPU'}) nccl` : 'cpu gloo',
  };
}

/** Decides the engine; throws TorchEngineError when devices.engine is "torch" and torch cannot run. */
export function chooseEngine(config: RunConfig, given?: PythonChoice, probe: (python: string) => TorchProbe = probeTorch): EngineChoice {
  const wanted = config.devices.engine;
  if (wanted === 'local') return { name: 'local', reason: 'devices.engine is "local"' };
  // No NVIDIA driver, no CUDA GPU: auto needs no seconds-long torch import to know that.
  if (wanted === 'auto' && !hasNvidiaDriver()) return { name: 'local', reason: 'devices.engine is "auto" and this machine has no NVIDIA driver (no CUDA GPU)' };
  const python = resolvePython(given);
  const p = probe(python.python);
  const problem = torchProblem(python, p);
  if (wanted === 'torch') {
    if (problem) throw new TorchEngineError(`${problem}; nothing was started`);
    return torchChoice(config, python, p, 'devices.engine is "torch"');
  }
  if (problem) return { name: 'local', reason: `devices.engine is "auto" and ${python.python} (${python.source}) cannot run the torch engine (${p.torch ? `torch ${p.torch}` : 'no torch'})` };
  if (p.cudaGpus === 0) return { name: 'local', reason: `devices.engine is "auto" and torch ${p.torch} in ${p.executable} sees no CUDA GPU` };
  return torchChoice(config, python, p, 'devices.engine is "auto"');
}

/** Whether an NVIDIA kernel driver is loaded (Linux); elsewhere assume it may be and let torch answer. */
export function hasNvidiaDriver(): boolean {
  if (process.platform !== 'linux') return process.platform === 'win32';
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl');
}
