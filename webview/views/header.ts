// The run header, visible on every tab: name, state, step / total with a progress bar, elapsed, ETA,
// throughput, achieved TFLOP/s per device and MFU, the layout and backend, the engine (and why), an out-of-memory warning,
// the raised alerts, and a strip with one small memory bar per rank (per node, for its fullest rank, in a
// multi-node run of COMPACT_FROM ranks or more: 128 bars on every tab would bury the header).
import { fill, h, setText } from '../dom';
import { formatBytes, formatCount, formatDuration, formatFlops, formatPercent, formatTokensPerSec, formatValue } from '../format';
import { levelOf, progressOf, type Level } from '../metrics';
import { isEnded, type AlertMessage } from '../../common/protocol';
import { canResume, describeState, STATE_LOOK, type ShownState } from '../../common/lifecycle';
import type { RunData } from '../store';
import { COMPACT_FROM, describeTimeToFull } from './memory';

/** 14:05, or "Tue 14:05" when it is not today. */
function clock(t: number): string {
  const d = new Date(t);
  const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  return d.toDateString() === new Date().toDateString() ? hm : `${d.toLocaleDateString('en-GB', { weekday: 'short' })} ${hm}`;
}

const STATS = [
  ['elapsed', 'Elapsed'],
  ['eta', 'ETA'],
  ['throughput', 'Throughput'],
  ['tflops', 'Achieved per device'],
  ['mfu', 'MFU'],
  ['loss', 'Loss'],
  ['layout', 'Layout'],
  ['engine', 'Engine'],
] as const;

export class HeaderView {
  readonly root: HTMLElement;
  readonly name: HTMLElement;
  readonly state: HTMLElement;
  readonly step: HTMLElement;
  readonly total: HTMLElement;
  readonly connection: HTMLElement;
  readonly progress: HTMLElement & { value?: number; max?: number };
  readonly stopButton: HTMLElement;
  readonly checkpointButton: HTMLElement;
  /** "Resume from step N" (VS Code only: it runs `scalelm train --resume`); hidden elsewhere. */
  readonly resumeButton: HTMLElement;
  /** How the run ended, and what to do next. */
  private readonly end: HTMLElement;
  private readonly endText: HTMLElement;
  private readonly endHint: HTMLElement;
  /** The host can resume runs (VS Code). */
  canResume = false;
  private controlsAvailable = false;
  private readonly stats = new Map<string, HTMLElement>();
  private readonly oom: HTMLElement;
  private readonly alerts: HTMLElement;
  private readonly strip: HTMLElement;
  private stripBars = new Map<string, { root: HTMLElement; fill: HTMLElement; label: HTMLElement; level: Level }>();
  private alertsKey = '';
  private stripRun: string | null = null;
  private shownState = '';

