// The dashboard's pure core in Node (no browser): downsampling and smoothing, the run store, the
// host<->webview message validators and wire form, derived numbers, the planner form and saved state.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION, type CommMessage, type GpuMessage, type HelloMessage, type MemoryMessage, type StepMessage } from '../../common/protocol';
import { DebiasedEma, lttb, minMaxPerPixel } from '../../webview/downsample';
import { toWebview, validateHostMessage, validateWebviewMessage } from '../../webview/messages';
import { groupCategories, levelOf, predictionFor, progressOf } from '../../webview/metrics';
import { configPatch, currentLine, DEFAULT_FORM, formFromConfig, resolvePlan, sanitizeForm, search } from '../../webview/plan-form';
import { RunData } from '../../webview/store';
import { sanitizeState } from '../../webview/ui-state';
import { ROOT } from './harness';
import { estimate } from '../../runtime/planner/estimate';
import type { RunConfig } from '../../runtime/config/types';
import { readStream, snapshotOf } from './streams';

const step = (n: number, loss = 1, t = 1_000_000 + n * 1000): StepMessage => ({
  type: 'step',
  step: n,
  loss,
  lr: 1e-3,
  gradNorm: 1,
  tokensPerSec: 1000,
  stepMs: 1000,
  memory: { params: 1, grads: 1, optimizer: 1, activations: 1, peak: 4 },
  t,
});

describe('dashboard core: downsampling and smoothing', function () {
  const n = 1_000_000;
  const xs = new Float64Array(n);
  const ys = new Float64Array(n);
  const spikes: number[] = [];
  for (let i = 0; i < n; i++) {
    xs[i] = i;
    ys[i] = Math.sin(i / 1000) + (i % 7) * 0.01;
    if (i % 2017 === 1000) {
      ys[i] = 50 + (i % 13);
      spikes.push(i);
    }
  }

  it('min/max per pixel keeps every spike of a million points in at most two points per column', function () {
    const out = minMaxPerPixel(xs, ys, 0, n, 800);
    assert.ok(out.length <= 1600, `${out.length} points`);
    // 495 spikes land in 800 columns: every column with a spike keeps its maximum.
    const kept = new Set(out.filter((p) => p.y >= 50).map((p) => p.x));
    const columns = new Set(spikes.map((i) => Math.min(799, Math.floor((i / (n - 1)) * 800))));
    assert.equal(kept.size, columns.size, 'one spike kept per column that has one');
    assert.equal(Math.max(...out.map((p) => p.y)), Math.max(...spikes.map((i) => ys[i]!)));
    for (let k = 1; k < out.length; k++) assert.ok(out[k]!.x > out[k - 1]!.x, 'in x order');
  });

  it('min/max skips non-finite values and, on a log axis, values ≤ 0', function () {
    const x = Float64Array.from([1, 2, 3, 4, 5]);
    const y = Float64Array.from([1, NaN, -1, Infinity, 2]);
    assert.deepEqual(
      minMaxPerPixel(x, y, 0, 5, 10).map((p) => p.y),
      [1, -1, 2],
    );
    assert.deepEqual(
      minMaxPerPixel(x, y, 0, 5, 10, true).map((p) => p.y),
      [1, 2],
    );
  });

  it('LTTB returns the asked number of points, keeps both ends, and skips NaN', function () {
    const out = lttb(xs, ys, 0, n, 1000);
    assert.equal(out.length, 1000);
    assert.equal(out[0]!.x, 0);
    assert.equal(out.at(-1)!.x, n - 1);
    const y = Float64Array.from({ length: 100 }, (_, i) => (i === 50 ? NaN : i));
    const x = Float64Array.from({ length: 100 }, (_, i) => i);
    assert.ok(lttb(x, y, 0, 100, 20).every((p) => Number.isFinite(p.y)));
  });

  it('the debiased EMA starts at the first value, is exact on a constant, and extends incrementally', function () {
    const e = new DebiasedEma();
    const c = Float64Array.from({ length: 50 }, () => 3);
    assert.ok(Array.from(e.extend(c, 50, 0.9).subarray(0, 50)).every((v) => Math.abs(v - 3) < 1e-12));
    const y = Float64Array.from({ length: 1000 }, (_, i) => Math.sin(i) + i / 100);
    const full = Array.from(new DebiasedEma().extend(y, 1000, 0.8).subarray(0, 1000));
    const inc = new DebiasedEma();
    inc.extend(y, 400, 0.8);
    const parts = Array.from(inc.extend(y, 1000, 0.8).subarray(0, 1000));
    assert.deepEqual(parts, full);
    assert.equal(full[0], y[0]);
    const withNaN = Float64Array.from([NaN, 2, NaN, 4]);
    const s = Array.from(new DebiasedEma().extend(withNaN, 4, 0.5).subarray(0, 4));
    assert.ok(Number.isNaN(s[0]!));
    assert.equal(s[1], 2);
    assert.equal(s[2], 2);
  });
});

