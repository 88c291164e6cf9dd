// The Curves tab: loss (raw faint + debiased EMA, eval loss, log scale), learning rate, grad norm,
// throughput, and communication time / bytes per step by collective kind; an optional second run drawn
// dashed on top. Every series is cut to the shared x range and downsampled to the plot's pixel width
// before chart.js sees it: min/max per pixel for spiky series, LTTB for smooth ones.
import { SeriesChart, type SeriesData, type SeriesSpec } from '../charts';
import { h, setText } from '../dom';
import { DebiasedEma, lowerBound, lttb, minMaxPerPixel, upperBound, type XY } from '../downsample';
import { formatBytes, formatClock, formatCount, formatDuration, formatValue } from '../format';
import type { RunData } from '../store';
import type { ChartTheme } from '../theme';
import type { UiState } from '../ui-state';

export interface CurveChartDef {
  id: string;
  title: string;
  yTitle: string;
  yFormat: (v: number) => string;
  wide?: boolean;
  help: string;
}

const rate = (v: number): string => (Math.abs(v) >= 1e4 ? `${formatCount(v / 1e3, 1)}k` : formatCount(v, Math.abs(v) < 10 ? 2 : 0));

export const CURVE_CHARTS: CurveChartDef[] = [
  { id: 'loss', title: 'Loss', yTitle: 'loss', yFormat: formatValue, wide: true, help: 'Training loss: raw values faint, debiased EMA on top; eval loss as points.' },
  { id: 'lr', title: 'Learning rate', yTitle: 'learning rate', yFormat: formatValue, help: 'Learning rate per step.' },
  { id: 'gradnorm', title: 'Gradient norm', yTitle: 'global grad norm', yFormat: formatValue, help: 'Global gradient norm before clipping (min/max per pixel, spikes kept).' },
  { id: 'throughput', title: 'Throughput', yTitle: 'tokens/s', yFormat: rate, help: 'Tokens per second per step.' },
  { id: 'steptime', title: 'Step time', yTitle: 'ms per step', yFormat: (v) => formatCount(v, v < 10 ? 1 : 0), help: 'Wall time of each optimizer step (min/max per pixel).' },
  { id: 'comm-time', title: 'Communication time', yTitle: 'ms per step', yFormat: (v) => formatCount(v, v < 10 ? 2 : 0), help: 'Time in collectives per training step, by kind (mean over ranks).' },
  { id: 'comm-bytes', title: 'Communication volume', yTitle: 'bytes per step', yFormat: (v) => formatBytes(v, 1), help: 'Bytes moved by collectives per training step, by kind (mean over ranks).' },
];

interface Frame {
  xs: Float64Array;
  i0: number;
  i1: number;
  xMin: number;
  xMax: number;
  fromStep: number;
  toStep: number;
}

/**
 * Time since the run started, in seconds, per step (cached per run and length). Steps recorded without a
 * time (metrics.jsonl of older runtimes) are placed after the previous one by their own step time, so the
 * axis is a good estimate rather than a column of NaN.
 */
class TimeAxis {
  private cache = new WeakMap<RunData, { length: number; xs: Float64Array }>();
  of(run: RunData): Float64Array {
    const n = run.steps.length;
    const t = run.steps.col('t');
    const stepMs = run.steps.col('stepMs');
    const t0 = run.hello?.startedAt ?? (n && Number.isFinite(t[0]!) ? t[0]! : 0);
    let c = this.cache.get(run);
    if (!c || c.length > n || c.xs.length < n) {
      const xs = new Float64Array(Math.max(1024, run.steps.cols.t.data.length));
      c = { length: 0, xs };
      this.cache.set(run, c);
    }
    for (let i = c.length; i < n; i++) {
      const prev = i > 0 ? c.xs[i - 1]! : 0;
      c.xs[i] = Number.isFinite(t[i]!) ? (t[i]! - t0) / 1000 : prev + (Number.isFinite(stepMs[i]!) ? stepMs[i]! / 1000 : 0);
    }
    c.length = n;
    return c.xs;
  }
}

