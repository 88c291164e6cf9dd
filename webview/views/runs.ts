// The Runs tab: every run the host knows (live and past) as a sortable table — name with a distinct label,
// state, start, duration, steps, final / best / eval loss, throughput, layout, engine, device. Tick any
// number of runs to overlay them on the curves (each over its whole range); with one run ticked, the config
// differences between it and the shown run are listed. Below, the shown run's checkpoints and recent log.
import { fill, h, setText } from '../dom';
import { formatBytes, formatCount, formatDuration, formatTime, formatTokensPerSec, formatValue } from '../format';
import { isEnded, type JsonValue, type RunSummary } from '../../common/protocol';
import { describeState, STATE_LOOK } from '../../common/lifecycle';
import type { RunData } from '../store';

export interface RunsActions {
  show(runId: string): void;
  /** Tick or untick a run to overlay on the curves. */
  overlay(runId: string, on: boolean): void;
  clearOverlays(): void;
}

/**
 * A label per run that tells runs apart: the name, and where names repeat, the start time (and a #n when
 * even that repeats). Same input, same labels, whatever the order of the list.
 */
export function distinctLabels(runs: Pick<RunSummary, 'runId' | 'name' | 'startedAt'>[]): Map<string, string> {
  const byName = new Map<string, Pick<RunSummary, 'runId' | 'name' | 'startedAt'>[]>();
  for (const r of runs) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  const out = new Map<string, string>();
  for (const [name, group] of byName) {
    if (group.length === 1) {
      out.set(group[0]!.runId, name);
      continue;
    }
    const sorted = [...group].sort((a, b) => a.startedAt - b.startedAt || a.runId.localeCompare(b.runId));
    const stamps = sorted.map((r) => (r.startedAt > 0 ? formatTime(r.startedAt) : r.runId));
    sorted.forEach((r, i) => {
      const twins = stamps.filter((s) => s === stamps[i]).length;
      const nth = stamps.slice(0, i + 1).filter((s) => s === stamps[i]).length;
      out.set(r.runId, `${name} · ${stamps[i]}${twins > 1 ? ` #${nth}` : ''}`);
    });
  }
  return out;
}

/** Config paths whose values differ between two runs ("train.lr": 0.003 vs 0.001), at most `limit`. */
export function configDiff(a: JsonValue | undefined, b: JsonValue | undefined, limit = 200): { path: string; a: string; b: string }[] {
  const flat = (v: JsonValue | undefined, prefix: string, out: Map<string, string>): Map<string, string> => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) flat(x, prefix ? `${prefix}.${k}` : k, out);
    } else if (v !== undefined) out.set(prefix, JSON.stringify(v));
    return out;
  };
  const fa = flat(a, '', new Map());
  const fb = flat(b, '', new Map());
  const paths = [...new Set([...fa.keys(), ...fb.keys()])].sort();
  return paths
    .filter((p) => fa.get(p) !== fb.get(p))
    .slice(0, limit)
    .map((p) => ({ path: p, a: fa.get(p) ?? '—', b: fb.get(p) ?? '—' }));
}

type SortKey = 'name' | 'state' | 'startedAt' | 'duration' | 'steps' | 'finalLoss' | 'bestLoss' | 'evalLoss' | 'tokensPerSec' | 'layout' | 'engine' | 'device';
const COLUMNS: { key: SortKey; title: string; num?: boolean }[] = [
  { key: 'name', title: 'Run' },
  { key: 'state', title: 'State' },
  { key: 'startedAt', title: 'Started' },
  { key: 'duration', title: 'Duration', num: true },
  { key: 'steps', title: 'Steps', num: true },
  { key: 'finalLoss', title: 'Final loss', num: true },
  { key: 'bestLoss', title: 'Best loss', num: true },
  { key: 'evalLoss', title: 'Eval loss', num: true },
  { key: 'tokensPerSec', title: 'Tokens/s', num: true },
  { key: 'layout', title: 'Layout' },
  { key: 'engine', title: 'Engine' },
  { key: 'device', title: 'Device' },
];

export interface RunRow extends RunSummary {
  label: string;
  /** ms; null while unknown. */
  duration: number | null;
  live: boolean;
}

export class RunsView {
  readonly root: HTMLElement;
  private readonly thead: HTMLElement;
  private readonly tbody: HTMLElement;
  private readonly status: HTMLElement;
  private readonly diff: HTMLElement;
  private readonly events: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly clear: HTMLElement;
  private key = '';
  private eventsKey = '';
  private sort: { key: SortKey; desc: boolean } = { key: 'startedAt', desc: true };
  rows: RunRow[] = [];

