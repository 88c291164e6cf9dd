// The GPU sampler: one long-lived `nvidia-smi --query-gpu … -lms N` child read line by line (never a
// blocking exec per sample), plus a slower `--query-compute-apps` poll for per-process memory, mapped to
// the run's ranks. Failure handling:
//   - no nvidia-smi on PATH (or no devices at the first call): the sampler is off and says so once;
//   - the driver refuses (library mismatch, no driver) or the child dies: "down" once, retry with
//     exponential back-off, training carries on; the first good sample brings it back "up";
//   - a GPU lost mid-stream: that device is reported with lost=true and null readings;
//   - a wedged child (no line for stallMs): SIGTERM, then SIGKILL after killGraceMs, then back-off.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { GpuDevice, GpuMessage, GpuProcess, NodeRef } from '../../common/protocol';
import { appQueryArgs, classifyFailure, gpuQueryArgs, lostBusId, normaliseBusId, parseAppRow, parseGpuRow, type AppRow, type GpuRow } from './nvidia-smi';

export type SamplerState = 'idle' | 'starting' | 'up' | 'down' | 'off' | 'stopped';

export interface SamplerStateEvent {
  state: SamplerState;
  reason: string;
}

/** Where a rank runs: its process and, when known, the device index or UUID it was given. */
export interface RankProcess {
  rank: number;
  pid: number;
  device?: number | string;
}

export interface GpuSamplerOptions {
  command?: string;
  env?: NodeJS.ProcessEnv;
  /** Device readings (default 1000 ms; the driver averages utilisation over up to 1 s, so < 250 ms is noise). */
  intervalMs?: number;
  /** Per-process memory poll (default 5000 ms). */
  processIntervalMs?: number;
  /** No line for this long means the child is wedged (default max(5 s, 5 intervals)). */
  stallMs?: number;
  /** Between SIGTERM and SIGKILL (default 2000 ms). */
  killGraceMs?: number;
  /** The first call may be slow without persistence mode (default 30 s). */
  firstCallTimeoutMs?: number;
  processTimeoutMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  ranks?: () => RankProcess[];
  now?: () => number;
  /** The machine sampled, on every message (multi-node runs; absent = the coordinator's own machine). */
  node?: NodeRef;
}

type Required2 = Required<Omit<GpuSamplerOptions, 'env' | 'ranks' | 'node'>> & Pick<GpuSamplerOptions, 'env' | 'ranks' | 'node'>;

export declare interface GpuSampler {
  on(event: 'sample', listener: (msg: GpuMessage) => void): this;
  on(event: 'state', listener: (e: SamplerStateEvent) => void): this;
  on(event: 'problem', listener: (reason: string) => void): this;
}

export class GpuSampler extends EventEmitter {
  state: SamplerState = 'idle';
  reason = '';
  /** Time spent parsing output in this process, for the overhead report. */
  selfMs = 0;
  samples = 0;
  private readonly o: Required2;
  private loop: ChildProcess | null = null;
  private readonly children = new Set<ChildProcess>();
  private deviceCount = 0;
  private batch: GpuRow[] = [];
  private lineBuf = '';
  private watchdog: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private appTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private everUp = false;
  private apps = new Map<string, AppRow[]>();
  private appPollBusy = false;
  private readonly uuidByIndex = new Map<number, string>();
  private readonly lastRows = new Map<string, GpuRow>();
  private generation = 0;

