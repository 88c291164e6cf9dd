// What the server remembers of a run so a client that connects late gets the story so far: a bounded,
// downsampled history. Full resolution lives in metrics.jsonl; this is only for snapshots.
//
// Downsampling is min/max per bucket (M4: first, last, min, max), not LTTB: it keeps every spike (a loss
// blow-up, a memory peak), which is what a monitor must not hide. Non-finite values are always kept.
import {
  PROTOCOL_VERSION,
  type AlertMessage,
  type CheckpointMessage,
  type CommMessage,
  type EvalMessage,
  type GpuMessage,
  type HelloMessage,
  type LogMessage,
  type MemoryMessage,
  type Message,
  type RunSummary,
  type SnapshotMessage,
  type StatusMessage,
  type StepMessage,
} from '../../common/protocol';
import { describeState } from '../../common/lifecycle';
import { runFacts } from '../../common/run-facts';

interface Bucket<T> {
  start: number;
  first: T;
  last: T;
  min: T;
  max: T;
  /** The first record whose value is not finite (NaN loss), kept whatever the bucket size. */
  odd?: T;
}

/**
 * Keeps at most ~4·maxBuckets records of a series ordered by x. When full, the bucket width doubles and
 * neighbours merge, so memory stays bounded however long the run.
 */
export class Decimator<T> {
  private buckets: Bucket<T>[] = [];
  private width: number;
  count = 0;

  constructor(
    private readonly x: (r: T) => number,
    private readonly y: (r: T) => number,
    private readonly maxBuckets = 512,
    initialWidth = 1,
  ) {
    this.width = initialWidth;
  }

  add(r: T): void {
    this.count++;
    const x = this.x(r);
    const last = this.buckets[this.buckets.length - 1];
    const start = Math.floor(x / this.width) * this.width;
    // x going backwards (a resumed run) joins the current bucket rather than reordering history.
    if (last && start <= last.start) {
      this.include(last, r);
      return;
    }
    const b: Bucket<T> = { start, first: r, last: r, min: r, max: r };
    if (!Number.isFinite(this.y(r))) b.odd = r;
    this.buckets.push(b);
    if (this.buckets.length > this.maxBuckets) this.coarsen();
  }

  private include(b: Bucket<T>, r: T): void {
    b.last = r;
    const y = this.y(r);
    if (!Number.isFinite(y)) {
      b.odd ??= r;
      return;
    }
    if (!(this.y(b.min) <= y)) b.min = r;
    if (!(this.y(b.max) >= y)) b.max = r;
  }

  private coarsen(): void {
    this.width *= 2;
    const merged: Bucket<T>[] = [];
    for (const b of this.buckets) {
      const start = Math.floor(b.start / this.width) * this.width;
      const into = merged[merged.length - 1];
      if (!into || into.start !== start) {
        merged.push({ ...b, start });
        continue;
      }
      into.last = b.last;
      if (!(this.y(into.min) <= this.y(b.min))) into.min = b.min;
      if (!(this.y(into.max) >= this.y(b.max))) into.max = b.max;
      into.odd ??= b.odd;
    }
    this.buckets = merged;
  }

  /** The kept records in order, each once. */
  values(): T[] {
    const out: T[] = [];
    for (const b of this.buckets) {
      const kept = new Set<T>([b.first, b.min, b.max, b.last]);
      if (b.odd) kept.add(b.odd);
      out.push(...[...kept].sort((p, q) => this.x(p) - this.x(q)));
    }
    return out;
  }

  latest(): T | undefined {
    return this.buckets[this.buckets.length - 1]?.last;
  }
}

/** A fixed-size ring of the most recent items. */
export class Recent<T> {
  private items: T[] = [];
  constructor(private readonly max: number) {}
  add(item: T): void {
    this.items.push(item);
    if (this.items.length > this.max * 2) this.items = this.items.slice(-this.max);
  }
  values(): T[] {
    return this.items.slice(-this.max);
  }
}

export interface HistoryLimits {
  /** Buckets for the step series (≈4× this many step records at most). */
  stepBuckets: number;
  gaugeBuckets: number;
  logs: number;
  alerts: number;
  checkpoints: number;
}

const DEFAULT_LIMITS: HistoryLimits = { stepBuckets: 512, gaugeBuckets: 256, logs: 500, alerts: 500, checkpoints: 1000 };

