// `scalelm serve <run-dir | runs-dir>`: replays finished runs to the browser dashboard, read-only.
import { basename } from 'node:path';
import { isEnded } from '../../common/protocol';
import { FileReadError } from '../files';
import { MetricBus } from '../telemetry/bus';
import { crashedStatus, listRunDirs, streamMessages } from '../telemetry/run-store';
import { startMonitor, TOKEN_ENV } from '../server/monitor';
import { CliError, intFlag, parseArgs, type Command } from './args';

const USAGE = `usage: scalelm serve <run-dir | runs-dir> [--host 127.0.0.1] [--port 0] [--allow-remote] [--max-runs 50]

Replays recorded runs (directories holding metrics.jsonl) to the browser dashboard, read-only.
Prints one JSON line on stdout with the port (and the token, unless ${TOKEN_ENV} is set), then the
dashboard URL on stderr: the token travels in its #fragment, which the browser never sends to the server.
The same server answers GET /metrics (Prometheus) and /export.csv?run=ID with "Authorization: Bearer <token>".
Stop with Ctrl-C.`;

export const serve: Command = async (argv) => {
  const args = parseArgs(argv, { values: ['host', 'port', 'max-runs'], switches: ['allow-remote'], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const dir = args.positional[0]!;
  const port = intFlag(args, 'port', 0) ?? 0;
  if (port > 65535) throw new CliError('--port must be at most 65535');
  const maxRuns = intFlag(args, 'max-runs', 1) ?? 50;
  const dirs = listRunDirs(dir).slice(0, maxRuns);
  if (dirs.length === 0) throw new CliError(`no runs in ${dir}: a run directory holds metrics.jsonl`, 1);

  const buses: MetricBus[] = [];
  const seen = new Set<string>();
  for (const runDir of dirs) {
    const bus = new MetricBus({ runDir, stamp: false });
    let problems = 0;
    let truncatedTail: boolean;
    try {
      ({ truncatedTail } = await streamMessages(
        runDir,
        (m) => void bus.publish(m),
        () => problems++,
      ));
    } catch (e) {
      // One unreadable run (a FIFO or a device as its metrics.jsonl) is skipped like one without a hello:
      // the other runs of the folder are still served. A single run that cannot be read is refused below.
      if (!(e instanceof FileReadError)) throw e;
      console.error(`${basename(runDir)}: skipped, ${e.message}`);
      continue;
    }
    const id = bus.history.hello?.runId;
    if (!id) {
      console.error(`${basename(runDir)}: skipped, metrics.jsonl has no hello line`);
      continue;
    }
    if (seen.has(id)) {
      console.error(`${basename(runDir)}: skipped, run id ${id} appears twice`);
      continue;
    }
    seen.add(id);
    const notes: string[] = [];
    if (problems) notes.push(`${problems} damaged line${problems === 1 ? '' : 's'} skipped`);
    if (truncatedTail) notes.push('the last line was cut short');
    const h = bus.history;
    const lastStep = h.steps.latest()?.step;
    const crashed = crashedStatus(runDir, { status: h.status, t: h.lastT, ...(lastStep !== undefined ? { step: lastStep } : {}) });
    if (crashed) {
      bus.publish(crashed);
      notes.push(`crashed: no final status and its process is gone; continue it with scalelm train --resume ${runDir}`);
    } else if (!isEnded(h.status?.state)) notes.push('still running (its process is alive): this replay stops at what was written so far');
    console.error(`${id}: ${bus.history.steps.count} steps${notes.length ? ` (${notes.join('; ')})` : ''}`);
    buses.push(bus);
  }
  if (buses.length === 0) throw new CliError(`no readable runs in ${dir}`, 1);

  const host = args.values.get('host') ?? '127.0.0.1';
  let server: Awaited<ReturnType<typeof startMonitor>>;
  try {
    server = await startMonitor(buses, { monitor: { host, port, allowRemote: args.switches.has('allow-remote') } });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') throw new CliError(`port ${port} on ${host} is in use; pick another --port, or 0 for a free one`, 1);
    throw new CliError(err.message.replace('monitor.allowRemote (or --allow-remote)', '--allow-remote'), 1);
  }
  console.error(`dashboard: ${process.env[TOKEN_ENV] ? server.url + ' (open it with #token=<your token>)' : server.dashboardUrl}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  return 0;
};
