// Telemetry internals: downsampling, alerts, the bus, Prometheus text, the recorder with a GPU sampler,
// and the recorder's own overhead accounting.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION, type AlertMessage, type GpuMessage, type MemoryMessage, type Message, type StepMessage } from '../../common/protocol';
import { AlertEngine, slopePerSecond } from '../../runtime/telemetry/alerts';
import { MetricBus, ProtocolError } from '../../runtime/telemetry/bus';
import { Decimator, RunHistory } from '../../runtime/telemetry/history';
import { renderPrometheus } from '../../runtime/telemetry/prometheus';
import { RunRecorder } from '../../runtime/telemetry/recorder';
import { readRun } from '../../runtime/telemetry/run-store';
import { RunData } from '../../webview/store';
import { fakeNvidiaSmi } from './telemetry/fake-gpu';
import { removeTempDirs, tempDir, until } from './telemetry/util';

const MiB = 2 ** 20;
const t0 = 1_790_000_000_000;
const stepMsg = (k: number, loss: number, peak = 100 * MiB): StepMessage => ({
  type: 'step',
  step: k,
  loss,
  lr: 1e-3,
  gradNorm: 1,
  tokensPerSec: 1,
  stepMs: 10,
  t: t0 + k * 1000,
  memory: { params: 1, grads: 1, optimizer: 1, activations: 1, peak },
});
const memMsg = (k: number, stepPeak: number, capacity = 1000 * MiB): MemoryMessage => ({ type: 'memory', rank: 0, step: k, t: t0 + k * 1000, categories: { params: stepPeak }, stepPeak, capacity });

function collect(options: ConstructorParameters<typeof AlertEngine>[1] = {}): { engine: AlertEngine; alerts: AlertMessage[]; seq: () => string[] } {
  const alerts: AlertMessage[] = [];
  const engine = new AlertEngine((a) => alerts.push(a), options);
  return { engine, alerts, seq: () => alerts.map((a) => `${a.kind}:${a.state}`) };
}

describe('downsampling', () => {
  it('keeps first, last, min and max per bucket, and every NaN, within its bound', () => {
    const d = new Decimator<{ x: number; y: number }>(
      (r) => r.x,
      (r) => r.y,
      100,
    );
    for (let x = 0; x < 100_000; x++) d.add({ x, y: x === 77_777 ? 1e9 : x === 55_555 ? -1e9 : x === 33_333 ? NaN : Math.sin(x / 1000) });
    const kept = d.values();
    assert.ok(kept.length <= 5 * 100, `${kept.length} kept`);
    assert.equal(d.count, 100_000);
    assert.equal(kept[0]!.x, 0);
    assert.equal(kept[kept.length - 1]!.x, 99_999);
    assert.ok(kept.some((r) => r.y === 1e9) && kept.some((r) => r.y === -1e9) && kept.some((r) => Number.isNaN(r.y)));
    assert.ok(
      kept.every((r, i) => i === 0 || r.x > kept[i - 1]!.x),
      'in order, each once',
    );
  });

  it('a run going back in steps (resumed) does not break the order of history', () => {
    const d = new Decimator<{ x: number; y: number }>(
      (r) => r.x,
      (r) => r.y,
      8,
    );
    for (const x of [0, 1, 2, 3, 1, 2, 3, 4]) d.add({ x, y: x });
    assert.equal(d.count, 8);
    assert.equal(d.latest()!.x, 4);
  });

  it("a snapshot carries every rank's comm totals over the steps, in step order, so a replay draws the per-step charts", () => {
    const h = new RunHistory();
    const world = 2;
    h.add({ type: 'hello', protocol: PROTOCOL_VERSION, runId: 'r', name: 'r', startedAt: t0, world, config: {} });
    // Totals since the start: rank r spends (r + 1) ms and 1 KiB in all-reduce per step; rank 1 reports first.
    for (let step = 1; step <= 40; step++)
      for (const rank of [1, 0]) h.add({ type: 'comm', rank, t: t0 + step * 1000, step, collectives: [{ kind: 'all-reduce', calls: step, bytes: step * 1024, ms: step * (rank + 1) }] });
    h.add({ type: 'comm', rank: 0, t: t0 + 50_000, collectives: [{ kind: 'all-reduce', calls: 41, bytes: 41 * 1024, ms: 41 }] }); // no step: totals only
    const snap = h.snapshot(true);
    const order = snap.comm.map((m) => [m.step ?? Infinity, m.rank]);
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!),
      'step order, ranks in order within a step',
    );
    assert.equal(snap.comm.filter((m) => m.step !== undefined).length, 80);
    const run = RunData.fromSnapshot(snap);
    const series = run.commSeries.get('all-reduce')!;
    assert.equal(series.step.length, 39, 'one point per step after the first report');
    for (let i = 0; i < series.step.length; i++) {
      assert.equal(series.msPerStep.data[i], 1.5, 'the ranks averaged: (1 + 2) / 2 ms per step');
      assert.equal(series.bytesPerStep.data[i], 1024);
    }
    assert.equal(run.commTotals()[0]!.calls, 41 + 40, "the latest totals of each rank (rank 0's unstepped report last)");
  });

  it('history keeps recent logs and alerts bounded and tracks active alerts', () => {
    const h = new RunHistory({ logs: 3, alerts: 10 });
    for (let i = 0; i < 10; i++) h.add({ type: 'log', level: 'info', message: `m${i}`, t: t0 });
    assert.deepEqual(
      h.logs.values().map((l) => l.message),
      ['m7', 'm8', 'm9'],
    );
    h.add({ type: 'alert', id: 'a', kind: 'memory-high', severity: 'warning', state: 'raised', message: 'x', t: t0 });
    assert.equal(h.activeAlerts.size, 1);
    h.add({ type: 'alert', id: 'a', kind: 'memory-high', severity: 'info', state: 'cleared', message: 'x', t: t0 });
    assert.equal(h.activeAlerts.size, 0);
  });
});

