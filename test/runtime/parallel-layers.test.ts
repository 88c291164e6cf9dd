// Tensor-parallel layers against the tp = 1 layers, Megatron's way: the full weights are drawn once and
// sliced, each rank's outputs and gradients must equal the matching slice of the single-device ones.
// Dimensions like 13·tp and 17·tp; cross entropy with logits scaled by 1000; the padded vocabulary.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { launchThreadWorld } from '../../runtime/comm/launch';
import { initBackend } from '../../runtime/model/backend';
import { Block, Gpt, gpt2BlockLayers } from '../../runtime/model/gpt';
import { Embedding, Linear, type LayerContext } from '../../runtime/model/layers';
import type { TpSplit } from '../../runtime/model/params';
import { tpVocab } from '../../runtime/model/tp-layers';
import { localUnits } from '../../runtime/parallel/shard-files';
import { joinShards, shardShape, sliceShard } from '../../runtime/parallel/shards';
import { colSlice, layerCase } from './parallel/layer-cases';
import type { LayerResult } from './parallel/layers-entry';

const ENTRY = join(__dirname, 'parallel', 'layers-entry.js');

/** The split GPT-2's layers declare for a parameter (a 4-block model; the shapes do not matter). */
function declared(name: string): TpSplit | undefined {
  const specs = new Gpt({ layers: 4, hidden: 8, heads: 2, vocab: 100, positions: 4, ffnHidden: 32, eps: 1e-5 }).paramSpecs();
  const spec = specs.find((s) => s.name === name);
  assert.ok(spec, `no parameter ${name}`);
  return spec.tp;
}

class Source {
  constructor(readonly values: Map<string, tf.Tensor>) {}
  get(name: string): tf.Tensor {
    return this.values.get(name)!;
  }
}

function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths');
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  const r = rel(got, want);
  assert.ok(r <= tol, `${what}: relative error ${r.toExponential(2)} > ${tol}`);
}

async function ranks(name: string, tp: number): Promise<LayerResult[]> {
  const world = await launchThreadWorld<LayerResult>(tp, ENTRY, { args: { name, tp }, timeoutMs: 60_000 });
  assert.ok(world.ok, world.errors.map((e) => e?.message).join('\n'));
  return world.results as LayerResult[];
}

/** The tp = 1 layer on the full weights: y, dx and the gradients. */
function reference(name: string, tp: number): { y: Float32Array; dx?: Float32Array; grads: Map<string, Float32Array> } {
  const c = layerCase(name, tp);
  const params = new Map([...c.params].map(([k, v]) => [k, tf.tensor(v, c.specs.find((s) => s.name === k)!.shape)] as [string, tf.Tensor]));
  const ctx: LayerContext = { params: new Source(params), seq: c.seq, dropout: 0, dropoutSeed: 0 };
  const grads = new Map<string, Float32Array>();
  if (c.kind === 'embedding') {
    const layer = new Embedding(c.vocab!, c.seq, c.hidden!);
    const f = layer.forward(ctx, tf.tensor1d(c.ids!, 'int32'), true);
    for (const [n, g] of layer.backward(ctx, tf.tensor(c.dy!, f.y.shape), f.saved!)) grads.set(n, g.dataSync() as Float32Array);
    return { y: f.y.dataSync() as Float32Array, grads };
  }
  const layer = c.kind === 'block' ? new Block('h.0', gpt2BlockLayers(0, c.shape!, 'none')) : new Linear('lin', c.inFeatures!, c.outFeatures!);
  const cols = c.shape ? c.shape.hidden : c.inFeatures!;
  const x = tf.tensor(c.x!, [c.x!.length / cols, cols]);
  const f = layer.forward(ctx, x, true);
  const dy = tf.tensor(c.dy!, f.y.shape);
  let dx: tf.Tensor;
  if (layer instanceof Block) dx = layer.backward(ctx, dy, f.saved as never, (n, g) => grads.set(n, g.dataSync() as Float32Array));
  else {
    const b = layer.backward(ctx, dy, f.saved as never);
    dx = b.dx;
    for (const [n, g] of b.grads) grads.set(n, g.dataSync() as Float32Array);
  }
  return { y: f.y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, grads };
}

