// Feeds the dashboard webview from the host's run history and answers what the page asks for
// (webview/messages.ts is the contract). A snapshot goes out when the page is (re)ready, becomes visible or
// the runtime reconnects; then batches of new messages about every `refreshIntervalMs`. Hidden webviews
// cannot receive messages, so nothing is queued for them: the next snapshot catches them up.
import * as vscode from 'vscode';
import { basename } from 'node:path';
import type { Message, RunSummary, SnapshotMessage } from '../common/protocol';
import { readRun, summarizeRun } from '../runtime/telemetry/run-store';
import { RunHistory } from '../runtime/telemetry/history';
import { toWebview, type ChooseLayoutMessage, type HostToWebview, type ShowTabMessage, type WebviewRequests, type WebviewToHost } from '../webview/messages';
import type { DashboardPanel } from './dashboard-panel';
import { parseJsonc, patchConfigText } from './json-paths';
import type { LiveRun } from './live-run';
import type { RunRegistry } from './runs';
import type { PastRun } from './runs-tree';

export interface FeedSources {
  registry: RunRegistry;
  pastRuns: () => PastRun[];
  intervalMs: () => number;
  log: vscode.LogOutputChannel;
  /** "Resume from step N" for the run in this folder (`scalelm train --resume`). */
  resume: (runDir: string) => Promise<void>;
}

/** A run's protocol id: what the page and the runtime call it. */
export function liveRunId(run: LiveRun): string {
  return run.listening?.runId ?? basename(run.options.runDir);
}

async function snapshotOfDir(dir: string): Promise<SnapshotMessage> {
  const stored = await readRun(dir);
  const history = new RunHistory();
  for (const m of stored.messages) history.add(m);
  return history.snapshot(true);
}

export class DashboardFeed implements vscode.Disposable {
  private pending: Message[] = [];
  private timer: NodeJS.Timeout | undefined;
  private followed: LiveRun | undefined;
  private shownDir: string | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly forward = (m: Message) => this.pending.push(m);
  /** The runtime's own snapshot (on every (re)connection) replaces whatever the page had. */
  private readonly resync = () => this.sendSnapshot();
  private readonly connection = (state: string, detail: string) => {
    const s = state === 'running' || state === 'stopping' ? 'open' : state === 'starting' ? 'connecting' : 'ended';
    this.send({ type: 'connection', state: s, detail });
  };

  constructor(
    private readonly panel: DashboardPanel,
    private readonly sources: FeedSources,
  ) {
    this.disposables.push(
      panel.onReady(() => {
        // A reloaded page starts empty: give it what it was showing (a live run's snapshot, or the past run again).
        if (!this.followed && this.shownDir) void this.showPast(this.shownDir);
        else this.sendSnapshot();
        void this.sendRuns();
      }),
      panel.onMessage((m) => void this.handle(m)),
      panel.panel.onDidChangeViewState((e) => {
        if (e.webviewPanel.visible) this.sendSnapshot();
      }),
      sources.registry.onDidChange((run) => {
        if (run && run !== this.followed && run.live && run.state === 'running') this.follow(run);
        else void this.sendRuns();
      }),
    );
    const focus = sources.registry.focus();
    if (focus) this.follow(focus);
    this.schedule();
  }

  /** The answer to a page's request, typed by the pair it belongs to (webview/messages.ts WebviewRequests). */
  private answer<K extends keyof WebviewRequests>(_request: K, m: WebviewRequests[K]): void {
    this.send(m);
  }

  private send(m: HostToWebview): void {
    if (this.panel.panel.visible) void this.panel.post(toWebview(m));
  }

  /** Shows `run` (a run of this window). */
  follow(run: LiveRun): void {
    this.unfollow();
    this.followed = run;
    this.shownDir = run.options.runDir;
    this.pending = [];
    run.on('message', this.forward);
    run.on('snapshot', this.resync);
    run.on('state', this.connection);
    this.sendSnapshot();
    void this.sendRuns();
  }

  /** Shows a finished run from its directory (read-only). */
  async showPast(dir: string): Promise<void> {
    this.unfollow();
    this.shownDir = dir;
    this.pending = [];
    this.send(await snapshotOfDir(dir));
    await this.sendRuns();
  }

  /**
   * After a window reload (the panel revived by its serializer): show the run the page was showing, else
   * the newest run there is, rather than "No run yet" next to a list of runs.
   */
  async restore(runId: string | null | undefined): Promise<void> {
    if (this.followed || this.shownDir) return;
    const past = this.sources.pastRuns();
    const dir = (runId ? this.runDirs().get(runId) : undefined) ?? [...past].sort((a, b) => b.modified - a.modified)[0]?.dir;
    if (dir) await this.showPast(dir);
  }

  /** Draws another run over the shown one. */
  async compare(dir: string): Promise<void> {
    const snapshot = await snapshotOfDir(dir);
    this.answer('compareRun', { type: 'runHistory', runId: snapshot.runId, snapshot });
  }

  /** Gives the Planner tab a config file (its JSON as written), and brings the tab to the front if asked. */
  showPlanner(uri: vscode.Uri, config: unknown, show: boolean): void {
    if (typeof config !== 'object' || config === null || Array.isArray(config)) return;
    this.send({ type: 'plannerInput', source: vscode.workspace.asRelativePath(uri), config: config as never });
    if (show) this.showTab('planner');
  }

  showTab(tab: ShowTabMessage['tab']): void {
    this.send({ type: 'showTab', tab });
  }

