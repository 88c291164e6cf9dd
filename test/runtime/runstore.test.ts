// The run directory: metrics.jsonl written by the recorder, read back, survived by a kill -9; CSV and
// TensorBoard exports.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage, type GpuMessage, type SnapshotMessage, type StepMessage } from '../../common/protocol';
import { RunClient } from '../../runtime/server/client';
import { parseListeningLine } from '../../runtime/server/monitor';
import { exportCsv, messagesToCsv } from '../../runtime/telemetry/csv';
import { RunRecorder } from '../../runtime/telemetry/recorder';
import { claimRun, listRunDirs, readRun, RUN_LAYOUT, summarizeRun, writerAlive } from '../../runtime/telemetry/run-store';
import { hostname } from 'node:os';
import { encodeEvent, encodeRecord, maskedCrc32c, crc32c, readEventFile, TensorBoardWriter, tensorBoardSink } from '../../runtime/telemetry/tensorboard';
import { removeTempDirs, tempDir, until } from './telemetry/util';
import { rawRequest } from './telemetry/ws-helpers';

const CLI = join(__dirname, '..', '..', 'runtime', 'cli.js');

const tmp = () => tempDir('scalelm-run-');
const memory = { params: 100, grads: 100, optimizer: 200, activations: 300, peak: 700 };