const sumUsed = (g: GpuMessage): number => g.devices.reduce((s, d) => s + (d.memoryUsed ?? 0), 0);

/**
 * GPU samples, decimated per machine: in a multi-node run each node's sampler reports its own devices, and
 * one decimator over all of them would let one node's samples crowd out another's (a snapshot would show
 * some nodes' GPUs and not others').
 */
export class GpuHistory {
  private readonly byNode = new Map<number, Decimator<GpuMessage>>();
  private newest: GpuMessage | undefined;
  count = 0;

  constructor(private readonly buckets: number) {}

  add(g: GpuMessage): void {
    const key = g.node?.rank ?? -1;
    let d = this.byNode.get(key);
    if (!d) this.byNode.set(key, (d = new Decimator((m) => m.t, sumUsed, this.buckets, 1000)));
    d.add(g);
    this.count++;
    if (!this.newest || g.t >= this.newest.t) this.newest = g;
  }

  /** Every machine's kept samples, in time order. */
  values(): GpuMessage[] {
    return [...this.byNode.values()].flatMap((d) => d.values()).sort((a, b) => a.t - b.t);
  }

  /** Each machine's newest sample, the coordinator's own (no node) first, then by node rank. */
  latestPerNode(): GpuMessage[] {
    return [...this.byNode.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, d]) => d.latest())
      .filter((g): g is GpuMessage => g !== undefined);
  }

  /** The newest sample of any machine. */
  latest(): GpuMessage | undefined {
    return this.newest;
  }
}

/** A run's state and downsampled history; fed every message the run publishes. */
export class RunHistory {
  hello: HelloMessage | null = null;
  status: StatusMessage | null = null;
  readonly steps: Decimator<StepMessage>;
  readonly evals: Decimator<EvalMessage>;
  readonly memory = new Map<number, Decimator<MemoryMessage>>();
  readonly gpu: GpuHistory;
  /** Each rank's latest communication totals. */
  readonly comm = new Map<number, CommMessage>();
  /** Each rank's totals over the steps (downsampled by step), so a snapshot can draw the per-step charts. */
  private readonly commSteps = new Map<number, Decimator<CommMessage>>();
  readonly logs: Recent<LogMessage>;
  readonly alerts: Recent<AlertMessage>;
  readonly checkpoints: Recent<CheckpointMessage>;
  /** Alerts currently raised, by id. */
  readonly activeAlerts = new Map<string, AlertMessage>();
  /** Full-resolution facts for the runs table (the decimated series would miss the best loss). */
  private lastStep: StepMessage | undefined;
  private bestLoss: number | undefined;
  private lastEval: EvalMessage | undefined;
  private recentTokensPerSec: number[] = [];
  private backendName: string | undefined;
  /** Time of the newest message. */
  lastT = 0;
  private readonly limits: HistoryLimits;

  constructor(
    limits: Partial<HistoryLimits> = {},
    /** The run's id before its hello arrives (a followed trainer announces itself later). */
    private readonly expectedRunId = 'pending',
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.steps = new Decimator(
      (s) => s.step,
      (s) => s.loss,
      this.limits.stepBuckets,
    );
    this.evals = new Decimator(
      (e) => e.step,
      (e) => e.loss,
      this.limits.stepBuckets,
    );
    this.gpu = new GpuHistory(this.limits.gaugeBuckets);
    this.logs = new Recent(this.limits.logs);
    this.alerts = new Recent(this.limits.alerts);
    this.checkpoints = new Recent(this.limits.checkpoints);
  }

