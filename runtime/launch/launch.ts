// `scalelm launch -- <command…>`: any training command (torchrun, python, deepspeed) as one ScaleLM run. The
// command runs in its own process group with the rank channel in its environment (SCALELM_CHANNEL,
// SCALELM_CHANNEL_TOKEN, SCALELM_RUN_DIR); its ranks report through the `scalelm` Python Monitor
// (docs/rank-channel.md, engine "monitor") and everything they send is published to the run like a
// `scalelm train` run's messages. The run ends with the command's exit status; a rank whose channel closes
// before it said `done` while the command fails is named. Stop = SIGINT to the group, SIGKILL after a timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Message } from '../../common/protocol';
import { ChannelServer, type RankReport } from '../parallel/channel';
import { rootFailure, type RankFailure } from '../engines/torch/failure';
import { bundledPythonPath, descendants } from '../engines/torch/torchrun';
import type { RunDir } from '../train/run-dir';
import { RunEvents } from '../train/run-events';

export interface LaunchSetup {
  name: string;
  command: string[];
  runDir: RunDir;
  cwd?: string;
  /** Extra environment for the command (a config's launch.env). */
  env?: Record<string, string>;
  /** After Stop (SIGINT to the group), how long before SIGKILL (ms). */
  stopTimeoutMs?: number;
  /** The command's own stdout/stderr lines. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  log?: (line: string) => void;
}

export interface LaunchResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the command failed: what the run's failed status says. */
  error?: string;
}

const now = (): number => Date.now();

export class LaunchRun extends RunEvents {
  world = 1;
  step = 0;
  private channel?: ChannelServer;
  private child?: ChildProcess;
  private helloSent = false;
  private readonly pids = new Map<number, number>();
  private readonly progress = new Map<number, number>();
  private readonly finished = new Set<number>();
  private readonly failures: RankFailure[] = [];
  private readonly tail: string[] = [];
  private stopping = false;

  constructor(readonly setup: LaunchSetup) {
    super();
    this.subscribe((m) => setup.runDir.publish(m));
  }

  protected get lineSinks() {
    return { ...(this.setup.log ? { log: this.setup.log } : {}), runDir: this.setup.runDir };
  }

  /** Stop: SIGINT to the command's process group (torchrun forwards it to its ranks), SIGKILL after the timeout. */
  requestStop(): void {
    if (this.stopping || !this.child?.pid) return;
    this.stopping = true;
    this.publish({ type: 'status', state: 'stopping', t: now(), step: this.step, reason: 'stop requested' });
    this.signalAll('SIGINT');
    setTimeout(() => this.signalAll('SIGKILL'), this.setup.stopTimeoutMs ?? 15_000).unref();
  }

  /** A user's script decides its own checkpoints: the request is logged, nothing else. */
  requestCheckpoint(): void {
    this.log('checkpoint requested: a launched command saves on its own schedule (the request is not forwarded)', 'warn');
  }

  private signalAll(signal: NodeJS.Signals): void {
    const root = this.child?.pid;
    if (root === undefined || this.child!.exitCode !== null) return;
    // torchrun starts its ranks in sessions of their own: signal every group under the command.
    for (const p of [...descendants(root), ...this.pids.values()]) {
      for (const target of [-p, p]) {
        try {
          process.kill(target, signal);
        } catch {
          // gone
        }
      }
    }
    try {
      process.kill(-root, signal);
    } catch {
      // gone
    }
  }

  private announce(world: number): void {
    if (this.helloSent) return;
    this.helloSent = true;
    this.world = world;
    this.publish({
      type: 'hello', protocol: 1, runId: this.setup.runDir.runId, name: this.setup.name, startedAt: now(), world,
      config: { name: this.setup.name, launch: { command: this.setup.command } },
      engine: { name: 'monitor', reason: `scalelm launch -- ${this.setup.command.join(' ')}`.slice(0, 1000) },
    });
    this.publish({ type: 'status', state: 'running', t: now(), step: 0 });
  }

