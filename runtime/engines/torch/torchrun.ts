// Starts `python -m torch.distributed.run … -m scalelm.train --args FILE` and ends it completely. torchrun's
// agent starts every rank in a session of its own (start_new_session), so killing the agent's process group
// would orphan the ranks: ending a run walks the agent's process tree (/proc) and kills every process group
// in it, ranks first, then the agent — on Stop timeouts, failures, and when this process exits.
import type { ChildProcess } from 'node:child_process';
import { bundledPythonPath, LaunchedCommand } from '../../launch/command';

export interface TorchrunOptions {
  python: string;
  /** Ranks on this node. */
  nproc: number;
  /** The JSON file the trainer reads (docs/rank-channel.md). */
  argsFile: string;
  /** Channel and run variables for the ranks. */
  env: Record<string, string>;
  /** The trainer module (tests run a protocol-conformance rank instead). */
  module?: string;
  /** Prepended to PYTHONPATH (default: the bundled package). */
  pythonPath?: string;
  cwd?: string;
  /** torchrun's own stdout/stderr and the ranks' (they inherit them), line by line. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface TorchrunExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines of torchrun's (and its ranks') stderr. */
  stderrTail: string[];
}

const TAIL_LINES = 200;

export class Torchrun {
  readonly exited: Promise<TorchrunExit>;
  private readonly cmd: LaunchedCommand;
  private done = false;
  /** Pids the ranks reported themselves (hello), in case they left the agent's tree. */
  private readonly rankPids = new Set<number>();
  private readonly onExit = (): void => this.killTree('SIGKILL');

  constructor(o: TorchrunOptions) {
    const args = [
      '-m',
      'torch.distributed.run',
      '--nproc-per-node',
      String(o.nproc),
      '--standalone',
      '--max-restarts',
      '0',
      '--monitor-interval',
      '0.2',
      '-m',
      o.module ?? 'scalelm.train',
      '--args',
      o.argsFile,
    ];
    const pythonPath = [o.pythonPath ?? bundledPythonPath(), process.env.PYTHONPATH].filter(Boolean).join(':');
    // Its own process group (LaunchedCommand): a terminal's Ctrl-C reaches only the coordinator, which stops the run itself.
    this.cmd = new LaunchedCommand([o.python, ...args], {
      ...(o.cwd ? { cwd: o.cwd } : {}),
      env: { ...process.env, ...o.env, PYTHONPATH: pythonPath, PYTHONUNBUFFERED: '1', OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' },
      tailLines: TAIL_LINES,
      ...(o.onLine ? { onLine: o.onLine } : {}),
    });
    process.on('exit', this.onExit);
    this.exited = this.cmd.exited.then((e) => {
      this.done = true;
      // A rank that outlived its agent (a crash of the agent itself) must not stay behind.
      this.killTree('SIGKILL');
      process.off('exit', this.onExit);
      return { code: e.code, signal: e.signal, stderrTail: e.error ? [...this.cmd.tail, e.error] : [...this.cmd.tail] };
    });
  }

  get child(): ChildProcess {
    return this.cmd.child;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  addRankPid(pid: number): void {
    this.rankPids.add(pid);
  }

  /** Signals every process group under the agent (ranks in their own sessions), the ranks, then the agent's group. */
  killTree(signal: NodeJS.Signals): void {
    this.cmd.signalAll(signal, this.rankPids);
  }

  /** SIGTERM to everything (torchrun forwards it), then SIGKILL after graceMs; resolves when the agent has exited. */
  async stop(graceMs = 5000): Promise<TorchrunExit> {
    if (!this.done) {
      this.killTree('SIGTERM');
      const timer = setTimeout(() => this.killTree('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }

  /** SIGKILL to everything now; resolves when the agent has exited. */
  async kill(): Promise<TorchrunExit> {
    this.killTree('SIGKILL');
    return this.exited;
  }
}
