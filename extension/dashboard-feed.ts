// Feeds the dashboard webview from the host's run history: a snapshot when the webview is (re)ready or
// becomes visible, then batches of new messages about every `refreshIntervalMs`. Hidden webviews cannot
// receive messages, so nothing is queued for them: the next snapshot catches them up.
import * as vscode from 'vscode';
import type { Message } from '../runtime/protocol';
import { readRun } from '../runtime/telemetry/run-store';
import { RunHistory } from '../runtime/telemetry/history';
import type { DashboardPanel } from './dashboard-panel';
import type { LiveRun } from './live-run';
import type { RunRegistry } from './runs';

export class DashboardFeed implements vscode.Disposable {
  private pending: Message[] = [];
  private timer: NodeJS.Timeout | undefined;
  private followed: LiveRun | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly forward = (m: Message) => this.pending.push(m);
  /** The runtime's own snapshot (on every (re)connection) replaces whatever the webview had. */
  private readonly resync = () => this.sendSnapshot();

  constructor(private readonly panel: DashboardPanel, private readonly registry: RunRegistry, private readonly intervalMs: () => number) {
    this.disposables.push(
      panel.onReady(() => this.sendSnapshot()),
      panel.panel.onDidChangeViewState((e) => {
        if (e.webviewPanel.visible) this.sendSnapshot();
      }),
      registry.onDidChange((run) => {
        if (run && run !== this.followed && run.live) this.follow(run);
      }),
    );
    const focus = registry.focus();
    if (focus) this.follow(focus);
    this.schedule();
  }

  /** Shows `run` (a live run of this window). */
  follow(run: LiveRun): void {
    this.unfollow();
    this.followed = run;
    this.pending = [];
    run.on('message', this.forward);
    run.on('snapshot', this.resync);
    this.sendSnapshot();
  }

  /** Shows a finished run from its directory (read-only). */
  async showPast(dir: string): Promise<void> {
    this.unfollow();
    this.pending = [];
    const stored = await readRun(dir);
    const history = new RunHistory();
    for (const m of stored.messages) history.add(m);
    await this.panel.post(history.snapshot(true));
  }

  private unfollow(): void {
    this.followed?.off('message', this.forward);
    this.followed?.off('snapshot', this.resync);
    this.followed = undefined;
  }

  private sendSnapshot(): void {
    if (!this.followed || !this.panel.panel.visible) return;
    this.pending = [];
    void this.panel.post(this.followed.history.snapshot(!this.followed.live));
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      if (this.pending.length && this.followed && this.panel.panel.visible) {
        void this.panel.post({ type: 'batch', runId: this.followed.listening?.runId ?? this.followed.id, messages: this.pending });
      }
      this.pending = [];
      this.schedule();
    }, this.intervalMs());
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.unfollow();
    while (this.disposables.length) this.disposables.pop()?.dispose();
  }
}
