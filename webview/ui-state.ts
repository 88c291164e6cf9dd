// What the dashboard remembers between sessions: the open tab, the zoom, smoothing, axis choices, the
// overlaid runs and the planner form. VS Code keeps it with the webview (getState/setState, also across a
// window reload); the browser host keeps it in localStorage. Anything read back is checked: state is old
// data from an earlier version as far as this code knows.
import { DEFAULT_FORM, sanitizeForm, type PlanForm } from './plan-form';

export const TABS = ['curves', 'memory', 'runs', 'planner'] as const;
export type Tab = (typeof TABS)[number];

export interface UiState {
  version: 1;
  tab: Tab;
  /** The x range of the curves in steps; null: everything, following new steps. */
  zoom: { from: number; to: number } | null;
  /** EMA weight, 0 (off) … 0.99. */
  smoothing: number;
  logScale: boolean;
  xAxis: 'step' | 'time';
  /** Runs overlaid on the curves (any number), in the order they were picked. */
  compareRunIds: string[];
  planner: PlanForm;
}

export const DEFAULT_STATE: UiState = {
  version: 1,
  tab: 'curves',
  zoom: null,
  smoothing: 0.6,
  logScale: false,
  xAxis: 'step',
  compareRunIds: [],
  planner: DEFAULT_FORM,
};

export const MAX_SMOOTHING = 0.99;
/** More overlaid runs than this stop being readable (and each is a snapshot in memory). */
export const MAX_OVERLAYS = 12;

export function sanitizeState(v: unknown): UiState {
  const s: UiState = { ...DEFAULT_STATE };
  if (typeof v !== 'object' || v === null) return s;
  const o = v as Record<string, unknown>;
  if (TABS.includes(o.tab as Tab)) s.tab = o.tab as Tab;
  const z = o.zoom as { from?: unknown; to?: unknown } | null | undefined;
  if (z && typeof z.from === 'number' && typeof z.to === 'number' && Number.isFinite(z.from) && Number.isFinite(z.to) && z.to > z.from) s.zoom = { from: z.from, to: z.to };
  if (typeof o.smoothing === 'number' && o.smoothing >= 0 && o.smoothing <= MAX_SMOOTHING) s.smoothing = o.smoothing;
  if (typeof o.logScale === 'boolean') s.logScale = o.logScale;
  if (o.xAxis === 'step' || o.xAxis === 'time') s.xAxis = o.xAxis;
  const ids = Array.isArray(o.compareRunIds) ? o.compareRunIds : typeof o.compareRunId === 'string' ? [o.compareRunId] : [];
  s.compareRunIds = [...new Set(ids.filter((id): id is string => typeof id === 'string' && id.length > 0 && id.length <= 512))].slice(0, MAX_OVERLAYS);
  s.planner = sanitizeForm(o.planner);
  return s;
}
