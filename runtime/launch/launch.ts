// `scalelm launch -- <command…>`: any training command (torchrun, python, deepspeed) as one ScaleLM run. The
// command runs in its own process group with the rank channel in its environment (SCALELM_CHANNEL,
// SCALELM_CHANNEL_TOKEN, SCALELM_RUN_DIR); its ranks report through the `scalelm` Python Monitor
// (docs/rank-channel.md, engine "monitor") and everything they send is published to the run like a
// `scalelm train` run's messages. The run ends with the command's exit status; a rank whose channel closes
// before it said `done` while the command fails is named. Stop = SIGINT to the group, SIGKILL after a timeout.
//
// Multi-node (`multiNode`): this is node 0, the coordinator. The channel listens on TCP at the master address
// for every node's ranks and for the other nodes' `scalelm launch` (node peers, runtime/launch/node.ts), which
// forward their GPU samples and report how their command ended. A node that fails (or drops its connection)
// fails the run naming it and stops everything; Stop here stops every node's command.
import { hostname } from 'node:os';
import type { Message } from '../../common/protocol';
import { ChannelServer, type NodeReport, type RankReport } from '../parallel/channel';
import { rootFailure, type RankFailure } from '../coordinator/failure';
import { howEnded, LaunchedCommand, withBundledPython, type CommandExit } from './command';
import type { RunDir } from '../train/run-dir';
import { RunEvents } from '../train/run-events';
import { LaunchPlan } from './plan';

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
  /** This launch is node 0 of a multi-node run: the channel listens on host:port with the shared run token. */
  multiNode?: MultiNode;
  /** The planner's side of the run (--plan, or what rank 0 reports): runtime/launch/plan.ts. */
  plan?: LaunchPlan;
}

export interface MultiNode {
  nnodes: number;
  host: string;
  port: number;
  /** The run token every node shares (SCALELM_RUN_TOKEN / --token-file): ranks and node peers present it. */
  token: string;
  /** After node 0's command ended, how long the other nodes get to report their end before they are stopped (ms, default 10 s). */
  nodeGraceMs?: number;
  /** How long after the start every other node must have joined, else the run fails naming them (ms, default 10 min). */
  joinTimeoutMs?: number;
}

/** How a node peer ended, once it said so. */
interface NodeEnd {
  code: number | null;
  signal: string | null;
  tail?: string;
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
  private cmd?: LaunchedCommand;
  private helloSent = false;
  private readonly pids = new Map<number, number>();
  /** Rank → its node (from its hello), in a multi-node run. */
  private readonly rankNode = new Map<number, number>();
  /** Node peers that joined (node → host) and how those that ended did. */
  private readonly nodes = new Map<number, string>();
  private readonly nodeEnds = new Map<number, NodeEnd>();
  private nodesSettled: () => void = () => {};
  /** The node whose failure ended the run (0 = this one's command), the first one only. */
  private rootNode: number | undefined;
  /** Nodes still missing at the join timeout. */
  private readonly neverJoined = new Set<number>();
  private readonly progress = new Map<number, number>();
  private readonly finished = new Set<number>();
  private readonly failures: RankFailure[] = [];
  private stopping = false;
  private readonly plan: LaunchPlan;

  constructor(readonly setup: LaunchSetup) {
    super();
    this.plan = setup.plan ?? new LaunchPlan();
    this.subscribe((m) => setup.runDir.publish(m));
  }

  /** The run's optimizer steps when rank 0 reported them (the out-of-memory forecast needs them). */
  get totalSteps(): number | undefined {
    return this.plan.totalSteps;
  }

  protected get lineSinks() {
    return { ...(this.setup.log ? { log: this.setup.log } : {}), runDir: this.setup.runDir };
  }

  /** Stop: SIGINT to the command's process group (torchrun forwards it to its ranks), SIGKILL after the timeout. */
  requestStop(): void {
    if (this.stopping || !this.cmd?.child.pid) return;
    this.stopping = true;
    this.publish({ type: 'status', state: 'stopping', t: now(), step: this.step, reason: 'stop requested' });
    this.halt();
  }

