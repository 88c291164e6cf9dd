// What the dashboard knows of one run: full-resolution columns (Float64Array, growing by doubling) for the
// step series and each rank's memory, the latest gauges, the raised alerts and recent events. Fed by
// already-validated protocol messages or a snapshot; views read it and redraw what changed (`versions`).
// Pure: no DOM, so the bench and unit tests drive it in Node.
import { readResolvedConfig } from '../runtime/config/resolved';
import type { RunConfig } from '../runtime/config/types';
import type {
  AlertMessage,
  CheckpointMessage,
  CommMessage,
  EvalMessage,
  GpuDevice,
  GpuMessage,
  HelloMessage,
  LogMessage,
  MemoryMessage,
  Message,
  NodeRef,
  RunSummary,
  SnapshotMessage,
  StatusMessage,
  StepMessage,
} from '../common/protocol';
import { lowerBound } from './downsample';
import { isEnded } from '../common/protocol';
import { describeState } from '../common/lifecycle';
import { runFacts } from '../common/run-facts';

export class Column {
  data: Float64Array;
  length = 0;

  constructor(capacity = 256) {
    this.data = new Float64Array(capacity);
  }

  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }

  last(): number {
    return this.length ? this.data[this.length - 1]! : NaN;
  }

  truncate(n: number): void {
    this.length = Math.min(this.length, Math.max(0, n));
  }
}

const STEP_FIELDS = ['step', 't', 'loss', 'lr', 'gradNorm', 'tokensPerSec', 'stepMs', 'tokens'] as const;
export type StepField = (typeof STEP_FIELDS)[number];

/** The step series as columns, ordered by step. */
export class StepColumns {
  readonly cols: Record<StepField, Column>;

  constructor() {
    this.cols = Object.fromEntries(STEP_FIELDS.map((f) => [f, new Column(1024)])) as Record<StepField, Column>;
  }

  get length(): number {
    return this.cols.step.length;
  }

  col(field: StepField): Float64Array {
    return this.cols[field].data;
  }

  add(m: StepMessage): void {
    const steps = this.cols.step;
    // A resumed run repeats steps from its checkpoint: the new records replace the old ones from there.
    if (steps.length && m.step <= steps.last()) {
      const keep = lowerBound(steps.data, steps.length, m.step);
      for (const f of STEP_FIELDS) this.cols[f].truncate(keep);
    }
    this.cols.step.push(m.step);
    this.cols.t.push(m.t ?? NaN);
    this.cols.loss.push(m.loss);
    this.cols.lr.push(m.lr);
    this.cols.gradNorm.push(m.gradNorm);
    this.cols.tokensPerSec.push(m.tokensPerSec);
    this.cols.stepMs.push(m.stepMs);
    this.cols.tokens.push(m.tokens ?? NaN);
  }
}

/** One rank's memory: the latest reading and the history of its step peak. */
export class RankMemory {
  latest: MemoryMessage;
  /** The machine the rank last reported from (null: the coordinator's own, a single-machine run). */
  node: NodeRef | null = null;
  readonly t = new Column(1024);
  readonly step = new Column(1024);
  readonly peak = new Column(1024);
  maxPeak = 0;
  maxPeakT = 0;
  version = 0;

  constructor(first: MemoryMessage) {
    this.latest = first;
    this.add(first);
  }

  add(m: MemoryMessage): void {
    this.latest = m;
    this.node = m.node ?? null;
    this.t.push(m.t);
    this.step.push(m.step ?? NaN);
    this.peak.push(m.stepPeak);
    if (m.stepPeak > this.maxPeak) {
      this.maxPeak = m.stepPeak;
      this.maxPeakT = m.t;
    }
    this.version++;
  }
}

/** Communication per step for one collective kind, averaged over the ranks that reported. */
export class CommSeries {
  readonly step = new Column(256);
  readonly t = new Column(256);
  /** ms spent in this kind per training step. */
  readonly msPerStep = new Column(256);
  readonly bytesPerStep = new Column(256);
}

interface CommRound {
  step: number;
  t: number;
  /** kind -> sums over the ranks that reported for this step. */
  sums: Map<string, { ms: number; bytes: number; ranks: number }>;
  ranks: Set<number>;
}

/** The key of a machine in a run: '' for the coordinator's own (messages without `node`). */
export function nodeKey(node: NodeRef | null | undefined): string {
  return node ? `node-${node.rank}` : '';
}

