// Alerts a monitor owes its user, each raised once per crossing and cleared with hysteresis:
//   memory-high     peak memory (per rank, or per GPU from the driver) past 90% of capacity, cleared under
//                   85%, with a time-to-full from the recent trend;
//   memory-leak     the per-step peak keeps growing after warm-up; and, when the run's length is known, a
//                   forecast (id memory-oom:rankN): the rank's trend crosses its capacity before the last
//                   step — naming the step and the time, cleared when the trend stops;
//   loss-nan        the loss is NaN or infinite (raised once);
//   loss-diverging  the smoothed loss climbs well above its best;
//   collector-down  the GPU sampler lost nvidia-smi;  gpu-lost  the driver reports a GPU as lost.
// GPU alerts of a multi-node run carry the node: memory-high:node1:gpu5, gpu-lost:node1:<uuid>.
// Pure: times come from the messages, so tests drive it with synthetic series.
import type { AlertMessage, AlertSeverity, GpuMessage, MemoryMessage, Message, NodeRef, StepMessage } from '../../common/protocol';
import { formatBytes } from '../../common/units';

export interface AlertOptions {
  highWater: number;
  lowWater: number;
  /** Samples in the time-to-full regression. */
  trendSamples: number;
  /** Steps skipped before leak and divergence checks (allocator warm-up, first optimizer step). */
  warmupSteps: number;
  /** Steps in the leak window. */
  leakWindow: number;
  /** Growth over the window below this is noise (bytes). */
  leakMinBytes: number;
  /** …or below this fraction of capacity. */
  leakMinFraction: number;
  /** Smoothed loss above best·divergeFactor for divergeSteps steps raises; under best·divergeClearFactor clears. */
  divergeFactor: number;
  divergeClearFactor: number;
  divergeSteps: number;
  emaBeta: number;
  /** Per-device capacity in bytes, for step records before any per-rank memory message arrives. */
  capacity?: number;
  /** The run's optimizer steps, when known (it may become known during the run): the out-of-memory forecast. */
  totalSteps?: () => number | undefined;
}

export const DEFAULT_ALERT_OPTIONS: AlertOptions = {
  highWater: 0.9,
  lowWater: 0.85,
  trendSamples: 16,
  warmupSteps: 10,
  leakWindow: 20,
  leakMinBytes: 2 ** 20,
  leakMinFraction: 0.01,
  divergeFactor: 2,
  divergeClearFactor: 1.5,
  divergeSteps: 5,
  emaBeta: 0.9,
};

interface Context {
  t: number;
  step?: number;
  rank?: number;
  device?: string;
  node?: NodeRef;
}

/** Least-squares slope of used bytes over time, in bytes per second. */
export function slopePerSecond(samples: { t: number; used: number }[]): number {
  return slope(samples.map((s) => ({ x: s.t / 1000, y: s.used })));
}

