// The Memory tab: one card per rank. A stacked bar of the measured categories against the device's
// capacity with the step's peak as a line; per category the measured bytes, the planner's prediction as a
// marker on the same scale and the error; a sparkline of the step peak since the start with its maximum;
// and, where a GPU exists, the driver's own reading (used / total / reserved, utilisation, temperature,
// power, memory per process). The runtime is the authority on the breakdown, the driver on the totals
// (docs/dashboard.md): both are shown, and the gap between them.
import { fill, h, setText } from '../dom';
import { minMaxPerPixel } from '../downsample';
import { formatBytes, formatDuration, formatError, formatPercent } from '../format';
import type { MemoryPanelInspection } from '../messages';
import { CATEGORY_LABEL, DISPLAY_CATEGORIES, groupCategories, levelOf, predictionFor, type DisplayCategory, type Level } from '../metrics';
import type { GpuDevice } from '../../common/protocol';
import type { RankMemory, RunData } from '../store';
import type { ChartTheme } from '../theme';

interface Card {
  rank: number;
  root: HTMLElement;
  title: HTMLElement;
  usage: HTMLElement;
  segments: Map<DisplayCategory, HTMLElement>;
  peakLine: HTMLElement;
  /** The device capacity on the bar's scale (hidden when off scale). */
  capLine: HTMLElement;
  scaleEnd: HTMLElement;
  stack: HTMLElement;
  rows: Map<DisplayCategory, { row: HTMLElement; measured: HTMLElement; bar: HTMLElement; marker: HTMLElement; predicted: HTMLElement; error: HTMLElement }>;
  sparkCanvas: HTMLCanvasElement;
  sparkLabel: HTMLElement;
  predictionNote: HTMLElement;
  gpu: HTMLElement;
  drawnVersion: number;
  drawnWidth: number;
  level: Level;
  gpuDevice: GpuDevice | null;
  gpuKey: string;
}

/** From this many ranks on, the panel is one compact table instead of a card per rank. */
export const COMPACT_FROM = 16;

export class MemoryView {
  readonly root: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly note: HTMLElement;
  private cards = new Map<number, Card>();
  /** One row per rank once there are COMPACT_FROM ranks or more (cards for 64 ranks are a long scroll). */
  private readonly compact: HTMLElement;
  private lastKey = '';
  private shownRunId: string | null = null;
  /** CSS size of each sparkline canvas, kept by the observer. */
  private readonly sparkSize = new WeakMap<Element, { w: number; h: number }>();
  private resized = 0;
  private readonly observer = new ResizeObserver((entries) => {
    for (const e of entries) this.sparkSize.set(e.target, { w: e.contentRect.width, h: e.contentRect.height });
    this.resized++;
    this.onResize?.();
  });
  /** Set by the dashboard: schedule a redraw when a sparkline changes size. */
  onResize: (() => void) | null = null;

  constructor(private theme: ChartTheme) {
    this.empty = h('p', { class: 'muted empty' }, 'No memory readings yet: the runtime sends one per rank per step.');
    this.note = h('p', { class: 'muted note' });
    this.grid = h('div', { class: 'mem-grid', id: 'memory-grid' });
    this.compact = h('table', { class: 'mem-compact', id: 'memory-compact', hidden: true });
    this.root = h('div', { class: 'memory-view' }, this.empty, this.compact, this.grid, this.note);
  }

  applyTheme(theme: ChartTheme): void {
    this.theme = theme;
    for (const c of this.cards.values()) {
      c.drawnVersion = -1;
      c.gpuKey = '';
    }
    this.lastKey = '';
  }

  /** Called only while the Memory tab is shown. Reads no layout: sizes come from a ResizeObserver. */
  render(run: RunData | null, force = false): boolean {
    const key = `${run?.runId}|${run?.versions.memory}|${run?.versions.gpu}|${run?.versions.meta}|${this.resized}`;
    if (!force && key === this.lastKey) return false;
    this.lastKey = key;
    if (!run || run.runId !== this.shownRunId) {
      for (const c of this.cards.values()) this.observer.unobserve(c.sparkCanvas);
      this.cards.clear();
      this.grid.replaceChildren();
      this.shownRunId = run?.runId ?? null;
    }
    const ranks = run ? [...run.memory.keys()].sort((a, b) => a - b) : [];
    this.empty.hidden = ranks.length > 0;
    const compact = ranks.length >= COMPACT_FROM;
    this.compact.hidden = !compact;
    this.grid.hidden = compact;
    if (compact) {
      this.renderCompact(run!, ranks);
      setText(this.note, 'One row per rank: the step peak, of the device, and the planner’s predicted peak. Fewer than 16 ranks get a card each.');
      return true;
    }
    for (const rank of ranks) {
      let card = this.cards.get(rank);
      if (!card) {
        card = this.makeCard(rank);
        this.cards.set(rank, card);
        this.grid.append(card.root);
      }
      this.updateCard(card, run!, run!.memory.get(rank)!);
    }
    setText(this.note, ranks.length ? 'Bars: each category is its maximum during the step, so the segments can add up to more than the peak (they need not be live at the same time). Markers: the planner\u2019s prediction.' : '');
    return true;
  }