  private unfollow(): void {
    this.followed?.off('message', this.forward);
    this.followed?.off('snapshot', this.resync);
    this.followed?.off('state', this.connection);
    this.followed = undefined;
  }

  private sendSnapshot(): void {
    if (!this.followed) return;
    this.pending = [];
    this.send(this.followed.history.snapshot(!this.followed.live));
  }

  /** Run id → folder, for every run this window knows (live first). */
  private runDirs(): Map<string, string> {
    const dirs = new Map<string, string>();
    for (const run of this.sources.registry.all()) dirs.set(liveRunId(run), run.options.runDir);
    for (const past of this.sources.pastRuns()) if (!dirs.has(past.runId)) dirs.set(past.runId, past.dir);
    return dirs;
  }

  /** The runs table: live runs from their history (with this window's view of their state), past runs read whole (cached). */
  private async runList(): Promise<RunSummary[]> {
    const summaries: RunSummary[] = [];
    const seen = new Set<string>();
    for (const run of this.sources.registry.all()) {
      const id = liveRunId(run);
      seen.add(id);
      const s = run.history.summary();
      summaries.push({ ...s, runId: id, state: run.state, ...(run.detail && run.state !== 'running' ? { detail: run.detail } : {}) });
    }
    for (const past of this.sources.pastRuns()) {
      if (seen.has(past.runId)) continue;
      seen.add(past.runId);
      try {
        summaries.push({ ...(await summarizeRun(past.dir)), runId: past.runId });
      } catch {
        summaries.push({ runId: past.runId, name: past.name, startedAt: past.startedAt, state: past.state, steps: past.lastStep ?? 0, detail: past.detail });
      }
    }
    return summaries;
  }

  private async sendRuns(): Promise<void> {
    const summaries = await this.runList();
    const current = this.followed ? liveRunId(this.followed) : this.shownDir ? basename(this.shownDir) : null;
    this.send({ type: 'runs', runs: summaries, current, live: this.sources.registry.live().map(liveRunId) });
  }

  private async handle(m: WebviewToHost): Promise<void> {
    switch (m.type) {
      case 'selectRun': {
        const live = this.sources.registry.all().find((r) => liveRunId(r) === m.runId);
        if (live) return this.follow(live);
        const dir = this.runDirs().get(m.runId);
        if (dir) await this.showPast(dir);
        return;
      }
      case 'compareRun': {
        const dir = this.runDirs().get(m.runId);
        if (dir) await this.compare(dir);
        return;
      }
      case 'resumeRun': {
        const dir = this.runDirs().get(m.runId);
        if (dir) await this.sources.resume(dir);
        return;
      }
      case 'control': {
        const run = this.followed;
        if (!run?.live) {
          // The page disables Stop/Checkpoint on ended runs; this answers a click that crossed the run's end.
          this.answer('control', { type: 'control-result', id: m.id, ok: false, error: `the run has already ${run ? run.state : 'ended'}` });
          return;
        }
        const result = await run.control(m.action).catch((e: Error) => ({ type: 'control-result' as const, id: m.id, ok: false, error: e.message }));
        this.answer('control', { ...result, id: m.id });
        return;
      }
      case 'chooseLayout':
        await this.applyLayout(m);
        return;
      case 'requestPlannerInput': {
        const doc = vscode.window.visibleTextEditors.map((e) => e.document).find((d) => d.uri.path.endsWith('.scalelm.json') || d.uri.path.endsWith('/config.json'));
        if (doc) this.showPlanner(doc.uri, parseJsonc(doc.getText()), false);
        return;
      }
      default:
        return;
    }
  }

  /** "Use this layout" in the Planner tab: merge the patch into the config file it came from. */
  private async applyLayout(m: ChooseLayoutMessage): Promise<void> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const uri = m.source && folder ? vscode.Uri.joinPath(folder.uri, m.source) : undefined;
    if (!uri || !uri.path.endsWith('.scalelm.json')) {
      void vscode.window.showInformationMessage(`ScaleLM: ${m.summary} — copy the JSON from the Planner tab into a *.scalelm.json to use it.`);
      return;
    }
    const doc = await vscode.workspace.openTextDocument(uri);
    // What would be written is checked by the config parser first: a patch that breaks the file changes nothing.
    const text = doc.getText();
    const patched = patchConfigText(text, m.configPatch);
    if (!patched.ok) {
      this.sources.log.warn(`the planner's layout was not applied to ${m.source}: ${patched.reason}`);
      void vscode.window.showErrorMessage(`ScaleLM: ${vscode.workspace.asRelativePath(uri)} was not changed — with this layout it would not be a valid config (${patched.reason}).`);
      return;
    }
    const edit = new vscode.WorkspaceEdit();
    edit.replace(doc.uri, new vscode.Range(doc.positionAt(0), doc.positionAt(text.length)), patched.text);
    await vscode.workspace.applyEdit(edit);
    this.sources.log.info(`applied layout from the planner to ${m.source}: ${m.summary}`);
    void vscode.window.showInformationMessage(`ScaleLM: ${vscode.workspace.asRelativePath(uri)} now uses ${m.summary}`);
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      if (this.pending.length && this.followed) this.send({ type: 'batch', runId: liveRunId(this.followed), messages: this.pending });
      this.pending = [];
      this.schedule();
    }, this.sources.intervalMs());
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.unfollow();
    while (this.disposables.length) this.disposables.pop()?.dispose();
  }
}