describe('dashboard core: the run store', function () {
  it('a resumed run replaces the steps from its checkpoint on', function () {
    const r = new RunData('r');
    for (let i = 1; i <= 10; i++) r.add(step(i, 10 - i));
    for (let i = 6; i <= 8; i++) r.add(step(i, 100 + i));
    assert.equal(r.steps.length, 8);
    assert.deepEqual(Array.from(r.steps.col('loss').subarray(4, 8)), [5, 106, 107, 108]);
  });

  it('turns cumulative collective totals into per-step cost averaged over the ranks', function () {
    const r = new RunData('r');
    r.add({ type: 'hello', protocol: PROTOCOL_VERSION, runId: 'r', name: 'r', startedAt: 0, world: 2, config: {} } as HelloMessage);
    const comm = (rank: number, s: number, ms: number, bytes: number): CommMessage => ({ type: 'comm', rank, t: s * 1000 + rank, step: s, collectives: [{ kind: 'all-reduce', calls: s, bytes, ms }] });
    r.add(comm(0, 10, 100, 1000));
    r.add(comm(1, 10, 120, 1000));
    r.add(comm(0, 20, 200, 3000));
    r.add(comm(1, 20, 260, 3000));
    const s = r.commSeries.get('all-reduce')!;
    assert.equal(s.step.length, 1);
    assert.equal(s.step.data[0], 20);
    assert.equal(s.msPerStep.data[0], (10 + 14) / 2);
    assert.equal(s.bytesPerStep.data[0], 200);
    assert.deepEqual(r.commTotals(), [{ kind: 'all-reduce', calls: 40, bytes: 6000, ms: 460 }]);
  });

  it('a snapshot fills the same store, and says when the server downsampled it', function () {
    const stream = readStream('tiny-cpu');
    const r = RunData.fromSnapshot(snapshotOf(stream));
    assert.equal(r.runId, 'tiny-cpu');
    assert.equal(r.steps.length, 120);
    assert.equal(r.downsampled, false);
    // The server keeps gauge history in 1 s buckets (min/max kept): fewer memory points than steps.
    const kept = r.memory.get(0)!.t.length;
    assert.ok(kept > 40 && kept <= 120, `${kept} memory readings`);
    assert.equal(r.backend, 'wasm');
    const many = [stream[0]!, ...Array.from({ length: 5000 }, (_, i) => step(i + 1, 3 + Math.sin(i)))];
    const d = RunData.fromSnapshot(snapshotOf(many));
    assert.ok(d.downsampled && d.steps.length < 5000 && d.stepsTotal === 5000);
  });

  it('groups ranks by the node they report from, and keeps each node\u2019s GPU sample', function () {
    const mem = (rank: number, peak: number, node?: { rank: number; host: string }): MemoryMessage => ({
      type: 'memory',
      rank,
      t: 1000 + rank,
      categories: { params: peak },
      stepPeak: peak,
      capacity: 100,
      ...(node ? { node } : {}),
      device: `GPU-${rank}`,
    });
    const gpu = (node: { rank: number; host: string } | undefined, uuids: string[]): GpuMessage => ({
      type: 'gpu',
      t: 2000,
      devices: uuids.map((uuid, index) => ({
        index,
        uuid,
        name: 'H200',
        memoryUsed: 1,
        memoryTotal: 2,
        memoryReserved: 0,
        utilPercent: 50,
        temperatureC: 40,
        powerW: 300,
        powerLimitW: 700,
        smClockMHz: 1980,
        processes: [],
        ranks: [index],
      })),
      ...(node ? { node } : {}),
    });
    // One machine: one group, node null, not multi-node; every GPU is every rank's.
    const one = new RunData('one');
    for (const r of [1, 0]) one.add(mem(r, 10 + r));
    one.add(gpu(undefined, ['GPU-0', 'GPU-1']));
    assert.equal(one.multiNode, false);
    assert.deepEqual(
      one.nodeGroups().map((g) => [g.key, g.node, g.ranks]),
      [['', null, [0, 1]]],
    );
    assert.equal(one.gpusOf(1).length, 2);
    // Two nodes reporting out of order: groups in node-rank order, ranks ascending, the fullest rank, sums.
    const b = { rank: 1, host: 'b' };
    const a = { rank: 0, host: 'a' };
    const two = new RunData('two');
    two.add(mem(3, 95, b));
    two.add(mem(0, 40, a));
    two.add(mem(2, 30, b));
    two.add(mem(1, 70, a));
    two.add(gpu(b, ['GPU-2', 'GPU-3']));
    two.add(gpu(a, ['GPU-0', 'GPU-1']));
    assert.equal(two.multiNode, true);
    const groups = two.nodeGroups();
    assert.deepEqual(
      groups.map((g) => [g.key, g.node?.host, g.ranks, g.worstRank, g.worstFraction, g.peak, g.capacity]),
      [
        ['node-0', 'a', [0, 1], 1, 0.7, 110, 200],
        ['node-1', 'b', [2, 3], 3, 0.95, 125, 200],
      ],
    );
    // A rank's GPUs are its own node's (device index 0 there is GPU-2, not node 0's GPU-0).
    assert.deepEqual(
      two.gpusOf(2).map((d) => d.uuid),
      ['GPU-2', 'GPU-3'],
    );
    assert.deepEqual(
      two.gpusOf(0).map((d) => d.uuid),
      ['GPU-0', 'GPU-1'],
    );
    assert.deepEqual(
      groups[1]!.gpus.map((d) => d.uuid),
      ['GPU-2', 'GPU-3'],
    );
    // A newer sample of node b replaces only node b's.
    two.add(gpu(b, ['GPU-2']));
    assert.deepEqual(
      two.nodeGroups().map((g) => g.gpus.length),
      [2, 1],
    );
    // A node whose sampler sent nothing yet has no GPUs: not another node's, whose UUIDs may be the same
    // (a cloned driver, the fake nvidia-smi), which a rank's device would then match.
    two.add(mem(4, 10, { rank: 2, host: 'c' }));
    assert.deepEqual(two.gpusOf(4), []);
    // A rank without node info next to one machine's sample: that machine's; next to several: none.
    const mixed = new RunData('mixed');
    mixed.add(mem(0, 10));
    mixed.add(gpu(a, ['GPU-0']));
    assert.deepEqual(
      mixed.gpusOf(0).map((d) => d.uuid),
      ['GPU-0'],
    );
    mixed.add(gpu(b, ['GPU-0']));
    assert.deepEqual(mixed.gpusOf(0), []);
  });
});

