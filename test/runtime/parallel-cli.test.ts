// The done-criterion, through the CLI: `scalelm train examples/tiny-parallel.scalelm.json --set parallel.dp=2
// --set parallel.tp=2 --set parallel.zero=3` trains, its loss curve equals the single-device one, and its
// metrics.jsonl carries what the dashboard shows per rank (hello with the world size, memory with the
// prediction and comm gauges for every rank, a sharded checkpoint).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES, REPO, tempDir } from './train/fixtures';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const STEPS = 5;

function train(runDir: string, sets: string[]): { lines: string[]; messages: Record<string, unknown>[] } {
  const r = spawnSync(
    process.execPath,
    [CLI, 'train', join(EXAMPLES, 'tiny-parallel.scalelm.json'), '--steps', String(STEPS), '--threads', '1', '--run-dir', runDir, ...sets.flatMap((s) => ['--set', s])],
    {
      encoding: 'utf8',
      timeout: 240_000,
      env: { ...process.env, SCALELM_MONITOR_TOKEN: 'a'.repeat(64) },
    },
  );
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const messages = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines: r.stdout.split('\n'), messages };
}

describe('parallel: scalelm train with dp=2 tp=2 ZeRO-3 (the CLI)', function () {
  this.timeout(300_000);
  let dir: ReturnType<typeof tempDir>;
  before(() => (dir = tempDir('scalelm-parallel-cli-')));
  after(() => dir.remove());

  it('trains, follows the single-device loss curve, and records per-rank memory and communication for the dashboard', () => {
    const single = train(join(dir.path, 'single'), []);
    const parallel = train(join(dir.path, 'parallel'), ['parallel.dp=2', 'parallel.tp=2', 'parallel.zero=3']);
    const losses = (m: Record<string, unknown>[]) => m.filter((x) => x.type === 'step').map((x) => x.loss as number);
    const a = losses(parallel.messages);
    const b = losses(single.messages);
    assert.equal(a.length, STEPS);
    a.forEach((x, i) => assert.ok(Math.abs(x - b[i]!) / b[i]! <= 1e-5, `step ${i + 1}: ${x} vs ${b[i]}`));
    assert.ok(
      parallel.lines.some((l) => /parallel: dp=2 tp=2 zero=3 \(4 ranks as worker threads over shared memory\)/.test(l)),
      parallel.lines.join('\n'),
    );
    const hello = parallel.messages.find((m) => m.type === 'hello')!;
    assert.equal(hello.world, 4);
    for (let rank = 0; rank < 4; rank++) {
      const mem = parallel.messages.filter((m) => m.type === 'memory' && m.rank === rank);
      assert.equal(mem.length, STEPS, `memory messages of rank ${rank}`);
      const last = mem[mem.length - 1] as { categories: Record<string, number>; predicted: Record<string, number>; device: string };
      assert.equal(last.device, `cpu:${rank}`);
      for (const c of ['params', 'grads', 'optimizer', 'activations']) assert.equal(last.categories[c], last.predicted[c], `rank ${rank} ${c}`);
      assert.equal(last.categories.buffers! + last.categories.gathered!, last.predicted.buffers, `rank ${rank} buffers`);
      const comm = parallel.messages.filter((m) => m.type === 'comm' && m.rank === rank).pop() as { collectives: { kind: string; calls: number }[] };
      const kinds = comm.collectives.map((c) => c.kind).sort();
      assert.deepEqual(kinds, ['all-gather-dp', 'all-reduce-tp', 'all-reduce-world', 'reduce-scatter-dp'], `rank ${rank} collectives`);
    }
    const ckpt = parallel.messages.filter((m) => m.type === 'checkpoint').pop() as { path: string };
    for (const t of [0, 1]) for (const d of [0, 1]) assert.ok(existsSync(join(dir.path, 'parallel', ckpt.path, `shard-tp${t}-dp${d}.safetensors`)));
  });

  it('Ctrl-C with rank processes (devices.transport tcp): every rank stops after the same step with a checkpoint; --resume continues the same metrics', async () => {
    const runDir = join(dir.path, 'ctrl-c');
    const child = spawn(
      process.execPath,
      [CLI, 'train', join(EXAMPLES, 'tiny-parallel.scalelm.json'), '--steps', '60', '--set', 'parallel.dp=2', '--set', 'parallel.zero=1', '--set', 'devices.transport=tcp', '--run-dir', runDir],
      {
        env: { ...process.env, SCALELM_MONITOR_TOKEN: 'a'.repeat(64) },
        detached: true, // its own process group, with the rank processes it forks: Ctrl-C in a terminal reaches all of them
      },
    );
    let out = '';
    let sent = false;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (!sent && /^step +3\/60/m.test(out)) {
        sent = true;
        process.kill(-child.pid!, 'SIGINT'); // the whole group, as a terminal does: ranks must leave it to the coordinator
      }
    });
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 130, out);
    const stopped = /stopped at step (\d+) — checkpoint/.exec(out);
    assert.ok(stopped, out);
    const r = spawnSync(process.execPath, [CLI, 'train', '--resume', runDir], { encoding: 'utf8', timeout: 240_000, env: { ...process.env, SCALELM_MONITOR_TOKEN: 'a'.repeat(64) } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`resuming after step ${stopped[1]}`));
    const steps = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((m) => m.type === 'step')
      .map((m) => m.step as number);
    assert.deepEqual(
      steps,
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
  });
});
