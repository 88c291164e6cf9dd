// The live runs of this window. Several may run at once; the registry is what the status bar, the Runs
// view, the dashboard and Stop all look at.
import * as vscode from 'vscode';
import type { LiveRun } from './live-run';

export class RunRegistry implements vscode.Disposable {
  private readonly runs = new Map<string, LiveRun>();
  private readonly changed = new vscode.EventEmitter<LiveRun | undefined>();
  /** Fires on any run's state change or new step (for views), with the run. */
  readonly onDidChange = this.changed.event;

  add(run: LiveRun): void {
    this.runs.set(run.id, run);
    run.on('state', () => {
      void vscode.commands.executeCommand('setContext', 'scalelm.hasLiveRun', this.live().length > 0);
      this.changed.fire(run);
    });
    run.on('message', (m) => {
      if (m.type === 'step' || m.type === 'memory' || m.type === 'status') this.changed.fire(run);
    });
    this.changed.fire(run);
  }

  get(id: string): LiveRun | undefined {
    return this.runs.get(id);
  }

  all(): LiveRun[] {
    return [...this.runs.values()];
  }

  live(): LiveRun[] {
    return this.all().filter((r) => r.live);
  }

  /** The run the status bar follows: the newest live one, else the newest. */
  focus(): LiveRun | undefined {
    const all = this.all();
    return [...all].reverse().find((r) => r.live) ?? all[all.length - 1];
  }

  dispose(): void {
    for (const r of this.runs.values()) r.killNow();
    this.changed.dispose();
  }
}
