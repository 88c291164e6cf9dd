// The torch engine's TypeScript side under real torchrun + gloo: engine choice and its refusals, and the
// launcher/coordinator with a protocol-conformance rank (test/fixtures/torch-rank) — steps relayed,
// checkpoints committed, Stop, a rank killed or failing named with its step, nothing left running.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Message } from '../../common/protocol';
import { loadConfig } from '../../runtime/config/parse';
import { chooseEngine, TorchEngineError } from '../../runtime/engines/torch/choose';
import { probeTorch, torchProblem } from '../../runtime/engines/torch/python';
import type { Coordinator } from '../../runtime/coordinator/coordinator';
import { createTorchRun, type TorchEngine } from '../../runtime/engines/torch/engine';
import { RunDir } from '../../runtime/train/run-dir';
import { EXAMPLES, REPO, tempDir, running } from './train/fixtures';
import { findTorchPython } from './train/python';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const FIXTURE = join(REPO, 'test', 'fixtures', 'torch-rank');

const config = (over: { dp?: number; steps?: number; checkpointEvery?: number } = {}) =>
  loadConfig({
    name: 'torch-conformance',
    model: { preset: 'tiny' },
    train: { microBatch: 2, globalBatch: 4 * (over.dp ?? 2), steps: over.steps ?? 6, checkpointEvery: over.checkpointEvery ?? 3 },
    parallel: { dp: over.dp ?? 2 },
    devices: { engine: 'torch', memory: '1GiB' },
    data: { source: 'synthetic' },
  });

describe('torch engine: engine choice and refusals', function () {
  this.timeout(120_000);

  it('a Python without torch, and one with a too-old torch: one message naming interpreter, version and fix; no run folder', () => {
    const dir = tempDir('scalelm-torch-missing-');
    try {
      // A real interpreter that cannot see any installed torch: site-packages off.
      const noTorch = join(dir.path, 'python-without-torch');
      writeFileSync(noTorch, '#!/bin/sh\nexec /usr/bin/python3 -I -S "$@"\n');
      chmodSync(noTorch, 0o755);
      const runDir = join(dir.path, 'run');
      const r = spawnSync(
        process.execPath,
        [CLI, 'train', join(EXAMPLES, 'tiny-parallel.scalelm.json'), '--set', 'devices.engine=torch', '--set', 'parallel.dp=2', '--python', noTorch, '--run-dir', runDir],
        { encoding: 'utf8', timeout: 60_000 },
      );
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /the torch engine needs torch ≥ 2\.6, but \/usr\/bin\/python3 \(.*python-without-torch, from --python, Python 3\.\d+\.\d+\) has no torch/);
      assert.match(r.stderr, /pip install "torch>=2\.6"/);
      assert.match(r.stderr, /nothing was started/);
      assert.equal(existsSync(runDir), false, 'no run folder');

      const old = probeTorch('/usr/bin/python3');
      if (old.torch && /^1\./.test(old.torch)) {
        const r2 = spawnSync(process.execPath, [CLI, 'train', join(EXAMPLES, 'tiny-parallel.scalelm.json'), '--set', 'devices.engine=torch', '--python', '/usr/bin/python3', '--run-dir', runDir], {
          encoding: 'utf8',
          timeout: 60_000,
        });
        assert.equal(r2.status, 1);
        assert.match(r2.stderr, new RegExp(`has torch ${old.torch.replace(/[.+]/g, '\\$&')}; upgrade it there with pip install "torch>=2\\.6"`));
        assert.equal(existsSync(runDir), false);
      }
      const none = torchProblem({ python: '/nonexistent/python', source: 'SCALELM_PYTHON' }, probeTorch('/nonexistent/python'));
      assert.match(none!, /\/nonexistent\/python \(from SCALELM_PYTHON\) did not run: no such interpreter/);
    } finally {
      dir.remove();
    }
  });

  it('auto: local where no CUDA GPU is seen, with the reason; torch with a usable torch is chosen when asked', () => {
    const auto = chooseEngine({ ...config(), devices: { ...config().devices, engine: 'auto' } });
    assert.equal(auto.name, 'local');
    assert.match(auto.reason, /devices\.engine is "auto" and .*(no NVIDIA driver|sees no CUDA GPU|cannot run the torch engine)/);
    assert.deepEqual(chooseEngine({ ...config(), devices: { ...config().devices, engine: 'local' } }), { name: 'local', reason: 'devices.engine is "local"' });
    assert.throws(() => chooseEngine(config(), { python: '/nonexistent/python', source: '--python' }), TorchEngineError);
    const found = findTorchPython();
    if ('missing' in found) return;
    const torch = chooseEngine(config(), { python: found.python, source: 'test' });
    assert.equal(torch.name, 'torch');
    if (torch.name === 'torch' && torch.probe.cudaGpus === 0) {
      assert.equal(torch.device, 'cpu');
      assert.equal(torch.backend, 'cpu gloo');
    }
  });
});

