import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../runtime/model/backend';
import { AttentionCore, Dropout, Gelu, LayerNorm, Linear, type Layer } from '../../runtime/model/layers';
import { Block, Gpt, gpt2BlockLayers, type GptShape, type Recompute } from '../../runtime/model/gpt';
import { MemoryTracker } from '../../runtime/model/memory';
import type { ParamSpec } from '../../runtime/model/params';
import { setKernelFlavor, share } from '../../runtime/model/ops';
import { autodiffGrads, context, explicitGrads, MapSource, randomParams, randomValues, relError, withBackend } from './train/autodiff';

const TOL = 2e-5;

async function checkLayer(layer: Layer, xShape: number[], seq: number, dropout = 0, specs: ParamSpec[] = layer.paramSpecs()): Promise<void> {
  const values = randomParams(specs, 7);
  const x = randomValues(
    xShape.reduce((a, b) => a * b, 1),
    3,
  );
  // Output shape: run the forward once to learn it.
  const y = layer.forward(context(new MapSource(new Map(specs.map((s) => [s.name, tf.tensor(values.get(s.name)!, s.shape)]))), seq, dropout), tf.tensor(x, xShape), false).y;
  const dy = randomValues(y.size, 5);
  y.dispose();
  const ours = await explicitGrads(layer, specs, values, x, xShape, dy, seq, dropout);
  const ref = await autodiffGrads(layer, specs, values, x, xShape, dy, seq, dropout);
  const e = relError(ours.dx!, ref.dx!);
  assert.ok(e < TOL, `${layer.name}: input gradient relative error ${e.toExponential(2)}`);
  for (const s of specs) {
    const eg = relError(ours.grads.get(s.name)!, ref.grads.get(s.name)!);
    assert.ok(eg < TOL, `${s.name}: gradient relative error ${eg.toExponential(2)}`);
  }
}

const tinyShape: GptShape = { layers: 2, hidden: 12, heads: 3, vocab: 29, positions: 7, ffnHidden: 48, eps: 1e-5 };

async function modelGrads(shape: GptShape, recompute: Recompute, values: Map<string, Float32Array>, tokens: Int32Array, targets: Int32Array, seq: number, dropout: number) {
  const model = new Gpt(shape, recompute);
  const specs = model.paramSpecs();
  const params = new Map(specs.map((s) => [s.name, tf.tensor(values.get(s.name)!, s.shape)]));
  const ctx = context(new MapSource(params), seq, dropout);
  const tok = tf.tensor1d(tokens, 'int32');
  const tgt = tf.tensor1d(targets, 'int32');
  const { loss, state } = model.forward(ctx, tok, tgt, true);
  const grads = new Map<string, tf.Tensor>();
  model.backward(ctx, state!, 1, (name, g) => {
    const prev = grads.get(name);
    grads.set(name, prev ? tf.add(prev, g) : g);
    if (prev) {
      prev.dispose();
      g.dispose();
    }
  });
  const out = { loss: (await loss.data())[0]!, grads: new Map<string, Float32Array>() };
  for (const [n, g] of grads) out.grads.set(n, (await g.data()) as Float32Array);
  tf.dispose([loss, tok, tgt, ...grads.values(), ...params.values()]);
  return out;
}

async function modelAutodiff(shape: GptShape, values: Map<string, Float32Array>, tokens: Int32Array, targets: Int32Array, seq: number, dropout: number) {
  return withBackend('cpu', 'portable', async () => {
    const model = new Gpt(shape, 'none');
    const names = model.paramSpecs().map((s) => s.name);
    const params = model.paramSpecs().map((s) => tf.tensor(values.get(s.name)!, s.shape));
    const tok = tf.tensor1d(tokens, 'int32');
    const tgt = tf.tensor1d(targets, 'int32');
    const f = (...p: tf.Tensor[]): tf.Scalar => model.forward(context(new MapSource(new Map(names.map((n, i) => [n, p[i]!]))), seq, dropout), tok, tgt, false).loss;
    const { value, grads } = tf.valueAndGrads(f)(params);
    const out = { loss: value.dataSync()[0]!, grads: new Map(names.map((n, i) => [n, grads[i]!.dataSync() as Float32Array])) };
    tf.dispose([value, ...grads, ...params, tok, tgt]);
    return out;
  });
}

function batch(vocab: number, rows: number, seed: number): Int32Array {
  const r = randomValues(rows, seed);
  return Int32Array.from(r, (v) => Math.abs(Math.floor(v * 1000)) % vocab);
}

describe("model: each layer's explicit backward matches tfjs autodiff of its forward", function () {
  before(async () => {
    await initBackend('wasm');
  });

  it('Linear (HF Conv1D layout)', async () => checkLayer(new Linear('l', 5, 7), [12, 5], 12));
  it('LayerNorm', async () => checkLayer(new LayerNorm('ln', 9), [6, 9], 6));
  it('GELU (tanh approximation)', async () => checkLayer(new Gelu('g'), [4, 11], 4));
  it('causal attention core, 3 heads', async () => checkLayer(new AttentionCore('a', 3, 4), [2 * 5, 3 * 12], 5));
  it('causal attention core with selective recompute', async () => checkLayer(new AttentionCore('a', 3, 4, true), [2 * 5, 3 * 12], 5));
  it('causal attention core with attention dropout', async () => checkLayer(new AttentionCore('a', 2, 3), [3 * 4, 3 * 6], 4, 0.3));
  it('dropout', async () => checkLayer(new Dropout('d'), [5, 7], 5, 0.25));
  it('a whole transformer block', async () => {
    const block = new Block('h.0', gpt2BlockLayers(0, { ...tinyShape, layers: 1 }, 'none'));
    const layer: Layer = {
      name: 'h.0',
      paramSpecs: () => block.paramSpecs(),
      forward: (ctx, x, save) => block.forward(ctx, x, save),
      backward: (ctx, dy, saved) => {
        const grads: [string, tf.Tensor][] = [];
        const dx = block.backward(ctx, dy, saved as never, (n, g) => grads.push([n, g]));
        return { dx, grads };
      },
    };
    await checkLayer(layer, [2 * 7, 12], 7);
  });
});