  constructor() {
    this.name = h('h1', { id: 'run-name' }, 'No run yet');
    this.state = h('span', { id: 'run-state', class: 'state-pill state-idle', role: 'status' }, 'idle');
    this.step = h('span', { id: 'run-step' });
    this.total = h('span', { id: 'run-total', class: 'muted' });
    this.connection = h('span', { id: 'connection', class: 'muted small' });
    this.checkpointButton = h('vscode-button', { id: 'btn-checkpoint', secondary: true, hidden: true, title: 'Save a checkpoint now' }, 'Checkpoint');
    this.stopButton = h('vscode-button', { id: 'btn-stop', hidden: true, title: 'Stop the run after the current step (a checkpoint is written)' }, 'Stop');
    this.resumeButton = h('vscode-button', { id: 'btn-resume', hidden: true, title: 'Continue this run from its latest checkpoint (scalelm train --resume)' }, 'Resume');
    this.endText = h('span', { id: 'run-end-text' });
    this.endHint = h('span', { id: 'run-end-hint', class: 'muted small' });
    this.end = h('div', { id: 'run-end', class: 'run-end', hidden: true, role: 'status' }, this.endText, this.resumeButton, this.endHint);
    this.progress = h('vscode-progress-bar', { id: 'run-progress', 'aria-label': 'training progress', max: 1, hidden: true }) as HTMLElement & { value?: number; max?: number };
    const stats = h('dl', { class: 'stats', id: 'stats' });
    for (const [key, label] of STATS) {
      const dd = h('dd', { id: `stat-${key}` }, '—');
      this.stats.set(key, dd);
      stats.append(h('div', { class: `stat stat-${key}` }, h('dt', null, label), dd));
    }
    this.oom = h('div', { id: 'oom-warning', class: 'oom-warning', role: 'alert', hidden: true });
    this.alerts = h('ul', { id: 'alerts', class: 'alerts', 'aria-label': 'alerts' });
    this.strip = h('div', { id: 'mem-strip', class: 'mem-strip', 'aria-label': 'memory per rank (step peak of capacity)' });
    this.root = h(
      'header',
      { class: 'run-header' },
      h(
        'div',
        { class: 'title-row' },
        this.name,
        this.state,
        h('span', { class: 'step' }, this.step, this.total),
        this.connection,
        h('span', { class: 'spacer' }),
        this.checkpointButton,
        this.stopButton,
      ),
      this.end,
      this.progress,
      stats,
      this.oom,
      this.alerts,
      this.strip,
    );
  }

  setConnection(text: string, bad: boolean): void {
    setText(this.connection, text);
    this.connection.classList.toggle('bad', bad);
  }

  /** Whether the host can send control requests for the shown run at all (not a replay). */
  setControls(enabled: boolean): void {
    this.controlsAvailable = enabled;
    this.stopButton.hidden = !enabled;
    this.checkpointButton.hidden = !enabled;
  }

  /** Stop and Checkpoint act only on a run that is still going: disabled, with the reason, once it ended. */
  private renderControls(state: ShownState): void {
    if (!this.controlsAvailable) return;
    const ended = isEnded(state === 'unknown' ? undefined : state);
    const why = ended ? `the run has ${STATE_LOOK[state].label}` : state === 'stopping' ? 'the run is stopping' : '';
    for (const [b, title] of [
      [this.stopButton, 'Stop the run after the current step (a checkpoint is written)'],
      [this.checkpointButton, 'Save a checkpoint now'],
    ] as const) {
      const disabled = why !== '';
      if (b.hasAttribute('disabled') !== disabled) b.toggleAttribute('disabled', disabled);
      b.title = disabled ? `Not available: ${why}` : title;
    }
  }