describe('alerts', () => {
  it('memory approaching capacity: once per crossing, hysteresis, time to full from the trend', () => {
    const { engine, alerts, seq } = collect();
    const peaks = [800, 850, 880, 905, 950, 870, 860, 840, 910];
    peaks.forEach((p, k) => engine.observe(memMsg(k, p * MiB)));
    assert.deepEqual(seq(), ['memory-high:raised', 'memory-high:cleared', 'memory-high:raised']);
    const first = alerts[0]!;
    assert.equal(first.id, 'memory-high:rank0');
    assert.equal(first.step, 3);
    assert.ok(first.timeToFullSec! > 0 && first.timeToFullSec! < 10, `time to full ${first.timeToFullSec}`);
    assert.match(first.message, /rank 0 peak memory .* is 91% of 1000\.00 MiB; full in ~\d+ s/);
    assert.equal(alerts[1]!.step, 7);
    assert.equal(first.node, undefined, 'one machine: no node');
  });

  it("a rank's memory alert carries the rank's node on a multi-node run", () => {
    const { engine, alerts } = collect();
    engine.observe({ ...memMsg(3, 950 * MiB), rank: 9, node: { rank: 1, host: 'h1' } });
    assert.equal(alerts[0]!.id, 'memory-high:rank9');
    assert.deepEqual(alerts[0]!.node, { rank: 1, host: 'h1' });
  });

  it('uses step records against the configured capacity until per-rank memory messages arrive', () => {
    const { engine, seq } = collect({ capacity: 100 * MiB });
    engine.observe(stepMsg(0, 4, 95 * MiB));
    assert.deepEqual(seq(), ['memory-high:raised']);
    engine.observe(memMsg(1, 10 * MiB));
    engine.observe(stepMsg(2, 4, 10 * MiB));
    assert.deepEqual(seq(), ['memory-high:raised'], 'the step-based meter stops once ranks report');
  });

  it('GPU memory against usable memory (total − reserved)', () => {
    const { engine, alerts } = collect();
    const gpu = (used: number): GpuMessage => ({
      type: 'gpu',
      t: t0,
      devices: [
        {
          index: 0,
          uuid: 'GPU-1',
          name: 'NVIDIA H200',
          memoryUsed: used * MiB,
          memoryTotal: 143771 * MiB,
          memoryReserved: 614 * MiB,
          utilPercent: 100,
          temperatureC: 50,
          powerW: 600,
          powerLimitW: 700,
          smClockMHz: 1980,
          processes: [],
        },
      ],
    });
    engine.observe(gpu(128_000));
    assert.equal(alerts.length, 0, '128000/143157 MiB usable is 89%');
    engine.observe(gpu(129_000));
    assert.equal(alerts[0]!.id, 'memory-high:gpu0');
    assert.equal(alerts[0]!.device, 'GPU-1');
  });

  it('GPU alerts of the same index or UUID on different nodes are separate conditions', () => {
    const { engine, alerts } = collect();
    const dev = (used: number, lost = false): GpuMessage['devices'][number] => ({
      index: 5,
      uuid: 'GPU-same',
      name: 'NVIDIA H200',
      memoryUsed: used * MiB,
      memoryTotal: 1000 * MiB,
      memoryReserved: 0,
      utilPercent: 100,
      temperatureC: 50,
      powerW: 600,
      powerLimitW: 700,
      smClockMHz: 1980,
      processes: [],
      ...(lost ? { lost: true } : {}),
    });
    const on = (node: number | null, used: number, lost = false): GpuMessage => ({
      type: 'gpu',
      t: t0,
      devices: [dev(used, lost)],
      ...(node === null ? {} : { node: { rank: node, host: `h${node}` } }),
    });
    engine.observe(on(5, 950));
    engine.observe(on(6, 100));
    engine.observe(on(null, 100));
    assert.deepEqual(
      alerts.map((a) => `${a.id}:${a.state}`),
      ['memory-high:node5:gpu5:raised'],
      "node 6's idle GPU 5 does not clear node 5's alert",
    );
    assert.match(alerts[0]!.message, /^node 5 \(h5\) GPU 5 memory /);
    engine.observe(on(6, 960));
    engine.observe(on(null, 970));
    engine.observe(on(5, 100));
    engine.observe(on(5, 100, true));
    engine.observe(on(6, 100, true));
    engine.observe(on(6, 100));
    assert.deepEqual(
      alerts.slice(1).map((a) => `${a.id}:${a.state}`),
      [
        'memory-high:node6:gpu5:raised',
        'memory-high:gpu5:raised',
        'memory-high:node5:gpu5:cleared',
        'gpu-lost:node5:GPU-same:raised',
        'gpu-lost:node6:GPU-same:raised',
        'memory-high:node6:gpu5:cleared',
        'gpu-lost:node6:GPU-same:cleared',
      ],
    );
    assert.match(alerts[2]!.message, /^GPU 5 memory /, 'a sample without a node keeps the single-machine wording');
    assert.deepEqual(
      alerts.map((a) => a.node?.rank ?? null),
      [5, 6, null, 5, 5, 6, 6, 6],
      'each alert carries the node it is about as data, not only in its id',
    );
  });

  it('memory growing across steps after warm-up is a leak, raised once; flat or noisy memory is not', () => {
    const leaky = collect();
    for (let k = 0; k < 60; k++) leaky.engine.observe(memMsg(k, (100 + (k > 5 ? k - 5 : 0) * 2) * MiB));
    assert.deepEqual(leaky.seq(), ['memory-leak:raised']);
    assert.match(leaky.alerts[0]!.message, /grew by .* over the last 19 steps/);
    const noisy = collect();
    for (let k = 0; k < 200; k++) noisy.engine.observe(memMsg(k, (100 + (k % 2) * 3) * MiB));
    assert.deepEqual(noisy.seq(), []);
    const warmup = collect();
    for (let k = 0; k < 60; k++) warmup.engine.observe(memMsg(k, (k < 10 ? 50 + k * 10 : 150) * MiB));
    assert.deepEqual(warmup.seq(), [], 'growth during warm-up (first optimizer step, allocator) is not a leak');
  });

  it('NaN or infinite loss raises a critical alert once', () => {
    const { engine, alerts, seq } = collect();
    engine.observe(stepMsg(0, 4));
    engine.observe(stepMsg(1, NaN));
    engine.observe(stepMsg(2, Infinity));
    assert.deepEqual(seq(), ['loss-nan:raised']);
    assert.equal(alerts[0]!.severity, 'critical');
    assert.match(alerts[0]!.message, /loss is NaN at step 1/);
  });

  it('a diverging loss raises once and clears when it comes back', () => {
    const { engine, seq } = collect();
    let k = 0;
    for (; k < 60; k++) engine.observe(stepMsg(k, 4 - (2 * k) / 60));
    for (; k < 100; k++) engine.observe(stepMsg(k, 8));
    for (; k < 200; k++) engine.observe(stepMsg(k, 2));
    assert.deepEqual(seq(), ['loss-diverging:raised', 'loss-diverging:cleared']);
  });

  it('a healthy run raises nothing', () => {
    const { engine, seq } = collect({ capacity: 1000 * MiB });
    for (let k = 0; k < 500; k++) {
      engine.observe(stepMsg(k, 3 + 2 * Math.exp(-k / 100) + 0.05 * Math.sin(k), 400 * MiB + (k % 3) * MiB));
      engine.observe(memMsg(k, 400 * MiB + (k % 3) * MiB));
    }
    assert.deepEqual(seq(), []);
  });

  it('collector down is raised once and cleared when readings resume', () => {
    const { engine, seq } = collect();
    engine.collector(false, 'driver mismatch');
    engine.collector(false, 'still down');
    engine.collector(true, 'back');
    assert.deepEqual(seq(), ['collector-down:raised', 'collector-down:cleared']);
  });

  it('slope: bytes per second by least squares', () => {
    assert.equal(
      slopePerSecond([
        { t: 0, used: 0 },
        { t: 1000, used: 10 },
        { t: 2000, used: 20 },
      ]),
      10,
    );
    assert.equal(slopePerSecond([{ t: 0, used: 5 }]), 0);
  });
});