  /** Stops every node's command: the other nodes by a control line, this one by SIGINT, SIGKILL after the timeout. */
  private halt(): void {
    for (const n of this.channel?.connectedNodes() ?? []) this.channel!.sendNode(n, { k: 'control', action: 'stop' });
    this.signalAll('SIGINT');
    setTimeout(() => this.signalAll('SIGKILL'), this.setup.stopTimeoutMs ?? 15_000).unref();
  }

  /** A user's script decides its own checkpoints: the request is logged, nothing else. */
  requestCheckpoint(): void {
    this.log('checkpoint requested: a launched command saves on its own schedule (the request is not forwarded)', 'warn');
  }

  private signalAll(signal: NodeJS.Signals): void {
    // Only this machine's ranks: another node's pid means nothing here.
    this.cmd?.signalAll(
      signal,
      [...this.pids].filter(([rank]) => (this.rankNode.get(rank) ?? 0) === 0).map(([, pid]) => pid),
    );
  }

  private announce(world: number): void {
    if (this.helloSent) return;
    this.helloSent = true;
    this.world = world;
    this.publish({
      type: 'hello',
      protocol: 1,
      runId: this.setup.runDir.runId,
      name: this.setup.name,
      startedAt: now(),
      world,
      config: { name: this.setup.name, launch: { command: this.setup.command, ...(this.setup.multiNode ? { nnodes: this.setup.multiNode.nnodes } : {}) } },
      engine: { name: 'monitor', reason: `scalelm launch -- ${this.setup.command.join(' ')}`.slice(0, 1000) },
    });
    this.publish({ type: 'status', state: 'running', t: now(), step: 0 });
    for (const line of this.plan.atStart()) this.log(line);
  }