  render(run: RunData | null, now: number): void {
    if (!run) {
      setText(this.name, 'No run yet');
      return;
    }
    setText(this.name, run.hello?.name ?? run.runId);
    this.name.title = `run ${run.runId}`;
    const state: ShownState | 'idle' = run.status?.state ?? (run.hello ? 'starting' : 'idle');
    if (state !== this.shownState) {
      this.state.className = `state-pill state-${state}`;
      this.shownState = state;
    }
    setText(this.state, state === 'idle' ? 'idle' : STATE_LOOK[state].label);
    const lastStep = run.steps.length ? run.steps.col('step')[run.steps.length - 1]! : undefined;
    if (state !== 'idle') {
      this.state.title = describeState(state, run.status, lastStep);
      this.renderControls(state);
      this.renderEnd(run, state, lastStep);
    }
    const p = progressOf(run, now);
    setText(this.step, p.step === null ? '' : `step ${p.step}`);
    setText(this.total, p.step !== null && p.total !== null ? ` / ${formatCount(p.total)}` : '');
    // Without a total the bar would be indeterminate (an animation that suggests work): hide it.
    const known = p.step !== null && p.total !== null && p.total > 0;
    if (this.progress.hidden === known) this.progress.hidden = !known;
    if (known) {
      this.progress.max = 1;
      this.progress.value = Math.min(1, p.step! / p.total!);
    }
    this.stat('elapsed', p.elapsedMs === null ? '—' : formatDuration(p.elapsedMs), p.stale ? `no message for ${formatDuration(now - run.lastT)}` : '');
    const finalState = run.status && isEnded(run.status.state) ? STATE_LOOK[run.status.state].label : null;
    this.stat('eta', finalState ?? (p.etaMs === null ? '—' : formatDuration(p.etaMs)), finalState || p.etaMs === null || p.stale ? '' : `finishes ~${clock(now + p.etaMs)}`);
    this.stat('throughput', p.tokensPerSec === null ? '—' : formatTokensPerSec(p.tokensPerSec), p.stepMs === null ? '' : `${formatDuration(p.stepMs)} per step`);
    this.stat('tflops', p.flopsPerDevice === null ? '—' : formatFlops(p.flopsPerDevice), `${run.world} device${run.world === 1 ? '' : 's'}`);
    this.stat('mfu', p.mfu === null ? 'n/a' : formatPercent(p.mfu, 1), p.mfu === null ? (p.flopsPerDevice === null ? '' : 'no GPU peak (CPU device)') : `of ${p.peakName ?? 'GPU'} peak`);
    this.stat('loss', p.loss === null ? '—' : formatValue(p.loss));
    this.stat('layout', p.layout ?? '—', [p.zero, p.backend].filter(Boolean).join(' · '));
    // Which engine trains (local TensorFlow.js, torch under torchrun) and why it was chosen, from the hello.
    const engine = run.hello?.engine;
    this.stat('engine', engine?.name ?? '—', run.hello?.backend?.label ?? '');
    this.stats.get('engine')!.title = engine?.reason ?? '';
    this.renderOom(run);
    this.renderAlerts(run);
    this.renderStrip(run);
  }

  /** The ended run's line: "stopped at step 40 by VS Code", with Resume where the host can resume it. */
  private renderEnd(run: RunData, state: ShownState, lastStep: number | undefined): void {
    const ended = isEnded(state === 'unknown' ? undefined : state);
    if (this.end.hidden === ended) this.end.hidden = !ended;
    if (!ended) return;
    this.end.className = `run-end end-${state}`;
    setText(this.endText, describeState(state, run.status, lastStep));
    const resumable = canResume(state);
    const from = run.checkpoints.length ? run.checkpoints[run.checkpoints.length - 1]!.step : (run.status?.step ?? lastStep);
    this.resumeButton.hidden = !(resumable && this.canResume);
    setText(this.resumeButton, from !== undefined ? `Resume from step ${from}` : 'Resume');
    setText(this.endHint, resumable && !this.canResume ? `continue with: scalelm train --resume …/${run.runId}` : '');
  }

  private stat(key: string, value: string, sub = ''): void {
    const dd = this.stats.get(key)!;
    const text = sub ? `${value}\u2002${sub}` : value;
    if (dd.textContent === text) return;
    fill(dd, h('span', { class: 'value' }, value), sub ? h('span', { class: 'sub muted' }, sub) : null);
  }

  private renderOom(run: RunData): void {
    let text = '';
    const err = run.status?.state === 'failed' ? run.status.error : undefined;
    if (err && (err.kind === 'DeviceOutOfMemoryError' || /out of memory|\bOOM\b/i.test(err.message))) text = `Out of memory — the run stopped: ${err.message}`;
    if (!text) {
      const critical = [...run.activeAlerts.values()].find((a) => a.kind === 'memory-high' && a.severity === 'critical');
      if (critical) text = `Out-of-memory risk: ${critical.message}${describeTimeToFull(critical.timeToFullSec)}`;
    }
    if (!text) {
      for (const [rank, mem] of run.memory) {
        const m = mem.latest;
        if (m.capacity > 0 && levelOf(m.stepPeak / m.capacity) === 'critical') {
          text = `Out-of-memory risk: rank ${rank} peaked at ${formatBytes(m.stepPeak)} of ${formatBytes(m.capacity)} (${formatPercent(m.stepPeak / m.capacity)})`;
          break;
        }
      }
    }
    this.oom.hidden = !text;
    setText(this.oom, text);
  }

