// Protocol v1: every message round-trips through the wire encoding; invalid ones are rejected whole,
// with a reason naming the field.
import assert from 'node:assert/strict';
import {
  decodeClientMessage,
  decodeMessage,
  decodeServerMessage,
  encodeMessage,
  gaugeKey,
  isGauge,
  MESSAGE_TYPES,
  PROTOCOL_VERSION,
  tokenFromFragment,
  validateMessage,
  validateServerMessage,
  webSocketProtocols,
  type Message,
  type SnapshotMessage,
} from '../../common/protocol';

const t = 1_790_000_000_000;
const memory = { params: 1, grads: 2, optimizer: 3, activations: 4, peak: 10 };

const EXAMPLES: { [K in Message['type']]: Extract<Message, { type: K }> } = {
  hello: {
    type: 'hello',
    protocol: 1,
    runId: 'tiny-20260101-120000',
    name: 'tiny',
    startedAt: t,
    world: 2,
    config: { model: { preset: 'tiny', layers: 4 }, parallel: { dp: 2 } },
    plan: { perRank: [{ params: 1, peak: 9 }], stepMs: 12.5 },
    t,
  },
  status: { type: 'status', state: 'failed', t, step: 12, error: { message: 'rank 1: out of memory', kind: 'DeviceOutOfMemoryError' } },
  step: { type: 'step', step: 3, loss: 4.25, lr: 3e-4, gradNorm: 0.9, tokensPerSec: 12_000, stepMs: 85.5, memory: { ...memory, temporaries: 5 }, tokens: 4096, t },
  eval: { type: 'eval', step: 50, loss: 3.9, t },
  memory: { type: 'memory', rank: 1, t, step: 3, categories: { params: 1, grads: 2 }, stepPeak: 10, capacity: 2 ** 31, predicted: { params: 1, peak: 9 }, device: 'cpu:1' },
  gpu: {
    type: 'gpu',
    t,
    devices: [
      {
        index: 0,
        uuid: 'GPU-1',
        name: 'NVIDIA H200',
        memoryUsed: 32362 * 2 ** 20,
        memoryTotal: 143771 * 2 ** 20,
        memoryReserved: 614 * 2 ** 20,
        utilPercent: 100,
        temperatureC: 52,
        powerW: 627.4,
        powerLimitW: 700,
        smClockMHz: 1980,
        processes: [
          { pid: 10309, memory: 28234 * 2 ** 20, name: './gpu_burn', rank: 0 },
          { pid: 7, memory: null },
        ],
        ranks: [0],
      },
      {
        index: 1,
        uuid: 'GPU-2',
        name: 'NVIDIA H200',
        memoryUsed: null,
        memoryTotal: null,
        memoryReserved: null,
        utilPercent: null,
        temperatureC: null,
        powerW: null,
        powerLimitW: null,
        smClockMHz: null,
        lost: true,
        processes: [],
      },
    ],
  },
  comm: {
    type: 'comm',
    rank: 0,
    t,
    step: 3,
    collectives: [
      { kind: 'all-reduce', calls: 12, bytes: 1 << 20, ms: 3.5 },
      { kind: 'reduce-scatter', calls: 1, bytes: 10, ms: 0 },
    ],
  },
  log: { type: 'log', level: 'warn', message: 'slow step', t, rank: 1, source: 'trainer' },
  alert: { type: 'alert', id: 'memory-high:rank1', kind: 'memory-high', severity: 'warning', state: 'raised', message: 'rank 1 peak memory is 92%', t, rank: 1, step: 3, timeToFullSec: 42 },
  checkpoint: { type: 'checkpoint', step: 100, path: 'checkpoints/step-100.safetensors', bytes: 123456, t },
};

function rejects(msg: unknown, pattern: RegExp): void {
  const r = validateMessage(msg);
  assert.ok(!r.ok, `expected a rejection for ${JSON.stringify(msg)}`);
  assert.match(r.reason, pattern);
}

