// CSV export of a run's steps (one row per optimizer step, evaluation loss joined in at its step), for
// spreadsheets and pandas. Streams: holds one pending row, whatever the run's length.
import type { Message, StepMessage } from '../../common/protocol';
import { streamMessages } from './run-store';

const LEADING = ['step', 'time', 'loss', 'lr', 'gradNorm', 'tokensPerSec', 'stepMs', 'tokens'] as const;
const KNOWN_MEMORY = ['params', 'grads', 'optimizer', 'activations', 'peak'];

/** Columns: the step fields, memory.<category> for every category seen (the five standard ones first), evalLoss. */
export function csvColumns(memoryCategories: Iterable<string> = []): string[] {
  const extra = [...new Set(memoryCategories)].filter((c) => !KNOWN_MEMORY.includes(c)).sort();
  return [...LEADING, ...[...KNOWN_MEMORY, ...extra].map((c) => `memory.${c}`), 'evalLoss'];
}

type Row = Record<string, string | undefined>;

/** RFC 4180: quote a cell holding a comma, quote or line break. Numbers keep full precision; NaN stays "NaN". */
export function csvCell(v: string | number | undefined): string {
  if (v === undefined) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
const num = (v: number | undefined) => (v === undefined ? undefined : String(v));

function stepRow(s: StepMessage): Row {
  const row: Row = {
    step: String(s.step),
    time: iso(s.t),
    loss: num(s.loss),
    lr: num(s.lr),
    gradNorm: num(s.gradNorm),
    tokensPerSec: num(s.tokensPerSec),
    stepMs: num(s.stepMs),
    tokens: num(s.tokens),
  };
  for (const [k, v] of Object.entries(s.memory)) row[`memory.${k}`] = String(v);
  return row;
}

/** Turns messages into rows, one per step, joining an evaluation into the row of its step. */
export class StepCsv {
  private pending: Row | null = null;
  readonly columns: string[];

  constructor(memoryCategories: Iterable<string> = []) {
    this.columns = csvColumns(memoryCategories);
  }

  header(): string {
    return this.columns.join(',') + '\n';
  }

  /** Feeds one message; returns the text of any rows now complete. */
  push(msg: Message): string {
    if (msg.type === 'step') {
      const out = this.flush();
      this.pending = stepRow(msg);
      return out;
    }
    if (msg.type === 'eval') {
      if (this.pending && this.pending.step === String(msg.step) && this.pending.evalLoss === undefined) {
        this.pending.evalLoss = String(msg.loss);
        return '';
      }
      const out = this.flush();
      this.pending = { step: String(msg.step), time: iso(msg.t), evalLoss: String(msg.loss) };
      return out;
    }
    return '';
  }

  end(): string {
    return this.flush();
  }

  private flush(): string {
    if (!this.pending) return '';
    const row = this.pending;
    this.pending = null;
    return this.columns.map((c) => csvCell(row[c])).join(',') + '\n';
  }
}

const memoryKeys = (m: Message): string[] => (m.type === 'step' ? Object.keys(m.memory) : []);

export function messagesToCsv(messages: Message[]): string {
  const csv = new StepCsv(messages.flatMap(memoryKeys));
  let out = csv.header();
  for (const m of messages) out += csv.push(m);
  return out + csv.end();
}

/**
 * Streams a run directory's steps as CSV into write() (two passes: the first finds the memory
 * categories). A write that returns a promise holds the reading back until it resolves.
 */
export async function exportCsv(runDir: string, write: (chunk: string) => void | Promise<void>): Promise<{ truncatedTail: boolean; problems: number }> {
  const categories = new Set<string>();
  await streamMessages(runDir, (m) => memoryKeys(m).forEach((k) => categories.add(k)));
  const csv = new StepCsv(categories);
  await write(csv.header());
  let problems = 0;
  const r = await streamMessages(
    runDir,
    (m) => {
      const text = csv.push(m);
      return text ? write(text) : undefined;
    },
    () => problems++,
  );
  const tail = csv.end();
  if (tail) await write(tail);
  return { truncatedTail: r.truncatedTail, problems };
}
