// The dashboard: validates what the host sends, keeps the shown run (and a compared one) in RunData, and
// redraws at most once per animation frame, only the visible tab's views and only what changed. One class
// for both hosts; the host adapter (host.ts / browser-host.ts) is the only difference.
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-checkbox/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-progress-bar/index.js';
import '@vscode-elements/elements/dist/vscode-radio/index.js';
import '@vscode-elements/elements/dist/vscode-radio-group/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-tab-header/index.js';
import '@vscode-elements/elements/dist/vscode-tab-panel/index.js';
import '@vscode-elements/elements/dist/vscode-tabs/index.js';
import '@vscode-elements/elements/dist/vscode-textarea/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import { canvasInk } from './charts';
import { h, setText } from './dom';
import type { DashboardHost } from './host';
import { validateHostMessage, type HostToWebview, type Inspection } from './messages';
import { RunData } from './store';
import { onThemeChange, readTheme, type ChartTheme } from './theme';
import { MAX_OVERLAYS, MAX_SMOOTHING, sanitizeState, TABS, type Tab, type UiState } from './ui-state';
import { CurvesView, type Overlay } from './views/curves';
import { wireZoom, zoomKey, type ZoomTarget } from './zoom';
import { HeaderView } from './views/header';
import { MemoryView } from './views/memory';
import { PlannerView } from './views/planner';
import { distinctLabels, RunsView } from './views/runs';
import { isEnded, type Message, type RunSummary } from '../common/protocol';

/** Chart drawing per animation frame; charts past it are drawn on the next frame. */
const CHART_BUDGET_MS = 8;

const TAB_TITLES: Record<Tab, string> = { curves: 'Curves', memory: 'Memory', runs: 'Runs', planner: 'Planner' };

