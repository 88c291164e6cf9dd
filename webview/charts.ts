// chart.js, tuned (docs/dashboard.md, "Charts and downsampling"): no animation, no parsing (data arrives as {x, y} already
// downsampled to the pixel width), normalized, no points, fixed x bounds, update('none'). Only the parts
// used are registered, to keep the bundle small. Zooming is a drag on the plot (or keys), owned by the
// dashboard so every curve shares one x range.
import { Chart, Legend, LinearScale, LineController, LineElement, LogarithmicScale, PointElement, Tooltip, type ChartDataset, type ScaleOptionsByType } from 'chart.js';
import type { XY } from './downsample';
import type { ChartInspection } from './messages';
import { withAlpha, type ChartTheme } from './theme';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend);

export interface SeriesSpec {
  /** Stable key: datasets are reused between frames by key. */
  key: string;
  label: string;
  /** Index into theme.series, or a fixed colour. */
  color: number | string;
  faint?: boolean;
  dashed?: boolean;
  points?: boolean;
  width?: number;
  /** Leave out of the legend (the faint raw series under its smoothed one). */
  hideInLegend?: boolean;
}

export interface SeriesData {
  spec: SeriesSpec;
  data: XY[];
}

type LineDataset = ChartDataset<'line', XY[]> & { _key?: string; _spec?: SeriesSpec };

export interface ChartOptions {
  yTitle: string;
  yFormat?: (v: number) => string;
  xFormat?: (v: number) => string;
  xTitle?: string;
  legend?: boolean;
  /** The canvas changed size (chart.js's own ResizeObserver): the data should be downsampled again. */
  onResize?: () => void;
}

export class SeriesChart {
  readonly chart: Chart<'line', XY[]>;
  private theme: ChartTheme;
  private logScale = false;