describe('dashboard core: host <-> webview messages', function () {
  it('validates protocol messages, batches one by one, and the extra host messages', function () {
    assert.ok(validateHostMessage(step(1)).ok);
    const bad = validateHostMessage({ ...step(1), loss: 'lots' });
    assert.ok(!bad.ok && /loss/.test(bad.reason));
    const batch = validateHostMessage({ type: 'batch', runId: 'r1', messages: [step(1), { type: 'eval', step: 'x' }, step(2)] });
    assert.ok(batch.ok && batch.value.type === 'batch' && batch.value.messages.length === 2);
    assert.equal(batch.dropped!.length, 1);
    assert.match(batch.dropped![0]!, /^batch\.messages\[1\]: step/);
    assert.ok(validateHostMessage({ type: 'runs', runs: [{ runId: 'a', name: 'A', startedAt: 1, state: 'done', steps: 3 }], current: 'a', live: [] }).ok);
    assert.ok(!validateHostMessage({ type: 'runs', runs: [{ runId: '../x', name: 'A', startedAt: 1, state: 'done', steps: 3 }] }).ok);
    assert.ok(validateHostMessage({ type: 'plannerInput', source: 'a.scalelm.json', config: { model: { preset: 'gpt2' } } }).ok);
    assert.ok(!validateHostMessage({ type: 'plannerInput', source: 'a', config: [] }).ok);
    assert.ok(validateHostMessage({ type: 'ping', id: 3 }).ok);
    assert.ok(!validateHostMessage({ type: 'launchMissiles' }).ok);
    assert.ok(validateHostMessage({ type: 'connection', state: 'waiting', detail: 'retrying' }).ok);
  });

  it('toWebview spells NaN so it survives postMessage (JSON) and comes back as NaN', function () {
    const m = toWebview({ ...step(1), loss: NaN, gradNorm: Infinity });
    const json = JSON.parse(JSON.stringify(m)) as unknown;
    const r = validateHostMessage(json);
    assert.ok(r.ok && r.value.type === 'step' && Number.isNaN(r.value.loss) && r.value.gradNorm === Infinity);
  });

  it('checks what the webview posts before the host acts on it', function () {
    const layout = { dp: 8, tp: 1, pp: 1, vpp: 1, zero: 1, microBatch: 2, recompute: 'none', sequenceParallel: false, offloadOptimizer: false, offloadParams: false };
    assert.ok(validateWebviewMessage({ type: 'chooseLayout', layout, source: 'a.scalelm.json', configPatch: { parallel: { dp: 8 } }, summary: 's' }).ok);
    assert.ok(!validateWebviewMessage({ type: 'chooseLayout', layout: { ...layout, zero: 5 }, source: null, configPatch: {}, summary: 's' }).ok);
    assert.ok(validateWebviewMessage({ type: 'control', id: 'stop-1', action: 'stop' }).ok);
    assert.ok(!validateWebviewMessage({ type: 'control', id: 'stop-1', action: 'rm -rf' }).ok);
    // The page's size rides on ready (the host maximises a dashboard too small to read); a bad size is dropped, the ready kept.
    assert.deepEqual(validateWebviewMessage({ type: 'ready', viewport: { width: 530, height: 700 } }), { ok: true, value: { type: 'ready', viewport: { width: 530, height: 700 } } });
    assert.deepEqual(validateWebviewMessage({ type: 'ready', viewport: { width: 'wide', height: 700 } }), { ok: true, value: { type: 'ready' } });
    assert.deepEqual(validateWebviewMessage({ type: 'ready', viewport: { width: -1, height: Infinity } }), { ok: true, value: { type: 'ready' } });
    assert.ok(validateWebviewMessage({ type: 'selectRun', runId: 'run-1' }).ok);
    assert.ok(!validateWebviewMessage({ type: 'selectRun', runId: '' }).ok);
  });

  it('every webview message is checked whole by the combinators: a chooseLayout patch, an inspect result, a pong', function () {
    const layout = { dp: 8, tp: 1, pp: 1, vpp: 1, zero: 1, microBatch: 2, recompute: 'none', sequenceParallel: false, offloadOptimizer: false, offloadParams: false };
    const choose = (configPatch: unknown, over: object = {}) => validateWebviewMessage({ type: 'chooseLayout', layout, source: 'a.scalelm.json', configPatch, summary: 's', ...over });
    assert.ok(choose({ parallel: { dp: 8 }, train: { microBatch: 2 }, cluster: { nodes: 1 } }).ok);
    const section = choose({ monitor: { host: '0.0.0.0' } });
    assert.ok(!section.ok && /configPatch\.monitor: is not a section a layout changes/.test(section.reason), JSON.stringify(section));
    const dotted = choose({ parallel: { 'dp.x': 1 } });
    assert.ok(!dotted.ok && /is not a config field name/.test(dotted.reason));
    assert.ok(!choose([1]).ok, 'a patch is an object');
    assert.ok(!choose({ parallel: { dp: 8 } }, { layout: { ...layout, recompute: 'sometimes' } }).ok);
    assert.ok(!choose({ parallel: { dp: 8 } }, { extra: true }).ok, 'unknown keys are refused');
    assert.ok(!validateWebviewMessage({ type: 'pong', id: 1, components: [1], chartInk: 0 }).ok);
    assert.ok(!validateWebviewMessage({ type: 'inspectResult', id: 1, tab: 'curves' }).ok, 'an inspect result is checked field by field, not cast');
    const unknown = validateWebviewMessage({ type: 'launchMissiles' });
    assert.ok(!unknown.ok && /unknown webview message type "launchMissiles"/.test(unknown.reason));
    assert.ok(!validateHostMessage({ type: 'runs', runs: [], surprise: 1 }).ok, 'host messages too: unknown keys are refused');
  });
});

