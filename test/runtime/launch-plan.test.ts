// `scalelm launch` planning a user's own run: the HuggingFace shape and layout the Monitor reports (or
// --plan CONFIG) become the planner's prediction on every rank's memory message; a bad --plan file stops
// before the command starts; a rank whose memory trend crosses its capacity before the run's last step gets
// the out-of-memory forecast, cleared when the growth stops. Real torchrun with gloo, the built CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, tempDir } from './train/fixtures';
import { torchPythonForSuite } from './train/python';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const FIXTURES = join(REPO, 'test', 'fixtures', 'monitor');

type Msg = Record<string, unknown> & { type: string };
interface Memory extends Msg {
  rank: number;
  step: number;
  categories: Record<string, number>;
  predicted?: Record<string, number>;
}

describe('cli: scalelm launch — plans and forecasts for a monitored script (torchrun, gloo)', function () {
  this.timeout(240_000);
  const torchPython = torchPythonForSuite();
  let dir: ReturnType<typeof tempDir>;
  before(function () {
    const r = spawnSync(torchPython(), ['-c', 'import transformers'], { encoding: 'utf8' });
    if (r.status !== 0) {
      console.log('      NOTICE: skipping: transformers is not installed');
      this.skip();
    }
  });
  beforeEach(() => (dir = tempDir('scalelm-launch-plan-')));
  afterEach(() => dir.remove());

  const launch = (script: string, flags: string[], env: Record<string, string>) => {
    const runDir = join(dir.path, 'run');
    const python = torchPython();
    const r = spawnSync(
      process.execPath,
      [CLI, 'launch', '--run-dir', runDir, ...flags, '--', python, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--standalone', join(FIXTURES, script)],
      {
        encoding: 'utf8',
        cwd: dir.path,
        timeout: 200_000,
        env: { ...process.env, SCALELM_MONITOR_TOKEN: 'a'.repeat(64), PYTHONPATH: join(REPO, 'python'), OMP_NUM_THREADS: '1', ...env },
      },
    );
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const messages = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Msg);
    return { r, messages, memory: messages.filter((m): m is Memory => m.type === 'memory') };
  };

  it("without --plan: the HuggingFace GPT-2's own config and the detected DDP layout are planned; every rank's memory carries the prediction", () => {
    const { r, memory } = launch('hf_ddp.py', [], { STEPS: '4', MICRO: '2', SEQ: '16' });
    assert.match(r.stderr, /plan \(the script's HuggingFace gpt2 config, torch convention, hf-eager activations\): .*seq 16, dp2·tp1·pp1 · ZeRO-0 · mb 2/);
    assert.doesNotMatch(r.stderr, /plan assumed/, 'DDP, tp, micro-batch, sequence length, precision and optimizer were all reported');
    for (const rank of [0, 1]) {
      const mine = memory.filter((m) => m.rank === rank);
      assert.deepEqual(
        mine.map((m) => m.step),
        [1, 2, 3, 4],
      );
      // Rank 0 reports the shape before its first memory message; rank 1's first may come before it.
      const planned = mine.filter((m) => m.predicted);
      assert.ok(planned.length >= 3 && planned.at(-1)!.step === 4, `rank ${rank}: ${planned.length} predicted`);
      for (const m of planned) {
        const p = m.predicted!;
        // fp32 tensors counted both ways: the planner's count of the reported shape is the model's.
        assert.equal(p.params, m.categories.params);
        assert.equal(p.grads, m.categories.grads);
        assert.equal(p.optimizer, 2 * m.categories.params);
        // What HF's eager GPT-2 saves for backward, counted both ways (unique fp32/int64 storages on CPU): equal.
        assert.equal(p.activations, m.categories.activations);
      }
    }
    assert.ok(memory.filter((m) => m.rank === 0).every((m) => m.predicted));
  });

  it("--plan CONFIG (*.scalelm.json): planned before the command starts, so every memory message carries it; what it predicts is the file's model", () => {
    // The file's model has 4 layers where the script's has 2: the prediction must be the file's.
    const plan = join(dir.path, 'planned.scalelm.json');
    writeFileSync(
      plan,
      JSON.stringify({ name: 'planned', model: { layers: 4, hidden: 32, heads: 2, ffnHidden: 128, vocab: 96, seqLen: 16 }, train: { microBatch: 2, precision: 'fp32' }, parallel: { dp: 2 } }),
    );
    const { r, messages, memory } = launch('hf_ddp.py', ['--plan', plan], { STEPS: '3' });
    const started = messages.findIndex((m) => m.type === 'log' && /plan \(.*planned\.scalelm\.json, torch convention\)/.test(String(m.message)));
    const joined = messages.findIndex((m) => m.type === 'log' && /joined/.test(String(m.message)));
    assert.ok(started >= 0 && started < joined, r.stderr);
    assert.equal(memory.length, 6);
    const layer = 12 * 32 * 32 + 13 * 32; // a GPT-2 block's parameters (C = 32, ffn 4C), fp32 below
    for (const m of memory) assert.equal(m.predicted!.params, m.categories.params + 2 * layer * 4, `rank ${m.rank} step ${m.step}`);
  });

  it("--plan config.json (HuggingFace): the file's model with the layout the script reports", () => {
    const hf = join(dir.path, 'config.json');
    writeFileSync(hf, JSON.stringify({ model_type: 'gpt2', n_layer: 3, n_embd: 32, n_head: 2, vocab_size: 96, n_positions: 16 }));
    const { r, memory } = launch('hf_ddp.py', ['--plan', hf], { STEPS: '3' });
    assert.match(r.stderr, /plan \(model from .*config\.json, torch convention, hf-eager activations\): .*seq 16, dp2·tp1·pp1 · ZeRO-0 · mb 2/);
    const layer = 12 * 32 * 32 + 13 * 32; // the file has one GPT-2 block more than the script's model
    // One eager GPT-2 block with dropout (B 2, T 16, C 32, F 128, 2 heads) saves 10·B·T·C + 4·B·T + 5·B·T·F + 3·B·heads·T² fp32 (docs/planner.md).
    const [B, T, C, F, H] = [2, 16, 32, 128, 2];
    const saved = 4 * (10 * B * T * C + 4 * B * T + 5 * B * T * F + 3 * B * H * T * T);
    const planned = memory.filter((m) => m.predicted);
    assert.ok(planned.length >= 5, `${planned.length} predicted`);
    for (const m of planned) {
      assert.equal(m.predicted!.params, m.categories.params + layer * 4);
      assert.equal(m.predicted!.activations, m.categories.activations! + saved);
    }
  });

  it('a bad --plan file: one clear error, exit 1, the command never starts', () => {
    const bad = join(dir.path, 'bad.scalelm.json');
    writeFileSync(bad, JSON.stringify({ model: { layers: 2, hidden: 32, heads: 3, ffnHidden: 128, vocab: 96, seqLen: 16 } }));
    const hf = join(dir.path, 'config.json');
    writeFileSync(hf, JSON.stringify({ model_type: 'bert', hidden_size: 32 }));
    const marker = join(dir.path, 'started');
    for (const [file, why] of [
      [bad, /--plan: .*bad\.scalelm\.json: .*model\.heads/s],
      [hf, /--plan: .*config\.json: not a usable HuggingFace config:\n {2}model_type: model_type "bert" is not supported/],
      [join(dir.path, 'none.json'), /--plan: cannot read .*none\.json/],
    ] as const) {
      const r = spawnSync(process.execPath, [CLI, 'launch', '--plan', file, '--run-dir', join(dir.path, 'run'), '--', 'touch', marker], { encoding: 'utf8' });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, why);
      assert.equal(existsSync(marker), false, 'the command ran');
      assert.equal(existsSync(join(dir.path, 'run')), false, 'a run folder was made');
    }
  });

  it('a rank whose memory grows toward its capacity: the forecast names the rank, the step and the time; cleared when the growth stops', () => {
    // Rank 1 keeps 1 MiB more per step for 30 steps of 60 against 48 MiB: at that pace it crosses at ~step 48.
    const { messages } = launch('growing.py', [], { STEPS: '60', GROW_RANK: '1', GROW_STEPS: '30', GROW_BYTES: String(2 ** 20), CAPACITY: String(48 * 2 ** 20) });
    const forecasts = messages.filter((m) => m.type === 'alert' && String(m.id).startsWith('memory-oom:'));
    assert.deepEqual(
      forecasts.map((a) => `${a.id} ${a.state}`),
      ['memory-oom:rank1 raised', 'memory-oom:rank1 cleared'],
      JSON.stringify(forecasts),
    );
    const [raised, cleared] = forecasts as [Msg, Msg];
    assert.equal(raised.kind, 'memory-leak');
    assert.equal(raised.rank, 1);
    const m = /rank 1 will run out of memory at step (\d+) of 60 \(in ~(\d+) s\)/.exec(String(raised.message));
    assert.ok(m, String(raised.message));
    const at = Number(m[1]);
    assert.ok(at >= 46 && at <= 50, `crossing step ${at}`);
    assert.ok((raised.timeToFullSec as number) > 0);
    assert.ok((raised.step as number) < 31 && (cleared.step as number) > 30, `raised at ${raised.step}, cleared at ${cleared.step}`);
  });
});