/** A run drawn over the shown one (dashed), under its distinct label. */
export interface Overlay {
  run: RunData;
  label: string;
}

/** Overlay colours: the shown run keeps series 0 (and 1 for eval); overlays take the others in turn. */
const OVERLAY_COLORS = [3, 2, 4, 5, 1];

export class CurvesView {
  readonly root: HTMLElement;
  readonly charts = new Map<string, SeriesChart>();
  readonly wraps = new Map<string, HTMLElement>();
  private readonly captions = new Map<string, HTMLElement>();
  private readonly ema = new WeakMap<RunData, DebiasedEma>();
  private readonly timeAxis = new TimeAxis();
  /** What each chart shows (its inputs' key): a chart is redrawn only when its key changes. */
  private readonly drawn = new Map<string, string>();
  private axisShown: UiState['xAxis'] | null = null;
  /** x range shown, in the axis's units, and the step range it covers (for zoom by keys). */
  shown: { xMin: number; xMax: number; fromStep: number; toStep: number } | null = null;

  /** Set by the dashboard: a chart changed size, redraw. */
  onResize: (() => void) | null = null;

  /** Shown above the charts until the first step arrives. */
  readonly emptyHint: HTMLElement;

  constructor(theme: ChartTheme, hint = 'Waiting for the first step…') {
    this.emptyHint = h('p', { class: 'empty-hint muted', id: 'curves-empty' }, hint);
    this.root = h('div', { class: 'chart-grid' });
    for (const def of CURVE_CHARTS) {
      const canvas = h('canvas', { id: `${def.id}-chart`, role: 'img', 'aria-label': `${def.title} chart` });
      const selection = h('div', { class: 'zoom-selection', hidden: true });
      const wrap = h(
        'div',
        { class: 'chart-wrap', tabindex: 0, 'data-chart': def.id, 'aria-label': `${def.title}. ${def.help} Drag to zoom; keys: + and − zoom, arrows pan, 0 resets.` },
        canvas,
        selection,
      );
      const caption = h('p', { class: 'chart-caption muted small', id: `${def.id}-caption` });
      this.captions.set(def.id, caption);
      const section = h('section', { class: `chart-box${def.wide ? ' wide' : ''}`, id: `box-${def.id}` }, h('h2', null, def.title), wrap, caption);
      this.root.append(section);
      this.wraps.set(def.id, wrap);
      this.charts.set(def.id, new SeriesChart(def.id, canvas, theme, { yTitle: def.yTitle, yFormat: def.yFormat, xTitle: 'step', xFormat: (v) => formatCount(v), onResize: () => this.onResize?.() }));
    }
  }

  /** The loss chart's canvas: the one the ping contract measures. */
  get lossCanvas(): HTMLCanvasElement {
    return this.charts.get('loss')!.canvas;
  }

  applyTheme(theme: ChartTheme): void {
    for (const c of this.charts.values()) c.applyTheme(theme);
    this.drawn.clear();
  }

  xsOf(run: RunData, axis: UiState['xAxis']): Float64Array {
    return axis === 'step' ? run.steps.col('step') : this.timeAxis.of(run);
  }

  /** Step at an x value of the current axis (for zooming on a time axis). */
  stepAt(run: RunData, axis: UiState['xAxis'], x: number): number {
    const n = run.steps.length;
    if (!n) return x;
    if (axis === 'step') return x;
    const xs = this.timeAxis.of(run);
    const i = Math.min(n - 1, lowerBound(xs, n, x));
    return run.steps.col('step')[i]!;
  }