describe('torch engine: torchrun with conformance ranks (gloo)', function () {
  this.timeout(240_000);
  const found = findTorchPython();
  let dir: ReturnType<typeof tempDir>;

  before(function () {
    if ('missing' in found) {
      console.log(`      NOTICE: skipping the torchrun tests: ${found.missing}`);
      this.skip();
    }
  });
  beforeEach(() => (dir = tempDir('scalelm-torch-run-')));
  afterEach(() => dir?.remove());

  const run = async (cfg = config(), env: Record<string, string> = {}, during?: (t: Coordinator) => void) => {
    const python = (found as { python: string }).python;
    const choice = chooseEngine(cfg, { python, source: 'test' });
    assert.equal(choice.name, 'torch');
    const runDir = RunDir.create(join(dir.path, 'run'));
    const messages: Message[] = [];
    const saved = { ...process.env };
    Object.assign(process.env, env);
    const t = await createTorchRun({ config: cfg, baseDir: EXAMPLES, runDir, choice: choice as never, module: 'conformance_rank', pythonPath: FIXTURE });
    t.subscribe((m) => messages.push(m));
    let pids: number[] = [];
    t.onRanks((ranks) => (pids = ranks.map((r) => r.pid)));
    during?.(t);
    try {
      const result = await t.run().then(
        (r) => ({ ok: true as const, r }),
        (e: Error) => ({ ok: false as const, e }),
      );
      return { result, messages, pids, runDir, torchrunPid: (t.engine as TorchEngine).launcherPid! };
    } finally {
      for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
      t.dispose();
    }
  };

  it("dp=2: every step and both ranks' memory arrive, checkpoints are committed, the run ends done", async () => {
    const { result, messages, pids, runDir, torchrunPid } = await run();
    assert.ok(result.ok, result.ok ? '' : result.e.message);
    assert.equal(result.r.step, 6);
    assert.equal(result.r.reason, 'completed');
    const hello = messages.find((m) => m.type === 'hello');
    assert.ok(hello && hello.type === 'hello' && hello.world === 2 && hello.engine?.name === 'torch', JSON.stringify(hello));
    assert.deepEqual(
      messages.filter((m) => m.type === 'step').map((m) => (m.type === 'step' ? m.step : -1)),
      [1, 2, 3, 4, 5, 6],
    );
    for (const rank of [0, 1]) assert.equal(messages.filter((m) => m.type === 'memory' && m.rank === rank).length, 6);
    assert.deepEqual(
      readdirSync(runDir.checkpoints)
        .filter((f) => f.startsWith('step-'))
        .sort(),
      ['step-000003', 'step-000006'],
    );
    assert.deepEqual(
      readdirSync(join(runDir.checkpoints, 'step-000006'))
        .filter((f) => f.startsWith('part-'))
        .sort(),
      ['part-0.json', 'part-1.json'],
    );
    assert.equal(JSON.parse(readFileSync(join(runDir.checkpoints, 'step-000006', 'state.json'), 'utf8')).engine, 'torch');
    assert.equal(messages.at(-1)?.type === 'status' && messages.at(-1), messages.at(-1));
    assert.deepEqual(
      messages
        .filter((m) => m.type === 'status')
        .map((m) => (m.type === 'status' ? m.state : ''))
        .at(-1),
      'finished',
    );
    assert.equal(pids.length, 2);
    for (const pid of [...pids, torchrunPid]) assert.equal(running(pid), false, `pid ${pid} left running`);
  });

  it('a rank killed with SIGKILL fails the run naming rank and step; no process is left', async () => {
    const { result, messages, pids, torchrunPid } = await run(config({ steps: 50 }), { CONFORMANCE_DIE: '1:3' });
    assert.equal(result.ok, false);
    const msg = (result as { e: Error }).e.message;
    assert.match(msg, /^rank 1, step 3: its process ended before the run finished/);
    assert.match(msg, /the whole run stopped \(2 ranks, none left running\)/);
    const status = messages.filter((m) => m.type === 'status').at(-1);
    assert.ok(status?.type === 'status' && status.state === 'failed' && /rank 1, step 3/.test(status.error!.message));
    assert.equal(status.error!.rank, 1, 'the failing rank as data, not only in the message');
    await new Promise((r) => setTimeout(r, 200));
    for (const pid of [...pids, torchrunPid]) assert.equal(running(pid), false, `pid ${pid} left running`);
  });

  it('a rank that raises is named with its step and its own error', async () => {
    const { result, pids, torchrunPid } = await run(config({ steps: 50 }), { CONFORMANCE_RAISE: '0:2' });
    assert.equal(result.ok, false);
    assert.match((result as { e: Error }).e.message, /^rank 0, step 2: RuntimeError: injected failure at step 2/);
    for (const pid of [...pids, torchrunPid]) assert.equal(running(pid), false, `pid ${pid} left running`);
  });

  it('Stop: every rank stops on the same step with a checkpoint', async () => {
    const { result, runDir } = await run(config({ steps: 10_000, checkpointEvery: 0 }), { CONFORMANCE_STEP_S: '0.02' }, (t) => {
      t.subscribe((m) => {
        if (m.type === 'step' && m.step === 5) t.requestStop();
      });
    });
    assert.ok(result.ok, result.ok ? '' : result.e.message);
    assert.equal(result.r.reason, 'stopped');
    assert.ok(result.r.step >= 5 && result.r.step < 100, String(result.r.step));
    assert.ok(result.r.checkpoint?.endsWith(`step-${String(result.r.step).padStart(6, '0')}`), result.r.checkpoint);
    assert.deepEqual(
      readdirSync(result.r.checkpoint!)
        .filter((f) => f.startsWith('part-'))
        .sort(),
      ['part-0.json', 'part-1.json'],
    );
    void runDir;
  });
});
