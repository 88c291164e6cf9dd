// RunRecorder: what the trainer calls. One per run, in the process that owns the run (the coordinator;
// ranks in worker threads or processes forward their messages to it). It validates and publishes into the
// metric bus, and wires the sinks: metrics.jsonl (always), TensorBoard scalars (default on), alerts, and
// the GPU sampler (where nvidia-smi exists). The server (runtime/server/monitor.ts) attaches to `bus`.
//
//   const rec = RunRecorder.open({ runDir, runId, config, plan, world });
//   rec.status('running');
//   rec.step({ step, loss, lr, gradNorm, tokensPerSec, stepMs, memory: { params, grads, optimizer, activations, peak } });
//   rec.memory({ rank, categories, stepPeak, capacity, predicted, step });
//   rec.comm({ rank, step, collectives: [{ kind: 'all-reduce', calls, bytes, ms }] });   // totals since start
//   rec.log('info', 'checkpoint written'); rec.checkpoint(step, 'checkpoints/step-100.safetensors', bytes);
//   rec.onControl(async (action) => { … stop or checkpoint … });
//   await rec.close({ state: 'finished' });     // or { state: 'failed', error: { message } }
//
// A trainer that already emits protocol messages and writes metrics.jsonl itself (the coordinator,
// runtime/coordinator/, + RunDir) is followed instead: the recorder then only adds what it originates (GPU samples,
// alerts, sampler notes) to the file, through the same writer:
//   const rec = RunRecorder.open({ runDir: dir.path, runId: dir.runId, config, world: 1, announce: false, metrics: (m) => dir.publish(m) });
//   rec.follow(trainer, { recorded: true });
//   rec.onControl((a) => (a === 'stop' ? trainer.requestStop() : trainer.requestCheckpoint()));
//
// Every method throws ProtocolError for a malformed message (nothing recorded); none does I/O beyond one
// write(2) per message, so the cost per step stays in the microseconds (see overhead()).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  isGauge,
  type AlertMessage,
  type CheckpointMessage,
  type CommStat,
  type ControlAction,
  type HelloMessage,
  type JsonObject,
  type LogLevel,
  type LogMessage,
  type MemoryMessage,
  type Message,
  type RunState,
  type StatusMessage,
  type StepMessage,
} from '../../common/protocol';
import { AlertEngine, type AlertOptions } from './alerts';
import { deferredCost } from './cost';
import { MetricBus, type ControlHandler } from './bus';
import { GpuSampler, type GpuSamplerOptions, type RankProcess } from './gpu-sampler';
import { claimRun, MetricsLog, releaseRun, RUN_LAYOUT } from './run-store';
import { TensorBoardWriter, tensorBoardSink } from './tensorboard';

export interface RecorderOptions {
  /** The run directory (created if missing); metrics.jsonl and tensorboard/ go here. */
  runDir: string;
  runId: string;
  name?: string;
  /** The resolved config as JSON (RunConfig). */
  config: object;
  /** The planner's prediction for this layout. */
  plan?: object;
  world: number;
  /** Per-device capacity (bytes) for memory alerts from step records; default config.devices.memory. */
  capacityBytes?: number;
  tensorboard?: boolean;
  /** GPU sampler options, or false to keep it off (default: on, at config.monitor.gpuSampleMs). */
  gpu?: false | GpuSamplerOptions;
  alerts?: Partial<AlertOptions>;
  startedAt?: number;
  /** Who appends to metrics.jsonl: the recorder itself ("write", the default) or this function (one message each). */
  metrics?: 'write' | ((msg: Message) => void);
  /** Publish hello and status "starting" now (default); false when a followed trainer announces the run itself. */
  announce?: boolean;
}

/** Anything that emits protocol messages to subscribers (the coordinator). */
export interface MessageSource {
  subscribe(listener: (msg: Message) => void): () => void;
}

export interface Overhead {
  /** ms spent in telemetry on the training process's thread: validation, encoding, sinks, sending (also the
   *  batched writes after publish returns), sampler parsing. Process-wide for the deferred part. */
  telemetryMs: number;
  /** Sum of stepMs over the published steps. */
  stepMs: number;
  steps: number;
  /** telemetryMs / stepMs. */
  fraction: number;
}