export class Dashboard {
  run: RunData | null = null;
  /** Overlaid runs that have arrived, by id (state.compareRunIds says which and in what order). */
  readonly compares = new Map<string, RunData>();
  runs: RunSummary[] = [];
  live = new Set<string>();
  state: UiState;
  theme: ChartTheme;
  readOnly = true;
  lastRenderMs = 0;
  private rejectedCount = 0;
  private lastRejected: string | null = null;
  private pending = false;
  private readonly header: HeaderView;
  private readonly curves: CurvesView;
  private readonly memory: MemoryView;
  private readonly runsView: RunsView;
  private readonly planner: PlannerView;
  private readonly tabs: HTMLElement & { selectedIndex: number };
  private readonly smoothing: HTMLInputElement;
  private readonly smoothingValue: HTMLElement;
  private readonly logScale: HTMLElement & { checked: boolean };
  private readonly xAxis: HTMLElement;
  private readonly zoomInfo: HTMLElement;
  private readonly note: HTMLElement;
  private stopArmed: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly host: DashboardHost,
    private readonly app: HTMLElement,
  ) {
    this.state = sanitizeState(host.getState());
    this.theme = readTheme();
    this.header = new HeaderView();
    const hint =
      host.kind === 'vscode'
        ? 'No run yet. Launch one (right-click a *.scalelm.json → ScaleLM: Launch Training) or open a past run from the ScaleLM Runs view; the Planner tab works without a run.'
        : host.kind === 'browser'
          ? 'Waiting for the run\u2019s first step…'
          : 'No run: this page shows data when VS Code or `scalelm serve` hosts it.';
    this.curves = new CurvesView(this.theme, hint);
    this.memory = new MemoryView(this.theme);
    this.memory.onResize = () => this.schedule();
    this.curves.onResize = () => this.schedule();
    this.runsView = new RunsView({ show: (id) => this.selectRun(id), overlay: (id, on) => this.setOverlay(id, on), clearOverlays: () => this.clearOverlays() });
    this.runsView.rerender = () => this.flush(true);
    this.planner = new PlannerView(this.state.planner, {
      kind: host.kind,
      choose: (m) => host.post(m),
      saveForm: (form) => this.save({ planner: form }),
      requestInput: () => host.post({ type: 'requestPlannerInput' }),
    });

    // Curve controls
    this.smoothing = h('input', { id: 'smoothing', type: 'range', min: 0, max: MAX_SMOOTHING, step: 0.01, 'aria-label': 'smoothing (EMA weight)' });
    this.smoothing.value = String(this.state.smoothing);
    this.smoothingValue = h('output', { id: 'smoothing-value', for: 'smoothing' }, this.state.smoothing.toFixed(2));
    this.logScale = h('vscode-checkbox', { id: 'log-scale', 'aria-label': 'log scale for the loss' }, 'Log scale') as HTMLElement & { checked: boolean };
    this.logScale.checked = this.state.logScale;
    const radio = (value: string, label: string) => {
      const r = h('vscode-radio', { name: 'x-axis', value, 'aria-label': `x axis: ${label}` }, label) as HTMLElement & { checked: boolean };
      r.checked = this.state.xAxis === value;
      return r;
    };
    this.xAxis = h('vscode-radio-group', { id: 'x-axis', 'aria-label': 'x axis' }, radio('step', 'Step'), radio('time', 'Time'));
    const reset = h('vscode-button', { id: 'zoom-reset', secondary: true }, 'Reset zoom');
    this.zoomInfo = h('span', { id: 'zoom-info', class: 'muted small' });
    this.note = h('span', { id: 'curves-note', class: 'muted small' });
    const controls = h(
      'div',
      { class: 'curve-controls', role: 'toolbar', 'aria-label': 'curve options' },
      h('label', { class: 'slider', for: 'smoothing' }, 'Smoothing'),
      this.smoothing,
      this.smoothingValue,
      this.logScale,
      this.xAxis,
      reset,
      this.zoomInfo,
      this.note,
    );
    this.smoothing.addEventListener('input', () => {
      const v = Math.min(MAX_SMOOTHING, Math.max(0, Number(this.smoothing.value)));
      setText(this.smoothingValue, v.toFixed(2));
      this.save({ smoothing: v });
    });
    this.logScale.addEventListener('change', () => this.save({ logScale: Boolean(this.logScale.checked) }));
    this.xAxis.addEventListener('change', () => {
      const checked = [...this.xAxis.querySelectorAll('vscode-radio')].find((r) => (r as HTMLElement & { checked: boolean }).checked);
      const v = checked?.getAttribute('value');
      if (v === 'step' || v === 'time') this.save({ xAxis: v });
    });
    reset.addEventListener('click', () => this.save({ zoom: null }));

    // Tabs
    const panels: Record<Tab, HTMLElement> = {
      curves: h('div', { class: 'curves-view' }, controls, this.curves.emptyHint, this.curves.root),
      memory: this.memory.root,
      runs: this.runsView.root,
      planner: this.planner.root,
    };
    this.tabs = h('vscode-tabs', { id: 'tabs', 'selected-index': TABS.indexOf(this.state.tab) }) as HTMLElement & { selectedIndex: number };
    for (const tab of TABS) {
      // vscode-tabs assigns its own ids to headers and panels (for aria-controls): tests find them by data-tab.
      this.tabs.append(h('vscode-tab-header', { slot: 'header', 'data-tab': tab }, TAB_TITLES[tab]), h('vscode-tab-panel', { 'data-tab': tab }, panels[tab]));
    }
    this.tabs.addEventListener('vsc-tabs-select', (e) => {
      const i = (e as CustomEvent<{ selectedIndex: number }>).detail.selectedIndex;
      const tab = TABS[i];
      if (tab && tab !== this.state.tab) this.save({ tab });
    });
    this.app.replaceChildren(this.header.root, this.tabs);

    // Header controls
    this.header.stopButton.addEventListener('click', () => this.stopClicked());
    this.header.checkpointButton.addEventListener('click', () => this.control('checkpoint'));
    this.header.canResume = host.kind === 'vscode';
    this.header.resumeButton.addEventListener('click', () => {
      if (!this.run) return;
      this.host.post({ type: 'resumeRun', runId: this.run.runId });
      this.header.setConnection('resuming…', false);
    });
    wireZoom(this.curves, this.zoomTarget);
    onThemeChange(() => this.applyTheme());
    window.addEventListener('resize', () => this.schedule());
    setInterval(() => {
      if (this.run && !isEnded(this.run.status?.state)) this.header.render(this.run, Date.now());
    }, 1000);
    if (this.state.tab === 'planner') queueMicrotask(() => this.planner.activate());
    this.schedule();
  }

  // ------------------------------------------------------------------------------------- messages

  handle(raw: unknown): void {
    const r = validateHostMessage(raw);
    if (r.dropped?.length) this.reject(r.dropped.length, r.dropped[r.dropped.length - 1]!);
    if (!r.ok) {
      this.reject(1, r.reason);
      return;
    }
    const m = r.value as HostToWebview;
    switch (m.type) {
      case 'ping':
        this.flush(false, true);
        this.host.post({ type: 'pong', id: m.id, components: this.renderedComponents(), chartInk: canvasInk(this.curves.lossCanvas) });
        return;
      case 'inspect':
        this.flush(false, true);
        this.host.post({ type: 'inspectResult', id: m.id, ...this.inspect() });
        return;
      case 'snapshot':
        this.run = RunData.fromSnapshot(m);
        this.readOnly = m.readOnly;
        if (this.state.shownRunId !== m.runId) this.save({ shownRunId: m.runId });
        this.header.setControls(!m.readOnly && this.host.kind !== 'detached');
        if (m.runs) this.runs = m.runs;
        if (this.host.kind === 'browser' && m.hello) this.planner.setOpenConfig(`run ${m.hello.name}`, m.hello.config, false);
        for (const id of this.state.compareRunIds) if (!this.compares.has(id) && id !== m.runId) this.host.post({ type: 'compareRun', runId: id });
        break;
      case 'batch':
        if (this.run && this.run.runId !== m.runId && this.run.hello) return; // a late batch of a run no longer shown
        for (const msg of m.messages) this.apply(msg, m.runId);
        break;
      case 'control-result':
        this.header.setConnection(m.ok ? `request ${m.id} done` : `request refused: ${m.error ?? 'unknown reason'}`, !m.ok);
        break;
      case 'runs':
        this.runs = m.runs;
        this.live = new Set(m.live ?? []);
        break;
      case 'runHistory':
        // The answer to compareRun, or the host's own "compare with this run" (its Runs view).
        if (m.runId === this.run?.runId) break;
        {
          const overlay = RunData.fromSnapshot(m.snapshot);
          this.compares.set(m.runId, overlay);
          if (!this.state.compareRunIds.includes(m.runId)) this.save({ compareRunIds: [...this.state.compareRunIds, m.runId].slice(-MAX_OVERLAYS) });
          if (!this.runs.some((r) => r.runId === m.runId)) this.runs = [...this.runs, overlay.summary()];
        }
        break;
      case 'plannerInput':
        this.planner.setOpenConfig(m.source, m.config, true);
        break;
      case 'showTab':
        if (this.state.tab !== m.tab) this.save({ tab: m.tab });
        break;
      case 'connection':
        // A server that went away with its finished run is the end of the story, not an error.
        if (m.state === 'ended') this.header.setConnection(m.detail ?? 'the run has ended', false);
        else
          this.header.setConnection(
            m.state === 'open' ? (this.readOnly || isEnded(this.run?.status?.state) ? 'recorded' : 'live') : `${m.state}${m.detail ? `: ${m.detail}` : ''}`,
            m.state === 'closed' || m.state === 'waiting',
          );
        break;
      default:
        this.apply(m as Message, null);
    }
    this.schedule();
  }

  private apply(msg: Message, runId: string | null): void {
    if (msg.type === 'hello' && this.run && this.run.runId !== msg.runId && this.run.hello) this.run = null;
    if (!this.run) {
      this.run = new RunData(msg.type === 'hello' ? msg.runId : (runId ?? 'live'));
      if (this.host.kind !== 'detached') this.header.setControls(false);
    }
    this.run.add(msg);
    if (msg.type === 'hello' && this.host.kind === 'browser') this.planner.setOpenConfig(`run ${msg.name}`, msg.config, false);
  }

  private reject(count: number, reason: string): void {
    this.rejectedCount += count;
    this.lastRejected = reason;
    console.warn(`scalelm dashboard: refused ${count} message${count === 1 ? '' : 's'}: ${reason}`);
  }

  // ------------------------------------------------------------------------------------- actions

  private save(patch: Partial<UiState>): void {
    this.state = { ...this.state, ...patch };
    this.host.setState(this.state);
    if (patch.tab === 'planner') this.planner.activate();
    this.schedule();
  }

  private selectRun(runId: string): void {
    if (this.state.compareRunIds.includes(runId)) this.setOverlay(runId, false);
    this.host.post({ type: 'selectRun', runId });
  }

  /** Ticks or unticks a run on the Runs tab: its snapshot is asked for once and drawn dashed over the curves. */
  private setOverlay(runId: string, on: boolean): void {
    const ids = this.state.compareRunIds.filter((id) => id !== runId);
    if (on) ids.push(runId);
    else this.compares.delete(runId);
    this.save({ compareRunIds: ids.slice(-MAX_OVERLAYS) });
    if (on && !this.compares.has(runId)) this.host.post({ type: 'compareRun', runId });
  }

  private clearOverlays(): void {
    this.compares.clear();
    this.save({ compareRunIds: [] });
  }

  /** The overlays to draw, in the order they were ticked, under labels that tell equal names apart. */
  overlays(): Overlay[] {
    const labels = distinctLabels(
      [...this.runs, ...[...this.compares.values()].map((r) => r.summary()), ...(this.run ? [this.run.summary()] : [])].filter((r, i, all) => all.findIndex((x) => x.runId === r.runId) === i),
    );
    return this.state.compareRunIds.flatMap((id) => {
      const run = this.compares.get(id);
      return run && id !== this.run?.runId ? [{ run, label: labels.get(id) ?? run.hello?.name ?? id }] : [];
    });
  }

  private stopClicked(): void {
    const button = this.header.stopButton;
    if (this.stopArmed) {
      clearTimeout(this.stopArmed);
      this.stopArmed = null;
      button.textContent = 'Stop';
      this.control('stop');
      return;
    }
    button.textContent = 'Confirm stop';
    this.stopArmed = setTimeout(() => {
      this.stopArmed = null;
      button.textContent = 'Stop';
    }, 4000);
  }

  private control(action: 'stop' | 'checkpoint'): void {
    const id = `${action}-${Date.now().toString(36)}`;
    this.host.post({ type: 'control', id, action });
    this.header.setConnection(`${action} requested…`, false);
  }

  private applyTheme(): void {
    this.theme = readTheme();
    this.curves.applyTheme(this.theme);
    this.memory.applyTheme(this.theme);
    this.flush(true, true);
  }

  // ------------------------------------------------------------------------------------- zoom (zoom.ts)

  private readonly zoomTarget: ZoomTarget = { run: () => this.run, state: () => this.state, setZoom: (zoom) => this.save({ zoom }) };

  /** Keyboard zoom (see zoom.ts); true when the key was handled. */
  zoomKey(key: string): boolean {
    return zoomKey(this.zoomTarget, key);
  }

  // ------------------------------------------------------------------------------------- render

  schedule(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => this.flush());
    // rAF does not run in a background tab: the timer keeps the data moving there (cheap, once per 250 ms).
    setTimeout(() => this.flush(), 250);
  }

  /**
   * Redraws now what changed (everything with `force`). Charts get CHART_BUDGET_MS per frame and finish
   * on the following frames; `complete` draws them all now (probes and tests read the result at once).
   */
  flush(force = false, complete = false): boolean {
    if (!this.pending && !force && !complete) return false;
    this.pending = false;
    const t0 = performance.now();
    const now = Date.now();
    let more = false;
    this.header.render(this.run, now);
    const tab = this.state.tab;
    if (this.tabs.selectedIndex !== TABS.indexOf(tab)) this.tabs.selectedIndex = TABS.indexOf(tab);
    if (tab === 'curves') {
      more = this.curves.render(this.run, this.overlays(), this.state, force, complete ? Infinity : CHART_BUDGET_MS);
      this.renderCurveNotes();
      if (more) this.schedule();
    } else if (tab === 'memory') this.memory.render(this.run, force);
    else if (tab === 'runs') this.runsView.render(this.runs, this.run, this.compares, this.state.compareRunIds, this.live);
    this.lastRenderMs = performance.now() - t0;
    return more;
  }

  private renderCurveNotes(): void {
    const s = this.curves.shown;
    setText(this.zoomInfo, this.state.zoom && s ? `steps ${this.state.zoom.from}–${this.state.zoom.to}` : s ? 'all steps' : '');
    const run = this.run;
    const notes: string[] = [];
    if (run?.downsampled) notes.push(`history before the live steps is downsampled by the server (${run.steps.length} of ${run.stepsTotal} steps kept, spikes included)`);
    const overlays = this.overlays();
    if (overlays.length) notes.push(`dashed: ${overlays.map((o) => o.label).join(', ')}`);
    setText(this.note, notes.join(' · '));
  }

  // ------------------------------------------------------------------------------------- probes

  renderedComponents(): string[] {
    const tags = new Set<string>();
    for (const el of Array.from(this.app.querySelectorAll('*'))) {
      const tag = el.tagName.toLowerCase();
      if (tag.includes('-') && customElements.get(tag) && el.shadowRoot) tags.add(tag);
    }
    return [...tags].sort();
  }

  inspect(): Inspection {
    return {
      host: this.host.kind,
      tab: this.state.tab,
      runId: this.run?.runId ?? null,
      header: this.header.inspect(),
      charts: this.curves.inspect(),
      memory: this.memory.inspect(this.run),
      memoryLayout: this.memory.inspectLayout(),
      runs: [...this.runs.map((r) => r.runId), ...(this.run && !this.runs.some((r) => r.runId === this.run!.runId) ? [this.run.runId] : [])].map((id) => ({
        runId: id,
        name: this.runs.find((r) => r.runId === id)?.name ?? this.run?.hello?.name ?? id,
        shown: id === this.run?.runId,
        compared: this.state.compareRunIds.includes(id),
      })),
      table: Array.from(this.app.querySelectorAll('#runs-table tbody tr')).map((tr) => ({
        runId: (tr as HTMLElement).dataset.run ?? '',
        cells: Array.from(tr.children).map((td) => (td.textContent ?? '').trim()),
      })),
      overlays: this.overlays().map((o) => o.label),
      planner: this.planner.inspect(),
      theme: { kind: this.theme.kind, foreground: this.theme.foreground, series: this.theme.series },
      rejected: { count: this.rejectedCount, last: this.lastRejected },
      lastRenderMs: this.lastRenderMs,
      stepsShown: this.run?.steps.length ?? 0,
      viewport: { width: window.innerWidth, height: window.innerHeight },
    };
  }
}
