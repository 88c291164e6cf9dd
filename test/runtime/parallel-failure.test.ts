// Failure: a rank that throws, exits or is killed mid-step fails the whole run promptly with the rank, the
// step and the cause; no rank is left running; the last good checkpoint stays intact and loadable. Layouts
// the runtime cannot run or that cannot fit are refused before anything starts; a TP group fed different
// data is caught.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Message } from '../../common/protocol';
import type { Coordinator } from '../../runtime/coordinator/coordinator';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { readConsolidated } from '../../runtime/parallel/checkpoint';
import { RunDir } from '../../runtime/train/run-dir';
import { EXAMPLES, REPO, tempDir, running } from './train/fixtures';
import { tinyConfig } from './parallel/helpers';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');

describe('parallel: failure', function () {
  this.timeout(120_000);
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => (dir = tempDir('scalelm-parallel-fail-')));
  afterEach(() => dir.remove());

  async function failingRun(o: { layout: Parameters<typeof tinyConfig>[0]; setup?: object; steps?: number; during?: (trainer: Coordinator, m: Message) => void }) {
    const config = tinyConfig(o.layout, { train: { steps: o.steps ?? 8, checkpointEvery: 2 } });
    const runDir = RunDir.create(join(dir.path, 'run'));
    const trainer = await createLocalRun({ config, baseDir: EXAMPLES, runDir, threads: 1, timeoutMs: 60_000, ...o.setup });
    const messages: Message[] = [];
    trainer.subscribe((m) => {
      messages.push(m);
      o.during?.(trainer, m);
    });
    const t0 = Date.now();
    let error: Error | undefined;
    try {
      await trainer.run();
    } catch (e) {
      error = e as Error;
    } finally {
      trainer.dispose();
    }
    return { error, ms: Date.now() - t0, messages, trainer, checkpoints: join(runDir.path, 'checkpoints') };
  }

  /** latest.json points at a whole checkpoint of `step` that consolidates; no half-written folder is mistaken for one. */
  function checkpointIntact(checkpoints: string, step: number | ((s: number) => boolean)): void {
    const latest = JSON.parse(readFileSync(join(checkpoints, 'latest.json'), 'utf8')) as { step: number; folder: string };
    if (typeof step === 'number') assert.equal(latest.step, step);
    else assert.ok(step(latest.step), `latest checkpoint at step ${latest.step}`);
    const full = readConsolidated(join(checkpoints, latest.folder));
    assert.equal(full.state.step, latest.step);
    assert.ok(full.params.get('wte.weight')!.every(Number.isFinite));
    for (const f of readdirSync(checkpoints)) if (/^step-/.test(f)) assert.ok(existsSync(join(checkpoints, f, 'state.json')), `${f} is complete`);
  }

  it('a thread rank that throws mid-backward at step 3 fails the run at once, naming rank 1, step 3 and the cause; the step-2 checkpoint is intact', async () => {
    const r = await failingRun({ layout: { dp: 2, tp: 2, zero: 3 }, setup: { faults: { die: { rank: 1, step: 3, how: 'throw' } } } });
    assert.ok(r.error, 'the run failed');
    assert.match(r.error.message, /^rank 1, step 3: injected failure in backward of [\w.]+ — the whole run stopped \(4 ranks, none left running\)$/);
    const failed = r.messages.find((m) => m.type === 'status' && m.state === 'failed');
    assert.ok(failed && failed.type === 'status' && /rank 1, step 3/.test(failed.error!.message), 'status failed carries the cause');
    assert.equal(failed.error!.rank, 1, 'and the failing rank as data');
    assert.ok(r.ms < 30_000, `failed within ${r.ms} ms`);
    checkpointIntact(r.checkpoints, 2);
  });

  it('a thread rank that dies (its thread exits) in the middle of step 5 fails the run naming it; the step-4 checkpoint is intact', async () => {
    const r = await failingRun({ layout: { dp: 2, zero: 2 }, setup: { faults: { die: { rank: 1, step: 5, how: 'exit' } } } });
    assert.ok(r.error);
    assert.match(r.error.message, /^rank 1, step 5: rank 1 exited \(code 7\) before reporting a result/);
    checkpointIntact(r.checkpoints, 4);
  });

  it('a rank process killed with SIGKILL mid-run fails the run naming the rank and the step it was in; no rank process survives', async () => {
    let killed = -1;
    // Many steps: the kill lands long before the end, however busy the machine is.
    const r = await failingRun({
      layout: { dp: 2, tp: 2, zero: 1 },
      steps: 400,
      setup: { transport: 'processes' },
      during: (trainer, m) => {
        if (killed < 0 && m.type === 'step' && m.step === 3) {
          killed = trainer.rankProcesses()[2]!.pid;
          process.kill(killed, 'SIGKILL');
        }
      },
    });
    assert.ok(killed > 0 && killed !== process.pid, 'killed a rank process');
    assert.ok(r.error);
    const m = /^rank 2, step (\d+): rank 2 exited \(signal SIGKILL\) before reporting a result/.exec(r.error.message);
    assert.ok(m, r.error.message);
    const step = Number(m[1]);
    assert.ok(step >= 3 && step < 400, `failed at step ${step}`);
    const failed = r.messages.find((x) => x.type === 'status' && x.state === 'failed');
    assert.ok(failed?.type === 'status' && failed.error?.rank === 2, `status failed names rank 2 as data: ${JSON.stringify(failed)}`);
    for (const p of r.trainer.rankProcesses()) assert.ok(!running(p.pid), `rank ${p.rank} (pid ${p.pid}) is gone`);
    checkpointIntact(r.checkpoints, (s) => s >= 2 && s < step);
  });

  it('ranks of one tensor-parallel group fed different tokens: detected and reported', async () => {
    const r = await failingRun({ layout: { tp: 2 }, setup: { faults: { corruptDataRank: 1 } } });
    assert.ok(r.error);
    assert.match(r.error.message, /data mismatch inside tensor-parallel group tp0\[0,1\] at step 1, micro-batch 0/);
  });

  it('refuses pipeline parallelism with a clear message before anything starts', async () => {
    const config = tinyConfig({ dp: 1 }, { parallel: { pp: 2 }, model: { layers: 2 } });
    await assert.rejects(
      createLocalRun({ config, baseDir: EXAMPLES }),
      (e: Error) => e.name === 'ParallelError' && /parallel\.pp=2: the local runtime has no pipeline parallelism yet/.test(e.message),
    );
  });

  it("`scalelm train` refuses a parallel layout that cannot fit devices.memory, with the planner's breakdown, and starts nothing", () => {
    const runDir = join(dir.path, 'never');
    const r = spawnSync(
      process.execPath,
      [CLI, 'train', join(EXAMPLES, 'tiny-parallel.scalelm.json'), '--set', 'parallel.dp=2', '--set', 'parallel.tp=2', '--set', 'parallel.zero=1', '--set', 'devices.memory=4MiB', '--run-dir', runDir],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /this layout does not fit — planned [\d.]+ MiB per device, 4\.00 MiB available on 4 × CPU device \(4\.00 MiB\); nothing was started/);
    for (const c of ['params', 'grads', 'optimizer', 'activations']) assert.match(r.stderr, new RegExp(`\\n  ${c} +[\\d.]+ [KM]iB`));
    assert.ok(!existsSync(runDir), 'no run directory');
  });
});