describe('parallel: tensor-parallel layers equal the matching slice of the tp = 1 layers', function () {
  this.timeout(120_000);
  before(async () => {
    await initBackend('wasm', { threads: 1 });
  });

  describe('slicing rules (pure)', () => {
    it('splits the fused QKV per head: rank r gets [Q_r | K_r | V_r], not a column split of concat(Q, K, V)', () => {
      // C = 4 (two heads of 2), one row: columns are Q0 Q0 Q1 Q1 | K0 K0 K1 K1 | V0 V0 V1 V1.
      const full = Float32Array.from([10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61]);
      assert.deepEqual(declared('h.3.attn.c_attn.weight'), { dim: 1, sections: 3 });
      assert.deepEqual([...sliceShard(declared('h.3.attn.c_attn.bias'), [12], full, 2, 0)], [10, 11, 30, 31, 50, 51]);
      assert.deepEqual([...sliceShard(declared('h.3.attn.c_attn.bias'), [12], full, 2, 1)], [20, 21, 40, 41, 60, 61]);
    });
    it('round-trips every rule with prime dimensions, and pads wte with zero rows to 128·tp', () => {
      for (const tp of [2, 4]) {
        for (const [name, shape] of [
          ['h.0.attn.c_attn.weight', [17, 3 * 13 * tp]],
          ['h.0.mlp.c_fc.bias', [13 * tp]],
          ['h.0.mlp.c_proj.weight', [17 * tp, 13]],
          ['h.0.ln_1.weight', [13]],
          ['wte.weight', [101, 13]],
        ] as [string, number[]][]) {
          const full = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i + 1);
          const Vp = 128 * tp;
          const split = declared(name);
          const shards = Array.from({ length: tp }, (_, r) => sliceShard(split, shape, full, tp, r, Vp));
          assert.deepEqual(
            shards[0]!.length,
            shardShape(split, shape, tp, Vp).reduce((a, b) => a * b, 1),
          );
          assert.deepEqual([...joinShards(split, shape, shards, tp)], [...full], `${name} tp=${tp}`);
          if (name === 'wte.weight')
            assert.ok(
              shards[tp - 1]!.every((v) => v === 0),
              'rows past the vocabulary are zero',
            );
        }
      }
    });
  });

  it('each TP layer holds exactly the shard its declared split gives (the rank model and consolidation agree on every unit)', () => {
    const shape = { layers: 2, hidden: 4 * 13, heads: 4, vocab: 100, positions: 5, ffnHidden: 4 * 17, eps: 1e-5 };
    for (const tp of [2, 4]) {
      // Shapes only: a group that never communicates.
      const group = { size: tp, rank: 1, allReduce: (): never => assert.fail('no collective while building') };
      const onRank = new Gpt(shape, 'none', group).units();
      const fromDeclarations = localUnits(shape, tp, tpVocab(shape.vocab, tp));
      assert.deepEqual(
        onRank.map((u) => [u.name, u.specs.map((s) => [s.name, s.shape])]),
        fromDeclarations.map((u) => [u.name, u.specs.map((s) => [s.name, s.shape])]),
        `tp=${tp}`,
      );
      // Per block: c_attn and c_fc (weight and bias), attn.c_proj and mlp.c_proj (weight); and wte.
      assert.equal(onRank.flatMap((u) => u.specs).filter((s) => s.tp).length, 6 * shape.layers + 1, 'parameters that declare a split');
    }
  });

  for (const tp of [2, 4]) {
    describe(`tp=${tp}`, () => {
      it(`column-parallel Linear [${17 * tp} → ${13 * tp}]: output split by columns, dx all-reduced (f), weight and bias split`, async () => {
        const ref = reference('column', tp);
        const c = layerCase('column', tp);
        for (const [r, got] of (await ranks('column', tp)).entries()) {
          close(`rank ${r} y`, got.y!, colSlice(ref.y, c.outFeatures!, tp, r), 1e-6);
          close(`rank ${r} dx`, got.dx!, ref.dx!, 1e-6);
          close(`rank ${r} dW`, got.grads['lin.weight']!, colSlice(ref.grads.get('lin.weight')!, c.outFeatures!, tp, r), 1e-6);
          close(`rank ${r} db`, got.grads['lin.bias']!, colSlice(ref.grads.get('lin.bias')!, c.outFeatures!, tp, r), 1e-6);
        }
      });
      it(`row-parallel Linear [${13 * tp} → ${17 * tp}]: output all-reduced (g) before the bias, dx split, bias replicated`, async () => {
        const ref = reference('row', tp);
        const c = layerCase('row', tp);
        const rows = c.inFeatures! / tp;
        for (const [r, got] of (await ranks('row', tp)).entries()) {
          close(`rank ${r} y`, got.y!, ref.y, 1e-6);
          close(`rank ${r} dx`, got.dx!, colSlice(ref.dx!, c.inFeatures!, tp, r), 1e-6);
          close(`rank ${r} dW`, got.grads['lin.weight']!, ref.grads.get('lin.weight')!.subarray(r * rows * c.outFeatures!, (r + 1) * rows * c.outFeatures!), 1e-6);
          close(`rank ${r} db`, got.grads['lin.bias']!, ref.grads.get('lin.bias')!, 1e-6);
        }
      });
      it('a whole block (per-head QKV, attention on heads/tp, row-parallel projections, replicated LayerNorms): y, dx and every gradient slice', async () => {
        const ref = reference('block', tp);
        const c = layerCase('block', tp);
        for (const [r, got] of (await ranks('block', tp)).entries()) {
          close(`rank ${r} y`, got.y!, ref.y, 5e-6);
          close(`rank ${r} dx`, got.dx!, ref.dx!, 5e-6);
          for (const spec of c.specs) {
            close(`rank ${r} ${spec.name}`, got.grads[spec.name]!, sliceShard(spec.tp, spec.shape, ref.grads.get(spec.name)!, tp, r), 5e-6);
          }
        }
      });
      it(`vocab-parallel embedding (vocab 100 padded to ${128 * tp}): masked lookup + all-reduce is exact; wte gradient rows split`, async () => {
        const ref = reference('embedding', tp);
        const c = layerCase('embedding', tp);
        for (const [r, got] of (await ranks('embedding', tp)).entries()) {
          assert.deepEqual(got.y!, [...ref.y], `rank ${r} y (bit for bit)`);
          close(`rank ${r} dWte`, got.grads['wte.weight']!, sliceShard(declared('wte.weight'), [c.vocab!, c.hidden!], ref.grads.get('wte.weight')!, tp, r, c.paddedVocab!), 1e-6);
          close(`rank ${r} dWpe`, got.grads['wpe.weight']!, ref.grads.get('wpe.weight')!, 1e-6);
        }
      });
      it(`vocab-parallel cross entropy, logits scaled by 1000, vocab ${13 * tp + 5} padded to ${128 * tp}: the float64 loss and softmax, padding gets no probability`, async () => {
        const c = layerCase('ce', tp);
        const V = c.vocab!;
        const N = c.ids!.length;
        let loss = 0;
        const probs = new Float64Array(N * c.paddedVocab!);
        for (let i = 0; i < N; i++) {
          const row = c.logits!.subarray(i * V, (i + 1) * V);
          const max = Math.max(...row);
          let sum = 0;
          for (const v of row) sum += Math.exp(v - max);
          loss += Math.log(sum) + max - row[c.ids![i]!]!;
          for (let j = 0; j < V; j++) probs[i * c.paddedVocab! + j] = Math.exp(row[j]! - max) / sum;
        }
        loss /= N;
        for (const [r, got] of (await ranks('ce', tp)).entries()) {
          assert.ok(Math.abs(got.loss! - loss) / loss < 1e-6, `rank ${r}: loss ${got.loss} vs ${loss}`);
          const mine = colSlice(Float32Array.from(probs), c.paddedVocab!, tp, r);
          for (let i = 0; i < mine.length; i++) assert.ok(Math.abs(got.y![i]! - mine[i]!) < 1e-6, `rank ${r} p[${i}]: ${got.y![i]} vs ${mine[i]}`);
        }
      });
    });
  }
});
