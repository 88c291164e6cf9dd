// The "ScaleLM Runs" view: live runs of this window first, then past runs found in the workspace's runs
// directory. A past run is summarised from the head and tail of its metrics.jsonl (never the whole file).
import * as vscode from 'vscode';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { decodeMessage, type Message } from '../common/protocol';
import { canResume, describeState, settledState, STATE_LOOK, type ShownState } from '../common/lifecycle';
import { offersCalibration } from '../runtime/commands/calibrate';
import { listRunDirs, writerAlive } from '../runtime/telemetry/run-store';
import type { LiveRun } from './live-run';
import type { RunRegistry } from './runs';

export interface PastRun {
  dir: string;
  /** The protocol run id (hello.runId), else the folder name. */
  runId: string;
  name: string;
  startedAt: number;
  /** The last status, or "crashed" when it is not final and the writing process is gone. */
  state: ShownState;
  /** "stopped at step 40 by VS Code", "failed on rank 1 at step 7: …". */
  detail: string;
  lastStep?: number;
  lastLoss?: number;
  modified: number;
  /** A finished run on GPUs: the Runs view offers "Calibrate Planner from this Run". */
  calibratable: boolean;
}

const PEEK_BYTES = 64 * 1024;

/** Name, final state and last step of a run directory, from at most 128 KiB of its metrics. */
export function peekRun(dir: string): PastRun {
  const path = join(dir, 'metrics.jsonl');
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  const read = (start: number, length: number) => {
    const b = Buffer.alloc(length);
    const n = readSync(fd, b, 0, length, start);
    return b.subarray(0, n).toString('utf8');
  };
  const decode = (text: string): Message[] =>
    text
      .split('\n')
      .map((l) => decodeMessage(l))
      .flatMap((r) => (r.ok ? [r.value] : []));
  try {
    const head = decode(read(0, Math.min(size, PEEK_BYTES)));
    const tail = size > PEEK_BYTES ? decode(read(size - PEEK_BYTES, PEEK_BYTES)) : head;
    const hello = head.find((m) => m.type === 'hello');
    const status = [...tail].reverse().find((m) => m.type === 'status');
    const step = [...tail].reverse().find((m) => m.type === 'step');
    const last = status?.type === 'status' ? status : undefined;
    const state = settledState(last?.state, writerAlive(dir));
    return {
      dir,
      runId: hello?.type === 'hello' ? hello.runId : basename(dir),
      name: hello?.type === 'hello' ? hello.name : basename(dir),
      startedAt: hello?.type === 'hello' ? hello.startedAt : 0,
      state,
      detail: describeState(state, last, step?.type === 'step' ? step.step : undefined),
      ...(step?.type === 'step' ? { lastStep: step.step, lastLoss: step.loss } : {}),
      modified: statSync(path).mtimeMs,
      // GPU samples come every few seconds, so the head or the tail has one when the run had GPUs.
      calibratable: offersCalibration(state, [...head, ...tail]),
    };
  } finally {
    closeSync(fd);
  }
}

function stateIcon(state: ShownState): vscode.ThemeIcon {
  const look = STATE_LOOK[state];
  return new vscode.ThemeIcon(look.icon, look.color ? new vscode.ThemeColor(look.color) : undefined);
}

export type RunNode = { kind: 'live'; run: LiveRun } | { kind: 'past'; run: PastRun } | { kind: 'empty'; message: string };

export class RunsTree implements vscode.TreeDataProvider<RunNode> {
  private readonly changed = new vscode.EventEmitter<RunNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(
    private readonly registry: RunRegistry,
    private readonly runsDirs: () => string[],
  ) {
    registry.onDidChange(() => this.refresh());
  }

  refresh(): void {
    this.changed.fire(undefined);
  }

  getChildren(node?: RunNode): RunNode[] {
    if (node) return [];
    const live = this.registry.all().filter((r) => r.live);
    const liveDirs = new Set(live.map((r) => r.options.runDir));
    const past: RunNode[] = [];
    for (const root of this.runsDirs()) {
      for (const dir of listRunDirs(root)) {
        if (liveDirs.has(dir)) continue;
        try {
          past.push({ kind: 'past', run: peekRun(dir) });
        } catch {
          // a run directory being deleted or unreadable right now is simply not listed
        }
      }
    }
    const nodes: RunNode[] = [...live.map((run) => ({ kind: 'live' as const, run })), ...past];
    return nodes.length ? nodes : [{ kind: 'empty', message: 'No runs yet — right-click a *.scalelm.json and choose "ScaleLM: Launch Training".' }];
  }

  getTreeItem(node: RunNode): vscode.TreeItem {
    if (node.kind === 'empty') return new vscode.TreeItem(node.message);
    if (node.kind === 'live') {
      const r = node.run;
      const item = new vscode.TreeItem(`${basename(r.options.runDir)}`, vscode.TreeItemCollapsibleState.None);
      item.description = `${STATE_LOOK[r.state].label}${r.lastStep ? ` · step ${r.lastStep.step} · loss ${r.lastStep.loss.toFixed(3)}` : ''}`;
      item.tooltip = `${r.history.hello?.name ?? basename(r.options.runDir)} — ${r.detail || STATE_LOOK[r.state].label}\n${r.options.runDir}`;
      item.iconPath = stateIcon(r.state);
      item.contextValue = 'run.live';
      item.id = `live:${r.id}`;
      item.resourceUri = vscode.Uri.file(r.options.runDir);
      item.command = { command: 'scalelm.openDashboard', title: 'Open Dashboard', arguments: [{ runId: r.id }] };
      return item;
    }
    const r = node.run;
    const item = new vscode.TreeItem(basename(r.dir), vscode.TreeItemCollapsibleState.None);
    item.description = `${r.state === 'stopped' || r.state === 'failed' || r.state === 'crashed' ? r.detail.replace(/: .*/, '') : STATE_LOOK[r.state].label}${r.lastStep !== undefined && r.state !== 'stopped' && r.state !== 'crashed' ? ` · step ${r.lastStep}` : ''}${r.lastLoss !== undefined && Number.isFinite(r.lastLoss) ? ` · loss ${r.lastLoss.toFixed(3)}` : ''}`;
    item.tooltip = `${r.name} — ${r.detail}\n${r.dir}\nlast written ${new Date(r.modified).toLocaleString()}${canResume(r.state) ? '\nRight-click → Resume to continue from the latest checkpoint.' : ''}`;
    item.iconPath = stateIcon(r.state);
    // "run.past.resumable" offers Resume (stopped and crashed runs) in the context menu and inline.
    // "run.past.gpu" (a finished run on GPUs) offers "Calibrate Planner from this Run".
    item.contextValue = canResume(r.state) ? 'run.past.resumable' : r.calibratable ? 'run.past.gpu' : 'run.past';
    item.id = `past:${r.dir}`;
    item.resourceUri = vscode.Uri.file(r.dir);
    item.command = { command: 'scalelm.openDashboard', title: 'Open Dashboard', arguments: [{ runDir: r.dir }] };
    return item;
  }
}
