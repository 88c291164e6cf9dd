// One training run started from VS Code: the runtime as a child process, its listening line, a validated
// WebSocket client, and the run's downsampled history (the host keeps the authoritative copy; the webview
// gets snapshots and batches). Stop asks the runtime to checkpoint and exit, then kills it after a timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import {
  isEnded,
  type ControlAction,
  type ControlResultMessage,
  type Message,
  type RunState,
  type SnapshotMessage,
  type StatusMessage,
  type StepMessage,
  type MemoryMessage,
} from '../common/protocol';
import { describeState } from '../common/lifecycle';
import { RunClient } from '../runtime/server/client';
import { parseListeningLine, TOKEN_ENV, type ListeningLine } from '../runtime/server/monitor';
import { RunHistory } from '../runtime/telemetry/history';

export interface LaunchOptions {
  /** Node executable (VS Code's own, run as Node, by default). */
  nodePath: string;
  cliPath: string;
  configPath: string;
  runDir: string;
  cwd: string;
  extraArgs?: string[];
  /** Continue the run in runDir from its latest checkpoint (`train --resume runDir`) instead of starting configPath. */
  resume?: boolean;
  /**
   * Run a command under `scalelm launch` instead of training: `command` given (Launch with Monitor), or the
   * launch section of configPath (`launch --config`). Stop then goes through the CLI: SIGINT to the
   * command's process groups, SIGKILL after stopTimeoutMs.
   */
  launch?: { name: string; command?: string[]; stopTimeoutMs: number };
  log: (line: string, level: 'info' | 'warn' | 'error') => void;
  /** How long to wait for the listening line. */
  startTimeoutMs?: number;
}

/** The run lifecycle (common/lifecycle.ts), as this window sees it: the runtime's own statuses, and how its process ended. */
export type LiveState = RunState;

export declare interface LiveRun {
  on(event: 'message', listener: (m: Message) => void): this;
  on(event: 'snapshot', listener: (s: SnapshotMessage) => void): this;
  on(event: 'state', listener: (s: LiveState, detail: string) => void): this;
}

