// The runtime convention: exactly what the local fp32 TensorFlow.js runtime allocates, tensor by tensor.
import * as assert from 'node:assert/strict';
import { MODEL_PRESETS } from '../../runtime/config/presets';
import { estimate } from '../../runtime/planner/estimate';
import { planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import { RUNTIME_LAYER_TENSORS, RUNTIME_MODEL_TENSORS } from '../../runtime/planner/runtime-model';
import type { EstimateResult, PlanModel } from '../../runtime/planner/types';

const gpt2: PlanModel = { ...MODEL_PRESETS.gpt2, name: 'gpt2' };
const N = 124_439_808;

function ok(r: EstimateResult) {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r;
}
const run = (o: PlanInputOptions, m: PlanModel = gpt2) => estimate(planInputFor(m, { precision: 'fp32', gpusPerNode: 8, ...o }), { convention: 'runtime' });

describe('planner: the runtime convention (local fp32 runtime)', () => {
  it("fp32 parameters 4 B, gradients 4 B, AdamW m and v 8 B per parameter; overhead is only the loss's transient logits", () => {
    const m = ok(run({})).memory.perDevice;
    assert.equal(m.params, 4 * N);
    assert.equal(m.grads, 4 * N);
    assert.equal(m.optimizer, 8 * N);
    assert.equal(m.overhead, 4 * 1024 * 50257, 'the logits (measured as temporaries, not activations)');
    assert.equal(m.buffers, 0, 'no data parallelism: no gradient buckets');
  });

  it('ZeRO stages partition optimizer, then gradients, then parameters over dp', () => {
    const z = (zero: 1 | 2 | 3) => ok(run({ dp: 4, zero })).memory.perDevice;
    assert.deepEqual([z(1).params, z(1).grads, z(1).optimizer], [4 * N, 4 * N, 2 * N]);
    // ZeRO 2/3 also hold the output layer's wte gradient until the embedding adds its own (tied weights).
    const wteGrad = 4 * 50257 * 768;
    assert.deepEqual([z(2).params, z(2).grads, z(2).optimizer], [4 * N, N + wteGrad, 2 * N]);
    assert.deepEqual([z(3).params, z(3).grads, z(3).optimizer], [N, N + wteGrad, 2 * N]);
    assert.ok(z(3).buffers > 0, 'ZeRO-3 gathers a block at a time');
  });

  it('GPT-2 small, micro-batch 1 × 1024 tokens: activations are the sum of the saved tensors, one line each', () => {
    const r = ok(run({}));
    const B = 1,
      T = 1024,
      C = 768,
      NH = 12,
      V = 50257,
      L = 12;
    const perLayer =
      B * T * C /* ln_1 x̂ */ +
      B * T /* rstd */ +
      B * T * C /* c_attn input */ +
      3 * B * T * C /* q, k, v */ +
      B * NH * T * T /* probs */ +
      B * T * C /* c_proj input */ +
      B * T * C +
      B * T +
      B * T * C /* ln_2 and c_fc input */ +
      4 * B * T * C /* GELU input */ +
      4 * B * T * C; /* mlp c_proj input */
    const model = 2 * B * T /* ids */ + B * T * C + B * T /* ln_f */ + B * T * C /* lm_head input */ + B * T * V; /* probs (the logits are temporaries: overhead) */
    assert.equal(r.memory.perDevice.activations, 4 * (L * perLayer + model));
    assert.equal(r.memory.terms.filter((t) => t.category === 'activations').length, RUNTIME_LAYER_TENSORS.filter((t) => t.keptBy.includes('none')).length + RUNTIME_MODEL_TENSORS.length);
  });

  it("selective recompute drops the attention probabilities (one block's rebuilt ones are transient); full keeps block inputs and the larger of the output layer and one replayed block", () => {
    const none = ok(run({})).memory.perDevice.activations;
    const sel = ok(run({ recompute: 'selective' })).memory.perDevice.activations;
    const full = ok(run({ recompute: 'full' })).memory.perDevice.activations;
    const probs = 4 * 12 * 1024 * 1024;
    assert.equal(none - sel, 12 * probs);
    assert.equal(ok(run({ recompute: 'selective' })).memory.perDevice.overhead - ok(run({})).memory.perDevice.overhead, probs);
    assert.ok(full < sel);
    const blockInputs = 12 * 4 * 1024 * 768;
    const top = 4 * (2 * 1024 + 1024 * 768 + 1024 + 1024 * 768 + 1024 * 50257);
    const oneBlock = (none - top) / 12;
    // As runtime/train measures it: the end of forward, or the last block's replay (token ids and one block back).
    assert.equal(full, blockInputs + Math.max(top, 4 * 1024 + oneBlock));
  });

  it('tensor parallelism splits the sharded tensors and pads the vocabulary to 128·tp', () => {
    const r = ok(run({ tp: 2 }));
    assert.equal(r.memory.params.paddedVocab, 50432);
    assert.ok(r.memory.perDevice.activations < ok(run({})).memory.perDevice.activations);
  });

  it("DDP's gradient buckets are the gradients (no extra buffer); ZeRO 2/3 reduce-scatter through two staging buckets", () => {
    assert.equal(ok(run({ dp: 2 })).memory.perDevice.buffers, 0);
    assert.equal(ok(run({ dp: 2, zero: 1 })).memory.perDevice.buffers, 0);
    // Buckets are whole layers (ln_f + h.11 first, then one block each, then the embedding): the two staging
    // buffers are as large as the largest bucket of each parity — the embedding and a block.
    const embedding = 50257 * 768 + 1024 * 768;
    const block = 7_087_872;
    assert.equal(ok(run({ dp: 2, zero: 2 })).memory.perDevice.buffers, 4 * (embedding + block));
    assert.equal(ok(run({ dp: 2, zero: 2, bucketMB: 4 })).memory.perDevice.buffers, 4 * (embedding + block));
  });

  it('refuses what the runtime cannot run: mixed precision, pipelines, offload, sequence parallelism, FlashAttention', () => {
    const cases: [PlanInputOptions, RegExp][] = [
      [{ precision: 'bf16-mixed' }, /trains in fp32 only/],
      [{ pp: 2, globalBatch: 2 }, /no pipeline parallelism/],
      [{ dp: 2, zero: 2, offloadOptimizer: true }, /does not offload/],
      [{ tp: 2, sequenceParallel: true }, /no sequence parallelism/],
      [{ flashAttention: true }, /no FlashAttention/],
    ];
    for (const [o, re] of cases) {
      const r = run(o);
      assert.equal(r.ok, false, JSON.stringify(o));
      if (!r.ok) assert.match(r.issues.map((i) => i.message).join('\n'), re);
    }
  });
});