  private makeCard(rank: number): Card {
    const segments = new Map<DisplayCategory, HTMLElement>();
    const peakLine = h('div', { class: 'peak-line', title: 'step peak' });
    const capLine = h('div', { class: 'cap-line', title: 'device capacity' });
    const stack = h('div', { class: 'stack', role: 'img' });
    DISPLAY_CATEGORIES.forEach((cat, i) => {
      const seg = h('div', { class: `seg cat-${i}`, 'data-category': cat });
      segments.set(cat, seg);
      stack.append(seg);
    });
    stack.append(peakLine, capLine);
    const rows = new Map<DisplayCategory, { row: HTMLElement; measured: HTMLElement; bar: HTMLElement; marker: HTMLElement; predicted: HTMLElement; error: HTMLElement }>();
    const tbody = h('tbody');
    DISPLAY_CATEGORIES.forEach((cat, i) => {
      const measured = h('td', { class: 'num measured' });
      const bar = h('div', { class: `cat-bar cat-${i}` });
      const marker = h('div', { class: 'pred-marker', title: 'planner prediction' });
      const predicted = h('td', { class: 'num predicted' });
      const error = h('td', { class: 'num error' });
      const row = h('tr', { 'data-category': cat }, h('th', { scope: 'row' }, h('span', { class: `swatch cat-${i}` }), CATEGORY_LABEL[cat]), measured, h('td', { class: 'barcell' }, h('div', { class: 'cat-track' }, bar, marker)), predicted, error);
      rows.set(cat, { row, measured, bar, marker, predicted, error });
      tbody.append(row);
    });
    const table = h('table', { class: 'cats' }, h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'category'), h('th', { scope: 'col', class: 'num' }, 'measured'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'bar')), h('th', { scope: 'col', class: 'num' }, 'predicted'), h('th', { scope: 'col', class: 'num' }, 'error'))), tbody);
    const title = h('h3', null, `Rank ${rank}`);
    const scaleEnd = h('span', { class: 'cap' }, 'capacity');
    const usage = h('span', { class: 'usage' });
    const sparkCanvas = h('canvas', { class: 'spark', 'aria-hidden': 'true' });
    this.observer.observe(sparkCanvas);
    const sparkLabel = h('span', { class: 'spark-label muted' });
    const predictionNote = h('p', { class: 'muted small' });
    const gpu = h('div', { class: 'gpu-reading' });
    const root = h(
      'article',
      { class: 'mem-card level-ok', 'data-rank': rank, tabindex: 0 },
      h('header', null, title, usage),
      stack,
      h('div', { class: 'stack-scale muted small' }, h('span', null, '0'), scaleEnd),
      table,
      predictionNote,
      h('div', { class: 'spark-box' }, sparkCanvas, sparkLabel),
      gpu,
    );
    return { rank, root, title, usage, segments, peakLine, capLine, scaleEnd, stack, rows, sparkCanvas, sparkLabel, predictionNote, gpu, drawnVersion: -1, drawnWidth: 0, level: 'ok', gpuDevice: null, gpuKey: '' };
  }

  private updateCard(card: Card, run: RunData, mem: RankMemory): void {
    const m = mem.latest;
    const capacity = m.capacity;
    const fraction = capacity > 0 ? m.stepPeak / capacity : 0;
    const level = levelOf(fraction);
    if (level !== card.level) {
      card.root.classList.remove(`level-${card.level}`);
      card.root.classList.add(`level-${level}`);
      card.level = level;
    }
    setText(card.title, `Rank ${card.rank}${m.device ? ` · ${shortDevice(m.device)}` : ''}`);
    card.title.title = m.device ?? '';
    // One decimal near the thresholds, so 91.5% (warning) does not read as 92% (critical).
    setText(card.usage, `${formatBytes(m.stepPeak)} peak of ${formatBytes(capacity)} (${formatPercent(fraction, fraction >= 0.75 ? 1 : undefined)})`);
    const grouped = groupCategories(m.categories);
    // Scaled to the data: a run using 6% of its device gets a bar it can be read on, with the capacity
    // marked where it falls (or said to be off the scale); a nearly full device is drawn to its capacity.
    const used = Math.max(m.stepPeak, DISPLAY_CATEGORIES.reduce((a, c) => a + groupCategories(m.categories).bytes[c], 0));
    const barScale = capacity > 0 && used >= 0.5 * capacity ? capacity : Math.max(1, used * 1.25);
    const pct = (b: number) => `${Math.min(100, (100 * b) / barScale)}%`;
    card.capLine.hidden = !(capacity > 0 && capacity <= barScale);
    card.capLine.style.left = pct(capacity);
    setText(card.scaleEnd, capacity > 0 && capacity > barScale ? `${formatBytes(barScale, 1)} · capacity ${formatBytes(capacity, 1)} off scale →` : `capacity ${formatBytes(capacity, 1)}`);
    let left = 0;
    for (const cat of DISPLAY_CATEGORIES) {
      const seg = card.segments.get(cat)!;
      const b = grouped.bytes[cat];
      seg.style.left = pct(left);
      seg.style.width = pct(Math.max(0, Math.min(b, barScale - left)));
      seg.title = `${cat}${grouped.parts[cat].length > 1 || (grouped.parts[cat][0] && grouped.parts[cat][0] !== cat) ? ` (${grouped.parts[cat].join(', ')})` : ''}: ${formatBytes(b)}`;
      left += b;
    }
    card.peakLine.style.left = pct(m.stepPeak);
    card.stack.setAttribute('aria-label', `Rank ${card.rank}: step peak ${formatBytes(m.stepPeak)} of ${formatBytes(capacity)}, ${DISPLAY_CATEGORIES.map((c) => `${c} ${formatBytes(grouped.bytes[c])}`).join(', ')}`);

    const prediction = predictionFor(run, m);
    const scale = Math.max(1, ...DISPLAY_CATEGORIES.map((c) => Math.max(grouped.bytes[c], prediction?.bytes[c] ?? 0)));
    /** Differences under 2% of the device (or of the peak when the capacity is unknown) are shown in bytes. */
    const small = 0.02 * (capacity > 0 ? capacity : m.stepPeak);
    for (const cat of DISPLAY_CATEGORIES) {
      const r = card.rows.get(cat)!;
      const measured = grouped.bytes[cat];
      const predicted = prediction ? prediction.bytes[cat] : null;
      r.row.hidden = measured === 0 && !predicted;
      setText(r.measured, formatBytes(measured));
      r.bar.style.width = `${(100 * measured) / scale}%`;
      r.marker.hidden = predicted === null;
      if (predicted !== null) r.marker.style.left = `${(100 * predicted) / scale}%`;
      setText(r.predicted, predicted === null ? '—' : formatBytes(predicted));
      setText(r.error, predicted === null ? '—' : formatError(measured, predicted, small));
      // Red only for an error that matters: more than 20% and more than the small-bytes threshold.
      r.error.classList.toggle('bad', predicted !== null && predicted > 0 && Math.abs(measured - predicted) >= small && Math.abs(measured - predicted) / predicted > 0.2);
      if (grouped.parts[cat].some((p) => p !== cat)) r.row.title = `measured: ${grouped.parts[cat].join(' + ')}`;
    }
    setText(card.predictionNote, prediction ? `Predicted peak ${formatBytes(prediction.total)} (${prediction.source === 'runtime' ? 'sent by the runtime' : prediction.source}); measured ${formatError(m.stepPeak, prediction.total, small)}.` : 'No prediction: the run sent no plan and the planner could not estimate its config.');

    const width = this.sparkSize.get(card.sparkCanvas)?.w ?? 0;
    if (mem.version !== card.drawnVersion || width !== card.drawnWidth) {
      this.drawSpark(card, mem, capacity);
      card.drawnVersion = mem.version;
      card.drawnWidth = width;
    }
    setText(card.sparkLabel, `step peak since start · max ${formatBytes(mem.maxPeak)}`);

    const gpuKey = `${run.versions.gpu}|${m.device}`;
    if (gpuKey !== card.gpuKey) {
      card.gpuKey = gpuKey;
      card.gpuDevice = gpuFor(run, card.rank, m.device);
      this.renderGpu(card, card.gpuDevice, grouped.bytes, m.stepPeak);
    }
  }

  private drawSpark(card: Card, mem: RankMemory, capacity: number): void {
    const canvas = card.sparkCanvas;
    const size = this.sparkSize.get(canvas);
    const cssW = Math.floor(size?.w ?? 0);
    const cssH = Math.floor(size?.h ?? 0);
    if (!cssW || !cssH) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const n = mem.t.length;
    if (!n) return;
    // Scaled to the data (the capacity line drawn when within sight), so a small run is not a flat line.
    const top = capacity > 0 && mem.maxPeak >= 0.5 * capacity ? Math.max(capacity, mem.maxPeak) : Math.max(mem.maxPeak * 1.15, 1);
    const yOf = (b: number) => cssH - 2 - (Math.min(b, top) / top) * (cssH - 4);
    const xsData = mem.t.data;
    const t0 = xsData[0]!;
    const span = Math.max(1, xsData[n - 1]! - t0);
    const points = minMaxPerPixel(xsData, mem.peak.data, 0, n, Math.max(16, Math.floor(cssW)));
    const colour = card.level === 'critical' ? this.theme.error : card.level === 'warn' ? this.theme.warning : this.theme.series[0]!;
    ctx.strokeStyle = colour;
    ctx.lineWidth = this.theme.highContrast ? 2 : 1.25;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = ((p.x - t0) / span) * (cssW - 1);
      if (i === 0) ctx.moveTo(x, yOf(p.y));
      else ctx.lineTo(x, yOf(p.y));
    });
    if (points.length === 1) ctx.lineTo(cssW - 1, yOf(points[0]!.y));
    ctx.stroke();
    // Max since start, dashed; the capacity too when it is within sight.
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = this.theme.muted;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, yOf(mem.maxPeak));
    ctx.lineTo(cssW, yOf(mem.maxPeak));
    ctx.stroke();
    if (capacity > 0 && capacity <= top) {
      ctx.strokeStyle = this.theme.error;
      ctx.beginPath();
      ctx.moveTo(0, yOf(capacity));
      ctx.lineTo(cssW, yOf(capacity));
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  private renderGpu(card: Card, d: GpuDevice | null, bytes: Record<DisplayCategory, number>, stepPeak: number): void {
    if (!d) {
      if (card.gpu.childElementCount) card.gpu.replaceChildren();
      card.gpu.hidden = true;
      return;
    }
    card.gpu.hidden = false;
    const used = d.memoryUsed;
    const total = d.memoryTotal;
    const reserved = d.memoryReserved;
    const na = (v: number | null, f: (x: number) => string) => (v === null ? 'n/a' : f(v));
    const proc = d.processes.find((p) => p.rank === card.rank);
    const tensors = Object.values(bytes).reduce((a, b) => a + b, 0);
    const gapBase = proc?.memory ?? null;
    const line1 = `GPU ${d.index} · ${d.name}${d.lost ? ' · LOST' : ''}`;
    const line2 = `used ${na(used, (v) => formatBytes(v))} of ${na(total, (v) => formatBytes(v))} (reserved ${na(reserved, (v) => formatBytes(v))}) · util ${na(d.utilPercent, (v) => `${Math.round(v)}%`)} · ${na(d.temperatureC, (v) => `${Math.round(v)} °C`)} · ${na(d.powerW, (v) => `${Math.round(v)} W`)}${d.powerLimitW !== null ? ` / ${Math.round(d.powerLimitW)} W` : ''}`;
    const gap = gapBase !== null ? `this rank's process holds ${formatBytes(gapBase)}: ${formatBytes(Math.max(0, gapBase - stepPeak))} beyond the step peak (CUDA context, allocator cache, fragmentation)` : `tensors ${formatBytes(tensors)}`;
    const procs = h('ul', { class: 'procs' });
    for (const p of [...d.processes].sort((a, b) => (b.memory ?? 0) - (a.memory ?? 0)).slice(0, 8)) {
      procs.append(h('li', null, `pid ${p.pid}${p.rank !== undefined ? ` · rank ${p.rank}` : ''}${p.name ? ` · ${p.name}` : ''} · ${p.memory === null ? 'n/a' : formatBytes(p.memory)}`));
    }
    const usedFraction = used !== null && total ? used / (total - (reserved ?? 0)) : null;
    const bar = h('div', { class: 'gpu-bar' }, h('div', { class: 'fill' }));
    if (usedFraction !== null) (bar.firstChild as HTMLElement).style.width = `${Math.min(100, usedFraction * 100)}%`;
    fill(card.gpu, h('div', { class: 'gpu-title' }, line1), bar, h('div', { class: 'small' }, line2), h('div', { class: 'small muted' }, gap), d.processes.length ? procs : h('div', { class: 'small muted' }, 'no compute processes reported'));
  }

  private renderCompact(run: RunData, ranks: number[]): void {
    const head = h('thead', null, h('tr', null, ...['rank', 'device', 'step peak', 'of capacity', 'max since start', 'predicted peak', 'error', ''].map((c, i) => h('th', { scope: 'col', class: i >= 2 && i <= 6 ? 'num' : '' }, c))));
    const rows = ranks.map((rank) => {
      const mem = run.memory.get(rank)!;
      const m = mem.latest;
      const fraction = m.capacity > 0 ? m.stepPeak / m.capacity : 0;
      const p = predictionFor(run, m);
      const small = 0.02 * (m.capacity > 0 ? m.capacity : m.stepPeak);
      const bar = h('div', { class: 'mini-bar' }, h('div', { class: 'fill' }));
      (bar.firstChild as HTMLElement).style.width = `${Math.min(100, fraction * 100)}%`;
      return h(
        'tr',
        { 'data-rank': rank, class: `level-${levelOf(fraction)}` },
        h('td', null, `r${rank}`),
        h('td', { title: m.device ?? '' }, m.device ? shortDevice(m.device) : '—'),
        h('td', { class: 'num' }, formatBytes(m.stepPeak)),
        h('td', { class: 'num' }, m.capacity > 0 ? `${formatPercent(fraction, fraction >= 0.75 ? 1 : undefined)} of ${formatBytes(m.capacity, 1)}` : '—'),
        h('td', { class: 'num' }, formatBytes(mem.maxPeak)),
        h('td', { class: 'num' }, p ? formatBytes(p.total) : '—'),
        h('td', { class: 'num' }, p ? formatError(m.stepPeak, p.total, small) : '—'),
        h('td', { class: 'barcell' }, bar),
      );
    });
    fill(this.compact, head, h('tbody', null, ...rows));
  }

  inspect(run: RunData | null): MemoryPanelInspection[] {
    if (!run) return [];
    return [...run.memory.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([rank, mem]) => {
        const m = mem.latest;
        const p = predictionFor(run, m);
        const card = this.cards.get(rank);
        const d = card?.gpuDevice ?? gpuFor(run, rank, m.device);
        return {
          rank,
          device: m.device ?? null,
          capacity: m.capacity,
          stepPeak: m.stepPeak,
          maxPeak: mem.maxPeak,
          level: levelOf(m.capacity > 0 ? m.stepPeak / m.capacity : 0),
          measured: groupCategories(m.categories).bytes,
          predicted: p ? p.bytes : null,
          predictionSource: p?.source ?? null,
          historyPoints: mem.t.length,
          gpu: d ? { name: d.name, memoryUsed: d.memoryUsed, memoryTotal: d.memoryTotal, utilPercent: d.utilPercent } : null,
        };
      });
  }
}

/** "GPU-5f1c0a00-0000-…" -> "GPU-5f1c0a00…"; "cpu:0" stays. */
export function shortDevice(device: string): string {
  return device.length > 16 ? `${device.slice(0, 12)}…` : device;
}

/** The GPU a rank runs on: by UUID from the memory message, else the device that lists the rank. */
export function gpuFor(run: RunData, rank: number, device: string | undefined): GpuDevice | null {
  const devices = run.gpu?.devices;
  if (!devices?.length) return null;
  return devices.find((d) => device !== undefined && d.uuid === device) ?? devices.find((d) => d.ranks?.includes(rank) || d.processes.some((p) => p.rank === rank)) ?? null;
}

/** Time until full at the current trend, for the out-of-memory warning (from the alert when it has one). */
export function describeTimeToFull(seconds: number | undefined): string {
  return seconds === undefined ? '' : ` — full in about ${formatDuration(seconds * 1000)} at the current trend`;
}
