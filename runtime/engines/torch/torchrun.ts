// Starts `python -m torch.distributed.run … -m scalelm.train --args FILE` and ends it completely. torchrun's
// agent starts every rank in a session of its own (start_new_session), so killing the agent's process group
// would orphan the ranks: ending a run walks the agent's process tree (/proc) and kills every process group
// in it, ranks first, then the agent — on Stop timeouts, failures, and when this process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The folder holding the `scalelm` package: SCALELM_PYTHON_PACKAGE (developing the package elsewhere), else
 * dist/python next to the CLI bundle, or python/ in a checkout (out/runtime/engines/torch → repo).
 */
export function bundledPythonPath(): string {
  if (process.env.SCALELM_PYTHON_PACKAGE) return process.env.SCALELM_PYTHON_PACKAGE;
  const candidates = [join(__dirname, 'python'), join(__dirname, '..', 'python'), join(__dirname, '..', '..', '..', '..', 'python'), join(__dirname, '..', '..', '..', 'python')];
  for (const c of candidates) if (existsSync(join(c, 'scalelm', '__init__.py'))) return c;
  return candidates[0]!;
}

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

/** Pids of every descendant of `root` (children before grandchildren), from /proc. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command, which may itself hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export class Torchrun {
  readonly child: ChildProcess;
  readonly exited: Promise<TorchrunExit>;
  private readonly tail: string[] = [];
  private done = false;
  /** Pids the ranks reported themselves (hello), in case they left the agent's tree. */
  private readonly rankPids = new Set<number>();
  private readonly onExit = (): void => this.killTree('SIGKILL');

  constructor(o: TorchrunOptions) {
    const args = ['-m', 'torch.distributed.run', '--nproc-per-node', String(o.nproc), '--standalone', '--max-restarts', '0', '--monitor-interval', '0.2', '-m', o.module ?? 'scalelm.train', '--args', o.argsFile];
    const pythonPath = [o.pythonPath ?? bundledPythonPath(), process.env.PYTHONPATH].filter(Boolean).join(':');
    this.child = spawn(o.python, args, {
      cwd: o.cwd,
      // Its own process group: a terminal's Ctrl-C reaches only the coordinator, which stops the run itself.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...o.env, PYTHONPATH: pythonPath, PYTHONUNBUFFERED: '1', OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' },
    });
    process.on('exit', this.onExit);
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      this.child[stream]!.setEncoding('utf8');
      this.child[stream]!.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const l of lines) this.line(l, stream, o);
      });
      this.child[stream]!.on('end', () => partial && this.line(partial, stream, o));
    }
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.done) return;
        this.done = true;
        // A rank that outlived its agent (a crash of the agent itself) must not stay behind.
        this.killTree('SIGKILL');
        process.off('exit', this.onExit);
        resolve({ code, signal, stderrTail: [...this.tail] });
      };
      this.child.once('error', (e) => {
        this.tail.push(`could not start ${o.python}: ${e.message}`);
        finish(null, null);
      });
      this.child.once('close', finish);
    });
  }

  private line(l: string, stream: 'stdout' | 'stderr', o: TorchrunOptions): void {
    if (stream === 'stderr') {
      this.tail.push(l);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
    }
    o.onLine?.(l, stream);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  addRankPid(pid: number): void {
    this.rankPids.add(pid);
  }

  /** Signals every process group under the agent (ranks in their own sessions), the ranks, then the agent's group. */
  killTree(signal: NodeJS.Signals): void {
    const root = this.child.pid;
    if (root === undefined) return;
    const pids = [...new Set([...descendants(root), ...this.rankPids])];
    for (const p of pids) {
      killQuietly(-p, signal); // session leaders (the ranks): their whole group
      killQuietly(p, signal);
    }
    if (!this.done) killQuietly(-root, signal);
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
