// A launched training command as a child process: its own process group (Stop signals all of it; a terminal's
// Ctrl-C comes to scalelm first), its output passed on line by line with the last stderr lines kept for the
// failure message, and every process under it signalled on the way out. Shared by `scalelm launch` on the
// coordinator (runtime/launch/launch.ts), on a multi-node run's other nodes (runtime/launch/node.ts), and by
// the torch engine's torchrun (runtime/engines/torch/torchrun.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CommandExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The command could not start. */
  error?: string;
}

/** Longest piece of a command's output passed on as one line (a longer line without a newline is cut into pieces). */
export const MAX_LINE_CHARS = 64 * 1024;

export class LaunchedCommand {
  readonly child: ChildProcess;
  /** The command's last stderr lines (at most `tailLines`, default 40). */
  readonly tail: string[] = [];
  readonly exited: Promise<CommandExit>;

  constructor(
    readonly command: string[],
    o: { cwd?: string; env: NodeJS.ProcessEnv; onLine?: (line: string, stream: 'stdout' | 'stderr') => void; tailLines?: number },
  ) {
    const [cmd, ...args] = command;
    const tailLines = o.tailLines ?? 40;
    this.child = spawn(cmd!, args, { cwd: o.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
    const line = (l: string, stream: 'stdout' | 'stderr'): void => {
      if (stream === 'stderr') {
        this.tail.push(l);
        if (this.tail.length > tailLines) this.tail.shift();
      }
      o.onLine?.(l, stream);
    };
    const pieces = (l: string, stream: 'stdout' | 'stderr'): void => {
      for (let i = 0; i === 0 || i < l.length; i += MAX_LINE_CHARS) line(l.slice(i, i + MAX_LINE_CHARS), stream);
    };
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      this.child[stream]!.setEncoding('utf8');
      this.child[stream]!.on('data', (chunk: string) => {
        // Only the new chunk is searched: re-splitting `partial + chunk` made a long line without a newline
        // (a progress bar redrawn with \r) quadratic, and it blocked the coordinator's event loop (40 MB: 19 s).
        const lines = chunk.split('\n');
        lines[0] = partial + lines[0]!;
        partial = lines.pop()!;
        for (const l of lines) pieces(l, stream);
        // An unended line is passed on in pieces of at most MAX_LINE_CHARS: memory stays bounded too.
        while (partial.length > MAX_LINE_CHARS) {
          line(partial.slice(0, MAX_LINE_CHARS), stream);
          partial = partial.slice(MAX_LINE_CHARS);
        }
      });
      // A last line without a newline (a traceback cut short) still counts; 'close' comes after 'end'.
      this.child[stream]!.on('end', () => partial && pieces(partial, stream));
    }
    this.exited = new Promise((resolve) => {
      this.child.once('error', (e) => resolve({ code: null, signal: null, error: `could not start ${cmd}: ${e.message}` }));
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    });
  }

  get running(): boolean {
    return this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Signals every process group under the command (torchrun starts its ranks in sessions of their own), and `extra` pids. */
  signalAll(signal: NodeJS.Signals, extra: Iterable<number> = []): void {
    const root = this.child.pid;
    if (root === undefined) return;
    // After the command ended its orphans are no longer its descendants: then only its group and `extra` are reached.
    for (const p of [...(this.running ? descendants(root) : []), ...extra]) {
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

  /** The last non-empty stderr lines, for a failure message. */
  lastLines(n = 8): string {
    return this.tail
      .filter((l) => l.trim())
      .slice(-n)
      .join('\n');
  }
}

/** "exit 1" or "signal SIGKILL". */
export const howEnded = (e: { code: number | null; signal: string | null }): string => (e.code !== null ? `exit ${e.code}` : `signal ${e.signal}`);

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

/**
 * The folder holding the `scalelm` package: SCALELM_PYTHON_PACKAGE (developing the package elsewhere), else
 * dist/python next to the CLI bundle, or python/ in a checkout (out/runtime/launch → repo).
 */
export function bundledPythonPath(): string {
  if (process.env.SCALELM_PYTHON_PACKAGE) return process.env.SCALELM_PYTHON_PACKAGE;
  const candidates = [join(__dirname, 'python'), join(__dirname, '..', '..', '..', 'python')];
  for (const c of candidates) if (existsSync(join(c, 'scalelm', '__init__.py'))) return c;
  return candidates[0]!;
}

/** PYTHONPATH with the bundled `scalelm` package first (as for the torch engine), for every node's command:
 * a script's `import scalelm` gets the Monitor that speaks this CLI's channel, with no pip install. */
export function withBundledPython(pythonPath: string | undefined): string {
  return [bundledPythonPath(), pythonPath].filter(Boolean).join(':');
}
