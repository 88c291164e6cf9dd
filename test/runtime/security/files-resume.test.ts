// Issue 12, items 5–7: a run directory, a checkpoint or a file that lies cannot make a run lose history,
// hang a reader or print a stack trace. Each case is one a hostile repository or a crashing machine made.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileReadError, readBounded } from '../../../runtime/files';
import { latestCheckpoint, readCheckpointState } from '../../../runtime/train/checkpoint';
import { RunDir } from '../../../runtime/train/run-dir';
import { readSafetensors } from '../../../runtime/train/safetensors';
import { streamMessages, writerAlive } from '../../../runtime/telemetry/run-store';
import { cli, oneLine, smallConfig } from './cli';
import { REPO, tempDir } from '../train/fixtures';

describe('security: resume from a run directory that lies', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let run: string;
  let goodState: string;
  before(() => {
    tmp = tempDir('scalelm-resume-attack-');
    run = join(tmp.path, 'run');
    const r = cli(['train', smallConfig(tmp.path), '--run-dir', run], 240_000);
    assert.equal(r.code, 0, r.stderr);
    goodState = readFileSync(join(run, 'checkpoints', 'step-000002', 'state.json'), 'utf8');
  });
  after(() => tmp.remove());

  it("latest.json pointing outside the run (.., absolute, symlink) is ignored: the run's own newest folder is used", () => {
    const ck = join(run, 'checkpoints');
    const other = join(tmp.path, 'other', 'checkpoints', 'step-000005');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'state.json'), goodState);
    symlinkSync(other, join(ck, 'step-000009'));
    for (const folder of ['../../other/checkpoints/step-000005', other, 'step-000009', 'step-000002/../../../other/checkpoints/step-000005']) {
      writeFileSync(join(ck, 'latest.json'), JSON.stringify({ step: 5, folder }));
      assert.equal(latestCheckpoint(ck), join(ck, 'step-000002'), folder);
    }
    rmSync(join(ck, 'step-000009'));
    writeFileSync(join(ck, 'latest.json'), JSON.stringify({ step: 2, folder: 'step-000002' }));
  });

  const lies: Array<[string, (s: Record<string, any>) => void, RegExp]> = [
    ['metricsBytes -1', (s) => (s.metricsBytes = -1), /metricsBytes must be a whole number from 0/],
    ['metricsBytes 1e308', (s) => (s.metricsBytes = 1e308), /metricsBytes must be a whole number/],
    ['optimizer.steps null', (s) => (s.optimizer.steps = null), /optimizer\.steps must be a whole number from 0 to 2, got null/],
    ['step "2"', (s) => (s.step = '2'), /step must be a whole number from 0 to 1000000000, got "2"/],
    ['no data', (s) => delete s.data, /data is missing/],
    ['no optimizer', (s) => delete s.optimizer, /optimizer is missing/],
  ];
  for (const [name, lie, want] of lies) {
    it(`state.json with ${name} is refused naming the file, before metrics.jsonl is touched`, () => {
      const statePath = join(run, 'checkpoints', 'step-000002', 'state.json');
      const s = JSON.parse(goodState) as Record<string, any>;
      lie(s);
      writeFileSync(statePath, JSON.stringify(s));
      const metricsBefore = readFileSync(join(run, 'metrics.jsonl'));
      try {
        assert.throws(
          () => readCheckpointState(join(run, 'checkpoints', 'step-000002')),
          (e: Error) => e.name === 'CheckpointError' && want.test(e.message) && e.message.includes(statePath),
        );
        const r = cli(['train', '--resume', run]);
        assert.equal(r.code, 1, r.stdout);
        assert.match(r.stderr, want);
        oneLine(r.stderr);
        assert.ok(readFileSync(join(run, 'metrics.jsonl')).equals(metricsBefore), 'metrics.jsonl unchanged');
      } finally {
        writeFileSync(statePath, goodState);
      }
    });
  }

  it('a metrics offset of 0, past the end, or inside a line is refused and changes nothing', () => {
    const dir = RunDir.open(run);
    const size = statSync(join(run, 'metrics.jsonl')).size;
    for (const bytes of [0, -1, size + 1, 3]) assert.throws(() => dir.truncateMetrics(bytes), /nothing was changed/, String(bytes));
    assert.equal(statSync(join(run, 'metrics.jsonl')).size, size);
  });

  it('a refused `--resume --set`/`--steps` writes nothing: config.source.json is untouched and the plain --resume still works', () => {
    const source = join(run, 'config.source.json');
    const before = readFileSync(source);
    const refused = cli(['train', '--resume', run, '--set', 'model.layers=3']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /different model/);
    assert.ok(readFileSync(source).equals(before), 'config.source.json unchanged');
    const badSteps = cli(['train', '--resume', run, '--steps', '1e15']);
    assert.equal(badSteps.code, 2);
    assert.match(badSteps.stderr, /--steps must be a whole number from 1 to 1000000000/);
    assert.ok(readFileSync(source).equals(before));
    const plain = cli(['train', '--resume', run, '--steps', '3'], 240_000);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /resuming after step 2/);
  });

  it('a run that died before its first checkpoint: --resume and starting again give one answer', () => {
    const dead = join(tmp.path, 'dead');
    mkdirSync(join(dead, 'checkpoints'), { recursive: true });
    writeFileSync(join(dead, 'metrics.jsonl'), readFileSync(join(run, 'metrics.jsonl'), 'utf8').split('\n')[0] + '\n');
    writeFileSync(join(dead, 'config.source.json'), readFileSync(join(run, 'config.source.json')));
    const resume = cli(['train', '--resume', dead]);
    assert.equal(resume.code, 1);
    assert.match(resume.stderr, /has no complete checkpoint yet .* start it again in the same folder with `scalelm train <config> --run-dir /);
    oneLine(resume.stderr);
    const again = cli(['train', smallConfig(tmp.path, 1), '--run-dir', dead], 240_000);
    assert.equal(again.code, 0, again.stderr);
    const lines = readFileSync(join(dead, 'metrics.jsonl'), 'utf8').trim().split('\n');
    assert.equal(lines.filter((l) => l.includes('"type":"hello"')).length, 1, 'the new run starts its own metrics');
    const withCheckpoint = cli(['train', smallConfig(tmp.path, 1), '--run-dir', dead]);
    assert.equal(withCheckpoint.code, 1);
    assert.match(withCheckpoint.stderr, /already holds a run with a checkpoint; continue it with --resume/);
  });
});

describe('security: bounded reads of files', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('scalelm-files-attack-')));
  after(() => tmp.remove());

  it('a FIFO, /dev/zero behind a symlink and a directory are refused at once; a size bound holds', () => {
    const fifo = join(tmp.path, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const zero = join(tmp.path, 'model.safetensors');
    symlinkSync('/dev/zero', zero);
    assert.throws(
      () => readBounded(fifo, 1024),
      (e: Error) => e instanceof FileReadError && /is a FIFO, not a regular file/.test(e.message),
    );
    assert.throws(() => readBounded(zero, 1024), /is a device, not a regular file/);
    assert.throws(() => readBounded(tmp.path, 1024), /directory/);
    writeFileSync(join(tmp.path, 'big'), Buffer.alloc(2048));
    assert.throws(() => readBounded(join(tmp.path, 'big'), 1024), /is 2048 bytes, more than the 1024 bytes this file may have/);
    assert.throws(
      () => readSafetensors(zero),
      (e: Error) => e.name === 'SafetensorsError' && /is a device/.test(e.message),
    );
    assert.throws(() => readSafetensors(fifo), /is a FIFO/);
  });

  it("a FIFO as a run's process.json or as a cluster profile does not hang its reader", () => {
    const run = join(tmp.path, 'fifo-process-run');
    mkdirSync(run, { recursive: true });
    assert.equal(spawnSync('mkfifo', [join(run, 'process.json')]).status, 0);
    assert.equal(writerAlive(run), false, 'an unreadable process.json reads as no live writer');
    const profile = join(tmp.path, 'profile-fifo.json');
    assert.equal(spawnSync('mkfifo', [profile]).status, 0);
    const r = spawnSync('node', [join(REPO, 'dist/cli.js'), 'estimate', join(REPO, 'examples/llama-2-70b-h100.scalelm.json'), '--profile', profile], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /cluster profile .*is a FIFO, not a regular file/);
  });

  it('a safetensors header with 100,000 entries is refused before it is parsed', () => {
    const entries = Array.from({ length: 100_000 }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`).join(',');
    const header = Buffer.from(`{${entries}}`);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const file = join(tmp.path, 'many.safetensors');
    writeFileSync(file, Buffer.concat([len, header]));
    assert.throws(() => readSafetensors(file), /the header has 100001 entries, more than the 65536 tensors/);
    const huge = Buffer.alloc(8);
    huge.writeBigUInt64LE(2n ** 60n);
    writeFileSync(file, huge);
    assert.throws(() => readSafetensors(file), /the header claims/);
  });

  it('a metrics.jsonl line of 20 MB without a newline is skipped and flagged; export-csv and readers go on', async () => {
    const run = join(tmp.path, 'longline');
    mkdirSync(run);
    const step = (k: number) =>
      JSON.stringify({ type: 'step', step: k, loss: 3, lr: 1e-3, gradNorm: 1, tokensPerSec: 1, stepMs: 1, memory: { params: 1, grads: 1, optimizer: 1, activations: 1, peak: 1 } });
    writeFileSync(join(run, 'metrics.jsonl'), `${step(1)}\n${'x'.repeat(20 * 2 ** 20)}\n${step(2)}\n${'y'.repeat(9 * 2 ** 20)}`);
    const steps: number[] = [];
    const problems: string[] = [];
    const r = await streamMessages(
      run,
      (m) => void (m.type === 'step' && steps.push(m.step)),
      (p) => problems.push(p.reason),
    );
    assert.deepEqual(steps, [1, 2]);
    assert.deepEqual(problems, ['longer than 4194304 bytes; skipped']);
    assert.equal(r.truncatedTail, true);
    const csv = cli(['export-csv', run]);
    assert.equal(csv.code, 0, csv.stderr);
    assert.equal(csv.stdout.trim().split('\n').length, 3);
    const fifoRun = join(tmp.path, 'fiforun');
    mkdirSync(fifoRun);
    assert.equal(spawnSync('mkfifo', [join(fifoRun, 'metrics.jsonl')]).status, 0);
    const fifo = cli(['export-csv', fifoRun], 20_000);
    assert.equal(fifo.code, 1);
    assert.match(fifo.stderr, /is not a regular file/);
  });
});

