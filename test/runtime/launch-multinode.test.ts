// `scalelm launch --nnodes 2` on two machines: two network namespaces joined by a veth pair, each with its own
// address, so the rank channel, torchrun's store and gloo really cross an interface. On each, `scalelm launch
// --node-rank K` runs `torchrun --nnodes 2 --node-rank K` of a DDP script that uses scalelm.Monitor; the run is
// node 0's: 4 ranks, memory tagged with each rank's node, each node's GPUs (a fake nvidia-smi replaying the
// H200 capture, a real child process) with its node. Also: a wrong token from the second node is refused, a
// rank killed on node 1 fails the run naming node and rank, Stop on node 0 stops node 1, nothing is left running.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, running, tempDir } from './train/fixtures';
import { torchPythonForSuite } from './train/python';
import { fakeNvidiaSmi, type FakeGpu } from './telemetry/fake-gpu';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');

// A user's own DDP script: two lines of scalelm. DIE="RANK:STEP" SIGKILLs that rank after it reported that step; STEPS, SLEEP pace it.
const SCRIPT = `
import os, signal, time, torch, torch.distributed as dist, scalelm
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
ddp = DDP(model)
opt = torch.optim.SGD(model.parameters(), lr=1e-2)
monitor = scalelm.Monitor(model, opt, name="two-nodes")
die = os.environ.get("DIE", "")
for step in range(1, int(os.environ.get("STEPS", "4")) + 1):
    loss = ddp(torch.randn(8, 16)).pow(2).mean()
    loss.backward()
    opt.step()
    monitor.step(loss=loss, tokens=8)
    if die == f"{rank}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
    opt.zero_grad()
    time.sleep(float(os.environ.get("SLEEP", "0")))
monitor.close()
dist.barrier()
dist.destroy_process_group()
`;

const TOKEN = 'ab'.repeat(32);
type Msg = Record<string, unknown>;