/** Least-squares slope of y over x. */
function slope(points: { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const x0 = points[0]!.x;
  let sx = 0,
    sy = 0,
    sxx = 0,
    sxy = 0;
  for (const p of points) {
    const x = p.x - x0;
    sx += x;
    sy += p.y;
    sxx += x * x;
    sxy += x * p.y;
  }
  const den = n * sxx - sx * sx;
  return den === 0 ? 0 : (n * sxy - sx * sy) / den;
}

class CapacityMeter {
  raised = false;
  samples: { t: number; used: number }[] = [];
}

class LeakMeter {
  raised = false;
  window: number[] = [];
}

class ForecastMeter {
  raised = false;
  samples: { step: number; t: number; used: number }[] = [];
}

export class AlertEngine {
  private readonly o: AlertOptions;
  private readonly capacity = new Map<string, CapacityMeter>();
  private readonly leaks = new Map<string, LeakMeter>();
  private readonly forecasts = new Map<string, ForecastMeter>();
  private readonly lostGpus = new Set<string>();
  private perRankMemory = false;
  private lossNanRaised = false;
  private ema = 0;
  private emaSteps = 0;
  private bestLoss = Infinity;
  private divergingFor = 0;
  private diverging = false;
  private collectorDown = false;

  constructor(
    private readonly emit: (alert: AlertMessage) => void,
    options: Partial<AlertOptions> = {},
  ) {
    this.o = { ...DEFAULT_ALERT_OPTIONS, ...options };
  }

  observe(msg: Message): void {
    if (msg.type === 'step') this.onStep(msg);
    else if (msg.type === 'memory') this.onMemory(msg);
    else if (msg.type === 'gpu') this.onGpu(msg);
  }

  /** The GPU sampler's health: raised once when it goes down, cleared when readings resume. */
  collector(up: boolean, reason: string, t = Date.now()): void {
    if (!up && !this.collectorDown) {
      this.collectorDown = true;
      this.send('collector-down:gpu', 'collector-down', 'warning', 'raised', `GPU readings stopped: ${reason}. Training continues; the sampler retries with back-off.`, { t });
    } else if (up && this.collectorDown) {
      this.collectorDown = false;
      this.send('collector-down:gpu', 'collector-down', 'info', 'cleared', `GPU readings resumed${reason ? ` (${reason})` : ''}`, { t });
    }
  }

  private send(id: string, kind: AlertMessage['kind'], severity: AlertSeverity, state: AlertMessage['state'], message: string, c: Context, extra: Partial<AlertMessage> = {}): void {
    const a: AlertMessage = { type: 'alert', id, kind, severity, state, message, t: c.t, ...extra };
    if (c.step !== undefined) a.step = c.step;
    if (c.rank !== undefined) a.rank = c.rank;
    if (c.device !== undefined) a.device = c.device;
    if (c.node !== undefined) a.node = c.node;
    this.emit(a);
  }

  private onStep(s: StepMessage): void {
    const c: Context = { t: s.t ?? Date.now(), step: s.step };
    if (!Number.isFinite(s.loss)) {
      if (!this.lossNanRaised) {
        this.lossNanRaised = true;
        this.send(
          'loss-nan',
          'loss-nan',
          'critical',
          'raised',
          `loss is ${s.loss} at step ${s.step}: training has diverged numerically (lower the learning rate, check the data, or enable gradient clipping)`,
          c,
        );
      }
    } else this.trackDivergence(s.loss, c);
    if (!this.perRankMemory && this.o.capacity) {
      this.checkCapacity('memory-high:run', 'peak memory', s.memory.peak, this.o.capacity, c);
      this.checkLeak('memory-leak:run', 'peak memory', s.step, s.memory.peak, this.o.capacity, c);
    }
  }

  private onMemory(m: MemoryMessage): void {
    this.perRankMemory = true;
    const c: Context = { t: m.t, rank: m.rank };
    if (m.step !== undefined) c.step = m.step;
    if (m.device !== undefined) c.device = m.device;
    if (m.node !== undefined) c.node = m.node;
    if (m.capacity > 0) this.checkCapacity(`memory-high:rank${m.rank}`, `rank ${m.rank} peak memory`, m.stepPeak, m.capacity, c);
    if (m.step !== undefined) this.checkLeak(`memory-leak:rank${m.rank}`, `rank ${m.rank} peak memory`, m.step, m.stepPeak, m.capacity, c);
    if (m.step !== undefined && m.capacity > 0) this.checkForecast(`memory-oom:rank${m.rank}`, `rank ${m.rank}`, m.step, m.stepPeak, m.capacity, c);
  }

  /**
   * The out-of-memory forecast: over the last `trendSamples` steps after warm-up, the per-step growth of the
   * peak (least squares) carried to the run's last step. Raised when it reaches the capacity before then,
   * cleared when the window's growth is noise again or the projection falls under the low-water mark.
   */
  private checkForecast(id: string, who: string, step: number, used: number, capacity: number, c: Context): void {
    if (step < this.o.warmupSteps) return;
    let f = this.forecasts.get(id);
    if (!f) this.forecasts.set(id, (f = new ForecastMeter()));
    f.samples.push({ step, t: c.t, used });
    if (f.samples.length > this.o.trendSamples) f.samples.shift();
    const total = this.o.totalSteps?.();
    if (total === undefined || f.samples.length < this.o.trendSamples) return;
    const first = f.samples[0]!;
    if (step <= first.step) return;
    const perStep = slope(f.samples.map((s) => ({ x: s.step, y: s.used })));
    const growth = used - first.used;
    const noise = Math.max(this.o.leakMinBytes, this.o.leakMinFraction * capacity);
    const atEnd = used + perStep * Math.max(0, total - step);
    if (!f.raised && perStep > 0 && growth > noise && used < capacity && atEnd >= capacity) {
      f.raised = true;
      const crossStep = step + Math.ceil((capacity - used) / perStep);
      const secPerStep = (c.t - first.t) / 1000 / (step - first.step);
      const timeToFullSec = Math.max(0, (crossStep - step) * secPerStep);
      this.send(
        id,
        'memory-leak',
        'warning',
        'raised',
        `${who} will run out of memory at step ${crossStep} of ${total} (in ~${formatDuration(timeToFullSec)}): its peak grows ${formatBytes(perStep)}/step, ${formatBytes(used)} of ${formatBytes(capacity)} now`,
        c,
        { timeToFullSec },
      );
    } else if (f.raised && (growth <= noise || atEnd < capacity * this.o.lowWater)) {
      f.raised = false;
      this.send(id, 'memory-leak', 'info', 'cleared', `${who} memory stopped growing toward its capacity (${formatBytes(used)} of ${formatBytes(capacity)})`, c);
    }
  }

  private onGpu(g: GpuMessage): void {
    // Device indices and UUIDs are only unique on one machine (a fake or cloned driver repeats UUIDs
    // across nodes): a sample that names its node (multi-node) puts it in ids and messages; one without
    // (one machine) keeps the single-machine ids.
    const idNode = g.node ? `node${g.node.rank}:` : '';
    const where = g.node ? `node ${g.node.rank} (${g.node.host}) ` : '';
    for (const d of g.devices) {
      const c: Context = { t: g.t, device: d.uuid, ...(g.node ? { node: g.node } : {}) };
      const id = `gpu-lost:${idNode}${d.uuid}`;
      if (d.lost && !this.lostGpus.has(id)) {
        this.lostGpus.add(id);
        this.send(id, 'gpu-lost', 'critical', 'raised', `${where}GPU ${d.index} (${d.name}) is lost: the driver cannot reach it; ranks on it will fail (a reboot is usually needed)`, c);
      } else if (!d.lost && this.lostGpus.has(id)) {
        this.lostGpus.delete(id);
        this.send(id, 'gpu-lost', 'info', 'cleared', `${where}GPU ${d.index} (${d.name}) reports again`, c);
      }
      if (d.memoryUsed === null || d.memoryTotal === null) continue;
      const usable = d.memoryTotal - (d.memoryReserved ?? 0);
      if (usable > 0) this.checkCapacity(`memory-high:${idNode}gpu${d.index}`, `${where}GPU ${d.index} memory`, d.memoryUsed, usable, c);
    }
  }

  private checkCapacity(id: string, what: string, used: number, capacity: number, c: Context): void {
    let m = this.capacity.get(id);
    if (!m) this.capacity.set(id, (m = new CapacityMeter()));
    m.samples.push({ t: c.t, used });
    if (m.samples.length > this.o.trendSamples) m.samples.shift();
    const ratio = used / capacity;
    if (!m.raised && ratio >= this.o.highWater) {
      m.raised = true;
      const slope = slopePerSecond(m.samples);
      const extra: Partial<AlertMessage> = {};
      let trend = 'steady at the current trend';
      if (slope > 0) {
        extra.timeToFullSec = Math.max(0, (capacity - used) / slope);
        trend = `full in ~${formatDuration(extra.timeToFullSec)} at the current trend`;
      }
      const severity: AlertSeverity = ratio >= 0.98 ? 'critical' : 'warning';
      this.send(id, 'memory-high', severity, 'raised', `${what} ${formatBytes(used)} is ${(ratio * 100).toFixed(0)}% of ${formatBytes(capacity)}; ${trend}`, c, extra);
    } else if (m.raised && ratio < this.o.lowWater) {
      m.raised = false;
      this.send(id, 'memory-high', 'info', 'cleared', `${what} back to ${(ratio * 100).toFixed(0)}% of ${formatBytes(capacity)}`, c);
    }
  }

  private checkLeak(id: string, what: string, step: number, value: number, capacity: number, c: Context): void {
    if (step < this.o.warmupSteps) return;
    let m = this.leaks.get(id);
    if (!m) this.leaks.set(id, (m = new LeakMeter()));
    m.window.push(value);
    if (m.window.length > this.o.leakWindow) m.window.shift();
    if (m.window.length < this.o.leakWindow) return;
    const w = m.window;
    const growth = w[w.length - 1]! - w[0]!;
    let ups = 0,
      downs = 0;
    for (let i = 1; i < w.length; i++) {
      if (w[i]! > w[i - 1]!) ups++;
      else if (w[i]! < w[i - 1]!) downs++;
    }
    const noise = Math.max(this.o.leakMinBytes, this.o.leakMinFraction * (capacity > 0 ? capacity : w[0]!));
    if (!m.raised && growth > noise && ups >= (w.length - 1) / 2 && downs <= (w.length - 1) / 10) {
      m.raised = true;
      const perStep = growth / (w.length - 1);
      this.send(
        id,
        'memory-leak',
        'warning',
        'raised',
        `${what} grew by ${formatBytes(growth)} over the last ${w.length - 1} steps (+${formatBytes(perStep)}/step) after warm-up: something is kept alive across steps`,
        c,
      );
      m.window = [];
    } else if (m.raised && Math.abs(growth) <= noise) {
      m.raised = false;
      this.send(id, 'memory-leak', 'info', 'cleared', `${what} stopped growing`, c);
    }
  }

  private trackDivergence(loss: number, c: Context): void {
    const b = this.o.emaBeta;
    this.emaSteps++;
    this.ema = b * this.ema + (1 - b) * loss;
    const smoothed = this.ema / (1 - b ** this.emaSteps);
    if (this.emaSteps <= this.o.warmupSteps) return;
    this.bestLoss = Math.min(this.bestLoss, smoothed);
    if (!(this.bestLoss > 0)) return;
    if (!this.diverging) {
      this.divergingFor = smoothed > this.bestLoss * this.o.divergeFactor ? this.divergingFor + 1 : 0;
      if (this.divergingFor >= this.o.divergeSteps) {
        this.diverging = true;
        this.send(
          'loss-diverging',
          'loss-diverging',
          'warning',
          'raised',
          `smoothed loss ${smoothed.toPrecision(4)} is ${(smoothed / this.bestLoss).toFixed(1)}× its best (${this.bestLoss.toPrecision(4)}) for ${this.divergingFor} steps: the run is diverging (lower the learning rate or lengthen warm-up)`,
          c,
        );
      }
    } else if (smoothed < this.bestLoss * this.o.divergeClearFactor) {
      this.diverging = false;
      this.divergingFor = 0;
      this.send('loss-diverging', 'loss-diverging', 'info', 'cleared', `smoothed loss back to ${smoothed.toPrecision(4)}`, c);
    }
  }
}

function formatDuration(sec: number): string {
  if (sec < 90) return `${Math.round(sec)} s`;
  if (sec < 5400) return `${Math.round(sec / 60)} min`;
  return `${(sec / 3600).toFixed(1)} h`;
}
