// Step-time model: Megatron's FLOP accounting, α-β collectives, overlap, bubble, offload.
import * as assert from 'node:assert/strict';
import { estimate } from '../../runtime/planner/estimate';
import { megatronGpt, planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import { countParams } from '../../runtime/planner/params';
import { collectiveTime, stepFlops } from '../../runtime/planner/time';
import type { EstimateResult, PlanInput } from '../../runtime/planner/types';

function ok(r: EstimateResult) {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r;
}
const model = megatronGpt(32, 4096, 32);
const time = (o: PlanInputOptions, patch: (i: PlanInput) => void = () => {}) => {
  const input = planInputFor(model, { gpu: 'A100-80GB', gpusPerNode: 8, ...o });
  patch(input);
  return ok(estimate(input)).time;
};

describe('planner: step-time model', () => {
  it("model FLOPs are Megatron's 72BsLh²(1 + s/6h + V/12Lh); with full recompute 96BsLh²(1 + s/6h + V/16Lh)", () => {
    const input = planInputFor(model, { globalBatch: 512 });
    const [B, s, L, h, V] = [512, 2048, 32, 4096, 51200];
    const f = stepFlops(input, 'none');
    const r = stepFlops(input, 'full');
    const near = (a: number, b: number) => assert.ok(Math.abs(a / b - 1) < 1e-12, `${a} vs ${b}`);
    near(f.model, 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h)));
    near(r.hardware, 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h)));
    assert.equal(r.model, f.model, 'recompute is not model FLOPs');
    const sel = stepFlops(input, 'selective');
    near(sel.hardware - sel.model, B * L * 4 * s * s * h);
    assert.equal(stepFlops({ ...input, train: { ...input.train, flashAttention: true } }, 'selective').hardware, f.model);
  });

  it('one GPU, no communication: with ideal GEMMs and no memory-bound ops, step = 3·forward FLOPs / (peak·efficiency) + a memory-bound optimizer step', () => {
    const input = planInputFor(megatronGpt(4, 1024, 16), { gpu: 'A100-80GB', globalBatch: 4, microBatch: 1 });
    const ideal = { gemmHalfSize: 0, elementwiseBytesReplicated: 0, elementwiseBytesSharded: 0, attentionBytesPerScore: 0, lossBytesPerLogit: 0 };
    const t = ok(estimate(input, { comm: ideal })).time;
    const flops = stepFlops(input, 'none', countParams(input.model)).model;
    const optimizer = t.breakdown.optimizer;
    assert.ok(Math.abs(t.stepMs / 1e3 - optimizer - flops / (312e12 * input.cluster.efficiency)) < 1e-9);
    assert.ok(optimizer > 0);
    assert.ok(Math.abs(t.mfu - flops / ((t.stepMs / 1e3) * 312e12)) < 1e-12);
    assert.ok(Math.abs(t.tokensPerSec - (4 * 2048) / (t.stepMs / 1e3)) < 1e-6);
    // The defaults add the memory-bound ops and the small-GEMM penalty: slower.
    assert.ok(ok(estimate(input)).time.stepMs > t.stepMs);
  });

  it('small GEMMs are slower: per-token compute falls as the micro-batch grows, and thin tensor-parallel shards cost more', () => {
    const perToken = (microBatch: number, tp = 1, seqLen = 512) => {
      const input = planInputFor({ ...megatronGpt(8, 2048, 16), seqLen }, { gpu: 'A100-80GB', tp, globalBatch: 16, microBatch });
      const t = ok(estimate(input)).time;
      return (t.breakdown.compute * tp) / (16 * seqLen);
    };
    assert.ok(perToken(1) > perToken(4) && perToken(4) > perToken(16), `${perToken(1)} ${perToken(4)} ${perToken(16)}`);
    // GPU-seconds per token: tp 8 slices h = 2048 into 256-column shards, slower per FLOP than tp 1.
    assert.ok(perToken(4, 8) > 1.1 * perToken(4, 1));
  });

  it('memory-bound ops run at HBM bandwidth; FlashAttention removes the attention-score traffic', () => {
    const t = (bw: number, flashAttention = false) =>
      time({ globalBatch: 1, flashAttention }, (i) => {
        i.cluster.spec = { ...i.cluster.spec, memoryBandwidth: bw };
      }).breakdown.compute;
    assert.ok(t(1e12) > t(4e12));
    assert.ok(t(2e12, true) < t(2e12));
  });

  it('collectives are α-β: ring volume over bandwidth plus latency per tree step', () => {
    assert.equal(collectiveTime('all-reduce', 1, 1e9, 1e9, 1e-5), 0);
    assert.ok(Math.abs(collectiveTime('all-reduce', 8, 1e9, 100e9, 0) - ((2 * 7) / 8) * 0.01) < 1e-15);
    assert.ok(Math.abs(collectiveTime('all-gather', 8, 1e9, 100e9, 0) - (7 / 8) * 0.01) < 1e-15);
    assert.ok(Math.abs(collectiveTime('reduce-scatter', 8, 0.5e9, 100e9, 1e-5, 4) - ((7 / 8) * 0.005 + 4 * 3 * 1e-5)) < 1e-15);
  });

  it('tensor-parallel all-reduces are on the critical path, and far slower across nodes', () => {
    const inNode = time({ tp: 8, dp: 1, globalBatch: 8 });
    assert.ok(inNode.breakdown.tensorParallelComm > 0);
    assert.equal(inNode.tensorParallelAcrossNodes, false);
    const across = time({ tp: 8, dp: 2, gpus: 16, gpusPerNode: 4, globalBatch: 16 }); // same 8 micro-batches per rank
    assert.equal(across.tensorParallelAcrossNodes, true);
    assert.ok(across.breakdown.tensorParallelComm > 5 * inNode.breakdown.tensorParallelComm);
  });

  it('the pipeline bubble is (p−1)/(v·m) of the pipelined work', () => {
    for (const [vpp, globalBatch] of [
      [1, 16],
      [2, 16],
      [1, 64],
    ] as const) {
      const t = time({ pp: 4, vpp, dp: 2, globalBatch });
      const m = globalBatch / 2;
      const b = t.breakdown;
      const work = b.compute + b.recompute + b.tensorParallelComm + b.pipelineComm;
      assert.ok(Math.abs(b.bubble / work - 3 / (vpp * m)) < 1e-9, `v=${vpp} m=${m}`);
    }
  });

  it('data-parallel reduction hides behind backward up to its length', () => {
    const fast = time({ dp: 8, globalBatch: 8 });
    assert.ok(fast.breakdown.dataParallelTotal > 0);
    assert.equal(fast.breakdown.dataParallelExposed, 0);
    const slow = time({ dp: 8, globalBatch: 8 }, (i) => {
      i.cluster.spec = { ...i.cluster.spec, intraNodeBandwidth: 1e9 };
    });
    assert.ok(slow.breakdown.dataParallelExposed > 0);
    assert.ok(Math.abs(slow.breakdown.dataParallelExposed - (slow.breakdown.dataParallelTotal - (slow.breakdown.compute * 2) / 3)) < 1e-9);
  });

  it('ZeRO-3 gathers parameters every micro-batch; ZeRO-1/2 once per step', () => {
    const z1 = time({ dp: 8, zero: 1, globalBatch: 32 });
    const z3 = time({ dp: 8, zero: 3, globalBatch: 32 });
    assert.ok(z3.breakdown.dataParallelTotal > 3 * z1.breakdown.dataParallelTotal);
  });

  it('offload adds host transfers and a CPU optimizer step', () => {
    const on = time({ dp: 8, zero: 2, offloadOptimizer: true, globalBatch: 8 });
    const off = time({ dp: 8, zero: 2, globalBatch: 8 });
    assert.ok(on.breakdown.offload > 0);
    assert.ok(on.breakdown.optimizer > off.breakdown.optimizer);
    assert.ok(on.stepMs > off.stepMs);
  });

  it('recompute costs time: full more than selective', () => {
    const n = time({ tp: 4, dp: 2, globalBatch: 8 });
    const s = time({ tp: 4, dp: 2, globalBatch: 8, recompute: 'selective' });
    const f = time({ tp: 4, dp: 2, globalBatch: 8, recompute: 'full' });
    assert.ok(n.stepMs < s.stepMs && s.stepMs < f.stepMs);
    assert.ok(f.tflopsPerGpu > n.tflopsPerGpu * 0.99, 'hardware FLOP/s count the recompute');
    assert.ok(f.mfu < n.mfu);
  });
});
