// A fake `nvidia-smi` for the sampler tests: replays the real H200/H100 captures in
// test/fixtures/nvidia-smi/, answering any --query-gpu / --query-compute-apps field list (with or
// without units), once or every -lms N ms. A scenario file (FAKE_NVSMI_SCENARIO) adds the failures the
// sampler must survive. Every invocation is logged (mode, pid) so tests can count restarts and check
// that a killed child is really gone. Loops are bounded (maxSamples) so nothing outlives a test for long.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

export interface FakeScenario {
  capture: string;
  gpus?: number;
  /** Capture phase per sample, cycling (default idle, load). */
  phases?: ('idle' | 'load')[];
  /** Cells replaced on every row (or only on `device`). */
  na?: { field: string; value: string; device?: number }[];
  /** Compute apps: the capture's load rows (on GPU 0), none, or explicit rows. */
  apps?: 'load' | 'none' | { pid: number; device: number; memMiB: number | string; name: string }[];
  log?: string;
  /** The first `times` one-shot device queries (no -lms) fail like this. */
  failProbe?: { kind: FailKind; times: number };
  /** Every invocation fails like this. */
  failAlways?: FailKind;
  /** The n-th loop child (1-based; default 1) prints `after` samples, then hangs (ignoring SIGTERM if asked). */
  wedge?: { after: number; loop?: number; ignoreTerm?: boolean };
  /** The loop child exits with code 1 after this many samples. */
  exitAfter?: number;
  /** From sample `after` on (counted per loop child), `device` is lost: its row is "[GPU is lost]" cells or an error line. */
  lost?: { device: number; after: number; mode: 'cells' | 'line' };
  /** The first invocation sleeps this long before answering. */
  slowFirstMs?: number;
  maxSamples?: number;
}

type FailKind = 'no-driver' | 'mismatch' | 'no-devices';

const FAILURES: Record<FailKind, [string, number]> = {
  'no-driver': ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n", 9],
  mismatch: ['Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 590.48\n', 18],
  'no-devices': ['No devices were found\n', 6],
};

interface Table {
  header: string[];
  units: (string | null)[];
  rows: string[][];
}

function sections(text: string): Map<string, Table> {
  const out = new Map<string, Table>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^# (idle|load) :: (query-gpu|query-compute-apps)/.exec(lines[i]!);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j]!.startsWith('#')) j++;
    const headerCells = lines[j]!.split(', ');
    const rows: string[][] = [];
    for (j++; j < lines.length && lines[j]!.trim() !== ''; j++) rows.push(lines[j]!.split(', '));
    out.set(`${m[1]}:${m[2]}`, {
      header: headerCells.map((h) => h.replace(/ \[.*\]$/, '')),
      units: headerCells.map((h) => /\[(.*)\]$/.exec(h)?.[1] ?? null),
      rows,
    });
  }
  return out;
}

function deviceUuid(i: number): string {
  return `GPU-00000000-0000-0000-0000-${i.toString(16).padStart(12, '0')}`;
}
function deviceBus(i: number): string {
  return `00000000:${(0x18 + i * 0x10).toString(16).toUpperCase().padStart(2, '0')}:00.0`;
}

