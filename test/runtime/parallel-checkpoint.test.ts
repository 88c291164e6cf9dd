// Sharded checkpoints: a stopped run resumes in the same layout exactly where it was (bit for bit);
// `scalelm checkpoint consolidate` writes one HF-named model.safetensors (and the optimizer state); a
// consolidated checkpoint starts any other layout — dp=2 tp=2 ZeRO-3 continued at tp=4, or on one device —
// and the loss goes on along the single-device curve.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunConfig } from '../../runtime/config/types';
import { Gpt, gptShape } from '../../runtime/model/gpt';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { consolidateLatestIfSharded, readConsolidated } from '../../runtime/parallel/checkpoint';
import { latestCheckpoint } from '../../runtime/train/checkpoint';
import { RunDir } from '../../runtime/train/run-dir';
import { readSafetensors, toFloat32 } from '../../runtime/train/safetensors';
import { EXAMPLES, REPO, tempDir } from './train/fixtures';
import { maxRelative, singleRun, tinyConfig } from './parallel/helpers';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const STEPS = 6;

/** Runs a parallel trainer on a run directory; stops after `stopAfter` steps when given. */
async function train(config: RunConfig, runDir: RunDir, o: { resume?: boolean; stopAfter?: number } = {}): Promise<{ losses: number[]; step: number }> {
  const trainer = await createLocalRun({ config, baseDir: EXAMPLES, runDir, threads: 1, timeoutMs: 60_000, ...(o.resume ? { resume: true } : {}) });
  if (o.stopAfter !== undefined) {
    const stopAfter = o.stopAfter;
    trainer.subscribe((m) => {
      if (m.type === 'step' && m.step === stopAfter) trainer.requestStop();
    });
  }
  try {
    const r = await trainer.run();
    return { losses: trainer.losses, step: r.step };
  } finally {
    trainer.dispose();
  }
}

