// Numbers as the dashboard shows them: every one with its unit. Bytes are bytes until here. Pure.
import { formatBytes } from '../common/units';

export { formatBytes };

/** 3_723_000 -> "1h 02m", 185_000 -> "3m 05s", 12_300 -> "12.3 s", 420 -> "420 ms". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (d > 0) return `${d}d ${String(h).padStart(2, '0')}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  return `${m}m ${String(sec).padStart(2, '0')}s`;
}

/** Seconds on a time axis: 0:42, 12:05, 1:02:03. */
export function formatClock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '';
  const sign = seconds < 0 ? '-' : '';
  const total = Math.round(Math.abs(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${sign}${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${sign}${m}:${String(s).padStart(2, '0')}`;
}

/** 1234567 -> "1,234,567"; fractions keep `digits`. */
export function formatCount(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return String(n);
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A value with an SI prefix: 1.25e12 -> "1.25 T". */
export function si(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  const prefixes: [number, string][] = [
    [1e15, 'P'],
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, p] of prefixes) if (abs >= scale) return `${(n / scale).toPrecision(digits)} ${p}`;
  return `${Number(n.toPrecision(digits))} `;
}

export function formatTokensPerSec(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return n >= 1e5 ? `${si(n)}tokens/s` : `${formatCount(n)} tokens/s`;
}

export function formatFlops(flopsPerSec: number): string {
  if (!Number.isFinite(flopsPerSec)) return '—';
  if (flopsPerSec >= 1e12) return `${(flopsPerSec / 1e12).toFixed(flopsPerSec >= 1e14 ? 0 : 1)} TFLOP/s`;
  if (flopsPerSec >= 1e9) return `${(flopsPerSec / 1e9).toFixed(1)} GFLOP/s`;
  return `${(flopsPerSec / 1e6).toFixed(1)} MFLOP/s`;
}

export function formatPercent(fraction: number, digits?: number): string {
  if (!Number.isFinite(fraction)) return '—';
  const d = digits ?? (Math.abs(fraction) < 0.1 ? 1 : 0);
  return `${(fraction * 100).toFixed(d)}%`;
}

/** Relative error of a prediction: "+8.2%" (measured above predicted) / "−3.0%". */
/**
 * Measured against predicted. A difference smaller than `smallBytes` (a share of the device) is shown in
 * bytes: +950% of a 1 MiB prediction is 9.5 MiB, noise on a 1 GiB device, and reads as such.
 */
export function formatError(measured: number, predicted: number, smallBytes = 0): string {
  const diff = measured - predicted;
  if (Math.abs(diff) < smallBytes || (!(predicted > 0) && measured > 0 && measured < smallBytes)) return diff === 0 ? '±0 B' : `${diff > 0 ? '+' : '−'}${formatBytes(Math.abs(diff), 1)}`;
  if (!(predicted > 0)) return measured > 0 ? 'not predicted' : '—';
  const e = (measured - predicted) / predicted;
  const s = `${Math.abs(e * 100).toFixed(Math.abs(e) < 0.1 ? 1 : 0)}%`;
  return e >= 0 ? `+${s}` : `−${s}`;
}

/** Loss-like values: 4 significant digits, never exponent noise for ordinary values. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

export function formatTime(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '—';
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
