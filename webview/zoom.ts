// Zooming the curves: drag across a chart to pick a step range, double-click to show everything, and the
// keyboard (+ / − around the middle, ← / → pan a quarter, 0 / Home / Escape show everything). The zoom lives
// in the UI state (so it survives a reload); this module only turns gestures into a new range.
import type { RunData } from './store';
import type { UiState } from './ui-state';
import type { CurvesView } from './views/curves';

export type Zoom = UiState['zoom'];

/** What the zoom gestures read and change on the dashboard. */
export interface ZoomTarget {
  run(): RunData | null;
  state(): UiState;
  /** A new range, or null for every step. */
  setZoom(zoom: Zoom): void;
}

/** The range a zoom key asks for, given the run's first and last step; undefined: the key does nothing. */
export function zoomForKey(key: string, first: number, last: number, zoom: Zoom): Zoom | undefined {
  const cur = zoom ?? { from: first, to: last };
  const width = cur.to - cur.from;
  const mid = (cur.from + cur.to) / 2;
  if (key === '+' || key === '=') return width <= 4 ? cur : { from: Math.floor(mid - width / 4), to: Math.ceil(mid + width / 4) };
  if (key === '-' || key === '_') return width * 2 >= last - first ? null : { from: Math.max(first, Math.floor(mid - width)), to: Math.min(last, Math.ceil(mid + width)) };
  if (key === 'ArrowLeft' || key === 'ArrowRight') {
    if (!zoom) return undefined;
    const shift = Math.max(1, Math.round(width / 4)) * (key === 'ArrowLeft' ? -1 : 1);
    const from = Math.max(first, Math.min(last - width, cur.from + shift));
    return { from, to: from + width };
  }
  if (key === '0' || key === 'Home' || key === 'Escape') return null;
  return undefined;
}

/** Applies a zoom key to the target's run; true when the key was handled. */
export function zoomKey(target: ZoomTarget, key: string): boolean {
  const run = target.run();
  if (!run || !run.steps.length) return false;
  const steps = run.steps.col('step');
  const next = zoomForKey(key, steps[0]!, steps[run.steps.length - 1]!, target.state().zoom);
  if (next === undefined) return false;
  target.setZoom(next);
  return true;
}

/** Wires every curve chart: drag to select a range (shown as .zoom-selection), double-click and keys. */
export function wireZoom(curves: CurvesView, target: ZoomTarget): void {
  for (const [id, wrap] of curves.wraps) {
    const chart = curves.charts.get(id)!;
    const selection = wrap.querySelector('.zoom-selection') as HTMLElement;
    let startX: number | null = null;
    wrap.addEventListener('pointerdown', (e) => {
      const area = chart.area();
      if (e.button !== 0 || !area || e.offsetX < area.left || e.offsetX > area.right) return;
      startX = e.offsetX;
      wrap.setPointerCapture(e.pointerId);
      selection.hidden = false;
      selection.style.left = `${startX}px`;
      selection.style.width = '0px';
      selection.style.top = `${area.top}px`;
      selection.style.height = `${area.bottom - area.top}px`;
    });
    wrap.addEventListener('pointermove', (e) => {
      if (startX === null) return;
      const area = chart.area()!;
      const x = Math.max(area.left, Math.min(area.right, e.offsetX));
      selection.style.left = `${Math.min(startX, x)}px`;
      selection.style.width = `${Math.abs(x - startX)}px`;
    });
    const end = (e: PointerEvent) => {
      if (startX === null) return;
      const area = chart.area()!;
      const x = Math.max(area.left, Math.min(area.right, e.offsetX));
      const a = Math.min(startX, x);
      const b = Math.max(startX, x);
      startX = null;
      selection.hidden = true;
      const run = target.run();
      // A click or a tiny drag is not a selection.
      if (b - a < 6 || !run) return;
      const axis = target.state().xAxis;
      const from = Math.floor(curves.stepAt(run, axis, chart.xAt(a)));
      const to = Math.ceil(curves.stepAt(run, axis, chart.xAt(b)));
      if (to > from) target.setZoom({ from, to });
    };
    wrap.addEventListener('pointerup', end);
    wrap.addEventListener('pointercancel', () => {
      startX = null;
      selection.hidden = true;
    });
    wrap.addEventListener('dblclick', () => target.setZoom(null));
    wrap.addEventListener('keydown', (e) => {
      if (zoomKey(target, e.key)) e.preventDefault();
    });
  }
}
