// Issue 12, the re-attack pass: what broke when the list was tried again against paths added after the first
// hardening pass (multi-node rank channel, calibrate, cluster profiles, launch --token-file) and what the
// first pass could not produce as root (a file system that is really read-only, via a mount namespace).
// Every case failed on the code before this pass.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { parseConfig } from '../../../runtime/config/parse';
import { LaunchedCommand, MAX_LINE_CHARS } from '../../../runtime/launch/command';
import { ChannelClient, ChannelServer, MAX_PENDING_PEERS, type RankReport } from '../../../runtime/parallel/channel';
import { until } from '../telemetry/util';
import { CLI, cli, oneLine, smallConfig } from './cli';
import { EXAMPLES, tempDir } from '../train/fixtures';

/** Runs `script` as root in a private mount namespace (so a bind mount can be made read-only), or says why it cannot. */
function inMountNamespace(script: string, timeout = 240_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script], { encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function readOnlyMountsWork(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: a read-only bind mount needs a mount namespace (unshare --mount)';
  const probe = inMountNamespace('d=$(mktemp -d) && mount --bind $d $d && mount -o remount,bind,ro $d && ! touch $d/x 2>/dev/null', 20_000);
  return probe.code === 0 ? undefined : `unshare --mount cannot make a read-only bind mount here (${probe.stderr.trim().slice(0, 200)})`;
}

describe('security re-attack: a run directory that is read-only, or holds links', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let run: string;
  before(() => {
    tmp = tempDir('scalelm-reattack-');
    run = join(tmp.path, 'run');
    const r = cli(['train', smallConfig(tmp.path), '--run-dir', run], 240_000);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => tmp.remove());

  it('--resume of a run directory on a read-only file system refuses in one line and changes nothing', function () {
    const why = readOnlyMountsWork();
    if (why) {
      console.log(`      skipped: ${why}`);
      return this.skip();
    }
    const size = statSync(join(run, 'metrics.jsonl')).size;
    const r = inMountNamespace(`mount --bind ${run} ${run} && mount -o remount,bind,ro ${run} && exec ${process.execPath} ${CLI} train --resume ${run} --steps 4`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^scalelm: cannot continue .*: .* is on a read-only file system; nothing was changed$/m);
    oneLine(r.stderr, /ENOENT:|EROFS:/);
    assert.equal(statSync(join(run, 'metrics.jsonl')).size, size);
  });

  it('a checkpoints folder turning read-only mid-run fails the run in one line; what was written stays, and it resumes', function () {
    const why = readOnlyMountsWork();
    if (why) {
      console.log(`      skipped: ${why}`);
      return this.skip();
    }
    const live = join(tmp.path, 'live');
    const ck = join(live, 'checkpoints');
    mkdirSync(ck, { recursive: true });
    const cfg = smallConfig(tmp.path, 200);
    // The bind mount is made before the run (so it has no writers on it yet), turned read-only once checkpoint
    // 10 is committed: the next checkpoint's folder cannot be created. (A mount with files open for writing,
    // like metrics.jsonl, cannot be remounted read-only: EBUSY; the checkpoints folder has none between saves.)
    const script = [
      `mount --bind ${ck} ${ck}`,
      `${process.execPath} ${CLI} train ${cfg} --run-dir ${live} --set train.checkpointEvery=10 --set train.evalEvery=1000 > ${live}.out 2> ${live}.err &`,
      'P=$!',
      `for i in $(seq 1200); do grep -q '"step":10,' ${ck}/latest.json 2>/dev/null && break; sleep 0.1; done`,
      `for i in $(seq 100); do mount -o remount,bind,ro ${ck} 2>/dev/null && break; sleep 0.05; done`,
      'wait $P; exit $?',
    ].join('\n');
    const r = inMountNamespace(script);
    const stderr = readFileSync(`${live}.err`, 'utf8');
    assert.equal(r.code, 1, stderr + r.stderr);
    assert.match(stderr, /^scalelm: rank 0, step \d+: cannot create the folder .*\.tmp-step-000020-.*: the file system is read-only$/m);
    oneLine(stderr, /ENOENT:|EROFS:/);
    const lines = readFileSync(join(live, 'metrics.jsonl'), 'utf8').trim().split('\n');
    const steps = lines.filter((l) => l.startsWith('{"type":"step"')).length;
    assert.ok(steps >= 20, `${steps} steps recorded`);
    assert.match(lines.at(-1)!, /"state":"failed".*read-only/);
    assert.deepEqual(JSON.parse(readFileSync(join(ck, 'latest.json'), 'utf8')), { step: 10, folder: 'step-000010' });
    // Outside the namespace the folder is writable again: the run continues from its last checkpoint.
    const resumed = cli(['train', '--resume', live, '--steps', '12'], 240_000);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming after step 10/);
  });

  it('a metrics.jsonl that is a symbolic link is refused on --resume; the file it points at is untouched', () => {
    const linked = join(tmp.path, 'linked');
    spawnSync('cp', ['-a', run, linked]);
    const victim = join(tmp.path, 'victim.jsonl');
    writeFileSync(victim, readFileSync(join(run, 'metrics.jsonl'), 'utf8') + 'IMPORTANT '.repeat(1000));
    const before = readFileSync(victim);
    rmSync(join(linked, 'metrics.jsonl'));
    symlinkSync(victim, join(linked, 'metrics.jsonl'));
    const r = cli(['train', '--resume', linked, '--steps', '3']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /metrics\.jsonl is a symbolic link: a run's files must be regular files; nothing was changed/);
    oneLine(r.stderr, /ENOENT:|EROFS:/);
    assert.ok(readFileSync(victim).equals(before), 'the linked file was not truncated or appended to');
  });

  it("a checkpoints folder linked to another run's is refused on --resume: that run's checkpoints are not written or pruned", () => {
    const other = join(tmp.path, 'other');
    spawnSync('cp', ['-a', run, other]);
    const before = spawnSync('ls', [join(other, 'checkpoints')], { encoding: 'utf8' }).stdout;
    const linked = join(tmp.path, 'linked-checkpoints');
    spawnSync('cp', ['-a', run, linked]);
    rmSync(join(linked, 'checkpoints'), { recursive: true });
    symlinkSync(join(other, 'checkpoints'), join(linked, 'checkpoints'));
    // Its metrics.jsonl matches the other run's checkpoint offset, so nothing else stops the resume.
    const r = cli(['train', '--resume', linked, '--steps', '4', '--set', 'train.checkpointEvery=1']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /checkpoints is a symbolic link: a run's folders must be inside its directory; nothing was changed/);
    oneLine(r.stderr, /ENOENT:|EROFS:/);
    assert.equal(spawnSync('ls', [join(other, 'checkpoints')], { encoding: 'utf8' }).stdout, before);
  });

  it('`scalelm serve RUNS` skips a run whose metrics.jsonl is a FIFO or /dev/zero and serves the others', async () => {
    const runs = join(tmp.path, 'runs');
    mkdirSync(join(runs, 'fifo'), { recursive: true });
    assert.equal(spawnSync('mkfifo', [join(runs, 'fifo', 'metrics.jsonl')]).status, 0);
    mkdirSync(join(runs, 'zero'));
    symlinkSync('/dev/zero', join(runs, 'zero', 'metrics.jsonl'));
    spawnSync('cp', ['-a', run, join(runs, 'good')]);
    const child = spawn(process.execPath, [CLI, 'serve', runs, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    try {
      await until(() => /dashboard: http/.test(err) || child.exitCode !== null, 'serve listening or ended', 1500);
      assert.equal(child.exitCode, null, err);
      assert.match(err, /fifo: skipped, .*fifo\/metrics\.jsonl: is not a regular file/);
      assert.match(err, /zero: skipped, .*zero\/metrics\.jsonl: is not a regular file/);
      assert.match(err, /^run: 2 steps/m);
    } finally {
      child.kill();
    }
  });

  it('a FIFO as metrics.jsonl of a fresh run directory is refused at once, not waited on', () => {
    const fifoRun = join(tmp.path, 'fifo-run');
    mkdirSync(fifoRun);
    assert.equal(spawnSync('mkfifo', [join(fifoRun, 'metrics.jsonl')]).status, 0);
    const r = cli(['train', smallConfig(tmp.path), '--run-dir', fifoRun], 60_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /metrics\.jsonl is a FIFO: a run's files must be regular files; nothing was changed/);
    oneLine(r.stderr, /ENOENT:|EROFS:/);
    // A link as logs/train.log is refused the same way, before config.json is written.
    const logRun = join(tmp.path, 'log-link-run');
    mkdirSync(join(logRun, 'logs'), { recursive: true });
    symlinkSync(join(tmp.path, 'elsewhere.log'), join(logRun, 'logs', 'train.log'));
    const log = cli(['train', smallConfig(tmp.path), '--run-dir', logRun], 60_000);
    assert.equal(log.code, 1, log.stderr);
    assert.match(log.stderr, /train\.log is a symbolic link: a run's files must be regular files; nothing was changed/);
    assert.equal(spawnSync('test', ['-e', join(logRun, 'config.json')]).status, 1, 'nothing written');
    assert.equal(spawnSync('test', ['-e', join(tmp.path, 'elsewhere.log')]).status, 1, 'the link was not followed');
  });
});

describe('security re-attack: calibrate and cluster profiles from elsewhere', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('scalelm-reattack-calibrate-')));
  after(() => tmp.remove());

  /** A recorded GPU run (hello, 10 timed steps, gpu samples) whose hello carries `config`. */
  function gpuRun(name: string, config: unknown): string {
    const dir = join(tmp.path, name);
    mkdirSync(dir);
    const lines: unknown[] = [{ type: 'hello', protocol: 1, runId: name, name, startedAt: 0, world: 1, config }];
    for (let step = 1; step <= 10; step++) {
      lines.push({ type: 'step', step, loss: 3, lr: 1e-4, gradNorm: 1, tokensPerSec: 1, stepMs: 1000, memory: { params: 0, grads: 0, optimizer: 0, activations: 0, peak: 2 ** 34 }, t: step });
      lines.push({
        type: 'gpu',
        t: step,
        devices: [
          {
            index: 0,
            uuid: 'GPU-0',
            name: 'NVIDIA H100 80GB HBM3',
            memoryUsed: 2 ** 35,
            memoryTotal: 2 ** 36,
            memoryReserved: null,
            utilPercent: 90,
            temperatureC: 60,
            powerW: 600,
            powerLimitW: 700,
            smClockMHz: 1980,
            processes: [{ pid: 100, memory: 2 ** 35, rank: 0 }],
            ranks: [0],
          },
        ],
      });
    }
    writeFileSync(join(dir, 'metrics.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    return dir;
  }

  it("a hello whose config is not a run's resolved config is refused; no profile of NaNs is written", () => {
    for (const [name, config, reason] of [
      ['shallow', { model: {}, train: {}, parallel: {}, cluster: { spec: {}, efficiency: 0.5 } }, /model\.layers is required/],
      ['huge', { model: { layers: 1e308, hidden: 64, heads: 2, vocab: 256, seqLen: 16 }, train: {}, parallel: {}, cluster: { spec: {}, efficiency: 0.5 } }, /model\.layers=1e\+308 must be at most/],
    ] as const) {
      const dir = gpuRun(name, config);
      const r = cli(['calibrate', dir], 30_000);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /^scalelm: the hello message's config is not a resolved ScaleLM config \(/m);
      assert.match(r.stderr, reason);
      oneLine(r.stderr, /ENOENT:|EROFS:/);
      assert.doesNotMatch(r.stdout, /NaN/);
      assert.equal(spawnSync('test', ['-e', join(dir, 'cluster-profile.json')]).status, 1, 'no profile written');
    }
  });

  it('a cluster-profile.json planted in the run as a symbolic link is refused, not written through', () => {
    const parsed = parseConfig({
      model: { preset: 'llama-2-7b' },
      train: { microBatch: 2, globalBatch: 64, flashAttention: true, precision: 'bf16-mixed' },
      parallel: { dp: 8, zero: 1 },
      cluster: { gpu: 'H100-SXM', gpusPerNode: 8, nodes: 1 },
    });
    assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
    const dir = gpuRun('linked', parsed.config);
    const victim = join(tmp.path, 'victim.txt');
    writeFileSync(victim, 'keep me\n');
    symlinkSync(victim, join(dir, 'cluster-profile.json'));
    const r = cli(['calibrate', dir], 30_000);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /cluster-profile\.json: is a symbolic link/);
    oneLine(r.stderr, /ENOENT:|EROFS:/);
    assert.equal(readFileSync(victim, 'utf8'), 'keep me\n');
  });

  it('`export --write` does not write through a link planted in a cloned repository as the output file', () => {
    const repo = join(tmp.path, 'repo');
    mkdirSync(repo);
    const config = join(repo, 'llama.scalelm.json');
    writeFileSync(config, readFileSync(join(EXAMPLES, 'llama-2-70b-h100.scalelm.json')));
    const victim = join(tmp.path, 'bashrc');
    writeFileSync(victim, 'keep me\n');
    symlinkSync(victim, join(repo, 'llama.torchrun.sh'));
    const r = cli(['export', config, '--to', 'torchrun', '--write'], 30_000);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^scalelm: .*llama\.torchrun\.sh: is a symbolic link, not followed/m);
    oneLine(r.stderr, /ENOENT:|EROFS:/);
    assert.equal(readFileSync(victim, 'utf8'), 'keep me\n');
  });

  it('a cluster profile with numbers out of their stated bounds, unknown or missing fields is refused in one line', () => {
    const good = { scalelmProfile: 1, gpu: 'H100-SXM', efficiency: 0.5, overheads: {}, fittedFrom: { run: 'r', measured: { stepMs: 1 }, predictedBefore: { stepMs: 1 }, notes: [] } };
    const config = join(EXAMPLES, 'llama-2-70b-h100.scalelm.json');
    const cases: [string, unknown, RegExp][] = [
      ['a valid one', good, /./],
      ['cudaContext 1e308', { ...good, overheads: { cudaContext: 1e308 } }, /overheads\.cudaContext: must be ≤ 1099511627776, got 1e\+308/],
      ['allocatorSlack 1e308', { ...good, overheads: { allocatorSlack: 1e308 } }, /overheads\.allocatorSlack: must be ≤ 10/],
      ['a zero bandwidth', { ...good, comm: { hostBandwidth: 0 } }, /comm\.hostBandwidth: must be more than 0/],
      ['a negative latency', { ...good, comm: { intraNodeLatency: -1 } }, /comm\.intraNodeLatency: must be ≥ 0/],
      ['an unknown comm field', { ...good, comm: { bandwidth: 1 } }, /comm\.bandwidth: is not a field/],
      ['no fittedFrom', { scalelmProfile: 1, gpu: 'H100-SXM', efficiency: 0.5, overheads: {} }, /fittedFrom: is required/],
      ['an escape sequence as the GPU', { ...good, gpu: '\u001b[2J' }, /gpu: does not match/],
    ];
    for (const [name, profile, reason] of cases) {
      const file = join(tmp.path, 'profile.json');
      writeFileSync(file, JSON.stringify(profile));
      const r = cli(['estimate', config, '--profile', file], 30_000);
      if (name === 'a valid one') {
        assert.equal(r.code, 0, r.stderr);
        continue;
      }
      assert.equal(r.code, 1, `${name}: ${r.stdout}`);
      assert.match(r.stderr, new RegExp(`^scalelm: cluster profile .*profile\\.json: ${reason.source}`, 'm'), name);
      oneLine(r.stderr, /ENOENT:|EROFS:/);
    }
  });
});

describe('security re-attack: the multi-node rank channel and its token file', function () {
  this.timeout(120_000);

  it('--token-file that is a FIFO (mode 0600) is refused at once instead of blocking the node', () => {
    const tmp = tempDir('scalelm-reattack-token-');
    try {
      const fifo = join(tmp.path, 'token');
      assert.equal(spawnSync('mkfifo', ['-m', '600', fifo]).status, 0);
      const r = cli(['launch', '--nnodes', '2', '--node-rank', '1', '--master', '127.0.0.1:9', '--token-file', fifo, '--', 'true'], 30_000);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^scalelm: --token-file \/.*\/token: is a FIFO, not a regular file$/m);
      oneLine(r.stderr, /ENOENT:|EROFS:/);
    } finally {
      tmp.remove();
    }
  });

  it('strangers on the TCP channel cannot make the coordinator hold more than a bounded amount: long first lines are dropped, extra silent peers refused at once', async () => {
    const got: RankReport[] = [];
    const rejected: string[] = [];
    const server = await ChannelServer.open((m) => got.push(m), { world: 1, tcp: { host: '127.0.0.1', port: 0 }, onReject: (r) => rejected.push(r), helloTimeoutMs: 60_000 });
    const port = Number(server.address.split(':').pop());
    const peers: Socket[] = [];
    const open = () =>
      new Promise<Socket>((resolve) => {
        const s = connect(port, '127.0.0.1', () => resolve(s));
        s.on('error', () => {});
        peers.push(s);
      });
    const closed = (s: Socket) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
    try {
      // 5000 bytes with no newline and no hello: a hello is far shorter, so the peer is dropped (it used to be
      // held, up to 1 MiB each, for the 10 s hello timeout, with no limit on how many).
      const long = await open();
      long.write(Buffer.alloc(5000, 0x61));
      await closed(long);
      assert.match(rejected.at(-1)!, /a first line longer than 4096 bytes/);
      // MAX_PENDING_PEERS silent strangers are held (for the hello timeout); the next one is refused at once.
      const silent = await Promise.all(Array.from({ length: MAX_PENDING_PEERS }, open));
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(
        silent.every((s) => !s.destroyed),
        'the first silent peers wait for their hello',
      );
      const extra = await open();
      await closed(extra);
      await until(() => rejected.some((r) => /too many at once/.test(r)), 'the extra peer refused');
      // Once they are gone, the run's real rank joins as always.
      for (const s of silent) s.destroy();
      await Promise.all(silent.map(closed));
      await new Promise((r) => setTimeout(r, 100));
      const rank = await ChannelClient.connect(server.address, server.token, { rank: 0, world: 1, engine: 'local' }, () => {});
      await until(() => got.some((m) => m.k === 'hello'), 'rank 0 joined');
      await rank.close();
    } finally {
      for (const s of peers) s.destroy();
      await server.close(200);
    }
  });
});

describe('security re-attack: a hung rank, through the CLI', function () {
  this.timeout(180_000);

  it('a rank process frozen mid-run (SIGSTOP) fails the run with one CommTimeoutError line, and leaves no process behind', async () => {
    const tmp = tempDir('scalelm-reattack-hung-');
    try {
      const cfg = join(tmp.path, 'hung.scalelm.json');
      writeFileSync(
        cfg,
        JSON.stringify({
          name: 'hung',
          model: { layers: 2, hidden: 32, heads: 2, vocab: 256, seqLen: 16 },
          train: { microBatch: 4, steps: 100_000, lr: 0.003, warmupSteps: 1, checkpointEvery: 100_000, evalEvery: 100_000 },
          parallel: { dp: 2 },
          devices: { backend: 'wasm', memory: '256MiB', count: 2, transport: 'tcp' },
          data: { source: 'text', path: join(EXAMPLES, 'data', 'tiny.txt') },
        }),
      );
      const run = join(tmp.path, 'run');
      // The comm timeout the rank processes read (runtime/comm/process-world.ts), short so the test is quick.
      const child = spawn(process.execPath, [CLI, 'train', cfg, '--run-dir', run], { env: { ...process.env, SCALELM_COMM_TIMEOUT_MS: '3000' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        await until(() => /"type":"step","step":3,/.test(readMetrics(run)), 'step 3 recorded', 3000, 20);
        const ranks = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
          .stdout.trim()
          .split('\n')
          .map(Number);
        const rank1 = ranks.find((pid) => /(^|\0)RANK=1(\0|$)/.test(readFileSync(`/proc/${pid}/environ`, 'latin1')));
        assert.ok(rank1, `rank 1 among ${ranks.join(', ')}`);
        process.kill(rank1, 'SIGSTOP');
        const code = await exited;
        assert.equal(code, 1, err);
        assert.match(err, /^scalelm: rank 0, step \d+: .*timed out after 3000 ms: rank 1 does not answer/m);
        oneLine(err, /ENOENT:|EROFS:/);
        for (const pid of ranks) assert.throws(() => process.kill(pid, 0), `rank process ${pid} is gone`);
      } finally {
        child.kill('SIGKILL');
      }
    } finally {
      tmp.remove();
    }
  });
});

function readMetrics(run: string): string {
  try {
    return readFileSync(join(run, 'metrics.jsonl'), 'utf8');
  } catch {
    return '';
  }
}

describe("security re-attack: a launched command's output", function () {
  this.timeout(60_000);

  it('a 4 MB line without a newline (a progress bar redrawn with \\r) comes through whole, in pieces of bounded size', async () => {
    const lines: string[] = [];
    // 40,000 redraws of a 100-character progress bar on stderr, no newline: what tqdm writes over a long run.
    const script = "import sys\nfor i in range(40000): sys.stderr.write('\\r%08d' % i + 'x' * 91)\nsys.stderr.write('\\ndone\\n')\n";
    const cmd = new LaunchedCommand(['python3', '-c', script], { env: process.env, onLine: (l, stream) => stream === 'stderr' && lines.push(l) });
    const end = await cmd.exited;
    assert.equal(end.code, 0);
    assert.ok(
      lines.every((l) => l.length <= MAX_LINE_CHARS),
      `longest piece ${Math.max(...lines.map((l) => l.length))} characters`,
    );
    assert.equal(lines.slice(0, -1).join('').length, 4_000_000, 'nothing lost');
    assert.equal(lines.at(-1), 'done');
    assert.ok(
      cmd.tail.every((l) => l.length <= MAX_LINE_CHARS),
      'the kept stderr tail is bounded too',
    );
  });
});
