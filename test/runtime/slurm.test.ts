// `scalelm export --to slurm` for real: a one-machine Slurm cluster (Debian's slurm-wlm 22.05: slurmctld and
// two slurmd, n0 and n1, on 127.0.0.1 with ports of their own — Slurm's multiple-slurmd setup — AuthType=
// auth/none so no munge, a gpu GRES of one "device" per node so the script's --gpus-per-node is honoured) runs
// the exported sbatch script through `sbatch --wait`: two tasks, one per "node", each running `scalelm launch`
// --nnodes 2 with torchrun under it (static rendezvous on node 0), the built-in torch trainer on CPU with
// gloo. It must be one run that finishes with every rank of both nodes reporting. slurmd starts job steps
// as root, so the test needs root; without it, or without slurm-wlm or torch, it says why and skips.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO, tempDir } from './train/fixtures';
import { findTorchPython } from './train/python';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const PACKAGE = process.env.SCALELM_PYTHON_PACKAGE ?? join(REPO, 'python');
const STEPS = 2;

/** A port nothing listens on now (the kernel's pick, released again). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function missingSlurm(): string | undefined {
  if (process.getuid?.() !== 0) return "slurmd starts job steps as root (it changes to the job's user): run as root";
  for (const tool of ['slurmctld', 'slurmd', 'sbatch', 'srun', 'scontrol', 'sinfo']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } }).status !== 0) return `${tool} is not installed (Debian: apt-get install slurm-wlm)`;
  }
  // auth/none (this test's munge-free cluster) left Slurm in 23.11 (Debian 13 ships 24.x): there the
  // real-cluster run is skipped with the reason; the export's own checks (bash -n, content) run everywhere.
  const v = /(\d+)\.(\d+)/.exec(spawnSync('slurmctld', ['-V'], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } }).stdout ?? '');
  if (!v) return 'slurmctld -V did not say which Slurm this is';
  if (Number(v[1]) * 100 + Number(v[2]) >= 2311) return `Slurm ${v[0]} has no auth/none, which this munge-free one-machine cluster needs (verified on 22.05)`;
  return undefined;
}

interface Cluster {
  conf: string;
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/** slurmctld + slurmd n0, n1 in the foreground as our children, idle and ready, or an Error with their logs. */
async function startCluster(dir: string): Promise<Cluster> {
  const [ctld, d0, d1] = [await freePort(), await freePort(), await freePort()];
  for (const d of ['state', 'spool-n0', 'spool-n1']) mkdirSync(join(dir, d));
  const conf = join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=scalelmtest',
      // slurmctld runs only where SlurmctldHost names this machine.
      `SlurmctldHost=${hostname()}(127.0.0.1)`,
      `SlurmctldPort=${ctld}`,
      'AuthType=auth/none',
      'CredType=cred/none',
      'SlurmUser=root',
      'SlurmdUser=root',
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool-%n`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd-%n.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd-%n.log`,
      'ProctrackType=proctrack/pgid',
      'TaskPlugin=task/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'SchedulerType=sched/builtin',
      'ReturnToService=2',
      'MpiDefault=none',
      'JobCompType=jobcomp/none',
      'AccountingStorageType=accounting_storage/none',
      'JobAcctGatherType=jobacct_gather/none',
      'SwitchType=switch/none',
      'GresTypes=gpu',
      // The nodes as configured (8 CPUs, one gpu), not as this machine's hardware is.
      'SlurmdParameters=config_overrides',
      `NodeName=n0 NodeHostname=${hostname()} NodeAddr=127.0.0.1 Port=${d0} CPUs=8 RealMemory=1000 Gres=gpu:1`,
      `NodeName=n1 NodeHostname=${hostname()} NodeAddr=127.0.0.1 Port=${d1} CPUs=8 RealMemory=1000 Gres=gpu:1`,
      'PartitionName=test Nodes=n0,n1 Default=YES MaxTime=INFINITE State=UP',
      '',
    ].join('\n'),
  );
  // One gpu per node, bound to /dev/null: what makes --gpus-per-node=1 schedulable without a GPU.
  writeFileSync(join(dir, 'gres.conf'), 'AutoDetect=off\nName=gpu File=/dev/null\n');
  const env = { ...process.env, SLURM_CONF: conf, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
  const daemons: ChildProcess[] = [];
  const start = (cmd: string, args: string[]) => {
    const c = spawn(cmd, args, { env, stdio: 'ignore' });
    c.on('error', () => {});
    daemons.push(c);
  };
  const stop = async () => {
    // A job still there (the test failed or timed out) is cancelled first, so no job step outlives the cluster.
    const jobs = () => (spawnSync('squeue', ['-h', '-o', '%i'], { env, encoding: 'utf8', timeout: 10_000 }).stdout ?? '').split('\n').filter(Boolean);
    if (jobs().length) {
      spawnSync('scancel', ['--full', ...jobs()], { env, timeout: 10_000 });
      for (let i = 0; i < 50 && jobs().length; i++) await new Promise((r) => setTimeout(r, 200));
    }
    for (const c of daemons) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all(
      daemons.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const t = setTimeout(() => c.kill('SIGKILL'), 5000);
            c.once('exit', () => (clearTimeout(t), resolve()));
          }),
      ),
    );
  };
  start('slurmctld', ['-D', '-f', conf]);
  start('slurmd', ['-D', '-f', conf, '-N', 'n0']);
  start('slurmd', ['-D', '-f', conf, '-N', 'n1']);
  const deadline = Date.now() + 30_000;
  let states = '';
  while (Date.now() < deadline) {
    states = spawnSync('sinfo', ['-h', '-N', '-o', '%N %T'], { env, encoding: 'utf8' }).stdout?.trim() ?? '';
    if (/^n0 idle$/m.test(states) && /^n1 idle$/m.test(states)) return { conf, env, stop };
    await new Promise((r) => setTimeout(r, 300));
  }
  await stop();
  const log = (f: string) =>
    existsSync(join(dir, f))
      ? readFileSync(join(dir, f), 'utf8')
          .split('\n')
          .filter((l) => /error/.test(l) && !/pmix|state file|backup state/i.test(l))
          .slice(-5)
          .join('\n')
      : '';
  throw new Error(`the test cluster did not come up in 30 s (sinfo: ${states || 'nothing'})\n${log('slurmctld.log')}\n${log('slurmd-n0.log')}`);
}