describe('security: one-line errors', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('scalelm-errors-attack-')));
  after(() => tmp.remove());

  it('bad --run-dir (/proc, not a directory), export-csv --out a directory or /dev/full: one line, exit 1', () => {
    const cfg = smallConfig(tmp.path);
    const proc = cli(['train', cfg, '--run-dir', '/proc/x'], 20_000);
    assert.equal(proc.code, 1);
    assert.match(proc.stderr, /^scalelm: \/proc\/x is inside \/proc, a kernel filesystem/m);
    const notDir = cli(['train', cfg, '--run-dir', join(cfg, 'run')], 20_000);
    assert.equal(notDir.code, 1);
    assert.match(notDir.stderr, /^scalelm: cannot create the folder .*: a part of the path is not a directory$/m);
    for (const r of [proc, notDir]) oneLine(r.stderr);
    const run = join(tmp.path, 'r');
    mkdirSync(run);
    writeFileSync(join(run, 'metrics.jsonl'), '');
    const toDir = cli(['export-csv', run, '--out', tmp.path]);
    assert.equal(toDir.code, 1);
    assert.match(toDir.stderr, /^scalelm: cannot write .*: is a directory$/m);
    const full = cli(['export-csv', run, '--out', '/dev/full']);
    assert.equal(full.code, 1);
    assert.match(full.stderr, /^scalelm: cannot write \/dev\/full: no space left on the device$/m);
    for (const r of [toDir, full]) oneLine(r.stderr);
  });

  it('`scalelm constructor|__proto__|toString` is an unknown command', () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const r = cli([name], 20_000);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`^scalelm: unknown command "${name}"`));
      oneLine(r.stderr);
    }
  });

  it('a 200k-deep $schema, layers 1e308 and escape sequences in names: one clear line, escapes spelled out', () => {
    const deep = join(tmp.path, 'deep.scalelm.json');
    writeFileSync(deep, `{"$schema":${'['.repeat(200_000)}${']'.repeat(200_000)},"model":{"preset":"gpt2"}}`);
    for (const cmd of ['validate', 'estimate']) {
      const r = cli([cmd, deep], 20_000);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /nested 200001 levels deep; a config has at most 64/);
      oneLine(r.stderr);
    }
    const huge = join(tmp.path, 'huge.scalelm.json');
    writeFileSync(huge, JSON.stringify({ model: { preset: 'gpt2', layers: 1e308 } }));
    const est = cli(['estimate', huge], 20_000);
    assert.equal(est.code, 1);
    assert.match(est.stderr, /model\.layers=1e\+308 must be at most 10000/);
    assert.doesNotMatch(est.stdout + est.stderr, /Infinity|NaN/);
    const esc = join(tmp.path, 'esc.scalelm.json');
    writeFileSync(esc, JSON.stringify({ name: 'a\u001b]0;pwned\u0007', model: { preset: 'gpt2', name: '\u001b[2J\u001b[31mred\r' } }));
    const v = cli(['validate', esc], 20_000);
    assert.equal(v.code, 0, v.stderr);
    // eslint-disable-next-line no-control-regex -- terminal escapes must not reach the output
    assert.doesNotMatch(v.stdout + v.stderr, /[\u001b\u0007\r]/);
    assert.match(v.stdout, /\\x1b\[2J\\x1b\[31mred\\x0d/);
  });
});