type Without<T, K extends keyof T> = Omit<T, K | 'type'>;
type Stamp<T extends { t: number }> = Without<T, 't'> & { t?: number };

export class RunRecorder {
  readonly bus: MetricBus;
  readonly sampler: GpuSampler | null;
  readonly runDir: string;
  private readonly log_: MetricsLog | null;
  /** Set while forwarding a message a followed source has already written to metrics.jsonl. */
  private forwardingRecorded = false;
  private readonly tb: TensorBoardWriter | null;
  private flushTensorBoard: () => void = () => undefined;
  private readonly alertEngine: AlertEngine;
  private readonly pendingAlerts: AlertMessage[] = [];
  private ranks: RankProcess[] = [];
  private stepMsTotal = 0;
  private steps = 0;
  private closed = false;
  private lastStep: number | undefined;
  private readonly deferredAtOpen = deferredCost.ms;

  private constructor(o: RecorderOptions) {
    this.runDir = o.runDir;
    mkdirSync(o.runDir, { recursive: true });
    // While this file names a living process the run is in progress; without it and without a final
    // status, readers call the run crashed.
    claimRun(o.runDir, o.startedAt);
    this.bus = new MetricBus({ runDir: o.runDir, runId: o.runId });
    const metrics = o.metrics ?? 'write';
    this.log_ = metrics === 'write' ? new MetricsLog(o.runDir) : null;
    const log = this.log_;
    this.bus.subscribe((msg, encoded) => {
      if (this.forwardingRecorded) return;
      if (typeof metrics === 'function') return metrics(msg);
      log!.append(encoded, !isGauge(msg));
      if (msg.type === 'status' || msg.type === 'checkpoint') log!.sync();
    });
    if (o.tensorboard ?? true) {
      const dir = join(o.runDir, RUN_LAYOUT.tensorboard);
      mkdirSync(dir, { recursive: true });
      this.tb = new TensorBoardWriter(dir);
      const sink = tensorBoardSink(this.tb);
      this.bus.subscribe(sink);
      this.flushTensorBoard = sink.flush;
    } else this.tb = null;
    const config = o.config as { devices?: { memory?: number }; monitor?: { gpuSampleMs?: number } };
    const capacity = o.capacityBytes ?? config.devices?.memory;
    this.alertEngine = new AlertEngine((a) => this.pendingAlerts.push(a), { ...(capacity ? { capacity } : {}), ...o.alerts });
    this.bus.subscribe((msg) => this.alertEngine.observe(msg));

    const hello: HelloMessage = {
      type: 'hello',
      protocol: 1,
      runId: o.runId,
      name: o.name ?? o.runId,
      startedAt: o.startedAt ?? Date.now(),
      world: o.world,
      config: o.config as JsonObject,
    };
    if (o.plan) hello.plan = o.plan as JsonObject;
    if (o.announce ?? true) {
      this.publish(hello);
      this.status('starting');
    }

    if (o.gpu === false) this.sampler = null;
    else {
      this.sampler = new GpuSampler({ intervalMs: config.monitor?.gpuSampleMs ?? 1000, ranks: () => this.ranks, ...o.gpu });
      this.sampler.on('sample', (m) => !this.closed && this.publish(m));
      this.sampler.on('state', (e) => {
        if (this.closed) return;
        if (e.state === 'off') this.log('info', `GPU sampler off: ${e.reason}`, { source: 'gpu-sampler' });
        if (e.state === 'down') this.alertEngine.collector(false, e.reason);
        if (e.state === 'up') this.alertEngine.collector(true, e.reason);
        this.drainAlerts();
      });
      // hello comes first in metrics.jsonl: when the source announces the run itself, start sampling
      // (whose first message may be a log line) only once its hello has gone through.
      if (o.announce ?? true) this.sampler.start();
    }
  }

  static open(o: RecorderOptions): RunRecorder {
    return new RunRecorder(o);
  }

