// The run lifecycle as every surface shows it (CLI, dashboard, Runs view, status bar, run store): one label,
// one codicon and one colour per state, and one sentence on how a run ended. Pure: the runtime, the
// extension and the webview bundle share it, so "stopped at step 40 by VS Code" reads the same everywhere.
import { isEnded, type RunState, type StatusMessage } from './protocol';

export type ShownState = RunState | 'unknown';

export interface StateLook {
  label: string;
  /** A codicon name (Runs view, status bar). */
  icon: string;
  /** A ThemeColor id for the icon, when the state has a colour of its own. */
  color?: string;
  /** An emoji-free glyph for plain text (the CLI, tooltips). */
  glyph: string;
}

export const STATE_LOOK: Record<ShownState, StateLook> = {
  starting: { label: 'starting', icon: 'loading~spin', glyph: '…' },
  running: { label: 'running', icon: 'sync~spin', color: 'charts.blue', glyph: '▶' },
  checkpointing: { label: 'checkpointing', icon: 'save', color: 'charts.blue', glyph: '▶' },
  stopping: { label: 'stopping', icon: 'debug-pause', color: 'charts.yellow', glyph: '■' },
  finished: { label: 'finished', icon: 'pass-filled', color: 'testing.iconPassed', glyph: '✓' },
  stopped: { label: 'stopped', icon: 'debug-stop', color: 'charts.yellow', glyph: '■' },
  failed: { label: 'failed', icon: 'error', color: 'errorForeground', glyph: '✗' },
  crashed: { label: 'crashed', icon: 'warning', color: 'charts.orange', glyph: '!' },
  unknown: { label: 'unknown', icon: 'history', glyph: '?' },
};

/** Stopped and crashed runs can continue from their latest checkpoint (`scalelm train --resume DIR`). */
export const canResume = (state: ShownState | undefined): boolean => state === 'stopped' || state === 'crashed';

/**
 * One line on where the run stands: "running", "stopped at step 40 by VS Code", "failed on rank 1 at
 * step 7: out of memory", "crashed after step 12 (the process is gone without a final status)".
 */
export function describeState(state: ShownState, status: Pick<StatusMessage, 'step' | 'error' | 'by' | 'reason'> | null | undefined, lastStep?: number): string {
  const step = status?.step ?? lastStep;
  switch (state) {
    case 'finished':
      return step !== undefined ? `finished at step ${step}` : 'finished';
    case 'stopped':
      return `stopped${step !== undefined ? ` at step ${step}` : ''}${status?.by ? ` by ${status.by}` : ''}`;
    case 'failed': {
      // error.rank: set by the engines where the failing rank is known (never read back from the message).
      const rank = status?.error?.rank;
      let cause = status?.error?.message ?? 'no cause recorded';
      // The engines' messages start "rank R, step S: " for the CLI; the sentence names the rank already.
      const prefix = rank !== undefined ? new RegExp(`^rank ${rank}(, step \\d+)?: `) : undefined;
      if (prefix) cause = cause.replace(prefix, '');
      return `failed${rank !== undefined ? ` on rank ${rank}` : ''}${step !== undefined ? ` at step ${step}` : ''}: ${cause}`;
    }
    case 'crashed':
      return `crashed${lastStep !== undefined ? ` after step ${lastStep}` : ''} (the process is gone without a final status)`;
    case 'stopping':
      return `stopping${status?.by ? ` (asked by ${status.by})` : ''}`;
    default:
      return STATE_LOOK[state].label;
  }
}

/**
 * The state a reader should show for a recorded run: its last status, or "crashed" when that is not final
 * and the writing process is known to be gone (`alive` false). `alive` undefined (cannot tell) keeps it.
 */
export function settledState(last: RunState | undefined, alive: boolean | undefined): ShownState {
  if (last && isEnded(last)) return last;
  if (alive === false) return 'crashed';
  return last ?? 'unknown';
}