/** One machine of the run and what it reported: its ranks (ascending) and its latest GPU sample. */
export interface NodeGroup {
  key: string;
  /** null: the coordinator's own machine (no node info). */
  node: NodeRef | null;
  ranks: number[];
  /** The rank with the highest step peak as a fraction of its capacity, and that fraction. */
  worstRank: number | null;
  worstFraction: number;
  /** Sums over the node's ranks of the latest step peak and capacity. */
  peak: number;
  capacity: number;
  gpus: GpuDevice[];
}

/** Versions the views compare to decide what to redraw. */
export interface Versions {
  meta: number;
  steps: number;
  evals: number;
  memory: number;
  gpu: number;
  comm: number;
  events: number;
}

const RECENT_LOGS = 200;
const RECENT_ALERTS = 100;
const RECENT_CHECKPOINTS = 50;

export class RunData {
  runId: string;
  hello: HelloMessage | null = null;
  status: StatusMessage | null = null;
  readonly steps = new StepColumns();
  readonly evals = { step: new Column(64), t: new Column(64), loss: new Column(64) };
  readonly memory = new Map<number, RankMemory>();
  /** The latest GPU sample of any machine (whether the run has GPUs at all). */
  gpu: GpuMessage | null = null;
  /** The latest GPU sample of each machine, by nodeKey: each node's sampler reports its own GPUs. */
  readonly gpuByNode = new Map<string, GpuMessage>();
  readonly comm = new Map<number, CommMessage>();
  readonly commSeries = new Map<string, CommSeries>();
  readonly activeAlerts = new Map<string, AlertMessage>();
  alerts: AlertMessage[] = [];
  logs: LogMessage[] = [];
  checkpoints: CheckpointMessage[] = [];
  /** The hello's config once the config parser accepted it (null: no hello yet, or a config it refuses). */
  private parsedConfig: { from: object; config: RunConfig | null } | undefined;
  /** The backend the ranks train on: the hello's, or (runs recorded before the hello said) the "backend: wasm (…)" log line. */
  backend: string | null = null;
  /** How many steps the run published: more than steps.length when a snapshot was downsampled. */
  stepsTotal = 0;
  /** The first history came from a downsampled snapshot (min/max per bucket, not every step). */
  downsampled = false;
  /** Time of the newest message, ms since the epoch. */
  lastT = 0;
  readonly versions: Versions = { meta: 0, steps: 0, evals: 0, memory: 0, gpu: 0, comm: 0, events: 0 };
  private readonly commPrev = new Map<string, { step: number; ms: number; bytes: number }>();
  private commRound: CommRound | null = null;

  constructor(runId: string) {
    this.runId = runId;
  }

  static fromSnapshot(snap: SnapshotMessage): RunData {
    const run = new RunData(snap.runId);
    if (snap.hello) run.add(snap.hello);
    if (snap.status) run.add(snap.status);
    for (const m of snap.steps) run.add(m);
    for (const m of snap.evals) run.add(m);
    for (const m of snap.memory) run.add(m);
    for (const m of snap.gpu) run.add(m);
    for (const m of snap.comm) run.add(m);
    for (const m of snap.logs) run.add(m);
    for (const m of snap.alerts) run.add(m);
    for (const m of snap.checkpoints) run.add(m);
    run.stepsTotal = Math.max(snap.stepsTotal, run.steps.length);
    run.downsampled = snap.stepsTotal > snap.steps.length;
    run.lastT = Math.max(run.lastT, snap.status?.t ?? 0);
    return run;
  }

  /** A run summary for the runs table, from what is known (the same fields as the host's RunHistory.summary). */
  summary(): RunSummary {
    const state = this.status?.state ?? 'unknown';
    const n = this.steps.length;
    const lastStep = n ? this.steps.col('step')[n - 1]! : undefined;
    const s: RunSummary = {
      runId: this.runId,
      name: this.hello?.name ?? this.runId,
      startedAt: this.hello?.startedAt ?? 0,
      state,
      steps: this.stepsTotal,
      detail: describeState(state, this.status, lastStep),
    };
    if (this.status && isEnded(state)) s.endedAt = this.status.t;
    const loss = this.steps.col('loss');
    if (n && Number.isFinite(loss[n - 1]!)) s.finalLoss = loss[n - 1]!;
    let best = Infinity;
    for (let i = 0; i < n; i++) if (loss[i]! < best) best = loss[i]!;
    if (Number.isFinite(best)) s.bestLoss = best;
    const e = this.evals.loss;
    if (e.length && Number.isFinite(e.last())) s.evalLoss = e.last();
    const tps = this.steps.col('tokensPerSec');
    let sum = 0;
    let count = 0;
    for (let i = Math.max(0, n - 20); i < n; i++) {
      if (Number.isFinite(tps[i]!)) {
        sum += tps[i]!;
        count++;
      }
    }
    if (count) s.tokensPerSec = sum / count;
    if (this.hello) Object.assign(s, runFacts(this.hello.config, this.hello.world, { name: this.hello.engine?.name, backend: this.backend ?? undefined, backendLabel: this.hello.backend?.label }));
    return s;
  }

