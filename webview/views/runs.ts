// The Runs tab: the runs the host knows (live and past); show one, or overlay a second on the curves to
// compare. Below, the shown run's checkpoints and recent log lines.
import { fill, h, setText } from '../dom';
import { formatBytes, formatCount, formatTime } from '../format';
import type { RunSummary } from '../../common/protocol';
import type { RunData } from '../store';

export interface RunsActions {
  show(runId: string): void;
  compare(runId: string | null): void;
}

export class RunsView {
  readonly root: HTMLElement;
  private readonly tbody: HTMLElement;
  private readonly status: HTMLElement;
  private readonly events: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly clear: HTMLElement;
  private key = '';
  private eventsKey = '';

  constructor(private readonly actions: RunsActions) {
    this.tbody = h('tbody');
    this.empty = h('p', { class: 'muted' }, 'No other runs known yet. In VS Code the Runs view lists the runs folder; `scalelm serve runs/` serves every run in a folder.');
    this.status = h('p', { id: 'compare-status', class: 'muted' });
    this.clear = h('vscode-button', { id: 'compare-clear', secondary: true, hidden: true }, 'Stop comparing');
    this.clear.addEventListener('click', () => this.actions.compare(null));
    const table = h(
      'table',
      { class: 'runs-table', id: 'runs-table' },
      h('thead', null, h('tr', null, ...['run', 'state', 'steps', 'started', ''].map((c) => h('th', { scope: 'col' }, c)))),
      this.tbody,
    );
    this.events = h('div', { class: 'events', id: 'events' });
    this.root = h('div', { class: 'runs-view' }, h('h2', null, 'Runs'), this.empty, table, h('div', { class: 'compare-row' }, this.status, this.clear), h('h2', null, 'This run: checkpoints and log'), this.events);
  }

  render(runs: RunSummary[], current: RunData | null, compare: RunData | null, compareId: string | null, live: Set<string>): void {
    const key = JSON.stringify([runs, current?.runId, compareId, compare?.runId, [...live]]);
    if (key !== this.key) {
      this.key = key;
      const all = [...runs];
      if (current && !all.some((r) => r.runId === current.runId)) all.unshift(current.summary());
      this.empty.hidden = all.length > 1;
      fill(
        this.tbody,
        ...all.map((r) => {
          const shown = r.runId === current?.runId;
          const compared = r.runId === compareId;
          const showBtn = h('vscode-button', { secondary: true, disabled: shown, 'data-action': 'show', 'aria-label': `show run ${r.name}` }, shown ? 'Shown' : 'Show');
          const cmpBtn = h('vscode-button', { secondary: true, disabled: shown, 'data-action': 'compare', 'aria-label': `${compared ? 'stop comparing with' : 'compare with'} run ${r.name}` }, compared ? 'Comparing' : 'Compare');
          showBtn.addEventListener('click', () => !shown && this.actions.show(r.runId));
          cmpBtn.addEventListener('click', () => !shown && this.actions.compare(compared ? null : r.runId));
          return h(
            'tr',
            { 'data-run': r.runId, class: `${shown ? 'shown' : ''}${compared ? ' compared' : ''}` },
            h('td', null, h('span', { class: 'run-name' }, r.name), h('span', { class: 'muted small run-id' }, ` ${r.runId}`)),
            h('td', null, h('span', { class: `state-pill state-${live.has(r.runId) ? 'running' : r.state}` }, live.has(r.runId) ? 'live' : r.state)),
            h('td', { class: 'num' }, formatCount(r.steps)),
            h('td', null, formatTime(r.startedAt)),
            h('td', { class: 'actions' }, showBtn, cmpBtn),
          );
        }),
      );
      this.clear.hidden = compareId === null;
      setText(this.status, compareId === null ? 'Pick a run to compare: its curves are drawn dashed over this one\u2019s.' : compare ? `Comparing with ${compare.hello?.name ?? compare.runId} (${formatCount(compare.steps.length)} steps, dashed on the curves).` : `Loading ${compareId}…`);
    }
    this.renderEvents(current);
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
    fill(
      this.events,
      checkpoints.length ? h('ul', { class: 'checkpoints' }, ...checkpoints.map((c) => h('li', null, `${time(c.t)} · step ${c.step} · ${c.path}${c.bytes !== undefined ? ` · ${formatBytes(c.bytes)}` : ''}`))) : h('p', { class: 'muted' }, 'No checkpoints yet.'),
      h('ol', { class: 'log', 'aria-label': 'recent log lines, newest first' }, ...logs.map((l) => h('li', { class: `log-${l.level}` }, h('span', { class: 'muted' }, `${time(l.t)} ${l.level}${l.rank !== undefined ? ` r${l.rank}` : ''} `), l.message))),
    );
  }
}