  constructor(private readonly actions: RunsActions) {
    this.thead = h('thead');
    this.tbody = h('tbody');
    this.empty = h('p', { class: 'muted' }, 'No other runs known yet. In VS Code the Runs view lists the runs folder; `scalelm serve runs/` serves every run in a folder.');
    this.status = h('p', { id: 'compare-status', class: 'muted' });
    this.clear = h('vscode-button', { id: 'compare-clear', secondary: true, hidden: true }, 'Clear overlays');
    this.clear.addEventListener('click', () => this.actions.clearOverlays());
    this.diff = h('div', { id: 'config-diff', class: 'config-diff' });
    const table = h('table', { class: 'runs-table', id: 'runs-table' }, this.thead, this.tbody);
    this.events = h('div', { class: 'events', id: 'events' });
    this.root = h(
      'div',
      { class: 'runs-view' },
      h('h2', null, 'Runs'),
      this.empty,
      h('div', { class: 'table-scroll' }, table),
      h('div', { class: 'compare-row' }, this.status, this.clear),
      this.diff,
      h('h2', null, 'This run: checkpoints and log'),
      this.events,
    );
  }

  render(runs: RunSummary[], current: RunData | null, overlays: Map<string, RunData>, overlayIds: string[], live: Set<string>, now = Date.now()): void {
    const key = JSON.stringify([runs, current?.runId, current?.status?.state, current?.stepsTotal, overlayIds, [...overlays.keys()], [...live], this.sort]);
    if (key !== this.key) {
      this.key = key;
      const all = [...runs];
      const shownSummary = current ? current.summary() : null;
      const i = current ? all.findIndex((r) => r.runId === current.runId) : -1;
      // The shown run's own data is the freshest word on it (live steps arrive here before the host's list).
      if (shownSummary && i >= 0) all[i] = { ...all[i]!, ...definedOnly(shownSummary), detail: shownSummary.detail ?? all[i]!.detail } as RunSummary;
      else if (shownSummary) all.unshift(shownSummary);
      const labels = distinctLabels(all);
      this.rows = all.map((r) => {
        const isLive = live.has(r.runId) && !isEnded(r.state);
        const end = r.endedAt ?? (isLive ? now : null);
        return { ...r, label: labels.get(r.runId) ?? r.name, duration: r.startedAt > 0 && end !== null ? Math.max(0, end - r.startedAt) : null, live: isLive };
      });
      this.sortRows();
      this.empty.hidden = all.length > 1;
      this.renderHead();
      fill(this.tbody, ...this.rows.map((r) => this.row(r, r.runId === current?.runId, overlayIds.includes(r.runId))));
      this.clear.hidden = overlayIds.length === 0;
      const loading = overlayIds.filter((id) => !overlays.has(id));
      setText(
        this.status,
        overlayIds.length === 0
          ? 'Tick runs to overlay them on the curves (dashed, each over its whole range); tick one to see how its config differs.'
          : `Overlaid: ${overlayIds.map((id) => labels.get(id) ?? id).join(', ')}${loading.length ? ` (loading ${loading.length}…)` : ''}.`,
      );
      this.renderDiff(current, overlayIds.length === 1 ? (overlays.get(overlayIds[0]!) ?? null) : null, labels);
    }
    this.renderEvents(current);
  }

  private sortRows(): void {
    const { key, desc } = this.sort;
    const value = (r: RunRow): number | string | null =>
      key === 'name' ? r.label.toLowerCase() : key === 'duration' ? r.duration : ((r as unknown as Record<string, number | string | undefined>)[key] ?? null);
    this.rows.sort((a, b) => {
      const va = value(a);
      const vb = value(b);
      // Unknown values go last whichever the direction.
      if (va === null || vb === null) return va === vb ? 0 : va === null ? 1 : -1;
      const c = typeof va === 'number' && typeof vb === 'number' ? va - vb : String(va).localeCompare(String(vb));
      return desc ? -c : c;
    });
  }