export class LiveRun extends EventEmitter {
  state: LiveState = 'starting';
  detail = '';
  history = new RunHistory();
  readonly token = randomBytes(32).toString('hex');
  listening: ListeningLine | undefined;
  lastStep: StepMessage | undefined;
  /** The runtime's latest status. */
  status: StatusMessage | undefined;
  /** Latest memory message per rank. */
  readonly memory = new Map<number, MemoryMessage>();
  private child: ChildProcess | undefined;
  private client: RunClient | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);

  constructor(
    readonly id: string,
    readonly options: LaunchOptions,
  ) {
    super();
  }

  /** Starts the runtime; resolves once it listens (or rejects with the reason it did not start). */
  start(): Promise<ListeningLine> {
    const o = this.options;
    const args = o.launch
      ? [
          o.cliPath,
          'launch',
          '--name',
          o.launch.name,
          '--run-dir',
          o.runDir,
          '--stop-timeout-ms',
          String(o.launch.stopTimeoutMs),
          ...(o.launch.command ? ['--', ...o.launch.command] : ['--config', o.configPath]),
        ]
      : o.resume
        ? [o.cliPath, 'train', '--resume', o.runDir, ...(o.extraArgs ?? [])]
        : [o.cliPath, 'train', o.configPath, '--run-dir', o.runDir, ...(o.extraArgs ?? [])];
    o.log(`starting: ${o.nodePath} ${args.join(' ')}`, 'info');
    const child = spawn(o.nodePath, args, {
      cwd: o.cwd,
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', [TOKEN_ENV]: this.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    createInterface({ input: child.stderr! }).on('line', (l) => o.log(l, 'warn'));
    return new Promise<ListeningLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`the runtime did not report its port within ${(o.startTimeoutMs ?? 60000) / 1000} s`));
        void this.stop(0);
      }, o.startTimeoutMs ?? 60000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const listening = !this.listening ? parseListeningLine(line) : null;
        if (!listening) {
          o.log(line, 'info');
          return;
        }
        clearTimeout(timer);
        this.listening = listening;
        this.connect(listening);
        if (this.state === 'starting') this.setState('running', listening.url);
        resolve(listening);
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        this.setState('failed', e.message);
        reject(e);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        this.closeClientAfterDrain();
        this.settleOnExit(code, signal);
        if (!this.listening) reject(new Error(`the runtime exited (${signal ?? `code ${code}`}) before it started; see the ScaleLM log`));
      });
    });
  }

  private connect(l: ListeningLine): void {
    const client = new RunClient({ port: l.port, host: l.host, token: this.token });
    this.client = client;
    client.on('snapshot', (s) => {
      // Every (re)connection starts with the whole story so far: rebuild rather than append.
      this.history = new RunHistory();
      for (const m of snapshotMessages(s)) this.record(m);
      this.emit('snapshot', s);
    });
    client.on('message', (m) => {
      this.record(m);
      this.emit('message', m);
    });
    client.on('invalid', (reason) => this.options.log(`dropped an invalid message from the runtime: ${reason}`, 'warn'));
    client.on('refused', (status, reason) => this.options.log(`the runtime refused the connection (${status}): ${reason}`, 'error'));
    client.connect();
  }

  /**
   * The process can exit before the client has read the last frames the server sent; keep the client until
   * the server's side of the socket has closed (or 3 s), so the final steps and status are not lost.
   */
  private closeClientAfterDrain(): void {
    const client = this.client;
    if (!client) return;
    const done = () => {
      clearTimeout(timer);
      client.close();
    };
    const timer = setTimeout(done, 3000);
    if (client.state !== 'open') done();
    else client.on('state', (s) => s !== 'open' && s !== 'connecting' && done());
  }

  private record(m: Message): void {
    this.history.add(m);
    if (m.type === 'step') this.lastStep = m;
    if (m.type === 'memory') this.memory.set(m.rank, m);
    if (m.type === 'status') {
      this.status = m;
      // The runtime's word on its state wins; "checkpointing" is running, seen from here.
      const s = m.state === 'checkpointing' ? 'running' : m.state;
      if (!isEnded(this.state)) this.setState(s, describeState(s, m, this.lastStep?.step));
    }
  }

  /**
   * The process is gone: the final status it sent stands; without one it was stopped here (we asked and then
   * had to end it), failed to start, or crashed.
   */
  private settleOnExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (isEnded(this.state)) return;
    const how = signal ?? `code ${code}`;
    if (!this.listening) this.setState('failed', `the runtime exited (${how}) before it started`);
    else if (this.state === 'stopping') this.setState('stopped', `${describeState('stopped', { ...this.status, by: 'VS Code' }, this.lastStep?.step)} (the runtime was ended: ${how})`);
    else this.setState('crashed', `${describeState('crashed', null, this.lastStep?.step)}: exited with ${how}`);
  }

  private setState(s: LiveState, detail: string): void {
    if (this.state === s && this.detail === detail) return;
    this.state = s;
    this.detail = detail;
    this.emit('state', s, detail);
  }

  /** Asks the runtime to stop or to checkpoint now (the dashboard's buttons). */
  control(action: ControlAction): Promise<ControlResultMessage> {
    if (!this.client) return Promise.reject(new Error('the run is not connected'));
    return this.client.control(action, 'VS Code');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get live(): boolean {
    return !isEnded(this.state) && !(this.child && (this.child.exitCode !== null || this.child.signalCode !== null));
  }

  /** Graceful stop (the runtime checkpoints and exits), then SIGTERM, then SIGKILL. Resolves when it has exited. */
  async stop(timeoutMs: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const launched = this.options.launch;
    this.setState('stopping', launched ? 'SIGINT sent to the command' : 'checkpointing before exit');
    if (this.client && timeoutMs > 0) {
      await this.client.control('stop', 'VS Code').catch((e: Error) => this.options.log(`stop request failed: ${e.message}`, 'warn'));
    } else {
      child.kill('SIGINT');
    }
    // A launched command gets the CLI's own SIGINT-then-SIGKILL (its --stop-timeout-ms) before anything here.
    if (await exitsWithin(this.exited, launched ? launched.stopTimeoutMs + 5000 : timeoutMs)) return;
    this.options.log(`the runtime did not stop within ${timeoutMs} ms; terminating it`, 'warn');
    child.kill('SIGTERM');
    if (await exitsWithin(this.exited, 3000)) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  /** For window close: no runtime process may outlive the extension host. */
  killNow(): void {
    this.client?.close();
    // `scalelm launch` kills its command's process groups on SIGTERM; SIGKILL would orphan them.
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill(this.options.launch ? 'SIGTERM' : 'SIGKILL');
  }
}

function exitsWithin(exited: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void exited.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** The messages a snapshot stands for, oldest first, so a fresh history can be rebuilt from it. */
export function snapshotMessages(s: SnapshotMessage): Message[] {
  const out: Message[] = [];
  if (s.hello) out.push(s.hello);
  out.push(...s.steps, ...s.evals, ...s.memory, ...s.gpu, ...s.comm, ...s.logs, ...s.alerts, ...s.checkpoints);
  if (s.status) out.push(s.status);
  return out;
}