  /**
   * Redraws the charts whose data or view changed, most important first, within `budgetMs` (at least one
   * chart per call): what is left is drawn on the next frame (returns true while charts are waiting), so
   * one update never blocks the page for long however many charts there are. Reads no layout (that would
   * force a reflow every frame): widths come from chart.js's own resize handling.
   */
  render(run: RunData | null, overlays: Overlay[], state: UiState, force = false, budgetMs = Infinity): boolean {
    const t0 = performance.now();
    if (force) this.drawn.clear();
    const axis = state.xAxis;
    if (axis !== this.axisShown) {
      this.axisShown = axis;
      const xFormat = axis === 'step' ? (x: number) => formatCount(x) : formatClock;
      for (const c of this.charts.values()) {
        const x = c.chart.options.scales!.x as { title: { text: string; display: boolean }; ticks: { callback?: unknown } };
        x.title.text = axis === 'step' ? 'step' : 'time since start (h:mm:ss)';
        x.title.display = true;
        x.ticks.callback = (value: number | string) => xFormat(Number(value));
      }
      this.drawn.clear();
    }
    const frame = this.frameOf(run, overlays, state);
    this.emptyHint.hidden = frame !== null;
    if (!frame) {
      this.shown = null;
      for (const c of this.charts.values()) {
        if (this.drawn.get(c.id) === 'empty') continue;
        c.update([], 0, 100, c.id === 'loss' && state.logScale);
        this.drawn.set(c.id, 'empty');
      }
      return false;
    }
    this.shown = { xMin: frame.xMin, xMax: frame.xMax, fromStep: frame.fromStep, toStep: frame.toStep };
    const v = run!.versions;
    const cmp = overlays.map((o) => `${o.run.runId}:${o.label}:${o.run.versions.steps}:${o.run.versions.evals}`).join(',') || '-';
    const common = `${run!.runId}|${axis}|${frame.xMin}|${frame.xMax}`;
    const keys: [string, string][] = [
      ['loss', `${common}|${v.steps}|${v.evals}|${cmp}|${state.smoothing}|${state.logScale}`],
      ['lr', `${common}|${v.steps}|${cmp}`],
      ['gradnorm', `${common}|${v.steps}|${cmp}`],
      ['throughput', `${common}|${v.steps}|${cmp}`],
      ['steptime', `${common}|${v.steps}|${cmp}`],
      ['comm-time', `${common}|${v.comm}`],
      ['comm-bytes', `${common}|${v.comm}`],
    ];
    let pending = false;
    let drew = 0;
    for (const [id, k] of keys) {
      const chart = this.charts.get(id)!;
      const key = `${k}|${chart.plotWidth()}`;
      if (this.drawn.get(id) === key) continue;
      if (drew > 0 && performance.now() - t0 > budgetMs) {
        pending = true;
        continue;
      }
      this.draw(id, run!, overlays, state, frame);
      this.drawn.set(id, key);
      drew++;
    }
    return pending;
  }

  /**
   * The x range to show: the zoom, or everything — the shown run and every overlay over its whole range —
   * with the right edge rounded up so it moves in steps.
   */
  private frameOf(run: RunData | null, overlays: Overlay[], state: UiState): Frame | null {
    if (!run || run.steps.length === 0) return null;
    const axis = state.xAxis;
    const n = run.steps.length;
    const steps = run.steps.col('step');
    const xs = this.xsOf(run, axis);
    let i0 = 0;
    let i1 = n;
    if (state.zoom) {
      i0 = lowerBound(steps, n, state.zoom.from);
      i1 = Math.max(i0, upperBound(steps, n, state.zoom.to));
    }
    if (i1 - i0 < 1) {
      i0 = Math.max(0, n - 1);
      i1 = n;
    }
    let xMin = xs[i0]!;
    let xMax = xs[i1 - 1]!;
    if (!state.zoom) {
      for (const o of overlays) {
        const on = o.run.steps.length;
        if (!on) continue;
        const oxs = this.xsOf(o.run, axis);
        if (Number.isFinite(oxs[0]!)) xMin = Math.min(xMin, oxs[0]!);
        if (Number.isFinite(oxs[on - 1]!)) xMax = Math.max(xMax, oxs[on - 1]!);
      }
    }
    if (state.zoom && axis === 'step') {
      xMin = state.zoom.from;
      xMax = state.zoom.to;
    } else if (!state.zoom) {
      // Following a live run: a new step moves the edge only every 1/20 of a decade, so charts whose
      // data did not change (communication, eval) need no redraw for most updates.
      const span = Math.max(1, xMax - xMin);
      const unit = Math.max(axis === 'step' ? 1 : 1, 10 ** Math.floor(Math.log10(span)) / 20);
      xMax = Math.ceil(xMax / unit) * unit;
    }
    if (xMax <= xMin) xMax = xMin + 1;
    return { xs, i0, i1, xMin, xMax, fromStep: steps[i0]!, toStep: steps[i1 - 1]! };
  }