  /** Validates and publishes any protocol message; alerts it triggers follow it. */
  publish(msg: unknown): Message {
    const stored = this.bus.publish(msg);
    this.drainAlerts();
    return stored;
  }

  /**
   * Publishes every message `source` emits. With `recorded`, the source writes metrics.jsonl itself, so
   * its messages are not written again (what the recorder adds still is).
   */
  follow(source: MessageSource, o: { recorded?: boolean } = {}): () => void {
    return source.subscribe((msg) => {
      if (this.closed) return;
      this.forwardingRecorded = o.recorded ?? false;
      try {
        this.bus.publish(msg);
      } finally {
        this.forwardingRecorded = false;
      }
      if (msg.type === 'hello') this.sampler?.start(); // a no-op once started
      if (msg.type === 'step') this.countStep(msg);
      this.drainAlerts();
    });
  }

  private countStep(s: StepMessage): void {
    this.lastStep = s.step;
    this.steps++;
    if (Number.isFinite(s.stepMs)) this.stepMsTotal += s.stepMs;
  }

  private drainAlerts(): void {
    while (this.pendingAlerts.length) this.bus.publish(this.pendingAlerts.shift()!);
  }

  status(state: RunState, extra: { error?: { message: string; kind?: string; rank?: number }; reason?: string; step?: number; by?: string } = {}): void {
    const msg: StatusMessage = { type: 'status', state, t: Date.now(), ...extra };
    if (msg.step === undefined && this.lastStep !== undefined) msg.step = this.lastStep;
    this.publish(msg);
  }

  step(record: Without<StepMessage, never> | StepMessage): void {
    this.countStep(this.publish({ ...record, type: 'step' }) as StepMessage);
  }

  eval(step: number, loss: number): void {
    this.publish({ type: 'eval', step, loss });
  }

  memory(m: Stamp<MemoryMessage>): void {
    this.publish({ ...m, type: 'memory', t: m.t ?? Date.now() });
  }

  comm(m: { rank: number; step?: number; collectives: CommStat[]; t?: number }): void {
    this.publish({ ...m, type: 'comm', t: m.t ?? Date.now() });
  }

  log(level: LogLevel, message: string, extra: { rank?: number; source?: string } = {}): void {
    const msg: LogMessage = { type: 'log', level, message: message.length > 16_000 ? message.slice(0, 16_000) + '…' : message, t: Date.now(), ...extra };
    this.publish(msg);
  }

  checkpoint(step: number, path: string, bytes?: number): void {
    const msg: CheckpointMessage = { type: 'checkpoint', step, path, t: Date.now() };
    if (bytes !== undefined) msg.bytes = bytes;
    this.publish(msg);
  }

  /** Which process (and device) each rank is, so GPU readings can say which rank uses which GPU. */
  setRanks(ranks: RankProcess[]): void {
    this.ranks = ranks;
  }

  /** Stop / checkpoint requests from clients (token-checked and schema-valid by then). */
  onControl(handler: ControlHandler | ((action: ControlAction, by?: string) => Promise<void> | void)): void {
    this.bus.onControl(handler);
  }

  overhead(): Overhead {
    const telemetryMs = this.bus.publishMs + (this.sampler?.selfMs ?? 0) + (deferredCost.ms - this.deferredAtOpen);
    return { telemetryMs, stepMs: this.stepMsTotal, steps: this.steps, fraction: this.stepMsTotal > 0 ? telemetryMs / this.stepMsTotal : 0 };
  }

  /** Publishes the final status (when given), stops the sampler and closes the files. */
  async close(final?: { state: RunState; error?: { message: string; kind?: string; rank?: number }; reason?: string; by?: string }): Promise<void> {
    if (this.closed) return;
    if (final) this.status(final.state, { ...(final.error ? { error: final.error } : {}), ...(final.reason ? { reason: final.reason } : {}), ...(final.by ? { by: final.by } : {}) });
    this.closed = true;
    this.bus.onControl(undefined);
    await this.sampler?.stop();
    this.log_?.close();
    this.flushTensorBoard();
    this.tb?.close();
    releaseRun(this.runDir);
  }
}
