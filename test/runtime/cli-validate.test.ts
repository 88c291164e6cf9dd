import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..', '..');
const cli = join(root, 'dist', 'cli.js');

function scalelm(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('scalelm validate (the built CLI, as a child process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scalelm-validate-'));
  const write = (name: string, value: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, typeof value === 'string' ? value : JSON.stringify(value));
    return p;
  };

  it('prints a one-line summary and exits 0 for a valid config', () => {
    const r = scalelm('validate', 'examples/tiny.scalelm.json');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^examples\/tiny\.scalelm\.json: ok — tiny \(4L h128 a4\) · dp1×tp1×pp1 = 1 device · ZeRO-0 · fp32/);
    assert.equal(r.out.trim().split('\n').length, 1);
  });

  it('prints every error with its path and exits 1', () => {
    const r = scalelm('validate', write('bad.scalelm.json', { model: { preset: 'gpt2' }, parallel: { tp: 5, zro: 1 } }));
    assert.equal(r.code, 1);
    assert.match(r.err, /1 problem/);
    assert.match(r.err, /parallel\.zro: unknown key "parallel\.zro"; did you mean "parallel\.zero"\?/);
  });

  it('applies --set before validating', () => {
    const ok = scalelm('validate', 'examples/tiny.scalelm.json', '--set', 'parallel.dp=2');
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /dp2×tp1×pp1 = 2 devices/);
    const bad = scalelm('validate', 'examples/tiny.scalelm.json', '--set', 'parallel.tp=3');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /parallel\.tp=3 must divide model\.heads=4; choose 1, 2 or 4/);
  });

  it('--json prints the resolved config: the family of the preset with the sizes of the file, defaults filled in', () => {
    const file = write('llama-small.scalelm.json', { model: { preset: 'llama-2-7b', layers: 2, hidden: 64, heads: 4, kvHeads: 2, ffnHidden: 176, vocab: 256, seqLen: 64 } });
    const r = scalelm('validate', file, '--json', '--set', 'train.microBatch=2');
    assert.equal(r.code, 0, r.err);
    const config = JSON.parse(r.out) as { model: Record<string, unknown>; train: { microBatch: number } };
    assert.deepEqual(
      { ...config.model, name: undefined },
      {
        name: undefined,
        layers: 2,
        hidden: 64,
        heads: 4,
        kvHeads: 2,
        ffnHidden: 176,
        vocab: 256,
        seqLen: 64,
        dropout: 0,
        activation: 'swiglu',
        norm: 'rmsnorm',
        tiedEmbeddings: false,
        bias: false,
        positionEmbedding: 'rope',
      },
    );
    assert.equal(config.train.microBatch, 2);
    const bad = scalelm('validate', file, '--json', '--set', 'model.heads=3');
    assert.equal(bad.code, 1);
    assert.equal(bad.out, '', 'nothing on stdout for a config with errors');
  });

  it('gives clear errors for a missing file, bad JSON and bad usage', () => {
    const missing = scalelm('validate', join(dir, 'nope.scalelm.json'));
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read .*nope\.scalelm\.json: no such file/);
    const broken = scalelm('validate', write('broken.scalelm.json', '{"model": '));
    assert.equal(broken.code, 1);
    assert.match(broken.err, /not valid JSON/);
    assert.equal(scalelm('validate').code, 2);
    const typo = scalelm('validate', 'examples/tiny.scalelm.json', '--sett', 'x=1');
    assert.equal(typo.code, 2);
    assert.match(typo.err, /unknown option --sett; did you mean --set\?/);
    const unknown = scalelm('frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /unknown command "frobnicate"/);
  });
});