describe('metric bus', () => {
  it('rejects an invalid message whole: nothing recorded, nothing sent', () => {
    const bus = new MetricBus();
    const seen: string[] = [];
    bus.subscribe((m) => seen.push(m.type));
    assert.throws(
      () => bus.publish({ type: 'step', step: 1, loss: 1 }),
      (e: unknown) => e instanceof ProtocolError && /lr: is required/.test(e.message),
    );
    assert.deepEqual(seen, []);
    assert.equal(bus.history.steps.count, 0);
  });

  it('stamps a time on step records and isolates a failing sink', () => {
    const errors: unknown[] = [];
    const bus = new MetricBus({ onListenerError: (e) => errors.push(e) });
    const seen: number[] = [];
    bus.subscribe(() => {
      throw new Error('disk full');
    });
    bus.subscribe((m) => m.type === 'step' && seen.push(m.step));
    bus.publish(stepMsg(0, 1));
    const { t: _t, ...noTime } = stepMsg(1, 1);
    const stored = bus.publish(noTime) as StepMessage;
    assert.equal(typeof stored.t, 'number');
    assert.deepEqual(seen, [0, 1]);
    assert.equal(errors.length, 1, 'reported once per sink');
  });
});

describe('prometheus text', () => {
  it('renders the latest readings with help, type, escaped labels and units', () => {
    const h = new RunHistory();
    h.add({ type: 'hello', protocol: 1, runId: 'r1', name: 'r1', startedAt: t0, world: 1, config: {} });
    h.add({ type: 'status', state: 'running', t: t0 });
    h.add(stepMsg(5, NaN));
    h.add(memMsg(5, 7 * MiB));
    h.add({ type: 'comm', rank: 0, t: t0, collectives: [{ kind: 'all-reduce', calls: 3, bytes: 300, ms: 1500 }] });
    h.add({
      type: 'gpu',
      t: t0,
      devices: [
        {
          index: 0,
          uuid: 'GPU-1',
          name: 'NVIDIA "H200"\\x',
          memoryUsed: 1,
          memoryTotal: 2,
          memoryReserved: null,
          utilPercent: 50,
          temperatureC: 40,
          powerW: null,
          powerLimitW: 700,
          smClockMHz: 1980,
          processes: [],
        },
      ],
    });
    const text = renderPrometheus([h]);
    assert.match(text, /# HELP scalelm_loss .*\n# TYPE scalelm_loss gauge\nscalelm_loss\{run="r1"\} NaN\n/);
    assert.match(text, /scalelm_run_state\{run="r1",state="running"\} 1\n/);
    assert.match(text, /scalelm_step_seconds\{run="r1"\} 0\.01\n/);
    assert.match(text, /scalelm_memory_step_peak_bytes\{run="r1",rank="0"\} 7340032\n/);
    assert.match(text, /scalelm_comm_seconds_total\{run="r1",rank="0",kind="all-reduce"\} 1\.5\n/);
    assert.match(text, /scalelm_gpu_utilization_ratio\{run="r1",gpu="0",uuid="GPU-1",name="NVIDIA \\"H200\\"\\\\x"\} 0\.5\n/);
    assert.ok(!/scalelm_gpu_power_watts/.test(text), 'a null reading is left out, not written as 0');
    assert.match(text, /scalelm_gpu_sm_clock_hertz\{[^}]*\} 1980000000\n/);
  });
});

