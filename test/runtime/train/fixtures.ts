// Small configs and temporary folders for the trainer tests.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../runtime/config/parse';
import type { RunConfig } from '../../../runtime/config/types';

export const REPO = join(__dirname, '..', '..', '..', '..');
export const EXAMPLES = join(REPO, 'examples');

/** A GPT-2 small enough that a step takes milliseconds. */
export function smallConfig(overrides: { model?: object; train?: object; data?: object; devices?: object } = {}): RunConfig {
  return loadConfig({
    name: 'small',
    model: { layers: 2, hidden: 32, heads: 2, vocab: 256, seqLen: 16, ...overrides.model },
    train: { microBatch: 4, steps: 6, lr: 0.003, warmupSteps: 2, seed: 7, ...overrides.train },
    devices: { backend: 'wasm', memory: '1GiB', ...overrides.devices },
    data: { source: 'text', path: 'data/tiny.txt', ...overrides.data },
  });
}

export function tempDir(prefix = 'scalelm-train-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Whether a process still runs: it exists and is not a zombie (a zombie only waits for its parent to reap it). */
export function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