  add(msg: Message): void {
    const t = (msg as { t?: number }).t;
    if (typeof t === 'number' && t > this.lastT) this.lastT = t;
    switch (msg.type) {
      case 'hello':
        this.hello = msg;
        // The hello names the backend the ranks actually use; the log line below is for runs recorded before it did.
        if (msg.backend) this.backendName = msg.backend.name;
        break;
      case 'status':
        this.status = msg;
        break;
      case 'step':
        this.steps.add(msg);
        this.lastStep = msg;
        if (Number.isFinite(msg.loss) && !(this.bestLoss! <= msg.loss)) this.bestLoss = msg.loss;
        if (Number.isFinite(msg.tokensPerSec)) {
          this.recentTokensPerSec.push(msg.tokensPerSec);
          if (this.recentTokensPerSec.length > 20) this.recentTokensPerSec.shift();
        }
        break;
      case 'eval':
        this.evals.add(msg);
        this.lastEval = msg;
        break;
      case 'memory': {
        let d = this.memory.get(msg.rank);
        if (!d)
          this.memory.set(
            msg.rank,
            (d = new Decimator(
              (m) => m.t,
              (m) => m.stepPeak,
              this.limits.gaugeBuckets,
              1000,
            )),
          );
        d.add(msg);
        break;
      }
      case 'gpu':
        this.gpu.add(msg);
        break;
      case 'comm': {
        this.comm.set(msg.rank, msg);
        if (msg.step === undefined) break;
        let d = this.commSteps.get(msg.rank);
        if (!d)
          this.commSteps.set(
            msg.rank,
            (d = new Decimator(
              (m) => m.step!,
              (m) => m.collectives.reduce((a, c) => a + c.ms, 0),
              this.limits.gaugeBuckets,
            )),
          );
        d.add(msg);
        break;
      }
      case 'log':
        this.logs.add(msg);
        if (!this.backendName && !this.hello?.backend && msg.source === 'trainer') this.backendName = /^backend: ([A-Za-z0-9_:-]+)/.exec(msg.message)?.[1];
        break;
      case 'alert':
        this.alerts.add(msg);
        if (msg.state === 'raised') this.activeAlerts.set(msg.id, msg);
        else this.activeAlerts.delete(msg.id);
        break;
      case 'checkpoint':
        this.checkpoints.add(msg);
        break;
    }
  }

  get runId(): string {
    return this.hello?.runId ?? this.expectedRunId;
  }

  /** The runs table's row: state and how it ended, duration, losses, throughput, layout, engine, device. */
  summary(): RunSummary {
    const state = this.status?.state ?? 'unknown';
    const s: RunSummary = {
      runId: this.runId,
      name: this.hello?.name ?? this.runId,
      startedAt: this.hello?.startedAt ?? 0,
      state,
      steps: this.steps.count,
      detail: describeState(state, this.status, this.lastStep?.step),
    };
    if (this.status && ['finished', 'stopped', 'failed', 'crashed'].includes(state)) s.endedAt = this.status.t;
    const finite = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v);
    if (finite(this.lastStep?.loss)) s.finalLoss = this.lastStep!.loss;
    if (finite(this.bestLoss)) s.bestLoss = this.bestLoss;
    if (finite(this.lastEval?.loss)) s.evalLoss = this.lastEval!.loss;
    if (this.recentTokensPerSec.length) s.tokensPerSec = this.recentTokensPerSec.reduce((a, b) => a + b, 0) / this.recentTokensPerSec.length;
    if (this.hello)
      Object.assign(
        s,
        runFacts(this.hello.config, this.hello.world, { name: this.hello.engine?.name, backend: this.hello.backend?.name ?? this.backendName, backendLabel: this.hello.backend?.label }),
      );
    else if (this.backendName) s.engine = this.backendName;
    return s;
  }

  /**
   * Every rank's downsampled totals in step order (ranks in order within a step), as the dashboard replays
   * them into per-step costs; plus each rank's latest totals where they carry no step.
   */
  private commSnapshot(): CommMessage[] {
    const stepped = [...this.commSteps.values()].flatMap((d) => d.values());
    const unstepped = [...this.comm.values()].filter((m) => m.step === undefined);
    return [...stepped, ...unstepped].sort((a, b) => (a.step ?? Infinity) - (b.step ?? Infinity) || a.rank - b.rank);
  }

  snapshot(readOnly: boolean, runs?: RunSummary[]): SnapshotMessage {
    const memory = [...this.memory.keys()].sort((a, b) => a - b).flatMap((rank) => this.memory.get(rank)!.values());
    const snap: SnapshotMessage = {
      type: 'snapshot',
      protocol: PROTOCOL_VERSION,
      runId: this.runId,
      readOnly,
      hello: this.hello,
      status: this.status,
      steps: this.steps.values(),
      stepsTotal: this.steps.count,
      evals: this.evals.values(),
      memory,
      gpu: this.gpu.values(),
      comm: this.commSnapshot(),
      logs: this.logs.values(),
      alerts: this.alerts.values(),
      checkpoints: this.checkpoints.values(),
      t: Date.now(),
    };
    if (runs) snap.runs = runs;
    return snap;
  }
}