  private onRank(m: RankReport): void {
    switch (m.k) {
      case 'hello':
        this.announce(m.world);
        this.pids.set(m.rank, m.pid);
        this.log(`rank ${m.rank} of ${m.world} joined (pid ${m.pid} on ${m.node})`);
        return;
      case 'progress':
        this.progress.set(m.rank, m.step);
        return;
      case 'msg': {
        const msg: Message = m.m;
        if (msg.type === 'step') this.step = msg.step;
        this.publish(msg);
        return;
      }
      case 'error':
        this.failures.push({ rank: m.rank, step: m.step, message: `${m.kind ? `${m.kind}: ` : ''}${m.message}`, abrupt: false });
        return;
      case 'done':
        this.finished.add(m.rank);
        return;
      default:
        return;
    }
  }

  async run(): Promise<LaunchResult> {
    this.channel = await ChannelServer.open((m) => this.onRank(m), {
      onReject: (reason) => this.log(reason, 'warn'),
      onDisconnect: (rank) => {
        if (!this.finished.has(rank) && !this.failures.some((f) => f.rank === rank)) {
          this.failures.push({ rank, message: 'its process ended before it finished', abrupt: true, ...(this.progress.has(rank) ? { step: this.progress.get(rank)! } : {}) });
        }
      },
    });
    const [cmd, ...args] = this.setup.command;
    const child = spawn(cmd!, args, {
      cwd: this.setup.cwd,
      detached: true, // its own group: Stop signals all of it; a terminal's Ctrl-C comes to us first
      stdio: ['ignore', 'pipe', 'pipe'],
      // The bundled `scalelm` package first on PYTHONPATH (as for the torch engine): a script's
      // `import scalelm` gets the Monitor that speaks this CLI's channel, with no pip install.
      env: { ...process.env, ...this.setup.env, PYTHONPATH: [bundledPythonPath(), this.setup.env?.PYTHONPATH ?? process.env.PYTHONPATH].filter(Boolean).join(':'), ...this.channel.env(), SCALELM_RUN_DIR: this.setup.runDir.path },
    });
    this.child = child;
    const onExit = (): void => this.signalAll('SIGKILL');
    process.on('exit', onExit);
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      child[stream].setEncoding('utf8');
      child[stream].on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const l of lines) {
          if (stream === 'stderr') {
            this.tail.push(l);
            if (this.tail.length > 40) this.tail.shift();
          }
          this.setup.onLine?.(l, stream);
        }
      });
    }
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }>((resolve) => {
      child.once('error', (e) => resolve({ code: null, signal: null, error: `could not start ${cmd}: ${e.message}` }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    this.signalAll('SIGKILL'); // anything the command left behind
    process.off('exit', onExit);
    await this.channel.close(500).catch(() => {});
    if (!this.helloSent) this.announce(1);
    if (exit.code === 0 || (this.stopping && !exit.error)) {
      // A stop ends the run as the user asked, whatever status the interrupted command chose.
      this.publish({ type: 'status', state: this.stopping ? 'stopped' : 'finished', t: now(), step: this.step, ...(this.stopping ? { reason: `stopped at step ${this.step} (the command ended with ${exit.code !== null ? `exit ${exit.code}` : `signal ${exit.signal}`})` } : {}) });
      return { exitCode: exit.code, signal: exit.signal };
    }
    const error = exit.error ?? this.describeFailure(exit.code, exit.signal);
    this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: error.slice(0, 16_000), kind: 'LaunchError' } });
    return { exitCode: exit.code, signal: exit.signal, error };
  }

  private describeFailure(code: number | null, signal: NodeJS.Signals | null): string {
    const how = code !== null ? `exit ${code}` : `signal ${signal}`;
    const lastLines = this.tail.filter((l) => l.trim()).slice(-8).join('\n');
    const f = rootFailure(this.failures);
    if (f) return `rank ${f.rank}${f.step !== undefined ? `, step ${f.step}` : ''}: ${f.message} (the command ended with ${how})`;
    return `the command ended with ${how}${lastLines ? `:\n${lastLines}` : ''}`;
  }

  rankPids(): Map<number, number> {
    return this.pids;
  }

  dispose(): void {
    this.signalAll('SIGKILL');
    this.setup.runDir.close();
  }
}