  constructor(options: GpuSamplerOptions = {}) {
    super();
    const intervalMs = options.intervalMs ?? 1000;
    this.o = {
      command: options.command ?? 'nvidia-smi',
      env: options.env,
      ranks: options.ranks,
      ...(options.node ? { node: options.node } : {}),
      intervalMs,
      processIntervalMs: options.processIntervalMs ?? 5000,
      stallMs: options.stallMs ?? Math.max(5000, 5 * intervalMs),
      killGraceMs: options.killGraceMs ?? 2000,
      firstCallTimeoutMs: options.firstCallTimeoutMs ?? 30_000,
      processTimeoutMs: options.processTimeoutMs ?? 10_000,
      backoffMinMs: options.backoffMinMs ?? 1000,
      backoffMaxMs: options.backoffMaxMs ?? 60_000,
      now: options.now ?? Date.now,
    };
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.setState('starting', 'probing nvidia-smi');
    this.probe();
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.setState('stopped', 'stopped');
    this.generation++;
    this.clearTimers();
    // A child that could not start (no nvidia-smi: ENOENT) never exits; its spawn error is its end.
    const exits = [...this.children].map(
      (c) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()).once('error', () => resolve()))),
    );
    for (const c of this.children) this.kill(c);
    this.loop = null;
    await Promise.all(exits);
  }

  private setState(state: SamplerState, reason: string): void {
    if (this.state === state) return;
    this.state = state;
    this.reason = reason;
    this.emit('state', { state, reason });
  }

  private clearTimers(): void {
    for (const t of [this.watchdog, this.retryTimer, this.appTimer]) if (t) clearTimeout(t);
    this.watchdog = this.retryTimer = this.appTimer = null;
  }

  private track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    // Spawn errors (ENOENT) arrive as 'error' with no 'exit'.
    child.once('error', () => this.children.delete(child));
    return child;
  }

  /** SIGTERM, then SIGKILL if it is still there after the grace period. */
  private kill(child: ChildProcess): void {
    // No pid: it never started (ENOENT, its error still on the way). Node would signal pid 0 — our own
    // process group, the user's shell or the test runner included — so there is nothing to kill.
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, this.o.killGraceMs);
    child.once('exit', () => clearTimeout(t));
  }

  private probe(): void {
    const gen = this.generation;
    const child = execFile(
      this.o.command,
      gpuQueryArgs(),
      { env: this.o.env, timeout: this.o.firstCallTimeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 << 20, windowsHide: true },
      (err, stdout, stderr) => {
        if (gen !== this.generation) return;
        const text = `${stdout}\n${stderr}`;
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return this.setState('off', 'nvidia-smi not found on PATH: no NVIDIA GPU readings for this run');
          if (code === 'EACCES') return this.setState('off', `nvidia-smi (${this.o.command}) is not executable: no NVIDIA GPU readings for this run`);
          if ((err as { killed?: boolean }).killed) return this.fail(`nvidia-smi did not answer within ${Math.round(this.o.firstCallTimeoutMs / 1000)} s`);
          const failure = classifyFailure(text);
          if (failure?.kind === 'no-devices' && !this.everUp) return this.setState('off', 'nvidia-smi found no NVIDIA GPU: no GPU readings for this run');
          return this.fail(failure?.message ?? `nvidia-smi exited with code ${String((err as { code?: unknown }).code)}: ${firstLine(text)}`);
        }
        const rows = this.parseRows(stdout);
        if (rows.length === 0) {
          if (classifyFailure(text)?.kind === 'no-devices' && !this.everUp) return this.setState('off', 'nvidia-smi found no NVIDIA GPU: no GPU readings for this run');
          return this.fail(classifyFailure(text)?.message ?? `nvidia-smi printed no readable rows: ${firstLine(text)}`);
        }
        this.deviceCount = rows.length;
        this.pollApps();
        this.publish(rows);
        this.startLoop();
      },
    );
    this.track(child);
  }

  private parseRows(text: string): GpuRow[] {
    const rows: GpuRow[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const r = parseGpuRow(line);
      if (r.ok) rows.push(r.row);
      else this.emit('problem', r.reason);
    }
    return rows;
  }

  private fail(reason: string): void {
    if (this.state === 'stopped' || this.state === 'off') return;
    this.generation++;
    this.clearTimers();
    if (this.loop) this.kill(this.loop);
    this.loop = null;
    this.batch = [];
    this.lineBuf = '';
    this.setState('down', reason);
    const delay = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** this.attempt);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.probe();
    }, delay);
  }

  private startLoop(): void {
    const gen = this.generation;
    const child = this.track(spawn(this.o.command, gpuQueryArgs(this.o.intervalMs), { env: this.o.env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true }));
    this.loop = child;
    let stderr = '';
    child.on('error', (e) => gen === this.generation && this.fail(`cannot run nvidia-smi: ${e.message}`));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => gen === this.generation && this.onData(d));
    child.on('exit', (code, signal) => {
      if (gen !== this.generation) return;
      this.fail(classifyFailure(stderr)?.message ?? `nvidia-smi exited (${signal ?? `code ${code}`})${stderr ? `: ${firstLine(stderr)}` : ''}`);
    });
    this.armWatchdog(true);
    this.scheduleApps();
  }

  /** A fresh child gets the first-call allowance (driver start-up without persistence mode is slow). */
  private armWatchdog(firstLine = false): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    const gen = this.generation;
    const ms = firstLine ? Math.max(this.o.stallMs, this.o.firstCallTimeoutMs) : this.o.stallMs;
    this.watchdog = setTimeout(() => {
      if (gen === this.generation) this.fail(`nvidia-smi printed nothing for ${ms} ms (wedged); killed it`);
    }, ms);
  }

  private onData(chunk: string): void {
    const t0 = performance.now();
    this.armWatchdog();
    this.lineBuf += chunk;
    let nl: number;
    while ((nl = this.lineBuf.indexOf('\n')) !== -1) {
      const line = this.lineBuf.slice(0, nl).replace(/\r$/, '');
      this.lineBuf = this.lineBuf.slice(nl + 1);
      if (line.trim()) this.onLine(line);
      if (this.loop === null) break;
    }
    if (this.lineBuf.length > 1 << 16) this.lineBuf = '';
    this.selfMs += performance.now() - t0;
  }

  private onLine(line: string): void {
    const bus = lostBusId(line);
    if (bus !== null) {
      const last = [...this.lastRows.values()].find((r) => r.busId !== null && normaliseBusId(r.busId) === bus);
      if (last) this.addRow(lostRow(last));
      else this.emit('problem', line);
      return;
    }
    const parsed = parseGpuRow(line);
    if (!parsed.ok) {
      const failure = classifyFailure(line);
      if (failure) return this.fail(failure.message);
      this.emit('problem', parsed.reason);
      return;
    }
    this.addRow(parsed.row);
  }

  private addRow(row: GpuRow): void {
    if (this.batch.some((r) => r.index === row.index)) this.flush();
    this.batch.push(row);
    if (this.batch.length >= this.deviceCount) this.flush();
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const rows = this.batch;
    this.batch = [];
    this.publish(rows);
  }

  private publish(rows: GpuRow[]): void {
    const ranks = this.o.ranks?.() ?? [];
    const rankByPid = new Map(ranks.map((r) => [r.pid, r.rank]));
    const devices: GpuDevice[] = rows.map((row) => {
      const uuid = row.uuid ?? this.uuidByIndex.get(row.index) ?? `GPU-index-${row.index}`;
      this.uuidByIndex.set(row.index, uuid);
      if (!row.lost) this.lastRows.set(uuid, row);
      const processes: GpuProcess[] = (this.apps.get(uuid) ?? []).map((a) => {
        const p: GpuProcess = { pid: a.pid, memory: a.memory };
        if (a.name) p.name = a.name;
        const rank = rankByPid.get(a.pid);
        if (rank !== undefined) p.rank = rank;
        return p;
      });
      const onDevice = new Set<number>(processes.flatMap((p) => (p.rank === undefined ? [] : [p.rank])));
      for (const r of ranks) if (r.device === row.index || r.device === uuid) onDevice.add(r.rank);
      const d: GpuDevice = {
        index: row.index,
        uuid,
        name: row.name,
        memoryUsed: row.memoryUsed,
        memoryTotal: row.memoryTotal,
        memoryReserved: row.memoryReserved,
        utilPercent: row.utilPercent,
        temperatureC: row.temperatureC,
        powerW: row.powerW,
        powerLimitW: row.powerLimitW,
        smClockMHz: row.smClockMHz,
        processes,
      };
      if (row.lost) d.lost = true;
      if (onDevice.size) d.ranks = [...onDevice].sort((a, b) => a - b);
      return d;
    });
    this.samples++;
    if (!rows.every((r) => r.lost)) {
      this.everUp = true;
      this.attempt = 0;
    }
    this.setState('up', this.state === 'down' ? 'readings resumed' : `${rows.length} GPU${rows.length === 1 ? '' : 's'}`);
    this.emit('sample', { type: 'gpu', t: this.o.now(), devices, ...(this.o.node ? { node: this.o.node } : {}) } satisfies GpuMessage);
  }

  private scheduleApps(): void {
    if (this.appTimer) clearTimeout(this.appTimer);
    const gen = this.generation;
    this.appTimer = setTimeout(() => {
      if (gen !== this.generation) return;
      this.pollApps();
      this.scheduleApps();
    }, this.o.processIntervalMs);
  }

  private pollApps(): void {
    if (this.appPollBusy) return;
    this.appPollBusy = true;
    const child = execFile(this.o.command, appQueryArgs(), { env: this.o.env, timeout: this.o.processTimeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 << 20, windowsHide: true }, (err, stdout) => {
      this.appPollBusy = false;
      // A failed or slow poll keeps the previous process list; the device loop is the health signal.
      if (err) return;
      const apps = new Map<string, AppRow[]>();
      for (const line of stdout.split('\n')) {
        if (!line.trim()) continue;
        const r = parseAppRow(line);
        if (!r.ok) continue;
        const list = apps.get(r.row.gpuUuid) ?? [];
        list.push(r.row);
        apps.set(r.row.gpuUuid, list);
      }
      this.apps = apps;
    });
    this.track(child);
  }
}

function lostRow(last: GpuRow): GpuRow {
  return { ...last, memoryUsed: null, utilPercent: null, temperatureC: null, powerW: null, smClockMHz: null, lost: true };
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0]?.slice(0, 200) ?? '';
}