describe('prometheus text, several machines', () => {
  it("exports every node's latest GPU sample, labelled with its node", () => {
    const h = new RunHistory();
    h.add({ type: 'hello', protocol: 1, runId: 'r1', name: 'r1', startedAt: t0, world: 4, config: {} });
    const gpu = (t: number, used: number, node?: number): GpuMessage => ({
      type: 'gpu',
      t,
      devices: [
        {
          index: 0,
          uuid: 'GPU-same',
          name: 'H',
          memoryUsed: used,
          memoryTotal: 10,
          memoryReserved: null,
          utilPercent: null,
          temperatureC: null,
          powerW: null,
          powerLimitW: null,
          smClockMHz: null,
          processes: [],
        },
      ],
      ...(node === undefined ? {} : { node: { rank: node, host: `host-${node}` } }),
    });
    h.add(gpu(t0, 1));
    h.add(gpu(t0 + 1, 2, 1));
    h.add(gpu(t0 + 2, 3, 1));
    h.add(gpu(t0 + 3, 4, 2));
    const used = renderPrometheus([h])
      .split('\n')
      .filter((l) => l.startsWith('scalelm_gpu_memory_used_bytes{'));
    assert.deepEqual(used, [
      'scalelm_gpu_memory_used_bytes{run="r1",gpu="0",uuid="GPU-same",name="H"} 1',
      'scalelm_gpu_memory_used_bytes{run="r1",node="1",host="host-1",gpu="0",uuid="GPU-same",name="H"} 3',
      'scalelm_gpu_memory_used_bytes{run="r1",node="2",host="host-2",gpu="0",uuid="GPU-same",name="H"} 4',
    ]);
  });
});

