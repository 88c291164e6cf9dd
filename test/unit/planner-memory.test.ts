// The scalelm convention: every option moves the estimate the way a real run's memory moves.
import * as assert from 'node:assert/strict';
import { MODEL_PRESETS } from '../../runtime/config/presets';
import { estimate } from '../../runtime/planner/estimate';
import { megatronGpt, planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import { countParams, stageParams } from '../../runtime/planner/params';
import { layersInFlight } from '../../runtime/planner/activations';
import { CATEGORIES, type EstimateOptions, type EstimateResult, type PlanModel } from '../../runtime/planner/types';

const GiB = 2 ** 30;
const model: PlanModel = { ...megatronGpt(24, 2048, 16), dropout: 0.1 };
const P = countParams(model, 1).paddedTotal; // what one unsharded rank holds

function ok(r: EstimateResult) {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r;
}
const mem = (o: PlanInputOptions, e: EstimateOptions = {}, m: PlanModel = model) => ok(estimate(planInputFor(m, { gpusPerNode: 8, ...o }), e)).memory;
const states = (o: PlanInputOptions) => {
  const d = mem(o).perDevice;
  return { params: d.params, grads: d.grads, optimizer: d.optimizer };
};

describe('planner: scalelm memory estimate', () => {
  it('mixed-precision Adam without ZeRO: 2 + 4 + 12 = 18 bytes per parameter (bf16 weights, fp32 main grads, fp32 master + m + v)', () => {
    assert.deepEqual(states({ dp: 8 }), { params: 2 * P, grads: 4 * P, optimizer: 12 * P });
    assert.deepEqual(states({ dp: 8, precision: 'fp16-mixed' }), { params: 2 * P, grads: 4 * P, optimizer: 12 * P });
  });

  it('fp32 Adam: 4 + 4 + 8; SGD keeps a momentum buffer, or nothing with momentum 0', () => {
    assert.deepEqual(states({ precision: 'fp32' }), { params: 4 * P, grads: 4 * P, optimizer: 8 * P });
    assert.deepEqual(states({ precision: 'fp32', optimizer: 'sgd' }), { params: 4 * P, grads: 4 * P, optimizer: 4 * P });
    assert.deepEqual(states({ precision: 'fp32', optimizer: 'sgd', beta1: 0 }), { params: 4 * P, grads: 4 * P, optimizer: 0 });
    assert.deepEqual(states({ optimizer: 'sgd' }), { params: 2 * P, grads: 4 * P, optimizer: 8 * P });
  });

  it('ZeRO-1 partitions the optimizer, ZeRO-2 also the gradients, ZeRO-3 also the parameters', () => {
    const d = 8;
    assert.deepEqual(states({ dp: d, zero: 1 }), { params: 2 * P, grads: 4 * P, optimizer: (12 * P) / d });
    assert.deepEqual(states({ dp: d, zero: 2 }), { params: 2 * P, grads: (6 * P) / d, optimizer: (12 * P) / d });
    assert.deepEqual(states({ dp: d, zero: 3 }), { params: (2 * P) / d, grads: (6 * P) / d, optimizer: (12 * P) / d });
  });

  it('offloading moves the optimizer (and with ZeRO-3 the parameters) to host memory', () => {
    const on = mem({ dp: 8, zero: 2, offloadOptimizer: true });
    const off = mem({ dp: 8, zero: 2 });
    assert.equal(on.perDevice.optimizer, 0);
    assert.equal(on.perDevice.grads, 0);
    // fp32 master, fp32 gradient and Adam m, v of this rank's partition: 16 B per parameter, 8 ranks per node.
    assert.equal(on.host.perNode - off.host.perNode, 8 * ((16 * P) / 8));
    const all = mem({ dp: 8, zero: 3, offloadOptimizer: true, offloadParams: true });
    assert.equal(all.perDevice.params, 0);
    assert.equal(all.host.perRank - off.host.perRank, (18 * P) / 8);
  });

  it('tensor parallelism shards the weights; pipeline stages hold L/p layers plus the embedding or output layer', () => {
    const tp = mem({ tp: 4, dp: 2 });
    assert.equal(tp.params.perDevice, stageParams(countParams(model, 4), 24, 4, 1, 0).params);
    assert.equal(tp.perDevice.params, 2 * tp.params.perDevice);
    const pp = mem({ pp: 4, dp: 2, globalBatch: 64 });
    assert.equal(pp.stages, 4);
    assert.ok(pp.heaviestStage === 0 || pp.heaviestStage === 3);
    assert.ok(pp.params.perDevice < P / 2);
  });

  it('sizes the heaviest stage: the last one when the output layer and fp32 logits dominate', () => {
    const bigVocab: PlanModel = { ...model, vocab: 256_000, layers: 8, tiedEmbeddings: false };
    const m = mem({ pp: 4, dp: 2, globalBatch: 2, recompute: 'full' }, {}, bigVocab);
    assert.equal(m.heaviestStage, 3);
    const first = mem({ pp: 4, dp: 2, globalBatch: 64, recompute: 'none' });
    assert.equal(first.heaviestStage, 0, 'with many micro-batches in flight the first stage is heavier');
  });

  it('1F1B: stage i holds min(m, p−i) micro-batches; interleaving holds L(1 + (p−1)/(p·v)) on stage 0', () => {
    assert.equal(layersInFlight(24, 4, 1, 64, 0), 24);
    assert.equal(layersInFlight(24, 4, 1, 64, 3), 6);
    assert.equal(layersInFlight(24, 4, 1, 2, 0), 12, 'fewer micro-batches than stages');
    assert.equal(layersInFlight(24, 4, 3, 64, 0), 24 * (1 + 3 / 12));
    assert.equal(layersInFlight(24, 1, 1, 64, 0), 24);
    const plain = mem({ pp: 4, dp: 2, globalBatch: 64 }).perDevice.activations;
    const inter = mem({ pp: 4, dp: 2, vpp: 3, globalBatch: 64 }).perDevice.activations;
    assert.ok(inter > plain);
  });

  it('sequence parallelism, selective and full recompute, FlashAttention each lower the activations', () => {
    const a = (o: PlanInputOptions) => mem({ tp: 4, dp: 2, ...o }).perDevice.activations;
    const none = a({});
    const sp = a({ sequenceParallel: true });
    const sel = a({ recompute: 'selective' });
    const full = a({ recompute: 'full' });
    const flash = a({ flashAttention: true });
    assert.ok(sp < none && sel < none && full < sel && flash < none);
    assert.ok(a({ sequenceParallel: true, recompute: 'selective' }) < sel);
    // FlashAttention leaves nothing for selective recompute to drop but its (tiny) statistics.
    assert.equal(a({ flashAttention: true, recompute: 'selective' }), flash - (24 * (4 * 16 * 2048)) / 4);
  });

  it('dropout masks are stored only when the model has dropout', () => {
    const withMasks = mem({}).perDevice.activations;
    const without = mem({}, {}, { ...model, dropout: 0 }).perDevice.activations;
    const sbh = 2048 * 2048;
    // per layer: the attention-dropout mask (1 byte) and its output (2 bytes) over a·s², two residual masks 2sbh;
    // plus the embedding-dropout mask
    assert.equal(withMasks - without, 24 * (3 * 16 * 2048 * 2048 + 2 * sbh) + sbh);
  });

  it('fp32 logits for the loss and every overhead are explicit, adjustable terms', () => {
    const base = mem({});
    const oneCopy = mem({}, { overheads: { fp32LogitCopies: 1 } });
    // Two copies (an unfused loss) also peak in the loss's backward at three fp32 copies: + (12 − 10) B per logit.
    assert.equal(base.perDevice.activations - oneCopy.perDevice.activations, (4 + 2) * 2048 * 51200);
    const threeCopies = mem({}, { overheads: { fp32LogitCopies: 3 } });
    assert.equal(threeCopies.perDevice.activations - base.perDevice.activations, 4 * 2048 * 51200, 'the backward peak is beyond two copies only');
    const noCtx = mem({}, { overheads: { cudaContext: 0, allocatorSlack: 0 } });
    assert.equal(base.perDevice.overhead - noCtx.perDevice.overhead, 1 * GiB + 0.05 * (base.perDevice.total - base.perDevice.overhead));
    assert.equal(noCtx.perDevice.overhead, 0);
    const z3 = mem({ dp: 8, zero: 3 });
    const capped = mem({ dp: 8, zero: 3 }, { overheads: { stage3MaxLiveParameters: 1e6 } });
    assert.ok(capped.perDevice.buffers < z3.perDevice.buffers);
    assert.ok(mem({ dp: 8, zero: 2 }, { overheads: { overlapComm: false } }).perDevice.buffers < mem({ dp: 8, zero: 2 }).perDevice.buffers);
  });

  it('the terms add up to the categories and the categories to the total', () => {
    for (const o of [{}, { dp: 8, zero: 3 as const }, { tp: 2, pp: 2, dp: 2, globalBatch: 16, sequenceParallel: true }, { dp: 8, zero: 1 as const, offloadOptimizer: true }]) {
      const m = mem(o);
      let sum = 0;
      for (const c of CATEGORIES) {
        const fromTerms = m.terms.filter((t) => t.category === c).reduce((s, t) => s + t.bytes, 0);
        assert.ok(Math.abs(fromTerms - m.perDevice[c]) < 1e-3, c);
        sum += m.perDevice[c];
      }
      assert.ok(Math.abs(sum - m.perDevice.total) < 1e-3);
    }
  });

  it('a 70B model does not fit one GPU; a sane 64-GPU layout does', () => {
    const llama = { ...MODEL_PRESETS['llama-2-70b'], name: 'llama-2-70b' };
    const one = ok(estimate(planInputFor(llama, { flashAttention: true })));
    assert.equal(one.fits, false);
    const sane = ok(estimate(planInputFor(llama, { tp: 8, pp: 4, dp: 2, zero: 1, sequenceParallel: true, flashAttention: true, globalBatch: 64 })));
    assert.equal(sane.fits, true);
    assert.ok(sane.memory.perDevice.total > 20 * GiB && sane.memory.perDevice.total < 80 * GiB);
  });
});

describe('planner: the three measured figures (allocated, reserved, device)', () => {
  const input = planInputFor('llama-2-7b', { gpus: 16, tp: 2, zero: 1, gpu: 'A100-80GB', globalBatch: 64 });
  const r = ok(estimate(input));
  const f = r.memory.figures!;
  const ov = { slack: 0.05, context: 2 ** 30, nccl: 128 * 2 ** 20 };
  it('allocated (torch max_memory_allocated) is the tensors: params, grads, optimizer, activations, buffers', () => {
    const d = r.memory.perDevice;
    assert.equal(f.allocated, d.params + d.grads + d.optimizer + d.activations + d.buffers);
    assert.deepEqual(f.allocatedBy, { params: d.params, grads: d.grads, optimizer: d.optimizer, activations: d.activations, buffers: d.buffers });
  });
  it('reserved (max_memory_reserved) adds the allocator slack; device (nvidia-smi) adds the CUDA context and NCCL buffers outside the allocator', () => {
    assert.ok(Math.abs(f.reserved - f.allocated * (1 + ov.slack)) < 1);
    assert.ok(Math.abs(f.device - (f.reserved + ov.context + 2 * ov.nccl)) < 1, 'dp and tp communicators');
    assert.equal(f.device, r.memory.perDevice.total);
    assert.equal(r.memory.totalIs, 'device');
    assert.ok(f.allocated < f.reserved && f.reserved < f.device);
  });
  it("the anchors' totals are partial allocated figures, and say so", () => {
    const m = ok(estimate({ ...input, parallel: { ...input.parallel, zero: 0 } }, { convention: 'megatron' })).memory;
    assert.equal(m.totalIs, 'allocated');
    assert.equal(m.figures, undefined);
  });
});