describe('parallel: sharded checkpoints, consolidation, resuming in any layout', function () {
  this.timeout(180_000);
  let dir: ReturnType<typeof tempDir>;
  const base = (layout: Parameters<typeof tinyConfig>[0]) => tinyConfig(layout, { train: { steps: STEPS } });
  let stoppedAt = 0;
  let firstLosses: number[] = [];
  let runPath = '';

  before(async () => {
    dir = tempDir('scalelm-parallel-ckpt-');
    runPath = join(dir.path, 'run');
    const first = await train(base({ dp: 2, tp: 2, zero: 3 }), RunDir.create(runPath), { stopAfter: 2 });
    stoppedAt = first.step;
    firstLosses = first.losses;
  });
  after(() => dir.remove());

  it('a stop writes one shard per rank and a state.json with the layout', () => {
    assert.ok(stoppedAt >= 2 && stoppedAt < STEPS, `stopped after step ${stoppedAt}`);
    const folder = latestCheckpoint(join(runPath, 'checkpoints'))!;
    const state = JSON.parse(readFileSync(join(folder, 'state.json'), 'utf8'));
    assert.deepEqual(state.layout, { dp: 2, tp: 2, zero: 3, paddedVocab: 256 });
    assert.equal(state.step, stoppedAt);
  });

  it('resumes into the same layout (dp=2 tp=2 ZeRO-3) and continues the uninterrupted run bit for bit', async () => {
    const copy = join(dir.path, 'same');
    cpSync(runPath, copy, { recursive: true });
    const resumed = await train(base({ dp: 2, tp: 2, zero: 3 }), RunDir.open(copy), { resume: true });
    const straight = await train(base({ dp: 2, tp: 2, zero: 3 }), RunDir.create(join(dir.path, 'straight')));
    assert.deepEqual([...firstLosses, ...resumed.losses], straight.losses);
    const steps = readFileSync(join(copy, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((m) => m.type === 'step')
      .map((m) => m.step);
    assert.deepEqual(steps, [1, 2, 3, 4, 5, 6].slice(0, STEPS), 'metrics.jsonl reads like one uninterrupted run');
  });

  for (const layout of [{ dp: 2 }, { dp: 2, zero: 1 as const }, { dp: 2, tp: 2, zero: 2 as const }]) {
    it(`resumes dp=${layout.dp} tp=${layout.tp ?? 1} ZeRO-${layout.zero ?? 0} from its own shards bit for bit (replicas read dp rank 0's parameters)`, async () => {
      const path = join(dir.path, `same-${layout.dp}-${layout.tp ?? 1}-${layout.zero ?? 0}`);
      const first = await train(base(layout), RunDir.create(path), { stopAfter: 2 });
      const resumed = await train(base(layout), RunDir.open(path), { resume: true });
      const straight = await train(base(layout), RunDir.create(`${path}-straight`));
      assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
    });
  }

  it("a checkpoint requested mid-run (the dashboard's button) is written by every rank at the same step, and training goes on", async () => {
    const path = join(dir.path, 'requested');
    const trainer = await createLocalRun({ config: base({ dp: 2, tp: 2, zero: 1 }), baseDir: EXAMPLES, runDir: RunDir.create(path), threads: 1 });
    const saved: number[] = [];
    trainer.subscribe((m) => {
      if (m.type === 'step' && m.step === 2) trainer.requestCheckpoint();
      if (m.type === 'checkpoint') saved.push(m.step);
    });
    const r = await trainer.run();
    trainer.dispose();
    assert.equal(r.step, STEPS);
    assert.equal(saved.length, 2, `checkpoints at ${saved}`);
    assert.ok(saved[0]! > 2 && saved[0]! < STEPS, `requested one at step ${saved[0]}`);
    assert.equal(saved[1], STEPS);
    assert.equal(readConsolidated(join(path, 'checkpoints', `step-00000${saved[0]}`)).state.step, saved[0]);
  });

  it('`scalelm checkpoint consolidate` writes model.safetensors with HuggingFace GPT-2 names and full shapes, and the optimizer state', () => {
    const copy = join(dir.path, 'consolidated');
    cpSync(runPath, copy, { recursive: true });
    const r = spawnSync(process.execPath, [CLI, 'checkpoint', 'consolidate', copy], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /consolidated .*step-00000\d \(step \d, 4 ranks: dp=2 tp=2 zero=3\)/);
    const folder = latestCheckpoint(join(copy, 'checkpoints'))!;
    const model = readSafetensors(join(folder, 'model.safetensors'));
    const specs = new Gpt(gptShape(base({}).model)).paramSpecs();
    assert.deepEqual([...model.tensors.keys()].sort(), specs.map((s) => s.name).sort());
    const full = readConsolidated(folder);
    for (const s of specs) {
      assert.deepEqual(model.tensors.get(s.name)!.shape, s.shape, s.name);
      assert.deepEqual(toFloat32(model.tensors.get(s.name)!, s.name, folder), full.params.get(s.name), s.name);
    }
    const opt = readSafetensors(join(folder, 'optimizer.safetensors'));
    assert.equal(opt.tensors.size, 2 * specs.length);
    const again = spawnSync(process.execPath, [CLI, 'checkpoint', 'consolidate', join(copy, 'checkpoints')], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(again.status, 0, again.stderr);
  });

  for (const target of [{ tp: 4 }, { dp: 4, zero: 1 as const }, { dp: 1 }]) {
    const label = target.dp === 1 ? 'one device (a world of one)' : `dp=${target.dp ?? 1} tp=${target.tp ?? 1} zero=${target.zero ?? 0}`;
    it(`a dp=2 tp=2 ZeRO-3 checkpoint resumes on ${label} and follows the single-device loss curve`, async () => {
      const copy = join(dir.path, `resume-${label.replace(/\W+/g, '-')}`);
      cpSync(runPath, copy, { recursive: true });
      const config = base(target);
      const reference = await singleRun(config);
      let losses: number[];
      if (target.dp === 1) {
        consolidateLatestIfSharded(join(copy, 'checkpoints'), () => {});
        losses = (await train({ ...config, train: { ...config.train, microBatch: config.train.globalBatch } }, RunDir.open(copy), { resume: true })).losses;
      } else losses = (await train(config, RunDir.open(copy), { resume: true })).losses;
      assert.equal(losses.length, STEPS - stoppedAt);
      assert.ok(maxRelative(losses, reference.losses.slice(stoppedAt)) <= 1e-5, `${losses} vs ${reference.losses.slice(stoppedAt)}`);
    });
  }
});
