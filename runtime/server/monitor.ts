// Serving a live run: starts the server on the config's monitor address and tells the parent where it is
// with one JSON line on stdout:
//   {"scalelm":"listening","runId":"…","host":"127.0.0.1","port":41234,"url":"http://127.0.0.1:41234/","token":"…"}
// The token is in that line only when this process made it up; a parent that passes its own token in
// SCALELM_MONITOR_TOKEN (64 hex digits) already knows it and the line leaves it out. stdout is a pipe to
// the parent in the extension; on a terminal (the CLI) the human needs the token anyway, as in Jupyter.
import type { MonitorConfig, RunConfig } from '../config/types';
import { isToken, type Message } from '../../common/protocol';
import type { MetricBus } from '../telemetry/bus';
import type { AlertOptions } from '../telemetry/alerts';
import type { GpuSamplerOptions } from '../telemetry/gpu-sampler';
import { RunRecorder, type MessageSource, type Overhead } from '../telemetry/recorder';
import { startServer, type ServerOptions, type TelemetryServer } from './server';

export const TOKEN_ENV = 'SCALELM_MONITOR_TOKEN';

export interface ListeningLine {
  scalelm: 'listening';
  runId: string;
  host: string;
  port: number;
  url: string;
  token?: string;
  dashboardUrl?: string;
}

export interface MonitorOptions extends Omit<ServerOptions, 'runs' | 'host' | 'port' | 'allowRemote' | 'token'> {
  monitor: Pick<MonitorConfig, 'host' | 'port' | 'allowRemote'>;
  /** Where the JSON line goes (default: stdout). */
  out?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export async function startMonitor(runs: MetricBus[], o: MonitorOptions): Promise<TelemetryServer> {
  const env = o.env ?? process.env;
  const given = env[TOKEN_ENV] || undefined;
  if (given !== undefined && !isToken(given)) throw new Error(`${TOKEN_ENV} must be 64 lowercase hex digits (256 bits); got ${given.length} characters`);
  const server = await startServer({ ...o, runs, host: o.monitor.host, port: o.monitor.port, allowRemote: o.monitor.allowRemote, ...(given ? { token: given } : {}) });
  const line: ListeningLine = { scalelm: 'listening', runId: runs[0]!.history.runId, host: server.host, port: server.port, url: server.url };
  if (!given) {
    line.token = server.token;
    line.dashboardUrl = server.dashboardUrl;
  }
  (o.out ?? ((l: string) => process.stdout.write(l + '\n')))(JSON.stringify(line));
  return server;
}

/** Reads the listening line out of a child's stdout text (the extension's side of the handshake). */
export function parseListeningLine(line: string): ListeningLine | null {
  try {
    const v = JSON.parse(line) as Partial<ListeningLine>;
    if (v.scalelm === 'listening' && typeof v.port === 'number' && typeof v.host === 'string' && typeof v.runId === 'string' && typeof v.url === 'string') return v as ListeningLine;
  } catch {
    /* not ours */
  }
  return null;
}

/** What monitorTrainer needs of the trainer (the coordinator fits). */
export interface FollowedTrainer extends MessageSource {
  requestStop(by?: string): void;
  requestCheckpoint(): void;
}

/** What monitorTrainer needs of the run directory (runtime/train's RunDir fits). */
export interface FollowedRunDir {
  path: string;
  runId: string;
  /** Appends one message to metrics.jsonl. */
  publish(msg: Message): void;
}

export interface MonitoredRun {
  recorder: RunRecorder;
  server: TelemetryServer;
  /** Stops the sampler and the server; returns what telemetry cost. */
  close(): Promise<Overhead>;
}

/**
 * One call for `scalelm train`: follows a trainer that writes its own metrics.jsonl, adds GPU readings,
 * alerts and TensorBoard scalars, serves the stream and the dashboard on config.monitor, prints the
 * listening line, and routes stop/checkpoint requests from clients to the trainer.
 */
export async function monitorTrainer(o: {
  trainer: FollowedTrainer;
  runDir: FollowedRunDir;
  config: RunConfig;
  world?: number;
  plan?: object;
  gpu?: false | GpuSamplerOptions;
  tensorboard?: boolean;
  out?: (line: string) => void;
  warn?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** A resumed run's earlier messages (metrics.jsonl so far): clients get the whole curve, not only the new part. */
  prior?: Message[];
  alerts?: Partial<AlertOptions>;
}): Promise<MonitoredRun> {
  const recorder = RunRecorder.open({
    runDir: o.runDir.path,
    runId: o.runDir.runId,
    name: o.config.name,
    config: o.config,
    world: o.world ?? 1,
    announce: false,
    metrics: (m) => o.runDir.publish(m),
    ...(o.plan ? { plan: o.plan } : {}),
    ...(o.gpu !== undefined ? { gpu: o.gpu } : {}),
    ...(o.tensorboard !== undefined ? { tensorboard: o.tensorboard } : {}),
    ...(o.alerts ? { alerts: o.alerts } : {}),
  });
  // History only: these lines are already in metrics.jsonl and must not reach the sinks again.
  for (const m of o.prior ?? []) recorder.bus.history.add(m);
  const unfollow = recorder.follow(o.trainer, { recorded: true });
  recorder.onControl((action, by) => (action === 'stop' ? o.trainer.requestStop(by ?? 'a client') : o.trainer.requestCheckpoint()));
  let server: TelemetryServer;
  try {
    server = await startMonitor([recorder.bus], { monitor: o.config.monitor, ...(o.out ? { out: o.out } : {}), ...(o.warn ? { warn: o.warn } : {}), ...(o.env ? { env: o.env } : {}) });
  } catch (e) {
    unfollow();
    await recorder.close();
    throw e;
  }
  return {
    recorder,
    server,
    close: async () => {
      unfollow();
      await recorder.close();
      await server.close();
      return recorder.overhead();
    },
  };
}
