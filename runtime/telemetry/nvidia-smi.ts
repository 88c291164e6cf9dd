// Reading nvidia-smi's CSV: the queries ScaleLM runs and the rules for parsing what comes back. Pure.
//   - cells are split on "," and trimmed; the free-text column (name, process name) is last, so a comma
//     inside it cannot shift the others;
//   - "[N/A]", "[Not Supported]", "[Unknown Error]", "[GPU is lost]", … make that field null, not the row
//     invalid; "[GPU is lost]" also marks the device lost;
//   - MiB become bytes here, at the edge; GPUs are keyed by UUID;
//   - whole-run failures (driver/library mismatch, no driver, no devices) are recognised by their text.

export const GPU_FIELDS = [
  'index',
  'uuid',
  'pci.bus_id',
  'memory.total',
  'memory.reserved',
  'memory.used',
  'utilization.gpu',
  'temperature.gpu',
  'power.draw',
  'power.limit',
  'clocks.current.sm',
  'name',
] as const;

export const APP_FIELDS = ['pid', 'gpu_uuid', 'used_gpu_memory', 'process_name'] as const;

const MiB = 1048576;

/** The long-lived device query; with intervalMs it keeps printing a sample every interval (-lms). */
export function gpuQueryArgs(intervalMs?: number): string[] {
  const args = [`--query-gpu=${GPU_FIELDS.join(',')}`, '--format=csv,noheader,nounits'];
  if (intervalMs !== undefined) args.push('-lms', String(Math.max(1, Math.round(intervalMs))));
  return args;
}

export function appQueryArgs(): string[] {
  return [`--query-compute-apps=${APP_FIELDS.join(',')}`, '--format=csv,noheader,nounits'];
}

export interface GpuRow {
  index: number;
  uuid: string | null;
  busId: string | null;
  memoryTotal: number | null;
  memoryReserved: number | null;
  memoryUsed: number | null;
  utilPercent: number | null;
  temperatureC: number | null;
  powerW: number | null;
  powerLimitW: number | null;
  smClockMHz: number | null;
  name: string;
  lost: boolean;
}

export interface AppRow {
  pid: number;
  gpuUuid: string;
  memory: number | null;
  name: string;
}

export type Parsed<T> = { ok: true; row: T } | { ok: false; reason: string };

/** A bracketed cell is the driver's way of saying "no value": [N/A], [Not Supported], [GPU is lost], … */
function isMissing(cell: string): boolean {
  return cell === '' || cell === 'N/A' || (cell.startsWith('[') && cell.endsWith(']'));
}

function splitRow(line: string, columns: number): string[] | null {
  const cells = line.split(',');
  if (cells.length < columns) return null;
  const head = cells.slice(0, columns - 1).map((c) => c.trim());
  head.push(
    cells
      .slice(columns - 1)
      .join(',')
      .trim(),
  );
  return head;
}

function number(cell: string): number | null {
  if (isMissing(cell)) return null;
  const n = Number(cell);
  return Number.isFinite(n) ? n : null;
}

function mib(cell: string): number | null {
  const n = number(cell);
  return n === null || n < 0 ? null : Math.round(n * MiB);
}

export function parseGpuRow(line: string): Parsed<GpuRow> {
  const cells = splitRow(line, GPU_FIELDS.length);
  if (!cells) return { ok: false, reason: `expected ${GPU_FIELDS.length} columns, got ${line.split(',').length}: ${line.slice(0, 120)}` };
  const [index, uuid, bus, total, reserved, used, util, temp, power, limit, sm, name] = cells as [string, string, string, string, string, string, string, string, string, string, string, string];
  const idx = number(index);
  if (idx === null || !Number.isInteger(idx) || idx < 0) return { ok: false, reason: `not a device index: "${index}"` };
  return {
    ok: true,
    row: {
      index: idx,
      uuid: isMissing(uuid) ? null : uuid,
      busId: isMissing(bus) ? null : bus,
      memoryTotal: mib(total),
      memoryReserved: mib(reserved),
      memoryUsed: mib(used),
      utilPercent: number(util),
      temperatureC: number(temp),
      powerW: number(power),
      powerLimitW: number(limit),
      smClockMHz: number(sm),
      name: isMissing(name) ? `GPU ${idx}` : name,
      lost: cells.some((c) => c === '[GPU is lost]'),
    },
  };
}

export function parseAppRow(line: string): Parsed<AppRow> {
  const cells = splitRow(line, APP_FIELDS.length);
  if (!cells) return { ok: false, reason: `expected ${APP_FIELDS.length} columns: ${line.slice(0, 120)}` };
  const [pid, uuid, used, name] = cells as [string, string, string, string];
  const p = number(pid);
  if (p === null || !Number.isInteger(p) || p < 0) return { ok: false, reason: `not a pid: "${pid}"` };
  if (isMissing(uuid)) return { ok: false, reason: `no GPU UUID for pid ${p}` };
  return { ok: true, row: { pid: p, gpuUuid: uuid, memory: mib(used), name: isMissing(name) ? '' : name } };
}

export type FailureKind = 'mismatch' | 'no-driver' | 'no-devices' | 'lost' | 'permission' | 'other';

const FAILURES: [RegExp, FailureKind][] = [
  [/Driver\/library version mismatch/i, 'mismatch'],
  [/couldn't communicate with the NVIDIA driver/i, 'no-driver'],
  [/Failed to initialize NVML/i, 'no-driver'],
  [/NVML Shared Library Not Found/i, 'no-driver'],
  [/No devices were found/i, 'no-devices'],
  [/GPU is lost/i, 'lost'],
  [/Insufficient Permissions/i, 'permission'],
];

/** Recognises nvidia-smi's whole-query failures in a line of output. */
export function classifyFailure(text: string): { kind: FailureKind; message: string } | null {
  for (const [re, kind] of FAILURES) {
    if (re.test(text))
      return {
        kind,
        message: text
          .trim()
          .split('\n')
          .find((l) => re.test(l))!
          .trim(),
      };
  }
  return null;
}

/** "Unable to determine the device handle for GPU0000:83:00.0: GPU is lost. …" -> "83:00.0" */
export function lostBusId(line: string): string | null {
  const m = /device handle for GPU\s*([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f])/.exec(line);
  return m ? normaliseBusId(m[1]!) : null;
}

/** Bus ids come as "00000000:83:00.0" in CSV and "0000:83:00.0" in messages: compare without the domain. */
export function normaliseBusId(id: string): string {
  const parts = id.toLowerCase().split(':');
  return parts.slice(-2).join(':');
}
