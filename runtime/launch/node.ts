// `scalelm launch --nnodes N --node-rank K --master ADDR:PORT -- <command…>` with K > 0: one of a multi-node
// run's other machines. It keeps no run folder and serves nothing: it joins node 0's rank channel as a node
// peer (the shared run token, docs/rank-channel.md "Node peers"), then runs the command with the channel in
// its environment so the ranks here report to node 0 directly, forwards this machine's GPU samples, and
// reports how the command ended. Node 0's Stop (a control line) stops the command here; so does losing node 0.
import { hostname } from 'node:os';
import type { GpuMessage } from '../../common/protocol';
import { NodeClient, NodeJoinError } from '../parallel/channel';
import { GpuSampler, type GpuSamplerOptions } from '../telemetry/gpu-sampler';
import { howEnded, LaunchedCommand, withBundledPython } from './command';

export interface NodeLaunchSetup {
  command: string[];
  nnodes: number;
  nodeRank: number;
  /** Node 0's channel, host:port. */
  master: { host: string; port: number };
  token: string;
  cwd?: string;
  stopTimeoutMs?: number;
  /** How long to keep trying while nothing listens at the master yet (node 0 may start later; default 120 s). */
  joinTimeoutMs?: number;
  gpu?: GpuSamplerOptions;
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  log?: (line: string) => void;
}

export interface NodeLaunchResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when this node could not join or its command could not start. */
  error?: string;
}

export class NodeLaunch {
  private cmd?: LaunchedCommand;
  private stopping = false;

  constructor(readonly setup: NodeLaunchSetup) {}

  private get address(): string {
    const h = this.setup.master.host;
    return `tcp:${h.includes(':') ? `[${h}]` : h}:${this.setup.master.port}`;
  }

  /** SIGINT to the command's process groups, SIGKILL after the timeout (node 0's Stop, Ctrl-C here, node 0 gone). */
  requestStop(why: string): void {
    if (this.stopping || !this.cmd?.running) return;
    this.stopping = true;
    this.setup.log?.(`stopping the command: ${why}`);
    this.cmd.signalAll('SIGINT');
    setTimeout(() => this.cmd?.signalAll('SIGKILL'), this.setup.stopTimeoutMs ?? 15_000).unref();
  }

  private async join(): Promise<NodeClient> {
    const deadline = Date.now() + (this.setup.joinTimeoutMs ?? 120_000);
    let said = false;
    for (;;) {
      try {
        return await NodeClient.join(
          this.address,
          this.setup.token,
          { node: this.setup.nodeRank, nnodes: this.setup.nnodes },
          () => this.requestStop('node 0 asked (Stop, or another node failed)'),
          () => this.requestStop('the connection to node 0 closed'),
        );
      } catch (e) {
        if (!(e instanceof NodeJoinError) || e.kind !== 'unreachable' || Date.now() > deadline) throw e;
        if (!said) this.setup.log?.(`waiting for node 0 at ${this.address} (${e.message})`);
        said = true;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async run(): Promise<NodeLaunchResult> {
    let client: NodeClient;
    try {
      client = await this.join();
    } catch (e) {
      return { exitCode: null, signal: null, error: (e as Error).message };
    }
    const node = { rank: this.setup.nodeRank, host: hostname() };
    this.setup.log?.(`joined the run at ${this.address} as node ${node.rank} of ${this.setup.nnodes}`);
    const sampler = new GpuSampler({ ...this.setup.gpu, node });
    sampler.on('sample', (m: GpuMessage) => client.send({ k: 'gpu', node: node.rank, m }));
    sampler.on('state', (e) => (e.state === 'off' || e.state === 'down') && this.setup.log?.(`GPU sampler ${e.state}: ${e.reason}`));
    sampler.start();
    const cmd = new LaunchedCommand(this.setup.command, {
      ...(this.setup.cwd ? { cwd: this.setup.cwd } : {}),
      // No SCALELM_RUN_DIR: the run's folder is node 0's.
      env: {
        ...process.env,
        PYTHONPATH: withBundledPython(process.env.PYTHONPATH),
        SCALELM_CHANNEL: this.address,
        SCALELM_CHANNEL_TOKEN: this.setup.token,
        SCALELM_NODE_RANK: String(node.rank),
        SCALELM_NNODES: String(this.setup.nnodes),
      },
      ...(this.setup.onLine ? { onLine: this.setup.onLine } : {}),
    });
    this.cmd = cmd;
    const onExit = (): void => cmd.signalAll('SIGKILL');
    process.on('exit', onExit);
    const exit = await cmd.exited;
    cmd.signalAll('SIGKILL'); // anything the command left behind
    process.off('exit', onExit);
    await sampler.stop();
    const failed = exit.code !== 0;
    client.send({ k: 'exit', node: node.rank, code: exit.code, signal: exit.signal, ...(failed ? { tail: exit.error ?? cmd.lastLines() } : {}) });
    await client.close();
    this.setup.log?.(`the command ended with ${exit.error ?? howEnded(exit)}`);
    return { exitCode: exit.code, signal: exit.signal, ...(exit.error ? { error: exit.error } : {}) };
  }

  dispose(): void {
    this.cmd?.signalAll('SIGKILL');
  }
}
