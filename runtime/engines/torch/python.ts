// Which Python the torch engine runs, and what that Python's torch can do. The interpreter comes from the
// caller (the extension passes `scalelm.pythonPath` or the Python extension's selected interpreter as
// --python), else SCALELM_PYTHON, else `python3` on PATH; one probe (a short `python -c`) answers for it.
import { spawnSync } from 'node:child_process';

/** Oldest torch the engine supports: FSDP2 is public as torch.distributed.fsdp.fully_shard from 2.6. */
export const MIN_TORCH: readonly [number, number] = [2, 6];
export const INSTALL_HINT = `pip install "torch>=${MIN_TORCH.join('.')}"`;

export interface PythonChoice {
  python: string;
  /** Where it came from, for the messages: "--python", "SCALELM_PYTHON", "python3 on PATH", … */
  source: string;
}

export function resolvePython(given?: PythonChoice, env: NodeJS.ProcessEnv = process.env): PythonChoice {
  if (given?.python) return given;
  if (env.SCALELM_PYTHON) return { python: env.SCALELM_PYTHON, source: 'SCALELM_PYTHON' };
  return { python: 'python3', source: 'python3 on PATH' };
}

export interface TorchProbe {
  /** sys.executable (absolute), or the command given when Python did not start. */
  executable: string;
  pythonVersion?: string;
  /** torch.__version__ ("2.13.0+cpu"), absent when torch does not import. */
  torch?: string;
  /** Why torch did not import (the ImportError's text), or why Python did not run. */
  problem?: string;
  cudaGpus: number;
  gpuNames: string[];
  ncclAvailable: boolean;
}

const PROBE = `
import json, sys
out = {"executable": sys.executable, "pythonVersion": sys.version.split()[0], "cudaGpus": 0, "gpuNames": [], "ncclAvailable": False}
try:
    import torch
    out["torch"] = torch.__version__
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        out["cudaGpus"] = n
        out["gpuNames"] = [torch.cuda.get_device_name(i) for i in range(n)]
    import torch.distributed as dist
    out["ncclAvailable"] = bool(dist.is_available() and dist.is_nccl_available())
except Exception as e:
    out["problem"] = f"{type(e).__name__}: {e}"
print("SCALELM_PROBE " + json.dumps(out))
`;

/** Runs the probe (a few seconds: importing torch). Never throws. */
export function probeTorch(python: string, timeoutMs = 120_000): TorchProbe {
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, PYTHONNOUSERSITE: process.env.PYTHONNOUSERSITE ?? '' } });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { executable: python, problem: code === 'ENOENT' ? 'no such interpreter' : r.error.message, cudaGpus: 0, gpuNames: [], ncclAvailable: false };
  }
  const line = r.stdout.split('\n').find((l) => l.startsWith('SCALELM_PROBE '));
  if (!line)
    return {
      executable: python,
      problem: `the interpreter did not run the probe (exit ${r.status ?? r.signal}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
      cudaGpus: 0,
      gpuNames: [],
      ncclAvailable: false,
    };
  return JSON.parse(line.slice('SCALELM_PROBE '.length)) as TorchProbe;
}

/** [major, minor] of "2.13.0+cpu" / "2.6.0a0+git…"; undefined when unreadable. */
export function torchVersion(v: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Why this probe's torch cannot run the engine, as one message naming interpreter, version and fix; undefined when it can. */
export function torchProblem(choice: PythonChoice, probe: TorchProbe): string | undefined {
  const who = `${probe.executable} (${probe.executable !== choice.python ? `${choice.python}, ` : ''}from ${choice.source}${probe.pythonVersion ? `, Python ${probe.pythonVersion}` : ''})`;
  if (!probe.pythonVersion)
    return `the torch engine needs Python with torch ≥ ${MIN_TORCH.join('.')}, but ${choice.python} (from ${choice.source}) did not run: ${probe.problem ?? 'unknown error'}. Point --python, SCALELM_PYTHON or the scalelm.pythonPath setting at an interpreter with torch, or use devices.engine "local"`;
  if (!probe.torch)
    return `the torch engine needs torch ≥ ${MIN_TORCH.join('.')}, but ${who} has no torch (${probe.problem ?? 'import failed'}); install it there with ${INSTALL_HINT}, point --python / SCALELM_PYTHON / scalelm.pythonPath at an interpreter that has it, or use devices.engine "local"`;
  const v = torchVersion(probe.torch);
  if (!v || v[0] < MIN_TORCH[0] || (v[0] === MIN_TORCH[0] && v[1] < MIN_TORCH[1]))
    return `the torch engine needs torch ≥ ${MIN_TORCH.join('.')}, but ${who} has torch ${probe.torch}; upgrade it there with ${INSTALL_HINT}, or use devices.engine "local"`;
  if (probe.problem) return `torch ${probe.torch} in ${who} does not work: ${probe.problem}`;
  return undefined;
}