/** Whether this machine lets us make network namespaces (root with CAP_NET_ADMIN); the reason when not. */
function netnsUnavailable(): string | null {
  const probe = `scalelm-probe-${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.error) return `no iproute2 (ip: ${(r.error as NodeJS.ErrnoException).code})`;
  if (r.status !== 0) return `ip netns add is not permitted here: ${r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return null;
}

describe('cli: scalelm launch --nnodes 2 on two network namespaces (torchrun, gloo, scalelm.Monitor)', function () {
  this.timeout(300_000);
  const torchPython = torchPythonForSuite();
  // Unique per test process: namespaces and interface names (15 characters at most) and a subnet.
  const id = process.pid % 100_000;
  const ns = [`scalelm-${id}-n0`, `scalelm-${id}-n1`];
  const veth = [`slm${id}a`, `slm${id}b`];
  const subnet = `10.${200 + (id % 50)}.${Math.floor(id / 50) % 250}`;
  const addr = [`${subnet}.1`, `${subnet}.2`];
  const CHANNEL_PORT = 29600;
  let made = false;
  let dir: ReturnType<typeof tempDir>;
  let gpus: FakeGpu[] = [];
  const children: ChildProcess[] = [];

  const ip = (...args: string[]): void => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };

  before(function () {
    const why = netnsUnavailable();
    if (why) {
      console.log(`      NOTICE: skipping: ${why}`);
      this.skip();
    }
    made = true;
    for (const n of ns) ip('netns', 'add', n);
    ip('link', 'add', veth[0]!, 'type', 'veth', 'peer', 'name', veth[1]!);
    for (const k of [0, 1]) {
      ip('link', 'set', veth[k]!, 'netns', ns[k]!);
      ip('-n', ns[k]!, 'addr', 'add', `${addr[k]}/24`, 'dev', veth[k]!);
      ip('-n', ns[k]!, 'link', 'set', veth[k]!, 'up');
      ip('-n', ns[k]!, 'link', 'set', 'lo', 'up');
    }
  });

  after(() => {
    // (afterEach killed what ran inside.) Deleting a namespace removes its end of the veth pair, and with it the other end.
    if (made) for (const n of ns) spawnSync('ip', ['netns', 'del', n]);
  });

  beforeEach(() => {
    dir = tempDir('scalelm-multinode-');
    writeFileSync(join(dir.path, 'train.py'), SCRIPT);
    // Node 0 has 2 GPUs, node 1 has 4: which node a sample came from shows in its device count too.
    gpus = [fakeNvidiaSmi({ gpus: 2 }), fakeNvidiaSmi({ gpus: 4 })];
  });

  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // After a failed test: whatever still runs inside the namespaces (ranks, torchrun agents, samplers) goes too.
    for (const n of made ? ns : []) {
      for (const pid of spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const g of gpus) rmSync(g.dir, { recursive: true, force: true });
    dir.remove();
  });

  interface Node {
    child: ChildProcess;
    out: () => string;
    err: () => string;
    exited: Promise<number | null>;
  }

  /** `scalelm launch --nnodes 2 --node-rank K … -- torchrun --nnodes 2 --node-rank K …` inside namespace K. */
  const startNode = (k: number, o: { env?: Record<string, string>; command?: string[]; launchArgs?: string[] } = {}): Node => {
    const python = torchPython();
    const torchrun = [
      python,
      '-m',
      'torch.distributed.run',
      '--nnodes',
      '2',
      '--node-rank',
      String(k),
      '--nproc-per-node',
      '2',
      '--master-addr',
      addr[0]!,
      '--master-port',
      '29500',
      '--max-restarts',
      '0',
      'train.py',
    ];
    const args = [
      'netns',
      'exec',
      ns[k]!,
      process.execPath,
      CLI,
      'launch',
      '--nnodes',
      '2',
      '--node-rank',
      String(k),
      '--master',
      `${addr[0]}:${CHANNEL_PORT}`,
      '--run-dir',
      join(dir.path, 'run'),
      '--stop-timeout-ms',
      '5000',
      ...(o.launchArgs ?? []),
      '--',
      ...(o.command ?? torchrun),
    ];
    const child = spawn('ip', args, {
      cwd: dir.path,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...gpus[k]!.env,
        PYTHONPATH: join(REPO, 'python'),
        OMP_NUM_THREADS: '1',
        GLOO_SOCKET_IFNAME: veth[k]!, // the namespace's only interface besides lo
        SCALELM_RUN_TOKEN: TOKEN,
        SCALELM_MONITOR_TOKEN: 'c'.repeat(64),
        ...o.env,
      },
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    return { child, out: () => out, err: () => err, exited };
  };

  const metrics = (): Msg[] =>
    readFileSync(join(dir.path, 'run', 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Msg);

  const until = async (what: string, cond: () => boolean, node: Node): Promise<void> => {
    for (let i = 0; !cond(); i++) {
      if (i > 2400 || node.child.exitCode !== null) throw new Error(`${what} did not happen: ${node.err().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const rankPids = (node0: Node): number[] => [...node0.err().matchAll(/joined \(pid (\d+)/g)].map((m) => Number(m[1]));

  it("one run of 4 ranks in 2 node groups, each node's GPUs with its node; a second node with a wrong token is refused", async () => {
    const node0 = startNode(0);
    await until('node 0 listening', () => /rank channel listening on tcp:/.test(node0.err()), node0);
    assert.match(node0.err(), new RegExp(`rank channel listening on tcp:${addr[0]!.replace(/\./g, '\\.')}:${CHANNEL_PORT} \\(beyond loopback.*every peer must present the run token`));

    // A node with the wrong token: refused with a clear error; its command never runs; the run goes on.
    const bad = startNode(1, { env: { SCALELM_RUN_TOKEN: 'cd'.repeat(32) }, command: ['sh', '-c', 'echo the-command-ran'] });
    const badCode = await bad.exited;
    assert.equal(badCode, 1, bad.err());
    assert.match(bad.err(), /scalelm: node 1: the coordinator at tcp:[\d.]+:29600 refused this node: the run token differs from node 0's/);
    assert.doesNotMatch(bad.out(), /the-command-ran/);
    await until('the refusal logged on node 0', () => /dropped a peer that sent a node hello with a wrong token/.test(node0.err()), node0);

    const node1 = startNode(1);
    const [code0, code1] = await Promise.all([node0.exited, node1.exited]);
    assert.equal(code1, 0, node1.err());
    assert.equal(code0, 0, node0.err());
    assert.match(node1.err(), /node 1: joined the run at tcp:[\d.]+:29600 as node 1 of 2/);
    assert.match(node0.err(), /node 1 of 2 joined from /);

    const messages = metrics();
    const hello = messages[0]!;
    assert.equal(hello.type, 'hello');
    assert.equal(hello.world, 4);
    assert.deepEqual(
      messages.filter((m) => m.type === 'step').map((m) => m.step),
      [1, 2, 3, 4],
    );
    for (const rank of [0, 1, 2, 3]) {
      const mem = messages.filter((m) => m.type === 'memory' && m.rank === rank);
      assert.deepEqual(
        mem.map((m) => m.step),
        [1, 2, 3, 4],
        `rank ${rank}`,
      );
      for (const m of mem) assert.equal((m.node as { rank: number }).rank, rank < 2 ? 0 : 1, `rank ${rank}: ${JSON.stringify(m.node)}`);
    }
    // Each node's sampler read its own fake nvidia-smi; node 1's readings crossed the veth to node 0.
    const gpuMsgs = messages.filter((m) => m.type === 'gpu') as { node?: { rank: number; host: string }; devices: unknown[] }[];
    const ofNode = (k: number) => gpuMsgs.filter((m) => m.node?.rank === k);
    assert.ok(ofNode(1).length > 0, `no gpu message from node 1 (${gpuMsgs.length} gpu messages)`);
    assert.ok(ofNode(0).length > 0, `no gpu message from node 0 (${gpuMsgs.length} gpu messages)`);
    assert.ok(ofNode(1).every((m) => m.devices.length === 4));
    assert.ok(ofNode(0).every((m) => m.devices.length === 2));
    assert.ok(gpuMsgs.every((m) => m.node !== undefined));
    assert.equal(gpus[1]!.invocations().length > 0, true);
    const last = messages.at(-1)!;
    assert.equal(last.type, 'status');
    assert.equal(last.state, 'finished', JSON.stringify(last));
    // Only node 0 keeps a run: node 1 wrote nothing there (it has no run folder of its own).
    assert.equal(existsSync(join(dir.path, 'run', 'metrics.jsonl')), true);
  });

  it('a rank killed on node 1 fails the run naming node 1 and the rank; nothing is left running', async () => {
    const env = { DIE: '3:3', STEPS: '50' };
    const node0 = startNode(0, { env });
    await until('node 0 listening', () => /rank channel listening/.test(node0.err()), node0);
    const node1 = startNode(1, { env });
    const [code0, code1] = await Promise.all([node0.exited, node1.exited]);
    assert.notEqual(code1, 0);
    assert.notEqual(code0, 0);
    assert.match(node0.err(), /scalelm: node 1 \([^)]+\): rank 3, step 3: its process ended before it finished \(node 1's command ended with exit 1\)/);
    const status = metrics()
      .filter((m) => m.type === 'status')
      .at(-1)!;
    assert.equal(status.state, 'failed');
    assert.match((status.error as { message: string }).message, /^node 1 \([^)]+\): rank 3, step 3/);
    const pids = rankPids(node0);
    assert.equal(pids.length, 4, node0.err());
    await new Promise((r) => setTimeout(r, 300));
    for (const pid of pids) assert.equal(running(pid), false, `rank pid ${pid} left running`);
  });

  it("Stop (Ctrl-C) on node 0 stops node 1's command too: the run ends stopped, nothing is left running", async () => {
    const env = { STEPS: '100000', SLEEP: '0.05' };
    const node0 = startNode(0, { env });
    await until('node 0 listening', () => /rank channel listening/.test(node0.err()), node0);
    const node1 = startNode(1, { env });
    await until('all 4 ranks and a step', () => rankPids(node0).length === 4 && /"type":"step"/.test(readFileSync(join(dir.path, 'run', 'metrics.jsonl'), 'utf8')), node0);
    const pids = rankPids(node0);
    node0.child.kill('SIGINT'); // `ip netns exec` became node (exec), so this is scalelm's own Ctrl-C
    const [code0] = await Promise.all([node0.exited, node1.exited]);
    assert.match(node1.err(), /node 1: stopping the command: node 0 asked/);
    const status = metrics()
      .filter((m) => m.type === 'status')
      .at(-1)!;
    assert.equal(status.state, 'stopped', JSON.stringify(status));
    assert.notEqual(code0, null);
    await new Promise((r) => setTimeout(r, 300));
    for (const pid of pids) assert.equal(running(pid), false, `rank pid ${pid} left running`);
  });
});

describe('cli: scalelm launch multi-node flags', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => (dir = tempDir('scalelm-mnflags-')));
  afterEach(() => dir.remove());

  const launch = (args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [CLI, 'launch', ...args, '--', 'sh', '-c', 'echo the-command-ran'], {
      encoding: 'utf8',
      cwd: dir.path,
      env: { ...process.env, SCALELM_RUN_TOKEN: '', ...env },
    });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /the-command-ran/);
    assert.equal(existsSync(join(dir.path, 'runs')), false, 'nothing is created');
    return r.stderr;
  };
  const token = { SCALELM_RUN_TOKEN: TOKEN };

  it('bad combinations: one clear error each, exit 2, nothing run or created', () => {
    assert.match(launch(['--nnodes', '2', '--node-rank', '2', '--master', '10.0.0.1:29600'], token), /--node-rank 2 is outside 0\.\.1 \(--nnodes 2\)/);
    assert.match(launch(['--nnodes', '2', '--node-rank', '1'], token), /--nnodes 2 needs --master ADDR:PORT/);
    assert.match(launch(['--nnodes', '2', '--master', '10.0.0.1:29600'], token), /--nnodes 2 needs --node-rank K/);
    assert.match(launch(['--node-rank', '1', '--master', '10.0.0.1:29600'], token), /--node-rank is for a multi-node launch: give --nnodes N/);
    assert.match(launch(['--nnodes', '2', '--node-rank', '0', '--master', '10.0.0.1'], token), /--master must be ADDR:PORT with a port from 1 to 65535/);
    assert.match(launch(['--nnodes', '2', '--node-rank', '0', '--master', '10.0.0.1:0'], token), /--master must be ADDR:PORT/);
    assert.match(launch(['--nnodes', '1', '--node-rank', '0'], token), /--nnodes 1 is a one-machine launch: leave out --node-rank/);
    assert.match(launch(['--nnodes', '2', '--node-rank', '0', '--master', '10.0.0.1:29600', '--join-timeout-s', '0'], token), /--join-timeout-s must be a whole number from 1 to 86400, got "0"/);
  });

  it('the run token: required, 64 hex digits, a private file, never two different ones', () => {
    const mn = ['--nnodes', '2', '--node-rank', '1', '--master', '10.0.0.1:29600'];
    assert.match(launch(mn), /a multi-node launch needs the run token on every node: set SCALELM_RUN_TOKEN or give --token-file F/);
    assert.match(launch(mn, { SCALELM_RUN_TOKEN: 'secret' }), /SCALELM_RUN_TOKEN must be the same 64 lowercase hex digits on every node/);
    const file = join(dir.path, 'token');
    writeFileSync(file, TOKEN + '\n');
    chmodSync(file, 0o644);
    assert.match(launch([...mn, '--token-file', file]), /--token-file .* is readable by others \(mode 644\): the run token must be private, run chmod 600/);
    chmodSync(file, 0o600);
    assert.match(launch([...mn, '--token-file', file], { SCALELM_RUN_TOKEN: 'cd'.repeat(32) }), /SCALELM_RUN_TOKEN and --token-file .* hold different tokens/);
    writeFileSync(file, 'short\n');
    assert.match(launch([...mn, '--token-file', file]), /--token-file .* must hold the same 64 lowercase hex digits/);
    assert.match(launch([...mn, '--token-file', join(dir.path, 'absent')]), /--token-file .*absent: ENOENT/);
  });
});

// The node protocol without torch, on loopback (no namespaces needed): how a node's end reaches node 0.
describe('cli: scalelm launch --nnodes 2 on one machine (loopback, plain commands)', function () {
  this.timeout(120_000);
  let dir: ReturnType<typeof tempDir>;
  const started: ChildProcess[] = [];
  beforeEach(() => (dir = tempDir('scalelm-mnloop-')));
  afterEach(() => {
    for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    dir.remove();
  });

  const freePort = (): Promise<number> =>
    new Promise((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as AddressInfo).port;
        s.close(() => resolve(port));
      });
    });

  const node = (k: number, port: number, command: string, extra: string[] = []) => {
    const child = spawn(
      process.execPath,
      [CLI, 'launch', '--nnodes', '2', '--node-rank', String(k), '--master', `127.0.0.1:${port}`, '--run-dir', join(dir.path, 'run'), '--stop-timeout-ms', '3000', ...extra, '--', 'sh', '-c', command],
      {
        cwd: dir.path,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PATH: `${tempDir('scalelm-no-smi-').path}:${process.env.PATH ?? ''}`, SCALELM_RUN_TOKEN: TOKEN, SCALELM_MONITOR_TOKEN: 'c'.repeat(64) },
      },
    );
    started.push(child);
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout!.resume();
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    return { child, err: () => err, exited };
  };

  const waitFor = async (what: string, cond: () => boolean): Promise<void> => {
    for (let i = 0; !cond(); i++) {
      if (i > 1200) throw new Error(`${what} did not happen`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it("node 1's command fails before any rank: the run fails naming node 1 with its stderr; node 0's command is stopped", async () => {
    const port = await freePort();
    const n0 = node(0, port, 'echo $$ > node0.pid; exec sleep 60');
    await waitFor('node 0 listening', () => /rank channel listening/.test(n0.err()));
    const n1 = node(1, port, 'echo no-such-script.py >&2; exit 3');
    assert.equal(await n1.exited, 3);
    const code0 = await n0.exited; // well before sleep 60 ends: node 0 stopped its own command
    assert.notEqual(code0, 0);
    assert.match(n0.err(), /scalelm: node 1 \([^)]+\): its command ended with exit 3:\nno-such-script\.py/);
    const status = metrics(join(dir.path, 'run'))
      .filter((m) => m.type === 'status')
      .at(-1)!;
    assert.equal(status.state, 'failed');
    assert.equal(running(Number(readFileSync(join(dir.path, 'node0.pid'), 'utf8'))), false);
  });

  it('a node that never joins: after --join-timeout-s the run fails naming it; node 0 stops its command', async () => {
    const port = await freePort();
    const n0 = node(0, port, 'echo $$ > node0.pid; exec sleep 60', ['--join-timeout-s', '2']);
    const code0 = await n0.exited; // long before sleep 60 ends
    assert.notEqual(code0, 0);
    assert.match(n0.err(), /node 1 of 2 did not join within 2 s: is `scalelm launch --node-rank K` running there, with --master 127\.0\.0\.1:\d+ and the same run token\?/);
    const status = metrics(join(dir.path, 'run'))
      .filter((m) => m.type === 'status')
      .at(-1)!;
    assert.equal(status.state, 'failed');
    assert.match(JSON.stringify(status), /node 1 \(unknown host\): node 1 never joined the run/);
    assert.equal(running(Number(readFileSync(join(dir.path, 'node0.pid'), 'utf8'))), false);
  });

  it('node 0 gone (killed): node 1 stops its command, nothing left running', async () => {
    const port = await freePort();
    const n0 = node(0, port, 'exec sleep 60');
    await waitFor('node 0 listening', () => /rank channel listening/.test(n0.err()));
    const n1 = node(1, port, 'echo $$ > node1.pid; exec sleep 60');
    await waitFor('node 1 joined', () => /node 1 of 2 joined/.test(n0.err()) && existsSync(join(dir.path, 'node1.pid')));
    n0.child.kill('SIGKILL');
    const code1 = await n1.exited;
    assert.notEqual(code1, 0);
    assert.match(n1.err(), /node 1: stopping the command: the connection to node 0 closed/);
    assert.equal(running(Number(readFileSync(join(dir.path, 'node1.pid'), 'utf8'))), false);
  });
});

function metrics(runDir: string): Msg[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Msg);
}