function main(): void {
  const scenarioPath = process.env.FAKE_NVSMI_SCENARIO;
  if (!scenarioPath) {
    process.stderr.write('fake nvidia-smi: FAKE_NVSMI_SCENARIO is not set\n');
    process.exit(2);
  }
  const s = JSON.parse(readFileSync(scenarioPath, 'utf8')) as FakeScenario;
  const args = process.argv.slice(2);
  const arg = (prefix: string) => args.find((a) => a.startsWith(prefix))?.slice(prefix.length);
  const lmsIdx = args.indexOf('-lms');
  const loopMs = lmsIdx >= 0 ? Number(args[lmsIdx + 1]) : null;
  const gpuFields = arg('--query-gpu=');
  const appFields = arg('--query-compute-apps=');
  const format = (arg('--format=') ?? 'csv').split(',');
  const mode = appFields ? 'apps' : gpuFields ? (loopMs ? 'loop' : 'probe') : 'other';

  const previous =
    s.log && existsSync(s.log)
      ? readFileSync(s.log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { mode: string })
      : [];
  const nth = previous.filter((p) => p.mode === mode).length + 1;
  if (s.log) appendFileSync(s.log, JSON.stringify({ mode, pid: process.pid, nth, args }) + '\n');

  const fail = (kind: FailKind): never => {
    const [message, code] = FAILURES[kind];
    process.stdout.write(message);
    process.exit(code);
  };
  if (s.failAlways) fail(s.failAlways);
  if (mode === 'probe' && s.failProbe && nth <= s.failProbe.times) fail(s.failProbe.kind);

  const text = readFileSync(s.capture, 'utf8');
  if (args.includes('--version')) {
    process.stdout.write(/NVIDIA-SMI version[\s\S]*?CUDA Version\s*: \S+/.exec(text)![0] + '\n');
    return;
  }
  const tables = sections(text);
  const noheader = format.includes('noheader');
  const nounits = format.includes('nounits');
  const gpus = s.gpus ?? 1;
  const phases = s.phases ?? ['idle', 'load'];

  const render = (table: Table, fields: string[], values: (f: string, col: number) => string): string => {
    const cols = fields.map((f) => {
      const col = table.header.indexOf(f);
      if (col === -1) {
        process.stdout.write(`Field "${f}" is not a valid field to query.\n\n`);
        process.exit(2);
      }
      return col;
    });
    return fields
      .map((f, k) => {
        let v = values(f, cols[k]!);
        const unit = table.units[cols[k]!];
        if (nounits && unit && v.endsWith(` ${unit}`)) v = v.slice(0, -unit.length - 1);
        return v;
      })
      .join(', ');
  };
  const headerLine = (table: Table, fields: string[]) => fields.map((f) => (nounits || !table.units[table.header.indexOf(f)] ? f : `${f} [${table.units[table.header.indexOf(f)]}]`)).join(', ');

  const gpuSample = (k: number): string => {
    const fields = gpuFields!.split(',');
    const table = tables.get(`${phases[k % phases.length]}:query-gpu`)!;
    const row = table.rows[0]!;
    let out = noheader ? '' : headerLine(table, fields) + '\n';
    for (let i = 0; i < gpus; i++) {
      if (s.lost && s.lost.device === i && k >= s.lost.after) {
        if (s.lost.mode === 'line') {
          out += `Unable to determine the device handle for GPU${deviceBus(i)}: GPU is lost.  Reboot the system to recover this GPU\n`;
          continue;
        }
      }
      const lostCells = s.lost && s.lost.device === i && k >= s.lost.after;
      out +=
        render(table, fields, (f, col) => {
          if (f === 'index') return String(i);
          if (lostCells) return '[GPU is lost]';
          const na = s.na?.find((n) => n.field === f && (n.device === undefined || n.device === i));
          if (na) return na.value;
          if (f === 'uuid') return deviceUuid(i);
          if (f === 'pci.bus_id') return deviceBus(i);
          return row[col]!;
        }) + '\n';
    }
    return out;
  };

  const appsOut = (): string => {
    const fields = appFields!.split(',');
    const table = tables.get('load:query-compute-apps')!;
    let rows: Record<string, string>[] = [];
    if (s.apps === 'load') rows = table.rows.map((r) => Object.fromEntries(table.header.map((h, c) => [h, r[c]!])));
    else if (Array.isArray(s.apps)) {
      rows = s.apps.map((a) => ({ pid: String(a.pid), gpu_uuid: deviceUuid(a.device), used_gpu_memory: typeof a.memMiB === 'number' ? `${a.memMiB} MiB` : a.memMiB, process_name: a.name }));
    }
    let out = noheader ? '' : headerLine(table, fields) + '\n';
    for (const r of rows) out += render(table, fields, (f) => r[f] ?? '[N/A]') + '\n';
    return out;
  };

  const answer = () => {
    if (mode === 'apps') {
      process.stdout.write(appsOut());
      return;
    }
    if (mode === 'probe') {
      process.stdout.write(gpuSample(0));
      return;
    }
    if (mode !== 'loop') {
      process.stdout.write('fake nvidia-smi: only --query-gpu, --query-compute-apps and --version are replayed\n');
      process.exit(2);
    }
    // Like the real tool: a sample right away, then one every loopMs until killed.
    const wedge = s.wedge && (s.wedge.loop ?? 1) === nth ? s.wedge : undefined;
    if (wedge?.ignoreTerm) process.on('SIGTERM', () => undefined);
    const max = s.maxSamples ?? 600;
    let k = 0;
    const tick = () => {
      if (wedge && k >= wedge.after) {
        setTimeout(() => process.exit(0), 60_000); // hang (bounded)
        return;
      }
      if (s.exitAfter !== undefined && k >= s.exitAfter) process.exit(1);
      if (k >= max) process.exit(0);
      process.stdout.write(gpuSample(k++));
      setTimeout(tick, loopMs!);
    };
    tick();
  };
  process.stdout.on('error', () => process.exit(0));

  const first = previous.length === 0 && s.slowFirstMs;
  if (first) setTimeout(answer, s.slowFirstMs);
  else answer();
}

main();
