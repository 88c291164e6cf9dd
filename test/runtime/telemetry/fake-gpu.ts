// Puts the fake nvidia-smi first on PATH (a directory with an executable `nvidia-smi` that runs
// fake-nvidia-smi.js with this Node) and writes its scenario.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FakeScenario } from './fake-nvidia-smi';
import { tempDir } from './util';

export const FIXTURES = resolve(__dirname, '../../../../test/fixtures/nvidia-smi');
export const H200 = join(FIXTURES, 'h200-590.48.01.txt');
export const H100 = join(FIXTURES, 'h100-590.48.01.txt');

export interface FakeGpu {
  dir: string;
  env: NodeJS.ProcessEnv;
  log: string;
  invocations(): { mode: string; pid: number; nth: number; args: string[] }[];
}

export function fakeNvidiaSmi(scenario: Omit<FakeScenario, 'log' | 'capture'> & { capture?: string }): FakeGpu {
  const dir = tempDir('scalelm-fake-smi-');
  const log = join(dir, 'invocations.jsonl');
  const scenarioPath = join(dir, 'scenario.json');
  writeFileSync(scenarioPath, JSON.stringify({ capture: H200, ...scenario, log }));
  const bin = join(dir, 'nvidia-smi');
  writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${join(__dirname, 'fake-nvidia-smi.js')}" "$@"\n`);
  chmodSync(bin, 0o755);
  return {
    dir,
    log,
    env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ''}`, FAKE_NVSMI_SCENARIO: scenarioPath },
    invocations: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l))
        : [],
  };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
