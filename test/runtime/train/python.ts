// Finds a Python with PyTorch: SCALELM_PYTHON (scripts/test.mjs points it at the pinned .venv), then the
// repository's .venv, then python3 on PATH; or says why there is none.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export interface TorchPython {
  python: string;
  torch: string;
}

export function findTorchPython(): TorchPython | { missing: string } {
  const candidates = [process.env.SCALELM_PYTHON, join(__dirname, '../../../../.venv/bin/python'), 'python3'].filter((c): c is string => Boolean(c));
  const tried: string[] = [];
  for (const python of [...new Set(candidates)]) {
    const r = spawnSync(python, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { python, torch: r.stdout.trim() };
    tried.push(`${python}: ${r.error ? (r.error as NodeJS.ErrnoException).code : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  return { missing: `no Python with torch and numpy (${tried.join('; ')}); run bash scripts/setup-python.sh or set SCALELM_PYTHON` };
}

/**
 * The torch Python for a suite that needs one (call it in the describe): registers a before() hook that skips
 * the suite, saying why, when there is none.
 */
export function torchPythonForSuite(): () => string {
  const found = findTorchPython();
  before(function () {
    if ('missing' in found) {
      console.log(`      NOTICE: skipping: ${found.missing}`);
      this.skip();
    }
  });
  return () => (found as TorchPython).python;
}
