// The GPU sampler against a fake nvidia-smi first on PATH that replays the real H200/H100 captures.
import assert from 'node:assert/strict';
import type { AlertMessage, GpuMessage } from '../../common/protocol';
import { validateMessage } from '../../common/protocol';
import { AlertEngine } from '../../runtime/telemetry/alerts';
import { GpuSampler, type GpuSamplerOptions, type SamplerStateEvent } from '../../runtime/telemetry/gpu-sampler';
import { classifyFailure, lostBusId, parseAppRow, parseGpuRow } from '../../runtime/telemetry/nvidia-smi';
import { alive, fakeNvidiaSmi, H100, H200, type FakeGpu } from './telemetry/fake-gpu';
import { removeTempDirs, tempDir, until } from './telemetry/util';

const MiB = 1048576;
const FAST: GpuSamplerOptions = { intervalMs: 100, processIntervalMs: 150, stallMs: 2000, killGraceMs: 300, backoffMinMs: 50, backoffMaxMs: 400, firstCallTimeoutMs: 20_000 };

describe('nvidia-smi parsing', () => {
  it('reads a row, turning bracketed cells into null without rejecting the row', () => {
    const r = parseGpuRow('0, GPU-abc, 00000000:83:00.0, 143771, [N/A], 32362, 100, [Not Supported], 627.40, 700.00, 1980, NVIDIA H200');
    assert.ok(r.ok);
    assert.equal(r.row.memoryTotal, 143771 * MiB);
    assert.equal(r.row.memoryReserved, null);
    assert.equal(r.row.temperatureC, null);
    assert.equal(r.row.powerW, 627.4);
    assert.equal(r.row.name, 'NVIDIA H200');
    assert.equal(r.row.lost, false);
  });

  it('keeps a comma inside the last (name) column', () => {
    const r = parseGpuRow('1, GPU-x, 0:1:0.0, 1, 0, 0, 0, 0, 0, 0, 0, Weird, GPU');
    assert.ok(r.ok && r.row.name === 'Weird, GPU');
  });

  it('rejects a short row and a row without an index, with the reason', () => {
    const short = parseGpuRow('0, GPU-abc');
    assert.ok(!short.ok && /expected 12 columns/.test(short.reason));
    const noIndex = parseGpuRow('[N/A], GPU-x, 0:1:0.0, 1, 0, 0, 0, 0, 0, 0, 0, n');
    assert.ok(!noIndex.ok && /index/.test(noIndex.reason));
  });

  it('marks a device lost from "[GPU is lost]" cells or the driver message', () => {
    const r = parseGpuRow('2, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]');
    assert.ok(r.ok && r.row.lost && r.row.uuid === null && r.row.memoryUsed === null);
    assert.equal(lostBusId('Unable to determine the device handle for GPU0000:83:00.0: GPU is lost.  Reboot the system to recover this GPU'), '83:00.0');
  });

  it('recognises the driver failures from their text', () => {
    assert.equal(classifyFailure('Failed to initialize NVML: Driver/library version mismatch')?.kind, 'mismatch');
    assert.equal(classifyFailure("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")?.kind, 'no-driver');
    assert.equal(classifyFailure('No devices were found')?.kind, 'no-devices');
    assert.equal(classifyFailure('0, GPU-1, …'), null);
  });

  it('reads compute apps, with [N/A] memory as null', () => {
    const r = parseAppRow('10309, GPU-00000000-0000-0000-0000-000000000000, 28234, ./gpu_burn');
    assert.ok(r.ok && r.row.memory === 28234 * MiB && r.row.pid === 10309);
    const na = parseAppRow('7, GPU-1, [N/A], python');
    assert.ok(na.ok && na.row.memory === null);
  });
});