describe('model: whole GPT-2 backward matches autodiff', function () {
  before(async () => {
    await initBackend('wasm');
  });
  const seq = 7;
  const rows = 2 * seq;
  const tokens = batch(tinyShape.vocab, rows, 11);
  const targets = batch(tinyShape.vocab, rows, 12);
  const values = randomParams(new Gpt(tinyShape).paramSpecs(), 3);

  for (const recompute of ['none', 'selective', 'full'] as const) {
    it(`loss and every parameter gradient, recompute=${recompute}`, async () => {
      const ours = await modelGrads(tinyShape, recompute, values, tokens, targets, seq, 0);
      const ref = await modelAutodiff(tinyShape, values, tokens, targets, seq, 0);
      assert.ok(Math.abs(ours.loss - ref.loss) / ref.loss < 1e-6, `loss ${ours.loss} vs ${ref.loss}`);
      for (const [name, g] of ref.grads) {
        const e = relError(ours.grads.get(name)!, g);
        assert.ok(e < TOL, `${name}: relative error ${e.toExponential(2)}`);
      }
    });
  }

  it('with dropout, full recompute replays the same masks', async () => {
    const a = await modelGrads(tinyShape, 'none', values, tokens, targets, seq, 0.2);
    const b = await modelGrads(tinyShape, 'full', values, tokens, targets, seq, 0.2);
    const ref = await modelAutodiff(tinyShape, values, tokens, targets, seq, 0.2);
    assert.ok(Math.abs(a.loss - ref.loss) / ref.loss < 1e-6);
    for (const [name, g] of ref.grads) {
      assert.ok(relError(a.grads.get(name)!, g) < TOL, `${name} (no recompute)`);
      assert.ok(relError(b.grads.get(name)!, g) < TOL, `${name} (full recompute)`);
    }
  });

  it("a shorter sequence than the model's positions trains positions 0..T-1 only", async () => {
    const T = 4;
    const ours = await modelGrads(tinyShape, 'none', values, tokens.slice(0, 2 * T), targets.slice(0, 2 * T), T, 0);
    const ref = await modelAutodiff(tinyShape, values, tokens.slice(0, 2 * T), targets.slice(0, 2 * T), T, 0);
    for (const [name, g] of ref.grads) assert.ok(relError(ours.grads.get(name)!, g) < TOL, name);
    assert.ok(
      ours.grads
        .get('wpe.weight')!
        .slice(T * tinyShape.hidden)
        .every((v) => v === 0),
    );
  });
});

describe('model: the portable kernels (webgpu, tfjs-node) also match autodiff, run here on wasm', function () {
  before(async () => {
    await initBackend('wasm');
    setKernelFlavor('portable');
  });
  after(() => setKernelFlavor('wasm'));

  it('Linear', async () => checkLayer(new Linear('l', 5, 7), [12, 5], 12));
  it('causal attention core (batched matmuls)', async () => checkLayer(new AttentionCore('a', 3, 4), [2 * 5, 3 * 12], 5));
  it('the whole model', async () => {
    const seq = 7;
    const tokens = batch(tinyShape.vocab, 2 * seq, 21);
    const targets = batch(tinyShape.vocab, 2 * seq, 22);
    const values = randomParams(new Gpt(tinyShape).paramSpecs(), 4);
    const ours = await modelGrads(tinyShape, 'none', values, tokens, targets, seq, 0);
    const ref = await modelAutodiff(tinyShape, values, tokens, targets, seq, 0);
    assert.ok(Math.abs(ours.loss - ref.loss) / ref.loss < 1e-6);
    for (const [name, g] of ref.grads) assert.ok(relError(ours.grads.get(name)!, g) < TOL, name);
  });
});

describe('model: memory accounting', function () {
  before(async () => {
    await initBackend('wasm');
  });

  it('counts a buffer once however many tensors share it, and frees it with the last', () => {
    const tracker = new MemoryTracker().install();
    try {
      tracker.beginStep(1);
      const a = tf.zeros([1024, 1024]);
      const b = share(a);
      const c = tf.reshape(a, [1024 * 1024]);
      assert.equal(tracker.current().total, 4 * 2 ** 20);
      a.dispose();
      b.dispose();
      assert.equal(tracker.current().total, 4 * 2 ** 20);
      c.dispose();
      assert.equal(tracker.current().total, 0);
      assert.equal(tracker.stepMemory().peak, 4 * 2 ** 20);
    } finally {
      tracker.dispose();
    }
  });

  it('raises an out-of-memory error naming the step, layer and breakdown past the capacity', () => {
    const tracker = new MemoryTracker().install();
    try {
      tracker.capacity = 1e6;
      tracker.where = { step: 3, phase: 'forward', layer: 'h.1.mlp.c_fc' };
      const keep = tf.zeros([100_000]);
      tracker.tag(keep, 'params');
      assert.throws(
        () => tf.tidy(() => tf.zeros([200_000])),
        (e: Error) => e.name === 'DeviceOutOfMemoryError' && /step 3, forward of h\.1\.mlp\.c_fc/.test(e.message) && /params 390\.63 KiB/.test(e.message),
      );
      keep.dispose();
      assert.equal(tracker.current().total, 0, 'the failed allocation was freed by tidy');
    } finally {
      tracker.dispose();
    }
  });
});