describe('Slurm: the exported sbatch script on a one-machine cluster (2 nodes × 1 task, torchrun + gloo)', function () {
  this.timeout(300_000);
  const found = findTorchPython();
  const missing = missingSlurm();
  let dir: ReturnType<typeof tempDir>;
  let cluster: Cluster | undefined;

  before(async function () {
    const why =
      missing ??
      ('missing' in found ? found.missing : !existsSync(join(dirname((found as { python: string }).python), 'torchrun')) ? `no torchrun beside ${(found as { python: string }).python}` : undefined);
    if (why) {
      console.log(`      NOTICE: skipping: ${why}`);
      this.skip();
    }
    dir = tempDir('scalelm-slurm-');
    cluster = await startCluster(dir.path);
  });
  after(async () => {
    await cluster?.stop();
    dir?.remove();
  });

  it('sbatch --wait runs the script: one scalelm launch per node, torchrun --nnodes 2, every rank reports, the run finishes', () => {
    const cfg = join(dir.path, 'job.scalelm.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        name: 'slurm-tiny',
        model: { preset: 'tiny' },
        train: { microBatch: 2, globalBatch: 4, steps: STEPS, lr: 0.001, warmupSteps: 1, checkpointEvery: 0 },
        parallel: { dp: 2, tp: 1, zero: 0 },
        cluster: { gpu: 'H100-SXM', gpusPerNode: 1, nodes: 2 },
      }),
    );
    const exp = spawnSync(process.execPath, [CLI, 'export', cfg, '--to', 'slurm', '--write'], { encoding: 'utf8' });
    assert.equal(exp.status, 0, exp.stderr);
    const scriptFile = exp.stdout.trim();
    assert.equal(scriptFile, join(dir.path, 'job.slurm.sh'));
    const script = readFileSync(scriptFile, 'utf8');
    assert.match(script, /--nnodes "\$SLURM_NNODES" --node-rank "\$SLURM_NODEID" --master "\$MASTER_ADDR:\$SCALELM_PORT" --/);
    const bin = join(dir.path, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'scalelm'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`, { mode: 0o755 });
    const submit = join(dir.path, 'submit');
    mkdirSync(submit);
    const python = (found as { python: string }).python;
    const r = spawnSync('sbatch', ['--wait', `--chdir=${submit}`, scriptFile], {
      encoding: 'utf8',
      timeout: 240_000,
      // srun hands this environment to both tasks: the CLI and torchrun on PATH, the package, CPU training.
      env: { ...cluster!.env, PATH: `${bin}:${dirname(python)}:${cluster!.env.PATH}`, SCALELM_DEVICE: 'cpu', SCALELM_PYTHON_PACKAGE: PACKAGE, OMP_NUM_THREADS: '1' },
    });
    const jobId = /Submitted batch job (\d+)/.exec(r.stdout)?.[1];
    const out = jobId && existsSync(join(submit, `slurm-tiny-${jobId}.out`)) ? readFileSync(join(submit, `slurm-tiny-${jobId}.out`), 'utf8') : '(no output file)';
    assert.equal(r.status, 0, `sbatch: ${r.stdout}${r.stderr}\njob output:\n${out}`);
    assert.match(out, /^scalelm: job \d+, 2 nodes from n0 \(127\.0\.0\.1\)/m);
    const jobDir = join(submit, 'runs', `slurm-tiny-${jobId}`);
    // The trainer's args (the whole run config) are the user's alone.
    assert.equal(statSync(join(jobDir, 'torch-args.json')).mode & 0o777, 0o600);
    const messages = readFileSync(join(jobDir, 'run', 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const hello = messages[0]!;
    assert.equal(hello.type, 'hello');
    assert.equal(hello.world, 2);
    // Node 0's launch is the run: its torchrun command, node rank 0.
    const command = (hello.config as { launch: { command: string[] } }).launch.command;
    assert.deepEqual(command.slice(0, 7), ['torchrun', '--nnodes', '2', '--node-rank', '0', '--nproc-per-node', '1']);
    assert.deepEqual(
      messages.filter((m) => m.type === 'step').map((m) => m.step),
      Array.from({ length: STEPS }, (_, i) => i + 1),
    );
    for (const m of messages.filter((x) => x.type === 'step')) assert.ok(Number.isFinite(m.loss) && (m.loss as number) > 0);
    assert.equal(messages.filter((m) => m.type === 'status').at(-1)!.state, 'finished');
    // Every rank of both nodes joined the one run (node 1's rank through node 0's channel) and reported.
    const logs = messages.filter((m) => m.type === 'log').map((m) => m.message as string);
    for (const [rank, node] of [
      [0, 0],
      [1, 1],
    ])
      assert.ok(
        logs.some((l) => new RegExp(`^rank ${rank} of 2 joined \\(pid \\d+ on .*, node ${node}\\)$`).test(l)),
        `rank ${rank} joined from node ${node}:\n${logs.join('\n')}`,
      );
    assert.deepEqual([...new Set(messages.filter((m) => m.type === 'memory').map((m) => m.rank as number))].sort(), [0, 1]);
    // The trainer's last-step checkpoint: every rank took part in gathering it (SCALELM_RUN_DIR on every node).
    assert.ok(existsSync(join(jobDir, 'run', 'checkpoints', `step-${String(STEPS).padStart(6, '0')}`)), "the last step's checkpoint");
    // Nothing of the job is left running on the "nodes".
    const left = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(jobDir);
        } catch {
          return false;
        }
      });
    assert.deepEqual(left, [], 'processes of the job still running');
  });
});
