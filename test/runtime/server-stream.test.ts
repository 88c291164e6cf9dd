// The stream: snapshot then live messages, backpressure with a stalled client next to a live one,
// heartbeat, reconnection through the Node client, several runs on one server.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { GpuMessage, Message, SnapshotMessage, StepMessage } from '../../common/protocol';
import { RunClient } from '../../runtime/server/client';
import { monitorTrainer, parseListeningLine } from '../../runtime/server/monitor';
import { parseConfig } from '../../runtime/config/parse';
import { removeTempDirs, tempDir } from './telemetry/util';
import { startServer, type TelemetryServer } from '../../runtime/server/server';
import type { MetricBus } from '../../runtime/telemetry/bus';
import { tick, until } from './telemetry/util';
import { busWithSteps, openClient, stalledClient, step } from './telemetry/ws-helpers';

function bigGpu(i: number): GpuMessage {
  return {
    type: 'gpu',
    t: Date.now(),
    devices: Array.from({ length: 8 }, (_, d) => ({
      index: d,
      uuid: `GPU-00000000-0000-0000-0000-${String(d).padStart(12, '0')}`,
      name: 'NVIDIA H100 80GB HBM3',
      memoryUsed: (i % 80) * 2 ** 30,
      memoryTotal: 81559 * 2 ** 20,
      memoryReserved: 479 * 2 ** 20,
      utilPercent: i % 101,
      temperatureC: 50,
      powerW: 600,
      powerLimitW: 700,
      smClockMHz: 1980,
      processes: Array.from({ length: 8 }, (_, p) => ({ pid: 10_000 + p, memory: 2 ** 30, name: `/usr/bin/python3 -m train --rank ${p} --some-long-argument-list-to-make-this-realistic` })),
    })),
  };
}