  get world(): number {
    return this.hello?.world ?? Math.max(1, this.memory.size);
  }

  /** The run's config, typed: the hello's, checked by the config parser when read back. */
  runConfig(): RunConfig | null {
    const raw = this.hello?.config;
    if (!raw) return null;
    if (this.parsedConfig?.from !== raw) {
      const r = readResolvedConfig(raw);
      this.parsedConfig = { from: raw, config: r.ok ? r.config : null };
    }
    return this.parsedConfig.config;
  }

  add(m: Message): void {
    const t = (m as { t?: number }).t;
    if (typeof t === 'number' && t > this.lastT) this.lastT = t;
    switch (m.type) {
      case 'hello':
        this.hello = m;
        this.runId = m.runId;
        if (m.backend) this.backend = m.backend.name;
        this.versions.meta++;
        break;
      case 'status':
        this.status = m;
        this.versions.meta++;
        break;
      case 'step':
        this.steps.add(m);
        this.stepsTotal = Math.max(this.stepsTotal + 1, this.steps.length);
        this.versions.steps++;
        break;
      case 'eval':
        this.addEval(m);
        break;
      case 'memory': {
        const r = this.memory.get(m.rank);
        if (r) r.add(m);
        else this.memory.set(m.rank, new RankMemory(m));
        this.versions.memory++;
        break;
      }
      case 'gpu':
        this.gpu = m;
        this.gpuByNode.set(nodeKey(m.node), m);
        this.versions.gpu++;
        break;
      case 'comm':
        this.addComm(m);
        break;
      case 'log':
        this.logs.push(m);
        if (this.logs.length > 2 * RECENT_LOGS) this.logs = this.logs.slice(-RECENT_LOGS);
        if (!this.backend && !this.hello?.backend && m.source === 'trainer') {
          const b = /^backend: ([A-Za-z0-9_-]+)/.exec(m.message);
          if (b) {
            this.backend = b[1]!;
            this.versions.meta++;
          }
        }
        this.versions.events++;
        break;
      case 'alert':
        this.alerts.push(m);
        if (this.alerts.length > 2 * RECENT_ALERTS) this.alerts = this.alerts.slice(-RECENT_ALERTS);
        if (m.state === 'raised') this.activeAlerts.set(m.id, m);
        else this.activeAlerts.delete(m.id);
        this.versions.events++;
        this.versions.meta++;
        break;
      case 'checkpoint':
        this.checkpoints.push(m);
        if (this.checkpoints.length > 2 * RECENT_CHECKPOINTS) this.checkpoints = this.checkpoints.slice(-RECENT_CHECKPOINTS);
        this.versions.events++;
        break;
    }
  }

  /** Whether any message said which machine it came from (a multi-node run): the views group by node. */
  get multiNode(): boolean {
    for (const k of this.gpuByNode.keys()) if (k !== '') return true;
    for (const r of this.memory.values()) if (r.node) return true;
    return false;
  }

  /**
   * The GPU devices of the machine a rank runs on. None when that machine sent no sample: another node's
   * devices repeat its indices and (cloned drivers, the fake nvidia-smi) its UUIDs, so a rank would match
   * a GPU it is not on. A rank without node info next to a single machine's sample gets that machine's.
   */
  gpusOf(rank: number): GpuDevice[] {
    const node = this.memory.get(rank)?.node;
    const own = this.gpuByNode.get(nodeKey(node));
    if (own) return own.devices;
    if (node || this.gpuByNode.size !== 1) return [];
    return [...this.gpuByNode.values()][0]!.devices;
  }

  private groupsCache: { key: string; groups: NodeGroup[] } | null = null;