  private renderAlerts(run: RunData): void {
    const active = [...run.activeAlerts.values()];
    const key = active.map((a) => `${a.id}:${a.t}`).join(',');
    if (key === this.alertsKey) return;
    this.alertsKey = key;
    const rank = (a: AlertMessage) => (a.severity === 'critical' ? 0 : a.severity === 'warning' ? 1 : 2);
    fill(
      this.alerts,
      ...active.sort((a, b) => rank(a) - rank(b) || b.t - a.t).map((a) => h('li', { class: `alert sev-${a.severity}`, 'data-kind': a.kind }, h('strong', null, `${a.severity}: `), a.message)),
    );
  }

  private renderStrip(run: RunData): void {
    const perNode = run.multiNode && run.memory.size >= COMPACT_FROM;
    const key = `${run.runId}|${perNode}`;
    if (this.stripRun !== key) {
      this.stripBars.clear();
      this.strip.replaceChildren();
      this.stripRun = key;
    }
    // One bar per rank; or per node, showing that node's fullest rank.
    const bars = perNode
      ? run.nodeGroups().flatMap((g) =>
          g.worstRank === null
            ? []
            : [
                {
                  id: g.key,
                  label: g.node ? `n${g.node.rank}` : 'local',
                  rank: g.worstRank,
                  what: `${g.node ? `${g.node.host} (node ${g.node.rank})` : 'this machine'}, fullest of ${g.ranks.length} ranks: rank ${g.worstRank}`,
                },
              ],
        )
      : [...run.memory.keys()].sort((a, b) => a - b).map((rank) => ({ id: `r${rank}`, label: `r${rank}`, rank, what: `rank ${rank}` }));
    for (const b of bars) {
      let bar = this.stripBars.get(b.id);
      if (!bar) {
        const fillEl = h('div', { class: 'fill' });
        const label = h('span', { class: 'mini-label' });
        const root = h(
          'div',
          { class: 'mini level-ok', ...(perNode ? { 'data-node': b.id } : { 'data-rank': b.rank }) },
          h('span', { class: 'mini-rank' }, b.label),
          h('div', { class: 'mini-bar' }, fillEl),
          label,
        );
        bar = { root, fill: fillEl, label, level: 'ok' };
        this.stripBars.set(b.id, bar);
        this.strip.append(root);
      }
      const m = run.memory.get(b.rank)!.latest;
      const f = m.capacity > 0 ? m.stepPeak / m.capacity : 0;
      const level = levelOf(f);
      if (level !== bar.level) {
        bar.root.classList.replace(`level-${bar.level}`, `level-${level}`);
        bar.level = level;
      }
      bar.fill.style.width = `${Math.min(100, f * 100)}%`;
      setText(bar.label, formatPercent(f, f >= 0.75 ? 1 : undefined));
      bar.root.title = `${b.what}: ${formatBytes(m.stepPeak)} of ${formatBytes(m.capacity)}`;
    }
  }

  inspect(): Record<string, string> {
    const out: Record<string, string> = {
      end: this.end.hidden ? '' : (this.endText.textContent ?? ''),
      resume: this.resumeButton.hidden ? '' : (this.resumeButton.textContent ?? ''),
      stopDisabled: this.stopButton.hidden ? 'hidden' : String(this.stopButton.hasAttribute('disabled')),
      name: this.name.textContent ?? '',
      state: this.state.textContent ?? '',
      step: this.step.textContent ?? '',
      total: this.total.textContent ?? '',
      oom: this.oom.hidden ? '' : (this.oom.textContent ?? ''),
      alerts: this.alerts.textContent ?? '',
      connection: this.connection.textContent ?? '',
    };
    for (const [k, el] of this.stats) out[k] = el.textContent ?? '';
    return out;
  }
}