describe('dashboard core: derived numbers', function () {
  it('memory categories, thresholds, and where a prediction comes from', function () {
    const g = groupCategories({ params: 1, grads: 2, optimizer: 3, activations: 4, comm: 5, temporaries: 6, overhead: 7, peak: 99, total: 100 });
    assert.deepEqual(g.bytes, { params: 1, grads: 2, optimizer: 3, activations: 4, buffers: 5, other: 13 });
    assert.deepEqual(g.parts.other, ['temporaries', 'overhead']);
    assert.equal(levelOf(0.79), 'ok');
    assert.equal(levelOf(0.8), 'warn');
    assert.equal(levelOf(0.92), 'critical');
    const stream = readStream('tiny-cpu');
    const run = RunData.fromSnapshot(snapshotOf(stream));
    const mem = run.memory.get(0)!.latest;
    const p = predictionFor(run, mem)!;
    assert.equal(p.source, 'planner, runtime convention');
    assert.ok(Math.abs(p.bytes.activations - mem.categories.activations!) / mem.categories.activations! < 0.1, 'the runtime convention predicts the measured activations within 10%');
    // "other" is the runtime convention's overhead term (the loss's transient logits), never its total.
    const planned = estimate(run.hello!.config as unknown as RunConfig, { convention: 'runtime' });
    assert.ok(planned.ok);
    assert.equal(p.bytes.other, planned.memory.perDevice.overhead, 'other is the planner’s overhead, not its total');
    assert.ok(p.bytes.other < planned.memory.perDevice.total);
    assert.equal(p.total, p.bytes.params + p.bytes.grads + p.bytes.optimizer + p.bytes.activations + p.bytes.buffers + p.bytes.other);
    const withPredicted: MemoryMessage = { ...mem, predicted: { params: 5, activations: 7, peak: 20 } };
    assert.equal(predictionFor(run, withPredicted)!.source, 'runtime');
  });

  it('progress: ETA from the recent step time, FLOP/s from the planner\u2019s accounting', function () {
    const stream = readStream('tiny-cpu');
    const hello = stream[0] as HelloMessage;
    const live = stream.filter((m) => m.type !== 'status' || m.state === 'running').slice(0, 120);
    const run = new RunData('tiny-cpu');
    for (const m of live) run.add(m);
    const p = progressOf(run, run.lastT + 500);
    const steps = live.filter((m): m is StepMessage => m.type === 'step');
    const last = steps.at(-1)!;
    const recent = steps.slice(-20);
    const stepMs = recent.reduce((s, m) => s + m.stepMs, 0) / recent.length;
    assert.equal(p.step, last.step);
    assert.equal(p.total, (hello.config as { train: { steps: number } }).train.steps);
    assert.ok(Math.abs(p.etaMs! - (p.total! - last.step) * stepMs) < 1e-6);
    assert.equal(p.elapsedMs, run.lastT + 500 - hello.startedAt);
    assert.ok(p.flopsPerDevice! > 1e9 && p.flopsPerDevice! < 1e12, `${p.flopsPerDevice} FLOP/s on a CPU`);
    assert.equal(p.mfu, null, 'no MFU without a GPU peak');
  });
});

