// `scalelm export-csv <run-dir> [--out steps.csv]`: a run's steps as CSV (stdout by default).
import { closeSync, openSync, writeSync } from 'node:fs';
import { exportCsv } from '../telemetry/csv';
import { hasMetrics } from '../telemetry/run-store';
import { CliError, describeSystemError, parseArgs, type Command } from './args';

const USAGE = `usage: scalelm export-csv <run-dir> [--out steps.csv]

One row per optimizer step: step, time (ISO 8601), loss, lr, gradNorm, tokensPerSec, stepMs, tokens,
memory.<category> in bytes, and evalLoss at the steps that were evaluated. Non-finite values are
written as NaN / Infinity. TensorBoard event files are written during the run to <run-dir>/tensorboard/.`;

export const exportCsvCommand: Command = async (argv) => {
  const args = parseArgs(argv, { values: ['out'], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const dir = args.positional[0]!;
  if (!hasMetrics(dir)) throw new CliError(`${dir} is not a run directory (no metrics.jsonl)`, 1);
  const outPath = args.values.get('out');
  // Synchronous writes: a long run's CSV never piles up in memory, and `| head` ends quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  const outError = (e: unknown): CliError => {
    const reason = describeSystemError(e);
    return new CliError(`cannot write ${outPath}: ${reason ? reason.replace(/^.*?: /, '') : (e as Error).message}`, 1);
  };
  let fd: number | null = null;
  try {
    fd = outPath ? openSync(outPath, 'w') : null;
  } catch (e) {
    throw outError(e);
  }
  const writeAll = (out: number, c: string): void => {
    const b = Buffer.from(c, 'utf8');
    for (let off = 0; off < b.length;) off += writeSync(out, b, off, b.length - off);
  };
  let r: Awaited<ReturnType<typeof exportCsv>>;
  try {
    r = await exportCsv(dir, fd === null ? (c) => void process.stdout.write(c) : (c) => writeAll(fd!, c));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') return 0;
    if (fd !== null && (e as NodeJS.ErrnoException).syscall === 'write') throw outError(e);
    throw e;
  } finally {
    if (fd !== null) closeSync(fd);
  }
  if (r.problems) console.error(`${dir}: ${r.problems} damaged line${r.problems === 1 ? '' : 's'} skipped`);
  if (r.truncatedTail) console.error(`${dir}: the last line was cut short (the runtime was killed mid-write); it was skipped`);
  return 0;
};