  private onRank(m: RankReport): void {
    switch (m.k) {
      case 'hello':
        this.announce(m.world);
        this.pids.set(m.rank, m.pid);
        if (m.nodeRank !== undefined) this.rankNode.set(m.rank, m.nodeRank);
        this.log(`rank ${m.rank} of ${m.world} joined (pid ${m.pid} on ${m.node}${m.nodeRank !== undefined && this.setup.multiNode ? `, node ${m.nodeRank}` : ''})`);
        return;
      case 'progress':
        this.progress.set(m.rank, m.step);
        return;
      case 'shape':
        for (const line of this.plan.onReport(m)) this.log(line);
        return;
      case 'msg': {
        const msg: Message = m.m;
        if (msg.type === 'step') this.step = msg.step;
        const predicted = this.plan.predicted;
        this.publish(msg.type === 'memory' && predicted ? { ...msg, predicted } : msg);
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

  private onNode(m: NodeReport): void {
    switch (m.k) {
      case 'node':
        this.nodes.set(m.node, m.host);
        this.note(`node ${m.node} of ${m.nnodes} joined from ${m.host} (pid ${m.pid})`);
        return;
      case 'gpu':
        if (this.helloSent) this.publish(m.m); // before the run's hello there is no run to add them to
        return;
      case 'exit':
        if (this.nodeEnds.has(m.node)) return;
        this.nodeEnds.set(m.node, { code: m.code, signal: m.signal, ...(m.tail ? { tail: m.tail } : {}) });
        this.note(`node ${m.node}'s command ended with ${howEnded(m)}`);
        if (m.code !== 0) this.nodeFailed(m.node);
        this.settleNodes();
        return;
    }
  }

  /** A line for the CLI and the run's log; into the stream only once the run's hello is out (hello comes first). */
  private note(line: string, level: 'info' | 'warn' = 'info'): void {
    this.log(line, level, this.helloSent);
  }

  /** A node failed: the first failure is the run's cause, and every node's command is stopped. */
  private nodeFailed(node: number): void {
    if (this.stopping || this.rootNode !== undefined) return;
    this.rootNode = node;
    this.halt();
  }

  /** Nodes that have not joined by the join timeout fail the run (the first of them is its cause). */
  private joinTimedOut(multi: MultiNode): void {
    const missing = Array.from({ length: multi.nnodes - 1 }, (_, i) => i + 1).filter((n) => !this.nodes.has(n));
    if (!missing.length || this.stopping || this.rootNode !== undefined) return;
    const s = missing.length > 1 ? 's' : '';
    this.note(
      `node${s} ${missing.join(', ')} of ${multi.nnodes} did not join within ${Math.round((multi.joinTimeoutMs ?? 600_000) / 1000)} s: is \`scalelm launch --node-rank K\` running there, with --master ${multi.host}:${multi.port} and the same run token? Stopping the run`,
      'warn',
    );
    for (const n of missing) this.neverJoined.add(n);
    this.nodeFailed(missing[0]!);
  }

  private settleNodes(): void {
    if ([...this.nodes.keys()].every((n) => this.nodeEnds.has(n) || !this.channel?.connectedNodes().includes(n))) this.nodesSettled();
  }

  async run(): Promise<LaunchResult> {
    const multi = this.setup.multiNode;
    this.channel = await ChannelServer.open((m) => this.onRank(m), {
      onReject: (reason) => this.note(reason, 'warn'),
      onDisconnect: (rank) => {
        if (!this.finished.has(rank) && !this.failures.some((f) => f.rank === rank)) {
          this.failures.push({ rank, message: 'its process ended before it finished', abrupt: true, ...(this.progress.has(rank) ? { step: this.progress.get(rank)! } : {}) });
        }
      },
      ...(multi
        ? {
            tcp: { host: multi.host, port: multi.port },
            token: multi.token,
            nodes: multi.nnodes,
            onNode: (m: NodeReport) => this.onNode(m),
            onNodeDisconnect: (node: number) => {
              if (!this.nodeEnds.has(node)) {
                this.note(`node ${node} (${this.nodes.get(node)}) lost its connection before its command ended`, 'warn');
                this.nodeEnds.set(node, { code: null, signal: null });
                this.nodeFailed(node);
              }
              this.settleNodes();
            },
          }
        : {}),
    }).catch((e: Error) => {
      throw new Error(multi ? `cannot listen on ${multi.host}:${multi.port} for the rank channel (--master must be an address of this machine, node 0, with a free port): ${e.message}` : e.message);
    });
    if (multi) {
      const loopback = /^(127\.|::1$|localhost$)/.test(multi.host);
      this.note(
        `rank channel listening on ${this.channel.address} (${loopback ? '' : 'beyond loopback, '}for the ranks and scalelm launch of all ${multi.nnodes} nodes); every peer must present the run token`,
      );
    }
    const cmd = new LaunchedCommand(this.setup.command, {
      ...(this.setup.cwd ? { cwd: this.setup.cwd } : {}),
      // The bundled `scalelm` package first on PYTHONPATH (as for the torch engine): a script's
      // `import scalelm` gets the Monitor that speaks this CLI's channel, with no pip install.
      env: {
        ...process.env,
        ...this.setup.env,
        PYTHONPATH: withBundledPython(this.setup.env?.PYTHONPATH ?? process.env.PYTHONPATH),
        ...this.channel.env(),
        SCALELM_RUN_DIR: this.setup.runDir.path,
        ...(multi ? { SCALELM_NODE_RANK: '0', SCALELM_NNODES: String(multi.nnodes) } : {}),
      },
      ...(this.setup.onLine ? { onLine: this.setup.onLine } : {}),
    });
    this.cmd = cmd;
    const onExit = (): void => this.signalAll('SIGKILL');
    process.on('exit', onExit);
    // A node that never joins would otherwise leave this run waiting on torchrun's rendezvous timeout.
    const joinTimer = multi ? setTimeout(() => this.joinTimedOut(multi), multi.joinTimeoutMs ?? 600_000) : undefined;
    const exit = await cmd.exited;
    clearTimeout(joinTimer);
    this.signalAll('SIGKILL'); // anything the command left behind
    process.off('exit', onExit);
    if (multi) {
      if (exit.code !== 0 && !this.stopping) this.nodeFailed(0);
      await this.awaitNodes(multi);
    }
    await this.channel.close(500).catch(() => {});
    if (!this.helloSent) this.announce(1);
    if (!this.stopping && this.rootNode !== undefined && this.rootNode !== 0) {
      // node 0's command may have ended well (or been stopped because of it): the run failed all the same.
      const error = this.describeFailure(exit);
      const rank = rootFailure(this.failures)?.rank;
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: error.slice(0, 16_000), kind: 'LaunchError', ...(rank !== undefined ? { rank } : {}) } });
      return { exitCode: exit.code || 1, signal: exit.signal, error };
    }
    if (exit.code === 0 || (this.stopping && !exit.error)) {
      // A stop ends the run as the user asked, whatever status the interrupted command chose.
      this.publish({
        type: 'status',
        state: this.stopping ? 'stopped' : 'finished',
        t: now(),
        step: this.step,
        ...(this.stopping ? { reason: `stopped at step ${this.step} (the command ended with ${howEnded(exit)})` } : {}),
      });
      return { exitCode: exit.code, signal: exit.signal };
    }
    // The failing rank travels as error.rank (not only in the message) where a rank said it failed.
    const rank = exit.error === undefined ? rootFailure(this.failures)?.rank : undefined;
    const error = exit.error ?? this.describeFailure(exit);
    this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: error.slice(0, 16_000), kind: 'LaunchError', ...(rank !== undefined ? { rank } : {}) } });
    return { exitCode: exit.code, signal: exit.signal, error };
  }

  /** After node 0's command ended: the other nodes get a grace to report their end, then are stopped and waited for. */
  private async awaitNodes(multi: MultiNode): Promise<void> {
    const settled = (ms: number): Promise<void> =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.nodesSettled = () => {
          clearTimeout(timer);
          resolve();
        };
        this.settleNodes();
      });
    await settled(multi.nodeGraceMs ?? 10_000);
    const open = this.channel!.connectedNodes().filter((n) => !this.nodeEnds.has(n));
    if (!open.length) return;
    this.log(`stopping node${open.length > 1 ? 's' : ''} ${open.join(', ')}: node 0's command ended`, 'warn');
    for (const n of open) this.channel!.sendNode(n, { k: 'control', action: 'stop' });
    await settled((this.setup.stopTimeoutMs ?? 15_000) + 5_000);
  }

  /**
   * The run's error: the rank that started it (its own error line, else the first that vanished — in a
   * multi-node run, whichever node it was on), else the node whose command failed first.
   */
  private describeFailure(exit: CommandExit): string {
    const multi = this.setup.multiNode !== undefined;
    const where = (node: number): string => (multi ? `node ${node} (${node === 0 ? hostname() : (this.nodes.get(node) ?? 'unknown host')}): ` : '');
    // `who`: how the sentence names the node's command ("the command" on one machine).
    const how = (node: number, who: string): string => {
      if (node === 0) return `${who} ended with ${howEnded(exit)}`;
      if (this.neverJoined.has(node)) return `node ${node} never joined the run`;
      const end = this.nodeEnds.get(node);
      if (!end) return `${who} had not ended`;
      return end.code === null && end.signal === null ? `node ${node}'s scalelm launch lost its connection to node 0` : `${who} ended with ${howEnded(end)}`;
    };
    const f = rootFailure(this.failures);
    if (f) {
      const node = this.rankNode.get(f.rank) ?? 0;
      return `${where(node)}rank ${f.rank}${f.step !== undefined ? `, step ${f.step}` : ''}: ${f.message} (${how(node, node === 0 ? 'the command' : `node ${node}'s command`)})`;
    }
    const node = this.rootNode ?? 0;
    const lastLines = node === 0 ? (this.cmd?.lastLines() ?? '') : (this.nodeEnds.get(node)?.tail ?? '');
    return `${where(node)}${how(node, multi ? 'its command' : 'the command')}${lastLines ? `:\n${lastLines}` : ''}`;
  }

  rankPids(): Map<number, number> {
    return this.pids;
  }

  dispose(): void {
    this.signalAll('SIGKILL');
    this.setup.runDir.close();
  }
}
