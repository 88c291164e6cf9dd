// `scalelm launch -- torchrun …`: a command's ranks report over the rank channel and become one run; the run
// ends with the command's status; a rank that dies is named; nothing is left running. The ranks are the
// protocol-conformance rank (test/fixtures/torch-rank) under real torchrun with gloo.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, tempDir, running } from './train/fixtures';
import { torchPythonForSuite } from './train/python';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const RANK = join(REPO, 'test', 'fixtures', 'torch-rank', 'conformance_rank.py');

describe('cli: scalelm launch -- torchrun … (conformance ranks, gloo)', function () {
  this.timeout(240_000);
  const torchPython = torchPythonForSuite();
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => (dir = tempDir('scalelm-launch-')));
  afterEach(() => dir.remove());

  const launch = (steps: number, env: Record<string, string> = {}) => {
    const argsFile = join(dir.path, 'args.json');
    writeFileSync(argsFile, JSON.stringify({ config: { train: { steps, checkpointEvery: 0 } }, startStep: 0 }));
    const runDir = join(dir.path, 'run');
    const python = torchPython();
    const r = spawnSync(
      process.execPath,
      [CLI, 'launch', '--name', 'ddp', '--run-dir', runDir, '--', python, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--standalone', RANK, '--args', argsFile],
      {
        encoding: 'utf8',
        timeout: 200_000,
        env: { ...process.env, SCALELM_MONITOR_TOKEN: 'a'.repeat(64), ...env },
      },
    );
    const messages = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const pids = [...r.stderr.matchAll(/joined \(pid (\d+)/g)].map((m) => Number(m[1]));
    return { r, messages, pids };
  };

  it("both ranks' steps and memory arrive in order; the run ends finished with exit 0", () => {
    const { r, messages, pids } = launch(5);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const hello = messages[0]!;
    assert.equal(hello.type, 'hello');
    assert.equal(hello.world, 2);
    assert.equal((hello.engine as { name: string }).name, 'monitor');
    assert.deepEqual(
      messages.filter((m) => m.type === 'step').map((m) => m.step),
      [1, 2, 3, 4, 5],
    );
    for (const rank of [0, 1])
      assert.deepEqual(
        messages.filter((m) => m.type === 'memory' && m.rank === rank).map((m) => m.step),
        [1, 2, 3, 4, 5],
      );
    assert.equal(messages.at(-1)!.type, 'status');
    assert.equal(messages.at(-1)!.state, 'finished');
    assert.equal(pids.length, 2);
  });

  it("a rank killed with SIGKILL fails the run naming it; the exit status is the command's; nothing left running", async () => {
    const { r, messages, pids } = launch(50, { CONFORMANCE_DIE: '1:3' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /scalelm: rank 1, step 3: its process ended before it finished \(the command ended with exit 1\)/);
    const status = messages.filter((m) => m.type === 'status').at(-1)!;
    assert.equal(status.state, 'failed');
    assert.match((status.error as { message: string }).message, /^rank 1, step 3/);
    assert.equal((status.error as { rank?: number }).rank, 1, 'the failing rank as data, not only in the message');
    await new Promise((res) => setTimeout(res, 200));
    for (const pid of pids) assert.equal(running(pid), false, `rank pid ${pid} left running`);
  });

  it("Ctrl-C: SIGINT reaches the command's process group; the run ends as stopped; nothing left running", async () => {
    const argsFile = join(dir.path, 'args.json');
    writeFileSync(argsFile, JSON.stringify({ config: { train: { steps: 100_000, checkpointEvery: 0 } }, startStep: 0 }));
    const runDir = join(dir.path, 'run');
    const child = spawn(
      process.execPath,
      [CLI, 'launch', '--run-dir', runDir, '--stop-timeout-ms', '5000', '--', torchPython(), '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--standalone', RANK, '--args', argsFile],
      {
        env: { ...process.env, SCALELM_MONITOR_TOKEN: 'a'.repeat(64) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const deadline = Date.now() + 120_000;
    while (!/rank 1 of 2 joined/.test(err) || !existsSync(join(runDir, 'metrics.jsonl')) || !/"type":"step"/.test(readFileSync(join(runDir, 'metrics.jsonl'), 'utf8'))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the ranks did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const pids = [...err.matchAll(/joined \(pid (\d+)/g)].map((m) => Number(m[1]));
    child.kill('SIGINT');
    await exited;
    const messages = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const last = messages.filter((m) => m.type === 'status').at(-1)!;
    assert.equal(last.state, 'stopped', JSON.stringify(last));
    assert.match(String(last.reason), /^stopped at step \d+/);
    await new Promise((res) => setTimeout(res, 200));
    for (const pid of pids) assert.equal(running(pid), false, `rank pid ${pid} left running`);
  });

  it('without a command: usage error, exit 2', () => {
    const r = spawnSync(process.execPath, [CLI, 'launch', '--name', 'x'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /missing the command after --/);
  });
});