  /**
   * The run's machines in node-rank order (the coordinator's own, without node info, first), each with its
   * ranks and GPUs. One group with node null for a single-machine run.
   */
  nodeGroups(): NodeGroup[] {
    const cacheKey = `${this.versions.memory}|${this.versions.gpu}`;
    if (this.groupsCache?.key === cacheKey) return this.groupsCache.groups;
    const byKey = new Map<string, NodeGroup>();
    const group = (node: NodeRef | null): NodeGroup => {
      const key = nodeKey(node);
      let g = byKey.get(key);
      if (!g) byKey.set(key, (g = { key, node, ranks: [], worstRank: null, worstFraction: -1, peak: 0, capacity: 0, gpus: [] }));
      return g;
    };
    for (const rank of [...this.memory.keys()].sort((a, b) => a - b)) {
      const mem = this.memory.get(rank)!;
      const g = group(mem.node);
      const m = mem.latest;
      const f = m.capacity > 0 ? m.stepPeak / m.capacity : 0;
      g.ranks.push(rank);
      g.peak += m.stepPeak;
      g.capacity += m.capacity;
      if (f > g.worstFraction) {
        g.worstFraction = f;
        g.worstRank = rank;
      }
    }
    for (const gpu of this.gpuByNode.values()) group(gpu.node ?? null).gpus = gpu.devices;
    const groups = [...byKey.values()].sort((a, b) => (a.node?.rank ?? -1) - (b.node?.rank ?? -1));
    for (const g of groups) g.worstFraction = Math.max(0, g.worstFraction);
    this.groupsCache = { key: cacheKey, groups };
    return groups;
  }

  private addEval(m: EvalMessage): void {
    const e = this.evals;
    if (e.step.length && m.step <= e.step.last()) {
      const keep = lowerBound(e.step.data, e.step.length, m.step);
      e.step.truncate(keep);
      e.t.truncate(keep);
      e.loss.truncate(keep);
    }
    e.step.push(m.step);
    e.t.push(m.t ?? NaN);
    e.loss.push(m.loss);
    this.versions.evals++;
  }

  /**
   * Comm messages carry totals since the start per rank. Per-step cost = the difference between two
   * reports of the same rank over the steps between them; the ranks reporting for one step are averaged.
   */
  private addComm(m: CommMessage): void {
    this.comm.set(m.rank, m);
    this.versions.comm++;
    if (m.step === undefined) return;
    if (this.commRound && m.step !== this.commRound.step) this.closeCommRound();
    this.commRound ??= { step: m.step, t: m.t, sums: new Map(), ranks: new Set() };
    const round = this.commRound;
    round.ranks.add(m.rank);
    round.t = Math.max(round.t, m.t);
    for (const c of m.collectives) {
      const key = `${m.rank}:${c.kind}`;
      const prev = this.commPrev.get(key);
      this.commPrev.set(key, { step: m.step, ms: c.ms, bytes: c.bytes });
      if (!prev || m.step <= prev.step || c.ms < prev.ms) continue; // first report, or the totals restarted
      const steps = m.step - prev.step;
      const s = round.sums.get(c.kind) ?? { ms: 0, bytes: 0, ranks: 0 };
      s.ms += (c.ms - prev.ms) / steps;
      s.bytes += (c.bytes - prev.bytes) / steps;
      s.ranks++;
      round.sums.set(c.kind, s);
    }
    if (round.ranks.size >= this.world) this.closeCommRound();
  }

  private closeCommRound(): void {
    const round = this.commRound;
    this.commRound = null;
    if (!round) return;
    for (const [kind, s] of round.sums) {
      if (s.ranks === 0) continue;
      let series = this.commSeries.get(kind);
      if (!series) this.commSeries.set(kind, (series = new CommSeries()));
      if (series.step.length && round.step <= series.step.last()) continue;
      series.step.push(round.step);
      series.t.push(round.t);
      series.msPerStep.push(s.ms / s.ranks);
      series.bytesPerStep.push(s.bytes / s.ranks);
    }
  }

  /** Totals since the start over all ranks, per collective kind (latest report of each rank). */
  commTotals(): { kind: string; calls: number; bytes: number; ms: number }[] {
    const totals = new Map<string, { kind: string; calls: number; bytes: number; ms: number }>();
    for (const m of this.comm.values()) {
      for (const c of m.collectives) {
        const t = totals.get(c.kind) ?? { kind: c.kind, calls: 0, bytes: 0, ms: 0 };
        t.calls += c.calls;
        t.bytes += c.bytes;
        t.ms += c.ms;
        totals.set(c.kind, t);
      }
    }
    return [...totals.values()].sort((a, b) => b.ms - a.ms);
  }
}