describe('GPU sampler against a fake nvidia-smi', function () {
  this.timeout(60_000);
  const samplers: GpuSampler[] = [];
  const start = (fake: FakeGpu | null, extra: GpuSamplerOptions = {}) => {
    const env = fake ? fake.env : { ...process.env, PATH: tempDir('scalelm-no-smi-') };
    const s = new GpuSampler({ ...FAST, env, ...extra });
    samplers.push(s);
    const states: SamplerStateEvent[] = [];
    const samples: GpuMessage[] = [];
    s.on('state', (e) => states.push(e));
    s.on('sample', (m) => samples.push(m));
    s.start();
    return { s, states, samples };
  };
  afterEach(async () => {
    await Promise.all(samplers.splice(0).map((s) => s.stop()));
  });

  it('1 GPU (H200): idle then load readings, bytes from MiB, processes mapped to ranks', async () => {
    const fake = fakeNvidiaSmi({ capture: H200, gpus: 1, apps: 'load' });
    const { s, samples } = start(fake, { ranks: () => [{ rank: 0, pid: 10309, device: 0 }] });
    await until(() => samples.some((m) => m.devices[0]!.utilPercent === 100 && m.devices[0]!.processes.length === 3), 'a load sample with processes');
    for (const m of samples) assert.ok(validateMessage(m).ok, 'every sample is a valid protocol message');
    const idle = samples[0]!.devices[0]!;
    assert.equal(idle.name, 'NVIDIA H200');
    assert.equal(idle.memoryTotal, 143771 * MiB);
    assert.equal(idle.memoryReserved, 614 * MiB);
    assert.equal(idle.memoryUsed, 0);
    assert.equal(idle.powerW, 77.71);
    const load = samples.find((m) => m.devices[0]!.utilPercent === 100 && m.devices[0]!.processes.length === 3)!.devices[0]!;
    assert.equal(load.memoryUsed, 32362 * MiB);
    assert.equal(load.temperatureC, 52);
    assert.deepEqual(load.ranks, [0]);
    const burn = load.processes.find((p) => p.pid === 10309)!;
    assert.equal(burn.rank, 0);
    assert.equal(burn.memory, 28234 * MiB);
    assert.equal(load.processes.find((p) => p.pid === 10291)!.rank, undefined, 'a process that is not ours has no rank');
    assert.equal(s.state, 'up');
  });

  it('8 GPUs (H100): every sample holds all 8 devices, keyed by distinct UUIDs', async () => {
    const fake = fakeNvidiaSmi({ capture: H100, gpus: 8, apps: 'none' });
    const { samples } = start(fake, { ranks: () => Array.from({ length: 8 }, (_, r) => ({ rank: r, pid: 100000 + r, device: r })) });
    await until(() => samples.length >= 4, '4 samples');
    for (const m of samples) {
      assert.equal(m.devices.length, 8);
      assert.deepEqual(
        m.devices.map((d) => d.index),
        [0, 1, 2, 3, 4, 5, 6, 7],
      );
      assert.equal(new Set(m.devices.map((d) => d.uuid)).size, 8);
      assert.ok(m.devices.every((d, i) => d.name === 'NVIDIA H100 80GB HBM3' && d.memoryReserved === 479 * MiB && d.ranks?.[0] === i));
      assert.ok(
        m.devices.every((d) => d.processes.length === 0),
        'no compute apps: empty process lists',
      );
    }
  });

  it('a process that is not in /proc (another PID namespace) is listed without a rank, nothing breaks', async () => {
    const ghost = 2 ** 22 + 5; // above Linux's largest pid_max
    const fake = fakeNvidiaSmi({
      apps: [
        { pid: ghost, device: 0, memMiB: 512, name: 'python' },
        { pid: process.pid, device: 0, memMiB: '[N/A]', name: 'node' },
      ],
    });
    const { samples } = start(fake, { ranks: () => [{ rank: 3, pid: process.pid }] });
    await until(() => samples.some((m) => m.devices[0]!.processes.length === 2), 'a sample with both processes');
    const procs = samples.find((m) => m.devices[0]!.processes.length === 2)!.devices[0]!;
    assert.deepEqual(
      procs.processes.find((p) => p.pid === ghost),
      { pid: ghost, memory: 512 * MiB, name: 'python' },
    );
    assert.deepEqual(
      procs.processes.find((p) => p.pid === process.pid),
      { pid: process.pid, memory: null, name: 'node', rank: 3 },
    );
    assert.deepEqual(procs.ranks, [3], 'the rank is placed on the device through its process');
  });

  it('N/A and Not Supported cells become null; the row and the other fields survive', async () => {
    const fake = fakeNvidiaSmi({
      capture: H200,
      gpus: 2,
      na: [
        { field: 'power.draw', value: '[N/A]' },
        { field: 'temperature.gpu', value: '[Not Supported]', device: 1 },
        { field: 'memory.reserved', value: '[N/A]', device: 0 },
      ],
    });
    const { samples } = start(fake);
    await until(() => samples.some((m) => m.devices[0]!.utilPercent === 100), 'a load sample');
    const [d0, d1] = samples.find((m) => m.devices[0]!.utilPercent === 100)!.devices as [GpuMessage['devices'][0], GpuMessage['devices'][0]];
    assert.equal(d0.powerW, null);
    assert.equal(d1.powerW, null);
    assert.equal(d1.temperatureC, null);
    assert.equal(d0.temperatureC, 52);
    assert.equal(d0.memoryReserved, null);
    assert.equal(d1.memoryReserved, 614 * MiB);
    assert.equal(d0.memoryUsed, 32362 * MiB);
  });

  it('no nvidia-smi on PATH: off, said once, never retried', async () => {
    const { s, states } = start(null);
    await until(() => s.state === 'off', 'state off');
    assert.deepEqual(
      states.map((e) => e.state),
      ['starting', 'off'],
    );
    assert.match(states[1]!.reason, /not found/);
  });

  it('no nvidia-smi on PATH, stopped at once (a run that ended right away): stop() resolves, signals nobody', async () => {
    // Killing a child whose spawn failed but whose error is not out yet signals pid 0: this very process group.
    let signalled = 0;
    const onTerm = (): void => void signalled++;
    process.on('SIGTERM', onTerm);
    try {
      const { s } = start(null);
      await s.stop(); // before the spawn error arrived: it used to wait for an exit that never comes
      assert.equal(s.state, 'stopped');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(signalled, 0, 'stop() sent SIGTERM to its own process group');
    } finally {
      process.off('SIGTERM', onTerm);
    }
  });

  it('samples carry the node they were taken on when given one (multi-node)', async () => {
    const { samples } = start(fakeNvidiaSmi({ gpus: 2 }), { node: { rank: 1, host: 'host-b' } });
    await until(() => samples.length >= 1, 'a sample');
    assert.deepEqual(samples[0]!.node, { rank: 1, host: 'host-b' });
    assert.equal(samples[0]!.devices.length, 2);
  });

  it('no devices at start: off, said once', async () => {
    const fake = fakeNvidiaSmi({ failAlways: 'no-devices' });
    const { s, states } = start(fake);
    await until(() => s.state === 'off', 'state off');
    assert.match(s.reason, /no NVIDIA GPU/);
    assert.equal(fake.invocations().length, 1);
    assert.deepEqual(
      states.map((e) => e.state),
      ['starting', 'off'],
    );
  });

  it('start-up failure (no driver): down once with the driver message, retried with back-off', async () => {
    const fake = fakeNvidiaSmi({ failAlways: 'no-driver' });
    const { states } = start(fake);
    await until(() => fake.invocations().length >= 3, '3 attempts');
    const downs = states.filter((e) => e.state === 'down');
    assert.equal(downs.length, 1, 'down is reported once, not per retry');
    assert.match(downs[0]!.reason, /couldn't communicate with the NVIDIA driver/);
  });

  it('driver/library mismatch at first, then recovery: down, then up with readings', async () => {
    const fake = fakeNvidiaSmi({ failProbe: { kind: 'mismatch', times: 2 } });
    const engine: AlertMessage[] = [];
    const alerts = new AlertEngine((a) => engine.push(a));
    const { s, states, samples } = start(fake);
    s.on('state', (e) => (e.state === 'down' || e.state === 'up') && alerts.collector(e.state === 'up', e.reason));
    await until(() => samples.length > 0, 'a sample after recovery');
    assert.deepEqual(
      states.map((e) => e.state),
      ['starting', 'down', 'up'],
    );
    assert.match(states[1]!.reason, /version mismatch/);
    assert.deepEqual(
      engine.map((a) => `${a.kind}:${a.state}`),
      ['collector-down:raised', 'collector-down:cleared'],
    );
  });

  it('a GPU lost mid-stream (driver message line): reported lost with null readings, others unaffected', async () => {
    const fake = fakeNvidiaSmi({ gpus: 2, lost: { device: 1, after: 2, mode: 'line' } });
    const { samples } = start(fake);
    await until(() => samples.some((m) => m.devices.some((d) => d.lost)), 'a lost device');
    const m = samples.find((x) => x.devices.some((d) => d.lost))!;
    assert.equal(m.devices.length, 2);
    const lost = m.devices.find((d) => d.index === 1)!;
    assert.equal(lost.lost, true);
    assert.equal(lost.memoryUsed, null);
    assert.equal(lost.uuid, samples[0]!.devices[1]!.uuid, 'the lost GPU keeps its identity');
    assert.equal(m.devices[0]!.lost, undefined);
    const seen: AlertMessage[] = [];
    new AlertEngine((a) => seen.push(a)).observe(m);
    assert.ok(seen.some((a) => a.kind === 'gpu-lost' && a.severity === 'critical'));
  });

  it('a GPU lost mid-stream ("[GPU is lost]" cells): marked lost', async () => {
    const fake = fakeNvidiaSmi({ gpus: 2, lost: { device: 0, after: 1, mode: 'cells' } });
    const { samples } = start(fake);
    await until(() => samples.some((m) => m.devices[0]!.lost === true), 'a lost device');
    const m = samples.find((x) => x.devices[0]!.lost)!;
    assert.equal(m.devices[0]!.uuid, samples[0]!.devices[0]!.uuid);
    assert.equal(m.devices[1]!.memoryUsed !== null, true);
  });

  it('a wedged child that ignores SIGTERM is killed (SIGKILL) and replaced', async () => {
    const fake = fakeNvidiaSmi({ wedge: { after: 2, ignoreTerm: true } });
    const { states, samples } = start(fake, { stallMs: 600 });
    await until(() => states.some((e) => e.state === 'down'), 'down after the wedge');
    assert.match(states.find((e) => e.state === 'down')!.reason, /wedged/);
    const wedged = fake.invocations().find((i) => i.mode === 'loop' && i.nth === 1)!;
    await until(() => !alive(wedged.pid), 'the wedged child to be gone');
    const before = samples.length;
    await until(() => samples.length > before && states[states.length - 1]!.state === 'up', 'readings again');
    await until(() => fake.invocations().some((i) => i.mode === 'loop' && i.nth === 2), 'a new loop child');
  });

  it('a child that exits is restarted', async () => {
    const fake = fakeNvidiaSmi({ exitAfter: 2 });
    const { states } = start(fake);
    await until(() => fake.invocations().filter((i) => i.mode === 'loop').length >= 2 && states[states.length - 1]!.state === 'up', 'a second loop child, up');
    assert.ok(states.some((e) => e.state === 'down' && /exited/.test(e.reason)));
  });

  it('a slow first call is waited for; one past the limit is retried', async () => {
    const slow = fakeNvidiaSmi({ slowFirstMs: 800 });
    const a = start(slow);
    await until(() => a.samples.length > 0, 'a sample after a slow first call');
    assert.ok(!a.states.some((e) => e.state === 'down'));

    const tooSlow = fakeNvidiaSmi({ slowFirstMs: 5000 });
    const b = start(tooSlow, { firstCallTimeoutMs: 300 });
    await until(() => b.samples.length > 0, 'a sample after the retry');
    assert.match(b.states.find((e) => e.state === 'down')!.reason, /did not answer/);
  });

  it('stop() ends the child processes', async () => {
    const fake = fakeNvidiaSmi({});
    const { s, samples } = start(fake);
    await until(() => samples.length > 0, 'a sample');
    await s.stop();
    for (const i of fake.invocations().filter((x) => x.mode === 'loop')) assert.equal(alive(i.pid), false);
    await s.stop(); // twice is fine
  });
});

after(removeTempDirs);
