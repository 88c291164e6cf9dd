// The status bar item: step, loss and the fullest device's peak memory of the focused run; warning colour
// near capacity; click opens the dashboard.
import * as vscode from 'vscode';
import { basename } from 'node:path';
import { STATE_LOOK } from '../common/lifecycle';
import { isEnded } from '../common/protocol';
import { formatBytes } from '../common/units';
import type { LiveRun } from './live-run';
import type { RunRegistry } from './runs';

/** Fraction of capacity from which the item turns to the warning colour, and to the error colour. */
export const WARN_AT = 0.85;
export const ERROR_AT = 0.97;

export interface StatusView {
  text: string;
  tooltip: string;
  level: 'normal' | 'warning' | 'error';
}

export function statusView(run: LiveRun | undefined): StatusView {
  if (!run) return { text: '$(pulse) ScaleLM', tooltip: 'ScaleLM: no run yet. Click to open the dashboard.', level: 'normal' };
  const step = run.lastStep;
  const total = run.history.summary().steps;
  let fullest: { peak: number; capacity: number; rank: number } | undefined;
  for (const m of run.memory.values()) {
    const fill = m.capacity > 0 ? m.stepPeak / m.capacity : 0;
    if (!fullest || fill > fullest.peak / Math.max(1, fullest.capacity)) fullest = { peak: m.stepPeak, capacity: m.capacity, rank: m.rank };
  }
  const fill = fullest && fullest.capacity > 0 ? fullest.peak / fullest.capacity : 0;
  const look = STATE_LOOK[run.state];
  const parts = [`$(${look.icon}) ScaleLM`];
  // A run that ended says so first: "stopped · step 40" must not read like a run still at step 40.
  if (isEnded(run.state) || !step) parts.push(look.label);
  if (step) parts.push(`step ${step.step}`, `loss ${Number.isFinite(step.loss) ? step.loss.toFixed(3) : String(step.loss)}`);
  if (fullest) parts.push(`${formatBytes(fullest.peak, 1)}${fullest.capacity ? ` (${Math.round(fill * 100)}%)` : ''}`);
  const name = run.history.hello?.name ?? basename(run.options.runDir);
  const tooltip = [
    `ScaleLM: ${name} — ${run.detail || look.label}`,
    run.options.runDir,
    `${total} steps recorded`,
    fullest ? `fullest device: rank ${fullest.rank}, peak ${formatBytes(fullest.peak)} of ${formatBytes(fullest.capacity)}` : '',
    'Click to open the dashboard.',
  ]
    .filter(Boolean)
    .join('\n');
  return { text: parts.join(' · '), tooltip, level: fill >= ERROR_AT || run.state === 'failed' || run.state === 'crashed' ? 'error' : fill >= WARN_AT ? 'warning' : 'normal' };
}

export function createStatusBar(registry: RunRegistry): vscode.StatusBarItem {
  const item = vscode.window.createStatusBarItem('scalelm.status', vscode.StatusBarAlignment.Left, 50);
  item.name = 'ScaleLM';
  item.command = 'scalelm.openDashboard';
  const render = () => {
    const v = statusView(registry.focus());
    item.text = v.text;
    item.tooltip = v.tooltip;
    item.backgroundColor = v.level === 'normal' ? undefined : new vscode.ThemeColor(v.level === 'error' ? 'statusBarItem.errorBackground' : 'statusBarItem.warningBackground');
  };
  render();
  registry.onDidChange(render);
  item.show();
  return item;
}
