// Finds a Python with PyTorch (Debian's python3-torch lives in /usr/bin/python3, which a pyenv shim earlier
// on PATH may hide), or says why there is none.
import { spawnSync } from 'node:child_process';

export interface TorchPython {
  python: string;
  torch: string;
}

export function findTorchPython(): TorchPython | { missing: string } {
  const candidates = [process.env.SCALELM_PYTHON, 'python3', '/usr/bin/python3', 'python'].filter((c): c is string => Boolean(c));
  const tried: string[] = [];
  for (const python of [...new Set(candidates)]) {
    const r = spawnSync(python, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { python, torch: r.stdout.trim() };
    tried.push(`${python}: ${r.error ? (r.error as NodeJS.ErrnoException).code : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  return { missing: `no Python with torch and numpy (${tried.join('; ')}); install Debian's python3-torch or set SCALELM_PYTHON` };
}