describe('server stream', function () {
  this.timeout(60_000);
  const servers: TelemetryServer[] = [];
  const sockets: Socket[] = [];
  const start = async (bus: MetricBus | MetricBus[], extra: Partial<Parameters<typeof startServer>[0]> = {}) => {
    const s = await startServer({ runs: Array.isArray(bus) ? bus : [bus], heartbeatMs: 0, warn: () => undefined, ...extra });
    servers.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('a new client gets the snapshot (history so far) and then every live message in order', async () => {
    const bus = busWithSteps(50);
    bus.publish({ type: 'log', level: 'info', message: 'hello from the trainer', t: Date.now() });
    const server = await start(bus);
    const c = await openClient(server.port, server.token);
    await until(() => c.messages.length > 0, 'the snapshot');
    const snap = c.messages[0] as SnapshotMessage;
    assert.equal(snap.type, 'snapshot');
    assert.equal(snap.protocol, 1);
    assert.equal(snap.runId, 'test-run');
    assert.equal(snap.stepsTotal, 50);
    assert.deepEqual(
      snap.steps.map((s) => s.step),
      Array.from({ length: 50 }, (_, k) => k),
    );
    assert.equal(snap.status!.state, 'running');
    assert.equal(snap.logs[0]!.message, 'hello from the trainer');
    assert.equal(snap.readOnly, true, 'no control handler: read-only');
    for (let k = 50; k < 60; k++) bus.publish(step(k));
    await until(() => c.steps().length === 10, '10 live steps');
    assert.deepEqual(
      c.steps().map((s) => s.step),
      [50, 51, 52, 53, 54, 55, 56, 57, 58, 59],
    );
    assert.deepEqual(c.invalid, []);
  });

  it('the snapshot of a long run is downsampled but keeps spikes and NaN', async () => {
    const bus = busWithSteps(0);
    for (let k = 0; k < 20_000; k++) bus.publish(step(k, k === 12_345 ? 50 : k === 17_777 ? NaN : 4 - k / 10_000));
    const server = await start(bus);
    const c = await openClient(server.port, server.token);
    await until(() => c.messages.length > 0, 'the snapshot');
    const snap = c.messages[0] as SnapshotMessage;
    assert.equal(snap.stepsTotal, 20_000);
    assert.ok(snap.steps.length <= 2600, `downsampled to ${snap.steps.length}`);
    assert.ok(
      snap.steps.some((s) => s.step === 12_345 && s.loss === 50),
      'the spike survives',
    );
    assert.ok(
      snap.steps.some((s) => s.step === 17_777 && Number.isNaN(s.loss)),
      'NaN survives (as a number after decoding)',
    );
    assert.equal(snap.steps[0]!.step, 0);
    assert.equal(snap.steps[snap.steps.length - 1]!.step, 19_999);
  });

  it('a stalled client holds the server memory bounded while a live one keeps receiving every step', async () => {
    const bus = busWithSteps(5);
    const highWaterBytes = 64 * 1024;
    const maxQueueBytes = 1024 * 1024;
    const server = await start(bus, { highWaterBytes, maxQueueBytes });
    const live = await openClient(server.port, server.token);
    sockets.push(await stalledClient(server.port, server.token));
    await until(() => server.clients().length === 2, 'both clients');
    const gpuSize = JSON.stringify(bigGpu(0)).length;
    let published = 0;
    let worst = 0;
    for (let i = 0; i < 3000; i++) {
      bus.publish(bigGpu(i));
      published += gpuSize;
      if (i % 10 === 0) bus.publish(step(5 + i / 10));
      if (i % 20 === 0) {
        await tick();
        const stalled = server.clients().find((c) => c.id !== 1)!;
        worst = Math.max(worst, stalled.bufferedBytes + stalled.queuedBytes + stalled.pendingGauges * gpuSize);
      }
    }
    await until(() => live.steps().length === 300, 'the live client to get all 300 live steps');
    assert.deepEqual(
      live.steps().map((s) => s.step),
      Array.from({ length: 300 }, (_, k) => 5 + k),
      'in order, none dropped',
    );
    await until(() => live.messages.filter((m) => m.type === 'gpu').some((m) => (m as GpuMessage).devices[0]!.utilPercent === 2999 % 101), 'the latest gauge');
    const stalled = server.clients().find((c) => c.id !== 1)!;
    assert.ok(stalled.slow, 'the stalled client is behind');
    assert.ok(stalled.coalesced > 1000, `gauges were coalesced (${stalled.coalesced})`);
    assert.ok(stalled.pendingGauges <= 1, 'one pending gauge per key');
    const bound = highWaterBytes + 2 * gpuSize + maxQueueBytes;
    assert.ok(worst <= bound, `held for the stalled client: at most ${worst} bytes (bound ${bound}) while ${published} were published`);
    assert.ok(published > 20 * bound);
    assert.equal(live.closed, null);
  });

  it('a stalled client whose step backlog passes the limit is cut off; the live one gets every step', async () => {
    const bus = busWithSteps(0);
    const warnings: string[] = [];
    const server = await start(bus, { highWaterBytes: 16 * 1024, maxQueueBytes: 256 * 1024, warn: (l) => warnings.push(l) });
    const live = await openClient(server.port, server.token);
    sockets.push(await stalledClient(server.port, server.token));
    await until(() => server.clients().length === 2, 'both clients');
    const padding = 'x'.repeat(4000);
    for (let k = 0; k < 4000 && server.clients().length === 2; k++) {
      bus.publish({ type: 'log', level: 'debug', message: padding, t: Date.now() });
      bus.publish(step(k));
      if (k % 20 === 0) await tick();
    }
    await until(() => server.clients().length === 1, 'the stalled client to be cut off');
    assert.ok(warnings.some((w) => /too slow/.test(w)));
    const last = (bus.history.steps.latest() as StepMessage).step;
    await until(() => live.steps().length === last + 1, 'every step on the live client');
    assert.deepEqual(
      live.steps().map((s) => s.step),
      Array.from({ length: last + 1 }, (_, k) => k),
    );
  });

  it('heartbeat: a client that does not answer pings is terminated; a live one stays', async () => {
    const bus = busWithSteps(1);
    const server = await start(bus);
    const live = await openClient(server.port, server.token);
    sockets.push(await stalledClient(server.port, server.token));
    await until(() => server.clients().length === 2, 'both clients');
    server.heartbeat();
    await until(() => server.clients().find((c) => c.id === 1)!.alive, 'the live client to answer the ping');
    server.heartbeat();
    await until(() => server.clients().length === 1, 'the silent client to be terminated');
    assert.equal(server.clients()[0]!.id, 1);
    bus.publish(step(1));
    await until(() => live.steps().length === 1, 'a step on the live client');
  });

  it('the Node client validates, and reconnects with a fresh snapshot after the connection drops', async () => {
    const bus = busWithSteps(3);
    const server = await start(bus);
    const client = new RunClient({ port: server.port, token: server.token, minDelayMs: 20 });
    const snapshots: SnapshotMessage[] = [];
    const live: Message[] = [];
    client.on('snapshot', (s) => snapshots.push(s));
    client.on('message', (m) => live.push(m));
    client.connect();
    try {
      await until(() => snapshots.length === 1, 'the first snapshot');
      bus.publish(step(3));
      await until(() => live.length === 1, 'a live step');
      server.dropClients('test');
      await until(() => client.state === 'waiting' || client.state === 'connecting', 'the client to notice');
      bus.publish(step(4)); // while disconnected
      await until(() => snapshots.length === 2 && client.state === 'open', 'a second snapshot after reconnecting');
      assert.deepEqual(
        snapshots[1]!.steps.map((s) => s.step),
        [0, 1, 2, 3, 4],
        'the new snapshot holds what was missed',
      );
      assert.equal(client.connections, 2);
    } finally {
      client.close();
    }
  });

  it('the Node client does not retry a refused handshake (wrong token)', async () => {
    const server = await start(busWithSteps(1));
    const client = new RunClient({ port: server.port, token: '0'.repeat(64), minDelayMs: 10 });
    const refusals: number[] = [];
    client.on('refused', (status) => refusals.push(status));
    client.connect();
    await until(() => client.state === 'closed', 'closed');
    assert.deepEqual(refusals, [401]);
    client.close();
  });

  it('the Node client sends control messages and gets the answer; a read-only run says no', async () => {
    const bus = busWithSteps(1);
    const server = await start(bus);
    const client = new RunClient({ port: server.port, token: server.token });
    client.connect();
    try {
      await until(() => client.state === 'open', 'open');
      const no = await client.control('stop');
      assert.equal(no.ok, false);
      assert.match(no.error!, /read-only/);
      let stopped = 0;
      bus.onControl((a) => void (a === 'stop' && stopped++));
      const yes = await client.control('stop');
      assert.equal(yes.ok, true);
      assert.equal(stopped, 1);
    } finally {
      client.close();
    }
  });

  it('serves several runs: ?run=ID picks one, the snapshot lists them all', async () => {
    const a = busWithSteps(2, 'run-a');
    const b = busWithSteps(7, 'run-b');
    const server = await start([a, b]);
    const first = await openClient(server.port, server.token);
    const second = await openClient(server.port, server.token, { path: '/ws?run=run-b' });
    await until(() => first.messages.length > 0 && second.messages.length > 0, 'snapshots');
    const sa = first.messages[0] as SnapshotMessage;
    const sb = second.messages[0] as SnapshotMessage;
    assert.equal(sa.runId, 'run-a');
    assert.equal(sb.runId, 'run-b');
    assert.equal(sb.stepsTotal, 7);
    assert.deepEqual(
      sa.runs!.map((r) => r.runId),
      ['run-a', 'run-b'],
    );
    await assert.rejects(openClient(server.port, server.token, { path: '/ws?run=nope' }), /404/);
  });

  it('monitorTrainer: follows a trainer that writes its own metrics, prints the listening line, routes stop to it', async () => {
    const parsed = parseConfig({ name: 'followed', model: { preset: 'tiny' } });
    assert.ok(parsed.ok);
    const listeners = new Set<(m: Message) => void>();
    let stops = 0;
    const trainer = {
      subscribe: (l: (m: Message) => void) => (listeners.add(l), () => listeners.delete(l)),
      emit: (m: Message) => listeners.forEach((l) => l(m)),
      requestStop: () => void stops++,
      requestCheckpoint: () => undefined,
    };
    const written: Message[] = [];
    const runDir = { path: tempDir('scalelm-monitored-'), runId: 'followed-20260101-000000', publish: (m: Message) => void written.push(m) };
    const lines: string[] = [];
    const run = await monitorTrainer({ trainer, runDir, config: parsed.config, gpu: false, out: (l) => lines.push(l), env: {} });
    const line = parseListeningLine(lines[0]!)!;
    assert.equal(line.runId, 'followed-20260101-000000', 'the run id is known before the trainer says hello');
    const client = new RunClient({ port: line.port, token: line.token! });
    const seen: Message[] = [];
    let snap: SnapshotMessage | undefined;
    client.on('snapshot', (s) => (snap = s));
    client.on('message', (m) => seen.push(m));
    client.connect();
    try {
      await until(() => snap !== undefined, 'a snapshot');
      assert.equal(snap!.runId, 'followed-20260101-000000');
      assert.equal(snap!.readOnly, false);
      trainer.emit({ type: 'hello', protocol: 1, runId: runDir.runId, name: 'followed', startedAt: Date.now(), world: 1, config: {} });
      trainer.emit(step(0));
      await until(() => seen.length === 2, 'the trainer messages, live');
      assert.deepEqual((await client.control('stop')).ok, true);
      assert.equal(stops, 1);
      trainer.emit(step(1, NaN));
      await until(() => seen.some((m) => m.type === 'alert'), 'the NaN alert');
      assert.deepEqual(
        written.map((m) => m.type),
        ['alert'],
        'only what telemetry adds goes through the run dir',
      );
    } finally {
      client.close();
    }
    const o = await run.close();
    assert.equal(o.steps, 2);
  });
});

after(removeTempDirs);