describe('run recorder', function () {
  this.timeout(30_000);

  it('publishes GPU samples from nvidia-smi into the run, says once when the sampler is off, and accounts its own time', async () => {
    const dir = tempDir('scalelm-rec-');
    const fake = fakeNvidiaSmi({ gpus: 2 });
    const rec = RunRecorder.open({ runDir: dir, runId: 'gpu-run', config: { monitor: { gpuSampleMs: 100 } }, world: 2, gpu: { env: fake.env, processIntervalMs: 200 } });
    rec.setRanks([{ rank: 0, pid: process.pid, device: 0 }]);
    rec.status('running');
    await until(() => rec.bus.history.gpu.count >= 3, '3 GPU samples');
    for (let k = 0; k < 100; k++) rec.step({ step: k, loss: 2, lr: 1, gradNorm: 1, tokensPerSec: 1, stepMs: 10, memory: { params: 1, grads: 1, optimizer: 1, activations: 1, peak: 4 } });
    const o = rec.overhead();
    assert.equal(o.steps, 100);
    assert.equal(o.stepMs, 1000);
    assert.ok(o.telemetryMs > 0 && o.fraction === o.telemetryMs / o.stepMs);
    await rec.close({ state: 'finished' });
    const run = await readRun(dir);
    const gpu = run.messages.filter((m): m is GpuMessage => m.type === 'gpu');
    assert.ok(gpu.length >= 3);
    assert.deepEqual(gpu[gpu.length - 1]!.devices[0]!.ranks, [0]);

    const absent = RunRecorder.open({ runDir: tempDir('scalelm-rec-'), runId: 'no-gpu', config: {}, world: 1, gpu: { env: { PATH: tempDir('empty-') } } });
    await until(() => absent.sampler!.state === 'off', 'the sampler off');
    await absent.close({ state: 'finished' });
    const logs = (await readRun(absent.runDir)).messages.filter((m) => m.type === 'log');
    assert.equal(logs.length, 1);
    assert.match(readFileSync(join(absent.runDir, 'metrics.jsonl'), 'utf8'), /GPU sampler off: nvidia-smi not found/);
  });

  it('follows a trainer that writes metrics.jsonl itself: its messages reach the bus, only what the recorder adds is written', async () => {
    const listeners = new Set<(m: Message) => void>();
    const trainer = { subscribe: (l: (m: Message) => void) => (listeners.add(l), () => listeners.delete(l)), emit: (m: Message) => listeners.forEach((l) => l(m)) };
    const written: Message[] = [];
    const rec = RunRecorder.open({ runDir: tempDir('scalelm-follow-'), runId: 'followed', config: {}, world: 1, gpu: false, announce: false, metrics: (m) => written.push(m) });
    rec.follow(trainer, { recorded: true });
    let controls = 0;
    rec.onControl(() => void controls++);
    trainer.emit({ type: 'hello', protocol: 1, runId: 'followed', name: 'followed', startedAt: t0, world: 1, config: {} });
    trainer.emit(stepMsg(0, 3));
    trainer.emit(stepMsg(1, NaN));
    assert.equal(rec.bus.history.hello!.runId, 'followed');
    assert.equal(rec.bus.history.steps.count, 2);
    assert.deepEqual(
      written.map((m) => m.type),
      ['alert'],
      'the NaN alert is the only line the recorder adds',
    );
    assert.equal(rec.overhead().steps, 2);
    await rec.bus.control('stop');
    assert.equal(controls, 1);
    await rec.close();
    trainer.emit(stepMsg(2, 3));
    assert.equal(rec.bus.history.steps.count, 2, 'nothing is taken after close');
  });
});

after(removeTempDirs);
