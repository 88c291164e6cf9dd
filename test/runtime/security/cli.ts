// What the security suites share: the built CLI run to completion, the one-line-error check, and a small
// config file that trains in a second on the local engine.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES, REPO } from '../train/fixtures';

export const CLI = join(REPO, 'out', 'runtime', 'cli.js');

export const cli = (args: string[], timeout = 120_000) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** The error is one line: no stack trace and no raw system-error text (`extra` adds patterns a suite refuses too). */
export const oneLine = (stderr: string, extra?: RegExp): void => {
  assert.doesNotMatch(stderr, /\n\s+at |TypeError|RangeError/, stderr);
  if (extra) assert.doesNotMatch(stderr, extra, stderr);
};

export function smallConfig(dir: string, steps = 2): string {
  const file = join(dir, 'small.scalelm.json');
  writeFileSync(
    file,
    JSON.stringify({
      name: 'small',
      model: { layers: 2, hidden: 32, heads: 2, vocab: 256, seqLen: 16 },
      train: { microBatch: 4, steps, lr: 0.003, warmupSteps: 1 },
      devices: { backend: 'wasm', memory: '256MiB' },
      data: { source: 'text', path: join(EXAMPLES, 'data', 'tiny.txt') },
    }),
  );
  return file;
}