describe('run store', function () {
  this.timeout(60_000);

  it('the recorder writes hello first, then one valid protocol message per line, read back identically', async () => {
    const dir = join(tmp(), 'run-1');
    const rec = RunRecorder.open({ runDir: dir, runId: 'run-1', config: { devices: { memory: 1000 } }, plan: { peakBytes: 650 }, world: 2, gpu: false });
    rec.status('running');
    rec.step({ step: 0, loss: 4.5, lr: 1e-3, gradNorm: 2, tokensPerSec: 1000, stepMs: 20, memory, tokens: 1024 });
    rec.step({ step: 1, loss: NaN, lr: 1e-3, gradNorm: Infinity, tokensPerSec: 1000, stepMs: 20, memory });
    rec.eval(1, 4.4);
    rec.memory({ rank: 1, step: 1, categories: { params: 100, activations: 300 }, stepPeak: 700, capacity: 1000, predicted: { params: 100, peak: 650 } });
    rec.comm({ rank: 0, step: 1, collectives: [{ kind: 'all-reduce', calls: 2, bytes: 4096, ms: 1.5 }] });
    rec.log('warn', 'a warning', { rank: 1 });
    rec.checkpoint(1, 'checkpoints/step-1.safetensors', 12345);
    await rec.close({ state: 'finished' });

    const lines = readFileSync(join(dir, RUN_LAYOUT.metrics), 'utf8').trimEnd().split('\n');
    assert.ok(
      lines.every((l) => decodeMessage(l).ok),
      'every line is a valid message',
    );
    const run = await readRun(dir);
    assert.deepEqual(run.problems, []);
    assert.equal(run.truncatedTail, false);
    const types = run.messages.map((m) => m.type);
    assert.equal(types[0], 'hello');
    assert.ok(types.includes('alert'), 'NaN loss raised an alert, recorded too');
    assert.deepEqual(
      types.filter((t) => t !== 'alert'),
      ['hello', 'status', 'status', 'step', 'step', 'eval', 'memory', 'comm', 'log', 'checkpoint', 'status'],
    );
    const steps = run.messages.filter((m): m is StepMessage => m.type === 'step');
    assert.equal(steps[0]!.tokens, 1024);
    assert.ok(Number.isNaN(steps[1]!.loss) && steps[1]!.gradNorm === Infinity, 'non-finite values survive the file');
    assert.ok(lines.some((l) => l.includes('"loss":"NaN"')));
    const final = run.messages[run.messages.length - 1]!;
    assert.ok(final.type === 'status' && final.state === 'finished');
    assert.deepEqual(listRunDirs(join(dir, '..')), [dir]);
    assert.deepEqual(listRunDirs(dir), [dir]);
  });

  it('survives kill -9 of the runtime: every step reported so far is readable', async () => {
    const dir = join(tmp(), 'killed');
    const child = spawn(process.execPath, [join(__dirname, 'telemetry', 'recorder-child.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    const exited = new Promise((r) => child.once('exit', r));
    let reported = -1;
    try {
      await until(() => {
        const m = out.match(/step (\d+)\n/g);
        reported = m ? Number(/\d+/.exec(m[m.length - 1]!)![0]) : -1;
        return reported >= 2000;
      }, 'the child to record 2000 steps');
    } finally {
      child.kill('SIGKILL');
    }
    await exited;
    assert.match(out.split('\n')[0]!, /"scalelm":"listening"/, 'the runtime announced its port first');
    const lastSeen = Number(/step (\d+)\n(?![\s\S]*step \d+\n)/.exec(out)![1]);
    const run = await readRun(dir);
    assert.deepEqual(run.problems, [], 'no line in the middle is damaged');
    const steps = run.messages.filter((m): m is StepMessage => m.type === 'step').map((s) => s.step);
    assert.ok(steps.length >= lastSeen + 1, `${steps.length} steps on disk, ${lastSeen + 1} reported`);
    assert.deepEqual(
      steps.slice(0, lastSeen + 1),
      Array.from({ length: lastSeen + 1 }, (_, k) => k),
      'contiguous from 0',
    );
    assert.equal(run.messages[0]!.type, 'hello');
    const tb = readdirSync(join(dir, RUN_LAYOUT.tensorboard)).filter((f) => f.includes('tfevents'));
    assert.equal(tb.length, 1);
    const events = readEventFile(join(dir, RUN_LAYOUT.tensorboard, tb[0]!)).events;
    assert.ok(events.filter((e) => 'train/loss' in e.scalars).length >= lastSeen + 1, 'the TensorBoard file has every reported step too');
  });

  it('a line cut short at the end is a truncated tail, not an error; a damaged middle line is reported and skipped', async () => {
    const dir = tmp();
    const good = (k: number) => JSON.stringify({ type: 'step', step: k, loss: 1, lr: 1, gradNorm: 1, tokensPerSec: 1, stepMs: 1, memory });
    writeFileSync(join(dir, RUN_LAYOUT.metrics), [good(0), '{"type":"step","step":1,"loss"', good(2), ''].join('\n'));
    appendFileSync(join(dir, RUN_LAYOUT.metrics), good(3).slice(0, 30));
    const run = await readRun(dir);
    assert.equal(run.truncatedTail, true);
    assert.equal(run.problems.length, 1);
    assert.equal(run.problems[0]!.line, 2);
    assert.deepEqual(
      run.messages.filter((m) => m.type === 'step').map((m) => (m as StepMessage).step),
      [0, 2],
    );
    // No final status and nobody writing it: the reader adds "crashed" after the last step (never to the file).
    const last = run.messages[run.messages.length - 1]!;
    assert.ok(last.type === 'status' && last.state === 'crashed' && last.step === 2, JSON.stringify(last));
    assert.doesNotMatch(readFileSync(join(dir, RUN_LAYOUT.metrics), 'utf8'), /crashed/);
  });

  it('exports steps as CSV: one row per step, evaluation joined, categories as columns, NaN spelled out', async () => {
    const dir = join(tmp(), 'csv');
    const rec = RunRecorder.open({ runDir: dir, runId: 'csv', config: {}, world: 1, gpu: false, tensorboard: false });
    rec.step({ step: 0, loss: 4, lr: 1e-3, gradNorm: 1, tokensPerSec: 10, stepMs: 5, memory: { ...memory, temporaries: 50 } });
    rec.eval(0, 3.9);
    rec.step({ step: 1, loss: NaN, lr: 1e-3, gradNorm: 1, tokensPerSec: 10, stepMs: 5, memory });
    rec.eval(5, 3.1);
    await rec.close();
    let csv = '';
    const r = await exportCsv(dir, (c) => void (csv += c));
    assert.equal(r.problems, 0);
    const rows = csv.trimEnd().split('\n');
    assert.equal(rows[0], 'step,time,loss,lr,gradNorm,tokensPerSec,stepMs,tokens,memory.params,memory.grads,memory.optimizer,memory.activations,memory.peak,memory.temporaries,evalLoss');
    assert.equal(rows.length, 4);
    assert.match(rows[1]!, /^0,\d{4}-\d\d-\d\dT[^,]+,4,0.001,1,10,5,,100,100,200,300,700,50,3.9$/);
    assert.match(rows[2]!, /^1,[^,]+,NaN,/);
    assert.match(rows[3]!, /^5,[^,]+,,,,,,,,,,,,,3.1$/);
    assert.equal(messagesToCsv([]), rows[0]!.replace(',memory.temporaries', '') + '\n');
  });

  it('TensorBoard records: CRC32C and masking match TensorFlow, events decode back', async () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283, 'the CRC-32C check value');
    // Every TensorBoard event file starts with the file_version event: 24 bytes, whose header bytes are fixed.
    const first = encodeRecord(encodeEvent({ wallTime: 1.5e9, fileVersion: 'brain.Event:2' }));
    assert.deepEqual([...first.subarray(0, 12)], [0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22]);
    assert.equal(maskedCrc32c(Buffer.alloc(0)), 0xa282ead8);
    const dir = tmp();
    const rec = RunRecorder.open({ runDir: dir, runId: 'tb', config: {}, world: 1, gpu: false });
    rec.step({ step: 7, loss: 2.5, lr: 1e-3, gradNorm: 1, tokensPerSec: 10, stepMs: 5, memory });
    rec.eval(7, 2.25);
    await rec.close();
    const file = readdirSync(join(dir, 'tensorboard'))[0]!;
    assert.match(file, /^events\.out\.tfevents\.\d+\./);
    const { events, clean } = readEventFile(join(dir, 'tensorboard', file));
    assert.equal(clean, true);
    assert.equal(events[0]!.fileVersion, 'brain.Event:2');
    const train = events.find((e) => 'train/loss' in e.scalars)!;
    assert.equal(train.step, 7);
    assert.equal(train.scalars['train/loss'], 2.5);
    assert.ok(Math.abs(train.scalars['memory/peak_gib']! - 700 / 2 ** 30) < 1e-12);
    assert.equal(events.find((e) => 'eval/loss' in e.scalars)!.scalars['eval/loss'], 2.25);
  });

  it('TensorBoard GPU scalars of several machines stay apart (node<K>/gpu<N>/…)', () => {
    const dir = tmp();
    const writer = new TensorBoardWriter(dir, 1_790_000_000_000);
    const sink = tensorBoardSink(writer);
    const gpu = (used: number, node?: number): GpuMessage => ({
      type: 'gpu',
      t: 1_790_000_000_000,
      devices: [
        {
          index: 0,
          uuid: 'GPU-same',
          name: 'H',
          memoryUsed: used * 2 ** 30,
          memoryTotal: 8 * 2 ** 30,
          memoryReserved: null,
          utilPercent: used,
          temperatureC: null,
          powerW: null,
          powerLimitW: null,
          smClockMHz: null,
          processes: [],
        },
      ],
      ...(node === undefined ? {} : { node: { rank: node, host: `h${node}` } }),
    });
    sink(gpu(1));
    sink(gpu(2, 1));
    sink(gpu(3, 2));
    sink.flush();
    writer.close();
    const scalars = Object.assign({}, ...readEventFile(writer.path).events.map((e) => e.scalars)) as Record<string, number>;
    assert.deepEqual([scalars['gpu0/memory_used_gib'], scalars['node1/gpu0/memory_used_gib'], scalars['node2/gpu0/memory_used_gib'], scalars['node2/gpu0/util_percent']], [1, 2, 3, 3]);
  });

  it('lists the runs under a runs/ directory, newest first, ignoring other folders', async () => {
    const root = tmp();
    for (const id of ['a', 'b']) {
      const rec = RunRecorder.open({ runDir: join(root, id), runId: id, config: {}, world: 1, gpu: false, tensorboard: false });
      await rec.close({ state: 'finished' });
    }
    mkdirSync(join(root, 'not-a-run'));
    const runs = listRunDirs(root).map((d) => d.slice(root.length + 1));
    assert.deepEqual([...runs].sort(), ['a', 'b']);
  });

  it('`scalelm serve DIR` replays finished runs read-only; `scalelm export-csv` writes the steps', async () => {
    const root = tmp();
    const a = RunRecorder.open({ runDir: join(root, 'finished'), runId: 'finished', config: {}, world: 1, gpu: false, tensorboard: false });
    for (let k = 0; k < 30; k++) a.step({ step: k, loss: 3 - k / 100, lr: 1e-3, gradNorm: 1, tokensPerSec: 10, stepMs: 5, memory });
    await a.close({ state: 'finished' });
    const b = RunRecorder.open({ runDir: join(root, 'killed'), runId: 'killed', config: {}, world: 1, gpu: false, tensorboard: false });
    b.step({ step: 0, loss: 3, lr: 1e-3, gradNorm: 1, tokensPerSec: 10, stepMs: 5, memory });
    await b.close(); // no final status, like a killed runtime

    const env = { ...process.env };
    delete env.SCALELM_MONITOR_TOKEN;
    const child = spawn(process.execPath, [CLI, 'serve', root], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const client = { c: null as RunClient | null };
    try {
      // stdout (the listening line) and stderr (the human lines) are separate pipes: wait for both.
      await until(() => (out.includes('\n') && err.includes('dashboard:')) || child.exitCode !== null, 'the listening line and the dashboard URL');
      const line = parseListeningLine(out.split('\n')[0]!);
      assert.ok(line, `a listening line, got: ${out} ${err}`);
      assert.match(err, /killed: 1 steps \(crashed: no final status and its process is gone; continue it with scalelm train --resume \S+killed\)/);
      assert.match(err, /dashboard: http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]{64}/);
      const snapshots: SnapshotMessage[] = [];
      client.c = new RunClient({ port: line.port, token: line.token!, run: 'finished' });
      client.c.on('snapshot', (s) => snapshots.push(s));
      client.c.connect();
      await until(() => snapshots.length === 1, 'a snapshot');
      assert.equal(snapshots[0]!.readOnly, true);
      assert.equal(snapshots[0]!.stepsTotal, 30);
      assert.deepEqual(snapshots[0]!.runs!.map((r) => r.runId).sort(), ['finished', 'killed']);
      const rows = new Map(snapshots[0]!.runs!.map((r) => [r.runId, r]));
      assert.equal(rows.get('finished')!.state, 'finished');
      assert.equal(rows.get('killed')!.state, 'crashed');
      assert.equal(rows.get('finished')!.bestLoss, 3 - 29 / 100);
      assert.equal(rows.get('finished')!.finalLoss, 3 - 29 / 100);
      // A replay's duration is its own: end − start, not now − start.
      assert.ok(rows.get('finished')!.endedAt! - rows.get('finished')!.startedAt < 10_000);
      assert.equal((await client.c.control('stop')).ok, false, 'a replay cannot be stopped');
      const csv = await rawRequest(line.port, { upgrade: false, path: '/export.csv?run=finished', headers: { Authorization: `Bearer ${line.token}` } });
      assert.equal(csv.status, 200);
      assert.equal(csv.body.trimEnd().split('\n').length, 31);
      const page = await rawRequest(line.port, { upgrade: false, path: '/' });
      assert.equal(page.status, 200);
      assert.match(page.body, /<script nonce="[0-9a-f]{32}" src="\/webview\.js">/);
      assert.match(page.body, /data-host="browser"/);
    } finally {
      client.c?.close();
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);

    const csvOut = join(root, 'steps.csv');
    const exp = spawn(process.execPath, [CLI, 'export-csv', join(root, 'finished'), '--out', csvOut], { stdio: 'inherit' });
    assert.equal(await new Promise((r) => exp.once('exit', r)), 0);
    assert.equal(readFileSync(csvOut, 'utf8').trimEnd().split('\n').length, 31);
  });

  it('lifecycle: "done" of older runs reads as finished (or stopped with its step); crashed needs a dead writer', async () => {
    const root = tmp();
    const hello = (id: string) => JSON.stringify({ type: 'hello', protocol: 1, runId: id, name: id, startedAt: 1_000, world: 1, config: {} });
    const step = (k: number) => JSON.stringify({ type: 'step', step: k, loss: 3 - k / 10, lr: 1, gradNorm: 1, tokensPerSec: 50, stepMs: 1, memory, t: 2_000 + k });
    const write = (id: string, lines: string[]) => {
      mkdirSync(join(root, id));
      writeFileSync(join(root, id, RUN_LAYOUT.metrics), lines.join('\n') + '\n');
      return join(root, id);
    };
    const old = write('old', [hello('old'), step(0), step(1), JSON.stringify({ type: 'status', state: 'done', t: 5_000, step: 1 })]);
    const oldStopped = write('old-stopped', [hello('old-stopped'), step(0), JSON.stringify({ type: 'status', state: 'done', t: 5_000, step: 0, reason: 'stopped at step 0' })]);
    const s1 = await summarizeRun(old);
    assert.equal(s1.state, 'finished');
    assert.equal(s1.endedAt, 5_000);
    assert.equal(s1.detail, 'finished at step 1');
    assert.equal(s1.bestLoss, 2.9);
    assert.equal(s1.tokensPerSec, 50);
    assert.equal((await summarizeRun(oldStopped)).state, 'stopped');

    // In progress: process.json names a living process (this one) → still running, not crashed.
    const live = write('live', [hello('live'), step(0), JSON.stringify({ type: 'status', state: 'running', t: 2_500, step: 0 })]);
    claimRun(live);
    assert.equal(writerAlive(live), true);
    assert.equal((await summarizeRun(live)).state, 'running');
    assert.ok(!(await readRun(live)).messages.some((m) => m.type === 'status' && m.state === 'crashed'));
    // The same run after its writer died (a pid that no longer exists): crashed after its last step.
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => gone.once('exit', r));
    writeFileSync(join(live, RUN_LAYOUT.process), JSON.stringify({ pid: gone.pid, host: hostname(), startedAt: 1 }));
    assert.equal(writerAlive(live), false);
    const crashed = await summarizeRun(live);
    assert.equal(crashed.state, 'crashed');
    assert.match(crashed.detail!, /^crashed after step 0/);
    assert.equal(crashed.endedAt, 2_500);

    // The recorder claims the run while it writes and releases it on close.
    const rec = RunRecorder.open({ runDir: join(root, 'rec'), runId: 'rec', config: {}, world: 1, gpu: false, tensorboard: false });
    assert.equal(writerAlive(join(root, 'rec')), true);
    await rec.close({ state: 'stopped', by: 'VS Code', reason: 'stopped at step 0' });
    assert.equal(writerAlive(join(root, 'rec')), false);
    const stopped = await summarizeRun(join(root, 'rec'));
    assert.equal(stopped.state, 'stopped');
    assert.equal(stopped.detail, 'stopped by VS Code');
  });
});

after(removeTempDirs);
