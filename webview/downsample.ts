// Downsampling and smoothing for the charts, done before data reaches chart.js (its decimation plugin
// replaces dataset.data and hides pushed points; chart.js #11929). Facts in docs/dashboard.md:
//   - min/max per pixel column keeps every peak: memory, grad norm, raw loss (spiky series);
//   - LTTB keeps the shape but drops spikes: only for smooth curves (the smoothed loss, the learning rate);
//   - smoothing is a debiased EMA over full-resolution data, with the raw series drawn faint underneath.
// Pure and allocation-light: the bench runs these on 100k-step series every frame.

export interface XY {
  x: number;
  y: number;
}

/** Index of the first element ≥ value in a sorted column of `length` items. */
export function lowerBound(column: ArrayLike<number>, length: number, value: number): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (column[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first element > value. */
export function upperBound(column: ArrayLike<number>, length: number, value: number): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (column[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const usable = (y: number, logScale: boolean): boolean => Number.isFinite(y) && (!logScale || y > 0);

/**
 * Min and max of each pixel column over [from, to) (M4 without first/last: the line's ends are the
 * extremes, in index order). At most 2·pixels points; a series shorter than that comes back whole.
 * Non-finite values (and ≤ 0 on a log axis) are left out.
 */
export function minMaxPerPixel(xs: ArrayLike<number>, ys: ArrayLike<number>, from: number, to: number, pixels: number, logScale = false): XY[] {
  const n = to - from;
  const out: XY[] = [];
  if (n <= 0) return out;
  if (n <= 2 * pixels) {
    for (let i = from; i < to; i++) if (usable(ys[i]!, logScale)) out.push({ x: xs[i]!, y: ys[i]! });
    return out;
  }
  const x0 = xs[from]!;
  const span = xs[to - 1]! - x0 || 1;
  const scale = pixels / span;
  let column = -1;
  let minI = -1;
  let maxI = -1;
  const flush = (): void => {
    if (minI < 0) return;
    if (minI === maxI) out.push({ x: xs[minI]!, y: ys[minI]! });
    else if (minI < maxI) out.push({ x: xs[minI]!, y: ys[minI]! }, { x: xs[maxI]!, y: ys[maxI]! });
    else out.push({ x: xs[maxI]!, y: ys[maxI]! }, { x: xs[minI]!, y: ys[minI]! });
  };
  for (let i = from; i < to; i++) {
    const y = ys[i]!;
    if (!usable(y, logScale)) continue;
    const c = Math.min(pixels - 1, Math.floor((xs[i]! - x0) * scale));
    if (c !== column) {
      flush();
      column = c;
      minI = maxI = i;
    } else {
      if (y < ys[minI]!) minI = i;
      if (y > ys[maxI]!) maxI = i;
    }
  }
  flush();
  return out;
}

/**
 * Largest-Triangle-Three-Buckets (Steinarsson 2013) over [from, to): `threshold` points that keep the
 * curve's shape. Non-finite values are skipped first. Use only for smooth series.
 */
export function lttb(xs: ArrayLike<number>, ys: ArrayLike<number>, from: number, to: number, threshold: number, logScale = false): XY[] {
  // Gather the usable indices once (cheap: one pass), so the buckets see only drawable points.
  let idx: Int32Array | null = null;
  let n = to - from;
  for (let i = from; i < to; i++) {
    if (!usable(ys[i]!, logScale)) {
      idx = new Int32Array(n);
      let k = 0;
      for (let j = from; j < to; j++) if (usable(ys[j]!, logScale)) idx[k++] = j;
      n = k;
      break;
    }
  }
  const at = (k: number): number => (idx ? idx[k]! : from + k);
  const out: XY[] = [];
  if (n <= 0) return out;
  if (threshold >= n || threshold < 3) {
    for (let k = 0; k < n; k++) out.push({ x: xs[at(k)]!, y: ys[at(k)]! });
    return out;
  }
  const every = (n - 2) / (threshold - 2);
  let a = 0;
  out.push({ x: xs[at(0)]!, y: ys[at(0)]! });
  for (let b = 0; b < threshold - 2; b++) {
    // Average of the next bucket: the third point of the triangle.
    let avgStart = Math.floor((b + 1) * every) + 1;
    let avgEnd = Math.min(Math.floor((b + 2) * every) + 1, n);
    if (avgStart >= n) avgStart = n - 1;
    if (avgEnd <= avgStart) avgEnd = avgStart + 1;
    let avgX = 0;
    let avgY = 0;
    for (let k = avgStart; k < avgEnd; k++) {
      avgX += xs[at(k)]!;
      avgY += ys[at(k)]!;
    }
    avgX /= avgEnd - avgStart;
    avgY /= avgEnd - avgStart;
    const start = Math.floor(b * every) + 1;
    const end = Math.floor((b + 1) * every) + 1;
    const ax = xs[at(a)]!;
    const ay = ys[at(a)]!;
    let best = -1;
    let chosen = start;
    for (let k = start; k < end; k++) {
      const area = Math.abs((ax - avgX) * (ys[at(k)]! - ay) - (ax - xs[at(k)]!) * (avgY - ay));
      if (area > best) {
        best = area;
        chosen = k;
      }
    }
    out.push({ x: xs[at(chosen)]!, y: ys[at(chosen)]! });
    a = chosen;
  }
  out.push({ x: xs[at(n - 1)]!, y: ys[at(n - 1)]! });
  return out;
}

/**
 * Debiased exponential moving average (TensorBoard's smoothing): s_t = w·s_{t−1} + (1−w)·x_t, divided by
 * 1 − w^k for the k finite values seen so far, so the start is not pulled towards 0. Non-finite inputs are
 * skipped (the output repeats the last smoothed value; NaN before the first finite one). Incremental:
 * `extend` continues from where the last call stopped, so a new step costs O(1).
 */
export class DebiasedEma {
  private out = new Float64Array(0);
  private length = 0;
  private acc = 0;
  private seen = 0;
  private weight = -1;

  /** Smoothed values for ys[0..n), recomputed only from the first index not yet done. */
  extend(ys: ArrayLike<number>, n: number, weight: number): Float64Array {
    if (weight !== this.weight || n < this.length) this.reset(weight);
    if (this.out.length < n) {
      const grown = new Float64Array(Math.max(n, this.out.length * 2, 1024));
      grown.set(this.out.subarray(0, this.length));
      this.out = grown;
    }
    const w = this.weight;
    let acc = this.acc;
    let seen = this.seen;
    let debiasPow = Math.pow(w, seen);
    for (let i = this.length; i < n; i++) {
      const y = ys[i]!;
      if (Number.isFinite(y)) {
        acc = w * acc + (1 - w) * y;
        seen++;
        debiasPow *= w;
      }
      this.out[i] = seen === 0 ? NaN : w === 0 ? acc : acc / (1 - debiasPow);
    }
    this.acc = acc;
    this.seen = seen;
    this.length = n;
    return this.out;
  }

  /** Forget everything (the series was replaced, or the weight changed). */
  reset(weight = this.weight): void {
    this.weight = weight;
    this.length = 0;
    this.acc = 0;
    this.seen = 0;
  }
}

/** Min and max over [from, to) ignoring non-finite values; null when there are none. */
export function extent(ys: ArrayLike<number>, from: number, to: number): { min: number; max: number } | null {
  let min = Infinity;
  let max = -Infinity;
  for (let i = from; i < to; i++) {
    const y = ys[i]!;
    if (!Number.isFinite(y)) continue;
    if (y < min) min = y;
    if (y > max) max = y;
  }
  return min <= max ? { min, max } : null;
}