  private renderHead(): void {
    const cells = COLUMNS.map((c) => {
      const sorted = this.sort.key === c.key;
      const button = h('button', { class: 'sort', type: 'button', 'data-sort': c.key, title: `Sort by ${c.title.toLowerCase()}` }, c.title, sorted ? (this.sort.desc ? ' ▾' : ' ▴') : '');
      button.addEventListener('click', () => {
        this.sort = { key: c.key, desc: sorted ? !this.sort.desc : c.num === true || c.key === 'startedAt' };
        this.key = '';
        this.rerender?.();
      });
      return h('th', { scope: 'col', class: c.num ? 'num' : '', 'aria-sort': sorted ? (this.sort.desc ? 'descending' : 'ascending') : 'none' }, button);
    });
    fill(
      this.thead,
      h('tr', null, h('th', { scope: 'col', class: 'pick' }, h('span', { class: 'sr-only' }, 'overlay')), ...cells, h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'actions'))),
    );
  }

  /** Set by the dashboard: draw again now (a sort click changes nothing the dashboard knows). */
  rerender?: () => void;

  private row(r: RunRow, shown: boolean, overlaid: boolean): HTMLElement {
    const pick = h('input', {
      type: 'checkbox',
      'data-action': 'overlay',
      'aria-label': `overlay ${r.label} on the curves`,
      disabled: shown,
      title: shown ? 'This is the shown run' : 'Overlay on the curves',
    }) as HTMLInputElement;
    pick.checked = overlaid || shown;
    pick.addEventListener('change', () => this.actions.overlay(r.runId, pick.checked));
    const showBtn = h('vscode-button', { secondary: true, disabled: shown, 'data-action': 'show', 'aria-label': `show run ${r.label}` }, shown ? 'Shown' : 'Show');
    showBtn.addEventListener('click', () => !shown && this.actions.show(r.runId));
    const state = r.state;
    const pillText = r.live ? `${STATE_LOOK[state === 'unknown' ? 'running' : state].label} · live` : STATE_LOOK[state].label;
    const num = (v: number | undefined, f: (x: number) => string = formatValue) => h('td', { class: 'num' }, v === undefined ? '—' : f(v));
    return h(
      'tr',
      { 'data-run': r.runId, class: `${shown ? 'shown' : ''}${overlaid ? ' compared' : ''}` },
      h('td', { class: 'pick' }, pick),
      h('td', { class: 'run-cell', title: r.runId }, h('span', { class: 'run-name' }, r.label)),
      h('td', null, h('span', { class: `state-pill state-${state}`, title: r.detail ?? describeState(state, null, r.steps || undefined) }, pillText)),
      h('td', null, r.startedAt > 0 ? formatTime(r.startedAt) : '—'),
      h('td', { class: 'num' }, r.duration === null ? '—' : formatDuration(r.duration)),
      h('td', { class: 'num' }, formatCount(r.steps)),
      num(r.finalLoss),
      num(r.bestLoss),
      num(r.evalLoss),
      num(r.tokensPerSec, formatTokensPerSec),
      h('td', null, r.layout ?? '—'),
      h(
        'td',
        { class: 'engine-cell', ...(r.engineDetail ? { title: `${r.engine ?? ''} engine, on ${r.engineDetail}` } : {}) },
        r.engine ?? '—',
        ...(r.engineDetail ? [h('span', { class: 'sr-only' }, ' · '), h('span', { class: 'muted engine-detail' }, r.engineDetail)] : []),
      ),
      h('td', null, r.device ?? '—'),
      h('td', { class: 'actions' }, showBtn),
    );
  }

  private renderDiff(current: RunData | null, other: RunData | null, labels: Map<string, string>): void {
    if (!current?.hello || !other?.hello) {
      this.diff.replaceChildren();
      return;
    }
    const a = labels.get(current.runId) ?? current.runId;
    const b = labels.get(other.runId) ?? other.runId;
    const rows = configDiff(current.hello.config, other.hello.config);
    fill(
      this.diff,
      h('h3', null, `Config: ${a} vs ${b}`),
      rows.length === 0
        ? h('p', { class: 'muted' }, 'The two configs are the same.')
        : h(
            'table',
            { class: 'diff-table', id: 'config-diff-table' },
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'setting'), h('th', { scope: 'col' }, a), h('th', { scope: 'col' }, b))),
            h('tbody', null, ...rows.map((d) => h('tr', { 'data-path': d.path }, h('td', null, h('code', null, d.path)), h('td', null, d.a), h('td', null, d.b)))),
          ),
    );
  }

  private renderEvents(run: RunData | null): void {
    const key = `${run?.runId}|${run?.versions.events}`;
    if (key === this.eventsKey) return;
    this.eventsKey = key;
    if (!run) {
      this.events.replaceChildren();
      return;
    }
    const time = (t: number) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });
    const checkpoints = run.checkpoints.slice(-10).reverse();
    const logs = run.logs.slice(-40).reverse();
    // What already exists for every run, said where people look: TensorBoard event files, CSV, Prometheus.
    const tb = `tensorboard --logdir runs/${run.runId}/tensorboard`;
    const copy = h('vscode-button', { id: 'copy-tensorboard', secondary: true, title: 'Copy the command (run it in the folder that holds runs/)' }, 'Copy TensorBoard command');
    copy.addEventListener('click', () => {
      void navigator.clipboard?.writeText(tb).then(
        () => setText(copy, 'Copied'),
        () => setText(copy, 'Select the command to copy it'),
      );
    });
    fill(
      this.events,
      h(
        'div',
        { class: 'exports', id: 'exports' },
        h('p', null, 'TensorBoard scalars are written with every run: ', h('code', { id: 'tensorboard-command' }, tb), ' ', copy),
        h(
          'p',
          null,
          'CSV: ',
          h('code', null, `scalelm export-csv runs/${run.runId} > ${run.runId}.csv`),
          ' · Prometheus: ',
          h('code', null, 'GET /metrics'),
          ' on the run’s server with ',
          h('code', null, 'Authorization: Bearer <token>'),
        ),
      ),
      checkpoints.length
        ? h('ul', { class: 'checkpoints' }, ...checkpoints.map((c) => h('li', null, `${time(c.t)} · step ${c.step} · ${c.path}${c.bytes !== undefined ? ` · ${formatBytes(c.bytes)}` : ''}`)))
        : h('p', { class: 'muted' }, 'No checkpoints yet.'),
      h(
        'ol',
        { class: 'log', 'aria-label': 'recent log lines, newest first' },
        ...logs.map((l) => h('li', { class: `log-${l.level}` }, h('span', { class: 'muted' }, `${time(l.t)} ${l.level}${l.rank !== undefined ? ` r${l.rank}` : ''} `), l.message)),
      ),
    );
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== 'unknown' && v !== 0)) as Partial<T>;
}