  constructor(
    readonly id: string,
    readonly canvas: HTMLCanvasElement,
    theme: ChartTheme,
    private readonly opts: ChartOptions,
  ) {
    this.theme = theme;
    const tick = (format?: (v: number) => string) => ({
      color: theme.foreground,
      maxRotation: 0,
      autoSkipPadding: 12,
      ...(format ? { callback: (v: number | string) => format(Number(v)) } : {}),
    });
    this.chart = new Chart<'line', XY[]>(canvas, {
      type: 'line',
      data: { datasets: [] },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        onResize: () => opts.onResize?.(),
        spanGaps: true,
        elements: { point: { radius: 0, hitRadius: 4 }, line: { borderWidth: 1.5, tension: 0 } },
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        scales: {
          // Whole steps / seconds on x: no "0 0 0 1 1" ticks on a short or empty axis.
          x: {
            type: 'linear',
            title: { display: Boolean(opts.xTitle), text: opts.xTitle ?? '', color: theme.foreground },
            ticks: { ...tick(opts.xFormat), precision: 0 },
            grid: { color: theme.grid },
          },
          y: { type: 'linear', title: { display: true, text: opts.yTitle, color: theme.foreground }, ticks: tick(opts.yFormat), grid: { color: theme.grid } },
        },
        plugins: {
          legend: {
            display: opts.legend ?? true,
            position: 'top',
            align: 'end',
            labels: { color: theme.foreground, boxWidth: 14, boxHeight: 2, filter: (item, data) => !(data.datasets[item.datasetIndex ?? 0] as LineDataset)._spec?.hideInLegend },
          },
          tooltip: {
            enabled: true,
            callbacks: {
              title: (items) => (items[0] ? `${opts.xTitle ?? 'x'} ${opts.xFormat ? opts.xFormat(items[0].parsed.x ?? 0) : items[0].parsed.x}` : ''),
              label: (item) => `${item.dataset.label}: ${opts.yFormat ? opts.yFormat(item.parsed.y ?? 0) : item.parsed.y}`,
            },
          },
        },
      },
    });
  }

  private colorOf(spec: SeriesSpec): string {
    const base = typeof spec.color === 'number' ? this.theme.series[spec.color % this.theme.series.length]! : spec.color;
    return spec.faint && !this.theme.highContrast ? withAlpha(base, 0.28) : base;
  }

  private style(ds: LineDataset, spec: SeriesSpec): void {
    const color = this.colorOf(spec);
    ds.label = spec.label;
    ds.borderColor = color;
    ds.backgroundColor = color;
    ds.borderWidth = (spec.width ?? (spec.faint ? 1 : 1.75)) * (this.theme.highContrast ? 1.4 : 1);
    ds.borderDash = spec.dashed ? [6, 4] : [];
    ds.pointRadius = spec.points ? 2.5 : 0;
    ds.pointHoverRadius = spec.points ? 4 : 2;
    ds._spec = spec;
  }

  /** Replaces the data (fresh arrays: chart.js keeps no stale copies) and redraws without animation. */
  update(series: SeriesData[], xMin: number | null, xMax: number | null, logScale = false): void {
    const byKey = new Map<string, LineDataset>();
    for (const ds of this.chart.data.datasets as LineDataset[]) if (ds._key) byKey.set(ds._key, ds);
    const next: LineDataset[] = [];
    for (const s of series) {
      let ds = byKey.get(s.spec.key);
      if (!ds) ds = { _key: s.spec.key, data: [], label: s.spec.label, fill: false } as LineDataset;
      this.style(ds, s.spec);
      ds.data = s.data;
      next.push(ds);
    }
    this.chart.data.datasets = next;
    const x = this.chart.options.scales!.x as ScaleOptionsByType<'linear'>;
    x.min = xMin ?? undefined!;
    x.max = xMax ?? undefined!;
    if (logScale !== this.logScale) {
      this.logScale = logScale;
      const y = this.chart.options.scales!.y as unknown as { type: string };
      y.type = logScale ? 'logarithmic' : 'linear';
    }
    this.chart.update('none');
  }

  applyTheme(theme: ChartTheme): void {
    this.theme = theme;
    const scales = this.chart.options.scales as Record<'x' | 'y', { ticks: { color: string }; grid: { color: string }; title: { color: string } }>;
    for (const axis of ['x', 'y'] as const) {
      scales[axis].ticks.color = theme.foreground;
      scales[axis].grid.color = theme.grid;
      scales[axis].title.color = theme.foreground;
    }
    const legend = this.chart.options.plugins!.legend!.labels as { color: string };
    legend.color = theme.foreground;
    for (const ds of this.chart.data.datasets as LineDataset[]) if (ds._spec) this.style(ds, ds._spec);
    this.chart.update('none');
  }

  /** Width of the plot area in CSS pixels: how many points are worth drawing. */
  plotWidth(): number {
    const area = this.chart.chartArea;
    const w = area ? area.right - area.left : this.canvas.clientWidth;
    return Math.max(64, Math.round(w || 600));
  }

  /** x value under a CSS-pixel offset within the canvas. */
  xAt(offsetX: number): number {
    return this.chart.scales.x!.getValueForPixel(offsetX) ?? NaN;
  }

  area(): { left: number; right: number; top: number; bottom: number } | null {
    const a = this.chart.chartArea;
    return a ? { left: a.left, right: a.right, top: a.top, bottom: a.bottom } : null;
  }

  visible(): boolean {
    return this.canvas.offsetParent !== null && this.canvas.clientWidth > 0;
  }

  inspect(): ChartInspection {
    const x = this.chart.scales.x;
    return {
      id: this.id,
      visible: this.visible(),
      xMin: x ? x.min : null,
      xMax: x ? x.max : null,
      yScale: this.logScale ? 'logarithmic' : 'linear',
      datasets: (this.chart.data.datasets as LineDataset[]).map((ds) => {
        let minY: number | null = null;
        let maxY: number | null = null;
        for (const p of ds.data) {
          if (minY === null || p.y < minY) minY = p.y;
          if (maxY === null || p.y > maxY) maxY = p.y;
        }
        return {
          label: String(ds.label ?? ''),
          points: ds.data.length,
          first: ds.data[0] ?? null,
          last: ds.data[ds.data.length - 1] ?? null,
          minY,
          maxY,
          color: String(ds.borderColor ?? ''),
        };
      }),
    };
  }

  destroy(): void {
    this.chart.destroy();
  }
}

/** Non-transparent pixels of a canvas: proof that something was drawn. */
export function canvasInk(canvas: HTMLCanvasElement): number {
  const ctx = canvas.getContext('2d', { willReadFrequently: false });
  if (!ctx || canvas.width === 0 || canvas.height === 0) return 0;
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) ink++;
  return ink;
}
