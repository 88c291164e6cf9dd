// A launched training command as a child process: its own process group (Stop signals all of it; a terminal's
// Ctrl-C comes to scalelm first), its output passed on line by line with the last stderr lines kept for the
// failure message, and every process under it signalled on the way out. Shared by `scalelm launch` on the
// coordinator (runtime/launch/launch.ts) and on a multi-node run's other nodes (runtime/launch/node.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { bundledPythonPath, descendants } from '../engines/torch/torchrun';
export interface CommandExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The command could not start. */
  error?: string;
}

export class LaunchedCommand {
  readonly child: ChildProcess;
  /** The command's last stderr lines (at most 40). */
  readonly tail: string[] = [];
  readonly exited: Promise<CommandExit>;

  constructor(
    readonly command: string[],
    o: { cwd?: string; env: NodeJS.ProcessEnv; onLine?: (line: string, stream: 'stdout' | 'stderr') => void },
  ) {
    const [cmd, ...args] = command;
    this.child = spawn(cmd!, args, { cwd: o.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      this.child[stream]!.setEncoding('utf8');
      this.child[stream]!.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const l of lines) {
          if (stream === 'stderr') {
            this.tail.push(l);
            if (this.tail.length > 40) this.tail.shift();
          }
          o.onLine?.(l, stream);
        }
      });
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
    return this.tail.filter((l) => l.trim()).slice(-n).join('\n');
  }
}

/** "exit 1" or "signal SIGKILL". */
export const howEnded = (e: { code: number | null; signal: string | null }): string => (e.code !== null ? `exit ${e.code}` : `signal ${e.signal}`);

/** PYTHONPATH with the bundled `scalelm` package first (as for the torch engine), for every node's command:
 * a script's `import scalelm` gets the Monitor that speaks this CLI's channel, with no pip install. */
export function withBundledPython(pythonPath: string | undefined): string {
  return [bundledPythonPath(), pythonPath].filter(Boolean).join(':');
}