  private draw(id: string, run: RunData, overlays: Overlay[], state: UiState, f: Frame): void {
    const { xs, i0, i1, xMin, xMax } = f;
    const axis = state.xAxis;
    const cols = Math.ceil(this.charts.get(id)!.plotWidth() / 2);
    const log = state.logScale;
    const range = (r: RunData): [Float64Array, number, number] => {
      const rxs = this.xsOf(r, axis);
      const rn = r.steps.length;
      return [rxs, lowerBound(rxs, rn, xMin), upperBound(rxs, rn, xMax)];
    };
    const emaOf = (r: RunData): Float64Array => {
      let e = this.ema.get(r);
      if (!e) this.ema.set(r, (e = new DebiasedEma()));
      return e.extend(r.steps.col('loss'), r.steps.length, state.smoothing);
    };
    const drawn = overlays.filter((o) => o.run.steps.length > 0);
    if (id === 'loss') {
      // Columns of 2 CSS px: min/max gives at most one point per pixel, LTTB one per two.
      const series: SeriesData[] = [];
      const smoothingOn = state.smoothing > 0;
      series.push({
        spec: { key: 'loss-raw', label: smoothingOn ? 'loss (raw)' : 'loss', color: 0, faint: smoothingOn, hideInLegend: smoothingOn },
        data: minMaxPerPixel(xs, run.steps.col('loss'), i0, i1, cols, log),
      });
      if (smoothingOn) series.push({ spec: { key: 'loss-ema', label: `loss (EMA ${state.smoothing.toFixed(2)})`, color: 0 }, data: lttb(xs, emaOf(run), i0, i1, cols, log) });
      const evals = this.evalPoints(run, axis, xMin, xMax, log, cols);
      series.push({ spec: { key: 'eval', label: 'eval loss', color: 1, points: evals.length <= 200 }, data: evals });
      drawn.forEach(({ run: compare, label }, k) => {
        const color = OVERLAY_COLORS[k % OVERLAY_COLORS.length]!;
        const [cxs, c0, c1] = range(compare);
        if (smoothingOn)
          series.push({ spec: { key: `cmp${k}-loss-raw`, label: `${label} (raw)`, color, faint: true, hideInLegend: true }, data: minMaxPerPixel(cxs, compare.steps.col('loss'), c0, c1, cols, log) });
        series.push({
          spec: { key: `cmp${k}-loss`, label: smoothingOn ? `${label} (EMA)` : label, color, dashed: true },
          data: smoothingOn ? lttb(cxs, emaOf(compare), c0, c1, cols, log) : minMaxPerPixel(cxs, compare.steps.col('loss'), c0, c1, cols, log),
        });
        series.push({ spec: { key: `cmp${k}-eval`, label: `${label} eval`, color, points: true, dashed: true, hideInLegend: true }, data: this.evalPoints(compare, axis, xMin, xMax, log, cols) });
      });
      this.update(id, series, xMin, xMax, log);
      return;
    }
    const simple: Record<string, ['lr' | 'gradNorm' | 'tokensPerSec' | 'stepMs', string, boolean]> = {
      lr: ['lr', 'learning rate', true],
      gradnorm: ['gradNorm', 'grad norm', false],
      throughput: ['tokensPerSec', 'tokens/s', false],
      steptime: ['stepMs', 'step time', false],
    };
    if (simple[id]) {
      const [field, label, smooth] = simple[id]!;
      const pick = (r: RunData, rxs: Float64Array, a: number, b: number): XY[] => (smooth ? lttb(rxs, r.steps.col(field), a, b, cols) : minMaxPerPixel(rxs, r.steps.col(field), a, b, cols));
      const series: SeriesData[] = [{ spec: { key: field, label, color: 0 }, data: pick(run, xs, i0, i1) }];
      drawn.forEach(({ run: compare, label }, k) =>
        series.push({ spec: { key: `cmp${k}-${field}`, label, color: OVERLAY_COLORS[k % OVERLAY_COLORS.length]!, dashed: true }, data: pick(compare, ...range(compare)) }),
      );
      this.update(id, series, xMin, xMax, false);
      return;
    }
    // Communication by collective kind
    const series: SeriesData[] = [];
    const t0 = run.hello?.startedAt ?? 0;
    [...run.commSeries.keys()].sort().forEach((kind, k) => {
      const s = run.commSeries.get(kind)!;
      const m = s.step.length;
      let cx: Float64Array;
      if (axis === 'step') cx = s.step.data;
      else {
        cx = new Float64Array(m);
        for (let i = 0; i < m; i++) cx[i] = (s.t.data[i]! - t0) / 1000;
      }
      const a = lowerBound(cx, m, xMin);
      const b = upperBound(cx, m, xMax);
      const values = id === 'comm-time' ? s.msPerStep.data : s.bytesPerStep.data;
      series.push({ spec: { key: `${kind}-${id}`, label: kind, color: k } as SeriesSpec, data: minMaxPerPixel(cx, values, a, b, cols) });
    });
    this.update(id, series, xMin, xMax, false);
    // Totals since the start (latest report of every rank): all a snapshot carries about collectives.
    const totals = run.commTotals();
    // A run without collectives (one device) gets no empty communication charts.
    const box = this.root.querySelector(`#box-${id}`) as HTMLElement;
    const none = totals.length === 0 && series.length === 0;
    if (box.hidden !== none) box.hidden = none;
    const ranks = run.comm.size;
    const text = totals.length
      ? `Since the start, over ${ranks} rank${ranks === 1 ? '' : 's'}: ${totals.map((t) => (id === 'comm-time' ? `${t.kind} ${formatDuration(t.ms)} (${formatCount(t.calls)} calls)` : `${t.kind} ${formatBytes(t.bytes)}`)).join(' · ')}.${series.length ? '' : ' No per-step reports yet: the chart starts with the next one.'}`
      : 'No collectives reported (one device, or the runtime does not report them).';
    setText(this.captions.get(id)!, text);
  }

  private update(id: string, series: SeriesData[], xMin: number, xMax: number, log: boolean): void {
    // A series with no points is left out, so an empty chart shows no legend swatch.
    this.charts.get(id)!.update(
      series.filter((s) => s.data.length > 0),
      xMin,
      xMax,
      log,
    );
  }

  /** Eval losses in the range; min/max per pixel column once there are more than the plot can show. */
  private evalPoints(run: RunData, axis: UiState['xAxis'], xMin: number, xMax: number, log: boolean, cols = 600): XY[] {
    const e = run.evals;
    const n = e.step.length;
    let xs: Float64Array = e.step.data;
    if (axis === 'time') {
      const t0 = run.hello?.startedAt ?? 0;
      xs = new Float64Array(n);
      for (let i = 0; i < n; i++) xs[i] = (e.t.data[i]! - t0) / 1000;
    }
    return minMaxPerPixel(xs, e.loss.data, lowerBound(xs, n, xMin), upperBound(xs, n, xMax), cols, log);
  }

  inspect() {
    return [...this.charts.values()].map((c) => c.inspect());
  }
}