describe('protocol v1', () => {
  it('has an example of every message type', () => {
    assert.deepEqual(Object.keys(EXAMPLES).sort(), [...MESSAGE_TYPES].sort());
    assert.equal(PROTOCOL_VERSION, 1);
  });

  for (const [type, example] of Object.entries(EXAMPLES)) {
    it(`${type}: round-trips through encode/decode unchanged`, () => {
      const r = decodeMessage(encodeMessage(example));
      assert.ok(r.ok, r.ok ? '' : r.reason);
      assert.deepEqual(r.value, example);
    });
  }

  it('the trainer contract step record (no t, no tokens) is a valid step message', () => {
    const r = validateMessage({ type: 'step', step: 0, loss: 10.9, lr: 0, gradNorm: 3.2, tokensPerSec: 0, stepMs: 120, memory });
    assert.ok(r.ok);
  });

  it('non-finite floats travel as "NaN"/"Infinity" and come back as numbers', () => {
    const text = encodeMessage({ ...EXAMPLES.step, loss: NaN, gradNorm: Infinity, lr: -Infinity });
    assert.match(text, /"loss":"NaN".*"gradNorm":"Infinity"/);
    const r = decodeMessage(text);
    assert.ok(r.ok && r.value.type === 'step');
    assert.ok(Number.isNaN(r.value.loss));
    assert.equal(r.value.gradNorm, Infinity);
    assert.equal(r.value.lr, -Infinity);
    rejects({ ...EXAMPLES.step, loss: 'nan' }, /loss: must be a number/);
  });

  it('rejects with a reason naming the field', () => {
    rejects(null, /must be an object/);
    rejects({ type: 'stepz' }, /type: must be one of hello, status, step/);
    rejects({ ...EXAMPLES.step, step: -1 }, /step: must be between 0/);
    rejects({ ...EXAMPLES.step, step: 1.5 }, /step: must be a whole number/);
    rejects({ ...EXAMPLES.step, memory: { ...memory, peak: -1 } }, /memory\.peak: must be between 0/);
    rejects({ ...EXAMPLES.step, memory: { params: 1, grads: 2, optimizer: 3, activations: 4 } }, /memory\.peak: is required/);
    rejects({ ...EXAMPLES.step, memory: { ...memory, atPeak: { params: 1 } } }, /memory\.atPeak: must be a whole number/);
    rejects({ ...EXAMPLES.step, evilField: 1 }, /evilField: is not a field of this message/);
    rejects({ ...EXAMPLES.step, lr: undefined }, /lr: is required/);
    rejects({ ...EXAMPLES.hello, protocol: 2 }, /protocol: must be 1/);
    rejects({ ...EXAMPLES.hello, runId: '../etc' }, /runId: does not match/);
    rejects({ ...EXAMPLES.hello, config: [] }, /config: must be an object/);
    rejects({ ...EXAMPLES.status, state: 'running' }, /error: is only allowed when state is "failed"/);
    rejects({ type: 'status', state: 'failed', t }, /error: is required when state is "failed"/);
    rejects({ ...EXAMPLES.status, state: 'exploded' }, /state: must be one of starting, running, checkpointing, stopping, finished, stopped, failed, crashed/);
    rejects({ ...EXAMPLES.gpu, devices: [{ ...EXAMPLES.gpu.devices[0]!, utilPercent: NaN }] }, /devices\[0\]\.utilPercent: must be a finite number/);
    rejects({ ...EXAMPLES.gpu, devices: [{ ...EXAMPLES.gpu.devices[0]!, processes: [{ pid: -3, memory: 1 }] }] }, /devices\[0\]\.processes\[0\]\.pid/);
    rejects({ ...EXAMPLES.comm, collectives: [{ kind: 'All Reduce', calls: 1, bytes: 1, ms: 1 }] }, /collectives\[0\]\.kind: does not match/);
    rejects({ ...EXAMPLES.log, level: 'fatal' }, /level: must be one of debug, info, warn, error/);
    rejects({ ...EXAMPLES.log, message: 'x'.repeat(20_000) }, /message: is longer than 16384/);
    rejects({ ...EXAMPLES.alert, kind: 'meh' }, /kind: must be one of memory-high/);
    rejects({ ...EXAMPLES.checkpoint, path: '../../etc/passwd' }, /path: does not match/);
    rejects({ ...EXAMPLES.checkpoint, path: '/etc/passwd' }, /path: does not match/);
    rejects({ ...EXAMPLES.memory, categories: { 'bad key!': 1 } }, /categories\.bad key!: is not a valid category name/);
  });

  it('hello carries the engine and the backend the ranks train on; an unknown engine or an empty backend name is refused', () => {
    const hello = { ...EXAMPLES.hello, engine: { name: 'torch', reason: 'devices.engine is "torch"' }, backend: { name: 'cuda', label: 'cuda (NVIDIA H200) nccl', reason: 'requested' } };
    const back = decodeMessage(encodeMessage(hello as Message));
    assert.ok(back.ok);
    assert.deepEqual(back.value, hello);
    rejects({ ...hello, engine: { name: 'tpu', reason: 'x' } }, /engine\.name: must be one of local, torch/);
    rejects({ ...hello, backend: { name: '', label: 'x' } }, /backend\.name/);
  });

  it('lifecycle: "done" from older runtimes reads as finished, or stopped when its reason says so; who stopped is kept', () => {
    const read = (v: object) => {
      const r = validateMessage(v);
      assert.ok(r.ok && r.value.type === 'status', JSON.stringify(r));
      return r.value;
    };
    assert.equal(read({ type: 'status', state: 'done', t, step: 9 }).state, 'finished');
    assert.equal(read({ type: 'status', state: 'done', t, step: 4, reason: 'stopped at step 4' }).state, 'stopped');
    const s = read({ type: 'status', state: 'stopped', t, step: 4, by: 'VS Code' });
    assert.equal(s.by, 'VS Code');
    assert.equal(read({ type: 'status', state: 'failed', t, error: { message: 'boom', rank: 3 } }).error!.rank, 3);
    assert.ok(!validateMessage({ type: 'status', state: 'done', t, error: { message: 'x' } }).ok, 'a legacy done is still not a failure');
  });

  it('rejects opaque JSON that is not plain data, too deep, or with non-finite numbers', () => {
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 40; i++) deep = (deep.x = {}) as Record<string, unknown>;
    rejects({ ...EXAMPLES.hello, config: root }, /nests deeper than 32/);
    rejects({ ...EXAMPLES.hello, config: { when: new Date() } }, /config\.when: is not JSON data|config\.when: must be/);
    rejects({ ...EXAMPLES.hello, plan: { x: Infinity } }, /plan\.x: must be a finite number/);
  });

  it('returns a fresh copy: later changes to the input cannot reach what was validated, and the input is untouched', () => {
    const input = structuredClone(EXAMPLES.memory);
    const r = validateMessage(input);
    assert.ok(r.ok);
    input.categories.params = 999;
    assert.equal((r.value as typeof input).categories.params, 1);
    assert.deepEqual(input.categories, { params: 999, grads: 2 });
  });

  it('a snapshot is valid only if every message inside it is', () => {
    const snap: SnapshotMessage = {
      type: 'snapshot',
      protocol: 1,
      runId: 'r',
      readOnly: false,
      hello: EXAMPLES.hello,
      status: null,
      steps: [EXAMPLES.step],
      stepsTotal: 1,
      evals: [EXAMPLES.eval],
      memory: [EXAMPLES.memory],
      gpu: [EXAMPLES.gpu],
      comm: [EXAMPLES.comm],
      logs: [EXAMPLES.log],
      alerts: [EXAMPLES.alert],
      checkpoints: [EXAMPLES.checkpoint],
      runs: [{ runId: 'r', name: 'r', startedAt: t, state: 'running', steps: 1 }],
      t,
    };
    const ok = decodeServerMessage(encodeMessage(snap));
    assert.ok(ok.ok);
    assert.deepEqual(ok.value, snap);
    const bad = validateServerMessage({ ...snap, steps: [EXAMPLES.step, { ...EXAMPLES.step, step: -5 }] });
    assert.ok(!bad.ok && /steps\[1\]\.step/.test(bad.reason));
    const wrongKind = validateServerMessage({ ...snap, steps: [EXAMPLES.eval] });
    assert.ok(!wrongKind.ok && /steps\[0\]\.type: must be "step"/.test(wrongKind.reason));
  });

  it('client messages: only a well-formed control message is accepted', () => {
    assert.deepEqual(decodeClientMessage('{"type":"control","id":"c1","action":"stop"}'), { ok: true, value: { type: 'control', id: 'c1', action: 'stop' } });
    const notJson = decodeClientMessage('{"type":');
    assert.ok(!notJson.ok && /^not valid JSON/.test(notJson.reason));
    for (const bad of [
      '{"type":"control","id":"c1","action":"shutdown"}',
      '{"type":"control","id":"","action":"stop"}',
      '{"type":"control","id":"c1","action":"stop","force":true}',
      '{"type":"step"}',
      '"stop"',
    ]) {
      assert.equal(decodeClientMessage(bad).ok, false, bad);
    }
  });

  it('gauges coalesce by kind and rank; events do not', () => {
    assert.ok(isGauge(EXAMPLES.gpu) && isGauge(EXAMPLES.memory) && isGauge(EXAMPLES.comm));
    assert.ok(!isGauge(EXAMPLES.step) && !isGauge(EXAMPLES.alert) && !isGauge(EXAMPLES.log));
    assert.equal(gaugeKey(EXAMPLES.memory), 'memory:1');
    assert.equal(gaugeKey(EXAMPLES.gpu), 'gpu');
  });

  it('browser helpers: the token from the URL fragment and the subprotocol list', () => {
    const token = 'ab'.repeat(32);
    assert.equal(tokenFromFragment(`#token=${token}`), token);
    assert.equal(tokenFromFragment('#token=short'), null);
    assert.equal(tokenFromFragment(''), null);
    assert.deepEqual(webSocketProtocols(token), ['scalelm.v1', `scalelm.token.${token}`]);
  });
});
