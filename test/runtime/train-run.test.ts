import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage, type Message, type StepMessage } from '../../common/protocol';
import { RunDir } from '../../runtime/train/run-dir';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { readSafetensors } from '../../runtime/train/safetensors';
import { EXAMPLES, REPO, smallConfig, tempDir } from './train/fixtures';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');

function stepLosses(metricsFile: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of readFileSync(metricsFile, 'utf8').split('\n').filter(Boolean)) {
    const m = decodeMessage(line);
    assert.ok(m.ok, `metrics.jsonl line is not a protocol message: ${line.slice(0, 120)}`);
    if (m.value.type === 'step') out.set(m.value.step, m.value.loss);
  }
  return out;
}

describe('train: resume and the command line', function () {
  this.timeout(120_000);
  const config = smallConfig({ model: { dropout: 0.1 }, train: { steps: 6, microBatch: 2, globalBatch: 4, evalEvery: 3, evalBatches: 2 } });

  it('a stopped and resumed run continues the exact loss curve and weights of an uninterrupted one', async () => {
    const a = tempDir();
    const b = tempDir();
    try {
      const straight = await createLocalRun({ config, baseDir: EXAMPLES, runDir: RunDir.create(a.path) });
      const lossesA: number[] = [];
      straight.subscribe((m) => m.type === 'step' && lossesA.push(m.loss));
      assert.equal((await straight.run()).reason, 'completed');
      straight.dispose();

      const first = await createLocalRun({ config, baseDir: EXAMPLES, runDir: RunDir.create(b.path) });
      const lossesB: number[] = [];
      first.subscribe((m) => {
        if (m.type !== 'step') return;
        lossesB.push(m.loss);
        if (m.step === 4) first.requestStop();
      });
      const stopped = await first.run();
      first.dispose();
      assert.equal(stopped.reason, 'stopped');
      assert.equal(stopped.step, 4);

      const resumed = await createLocalRun({ config, baseDir: EXAMPLES, runDir: RunDir.open(b.path), resume: true });
      resumed.subscribe((m) => m.type === 'step' && lossesB.push(m.loss));
      assert.equal((await resumed.run()).step, 6);
      resumed.dispose();

      assert.deepEqual(lossesB, lossesA, 'same loss at every step, bit for bit');
      assert.deepEqual([...stepLosses(join(b.path, 'metrics.jsonl'))], [...stepLosses(join(a.path, 'metrics.jsonl'))]);
      const wa = readSafetensors(join(a.path, 'checkpoints', 'step-000006', 'model.safetensors'));
      const wb = readSafetensors(join(b.path, 'checkpoints', 'step-000006', 'model.safetensors'));
      for (const [name, t] of wa.tensors) assert.ok(Buffer.from(t.bytes).equals(Buffer.from(wb.tensors.get(name)!.bytes)), `${name} differs`);
      const evals = readFileSync(join(b.path, 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"type":"eval"'));
      assert.equal(evals.length, 2, 'eval at steps 3 and 6, each once after the truncation on resume');
    } finally {
      a.remove();
      b.remove();
    }
  });

  it('scalelm train prints a line per step and records protocol messages in DIR/metrics.jsonl', async () => {
    const dir = tempDir();
    try {
      const cfgFile = join(dir.path, 'small.scalelm.json');
      writeFileSync(cfgFile, JSON.stringify(smallRaw(join(EXAMPLES, 'data', 'tiny.txt'))));
      const run = await cli(['train', cfgFile, '--steps', '3', '--set', 'train.warmupSteps=1', '--run-dir', join(dir.path, 'run')]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^step 1\/3 {2}loss \d\.\d{4} {2}lr [\d.e+-]+ {2}gnorm [\d.]+ {2}[\d,]+ tokens\/s {2}\d+ ms {2}peak [\d.]+ [KM]iB$/m);
      assert.match(run.stdout, /backend: wasm \(SIMD, \d threads?\)/);
      const lines = readFileSync(join(dir.path, 'run', 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => decodeMessage(l));
      assert.ok(lines.every((l) => l.ok));
      const msgs = lines.map((l) => (l as { ok: true; value: Message }).value);
      assert.equal(msgs[0]!.type, 'hello');
      const steps = msgs.filter((m): m is StepMessage => m.type === 'step');
      assert.deepEqual(
        steps.map((s) => s.step),
        [1, 2, 3],
      );
      for (const s of steps) {
        for (const k of ['loss', 'lr', 'gradNorm', 'tokensPerSec', 'stepMs'] as const) assert.ok(Number.isFinite(s[k]) && s[k] > 0, k);
        for (const k of ['params', 'grads', 'optimizer', 'activations', 'peak'] as const) assert.ok(s.memory[k] > 0, `memory.${k}`);
      }
      assert.ok(msgs.some((m) => m.type === 'checkpoint' && m.step === 3));
      assert.equal(msgs[msgs.length - 1]!.type, 'status');
      assert.ok(existsSync(join(dir.path, 'run', 'checkpoints', 'step-000003', 'model.safetensors')));
      assert.ok(existsSync(join(dir.path, 'run', 'config.json')) && existsSync(join(dir.path, 'run', 'logs', 'train.log')));
    } finally {
      dir.remove();
    }
  });

  it('Ctrl-C stops after a checkpoint; --resume finishes with the same curve as an uninterrupted run', async () => {
    const dir = tempDir();
    try {
      const cfgFile = join(dir.path, 'small.scalelm.json');
      writeFileSync(cfgFile, JSON.stringify(smallRaw(join(EXAMPLES, 'data', 'tiny.txt'), 300)));
      const whole = await cli(['train', cfgFile, '--run-dir', join(dir.path, 'whole')]);
      assert.equal(whole.code, 0, whole.stderr);

      const interrupted = await cli(['train', cfgFile, '--run-dir', join(dir.path, 'cut')], (out, child) => {
        if (/^step +5\/300/m.test(out) && !child.killed) child.kill('SIGINT');
      });
      assert.equal(interrupted.code, 130, interrupted.stderr);
      assert.match(interrupted.stdout, /stopped at step (\d+) — checkpoint .*step-0000\d\d\ncontinue with: scalelm train --resume /);
      const stoppedAt = Number(/stopped at step (\d+)/.exec(interrupted.stdout)![1]);
      assert.ok(stoppedAt >= 5 && stoppedAt < 300);

      const resumed = await cli(['train', '--resume', join(dir.path, 'cut')]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stdout, new RegExp(`resuming after step ${stoppedAt}`));
      assert.deepEqual([...stepLosses(join(dir.path, 'cut', 'metrics.jsonl'))], [...stepLosses(join(dir.path, 'whole', 'metrics.jsonl'))]);
    } finally {
      dir.remove();
    }
  });

  it('bad input gets a one-line error and exit code 1, without a stack', async () => {
    const dir = tempDir();
    try {
      const cfgFile = join(dir.path, 'bad.scalelm.json');
      writeFileSync(cfgFile, JSON.stringify({ ...smallRaw(join(dir.path, 'nope.txt')) }));
      const r = await cli(['train', cfgFile, '--run-dir', join(dir.path, 'run')]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^scalelm: cannot read data\.path .*nope\.txt: no such file$/m);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      const again = await cli(['train', cfgFile, '--run-dir', join(dir.path, 'run'), '--set', 'train.precision=bf16-mixed']);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /train\.precision="bf16-mixed": the local runtime trains in fp32/);
      const noRun = await cli(['train', '--resume', join(dir.path, 'missing')]);
      assert.equal(noRun.code, 1);
      assert.match(noRun.stderr, /is not a ScaleLM run directory/);
      const llama = await cli(['train', cfgFile, '--set', 'model.norm=rmsnorm', '--run-dir', join(dir.path, 'run2')]);
      assert.equal(llama.code, 1);
      assert.match(llama.stderr, /trains GPT-2-style models only; this config has model\.norm="rmsnorm"/);
    } finally {
      dir.remove();
    }
  });
});

function smallRaw(dataPath: string, steps = 6): object {
  return {
    name: 'small',
    model: { layers: 2, hidden: 32, heads: 2, vocab: 256, seqLen: 16 },
    train: { microBatch: 4, steps, lr: 0.003, warmupSteps: 2, checkpointEvery: 0 },
    devices: { backend: 'wasm', memory: '256MiB' },
    data: { source: 'text', path: dataPath },
  };
}

function cli(args: string[], onOutput?: (stdout: string, child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onOutput?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