describe('dashboard core: planner form and saved state', function () {
  it('plans a preset, a pasted HuggingFace config, and an open *.scalelm.json', function () {
    const preset = resolvePlan({ ...DEFAULT_FORM, modelSource: 'preset', preset: 'gpt2', gpusPerNode: 4, nodes: 1 }, null);
    assert.ok(preset.ok);
    assert.equal(preset.config.train.globalBatch, 4 * Math.ceil(2 ** 20 / (4 * 1024)));
    const found = search(preset.config, 5);
    assert.ok(found.ok && found.candidates.length === 5);
    const hfText = readFileSync(join(ROOT, 'examples/hf/llama-3-8b.config.json'), 'utf8');
    const hf = resolvePlan({ ...DEFAULT_FORM, modelSource: 'hf', hfText }, null);
    assert.ok(hf.ok && hf.config.model.layers === 32 && hf.notes.some((n) => /HuggingFace llama/.test(n)));
    const bad = resolvePlan({ ...DEFAULT_FORM, modelSource: 'hf', hfText: '{"model_type": "bert"}' }, null);
    assert.ok(!bad.ok && /not supported/.test(bad.errors[0]!.message));
    const file = JSON.parse(readFileSync(join(ROOT, 'examples/llama-2-70b-h100.scalelm.json'), 'utf8')) as Record<string, unknown>;
    const form = formFromConfig(file);
    assert.equal(form.gpu, 'H100-SXM');
    assert.equal(form.nodes, 16);
    assert.equal(form.globalBatch, 512);
    const open = resolvePlan(form, file);
    assert.ok(open.ok);
    // The Planner tab says where the open config's own layout ranks against #1.
    assert.deepEqual([open.current?.dp, open.current?.tp, open.current?.pp, open.current?.vpp], [4, 8, 4, 5]);
    assert.match(currentLine(search(open.config, 3, open.current))!, /^Your layout \(dp4·tp8·pp4 v5 · ZeRO-1 · mb 1 · recompute selective · SP\) ranks #\d+ of \d+: \d+% slower than #1/);
    const best = search(open.config, 3).candidates[0]!;
    const patch = configPatch(best.layout, open.config) as { parallel: { dp: number; tp: number; pp: number }; cluster: { nodes: number } };
    assert.equal(patch.parallel.dp * patch.parallel.tp * patch.parallel.pp, 128);
    assert.equal(patch.cluster.nodes, 16);
    const none = resolvePlan({ ...DEFAULT_FORM, modelSource: 'config' }, null);
    assert.ok(!none.ok && /no config is open/.test(none.errors[0]!.message));
  });

  it('plans a run\u2019s resolved config (what the browser has)', function () {
    const hello = readStream('tiny-cpu')[0] as HelloMessage;
    const r = resolvePlan(formFromConfig(hello.config), hello.config);
    assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
    assert.equal(r.config.model.layers, 4);
  });

  it('reads back saved state defensively', function () {
    assert.deepEqual(sanitizeState(undefined).tab, 'curves');
    const s = sanitizeState({ tab: 'memory', zoom: { from: 5, to: 2 }, smoothing: 7, logScale: true, xAxis: 'parsecs', planner: { gpu: 'H200', nodes: -1 } });
    assert.equal(s.tab, 'memory');
    assert.equal(s.zoom, null);
    assert.equal(s.smoothing, 0.6);
    assert.equal(s.logScale, true);
    assert.equal(s.xAxis, 'step');
    assert.equal(s.planner.gpu, 'H200');
    assert.equal(s.planner.nodes, 1);
    assert.equal(sanitizeForm({ preset: 'no-such-model' }).preset, DEFAULT_FORM.preset);
  });
});
