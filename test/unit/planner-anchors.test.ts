// Each convention reproduces its public anchor, in the anchor's own terms, through the estimator itself.
import * as assert from 'node:assert/strict';
import { MODEL_PRESETS } from '../../runtime/config/presets';
import { accelerateTrainingUsage, deepspeedZero2, deepspeedZero3, megatronActivations, megatronWeightAndOptimizer, zeroPaperModelStates } from '../../runtime/planner/anchors';
import { korthikantiLayerBytes, layerActivationBytes } from '../../runtime/planner/activations';
import { estimate } from '../../runtime/planner/estimate';
import { megatronGpt, planInputFor } from '../../runtime/planner/input';
import { megatronArgs } from '../../runtime/planner/memory';
import { largestModuleParams } from '../../runtime/planner/params';
import type { EstimateOptions, EstimateResult, PlanInput, PlanModel } from '../../runtime/planner/types';

const GiB = 2 ** 30;
const gb2 = (bytes: number) => (bytes / GiB).toFixed(2); // DeepSpeed prints GiB with 2 decimals and calls them GB

function ok(r: EstimateResult) {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r;
}

describe('planner conventions reproduce their anchors', () => {
  describe('zero-paper: Rajbhandari et al., Ψ = 7.5B on 64 GPUs, K = 12', () => {
    // The paper's Figure 1: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB for stages 0-3.
    const published = ['120.0', '31.4', '16.6', '1.9'];
    const exact = [120e9, 31.40625e9, 16.640625e9, 1.875e9];
    const model: PlanModel = { ...megatronGpt(36, 4096, 32), totalParams: 7.5e9 };
    for (const stage of [0, 1, 2, 3] as const) {
      it(`stage ${stage}: ${published[stage]} GB per device`, () => {
        const r = ok(estimate(planInputFor(model, { dp: 64, zero: stage, gpusPerNode: 8 }), { convention: 'zero-paper' }));
        assert.equal(r.memory.perDevice.total, exact[stage]);
        assert.equal((r.memory.perDevice.total / 1e9).toFixed(1), published[stage]);
        assert.deepEqual(r.memory.notCovered, ['activations', 'buffers', 'overhead']);
        assert.equal(zeroPaperModelStates(7.5e9, 64, stage).total, exact[stage]);
      });
    }
    it("the paper's 2 + 2 + K split per stage", () => {
      const r = ok(estimate(planInputFor(model, { dp: 64, zero: 2, gpusPerNode: 8 }), { convention: 'zero-paper' }));
      assert.equal(r.memory.perDevice.params, 2 * 7.5e9);
      assert.equal(r.memory.perDevice.grads, (2 * 7.5e9) / 64);
      assert.equal(r.memory.perDevice.optimizer, (12 * 7.5e9) / 64);
    });
  });

  describe('deepspeed: the printed t5-3b estimates (Ψ = 2851M, largest layer 32M, 1 node × 8 GPUs)', () => {
    const model: PlanModel = {
      layers: 24,
      hidden: 1024,
      heads: 32,
      kvHeads: 32,
      ffnHidden: 16384,
      vocab: 32128,
      seqLen: 512,
      activation: 'gelu',
      norm: 'layernorm',
      tiedEmbeddings: true,
      bias: false,
      positionEmbedding: 'rope',
      totalParams: 2851e6,
    };
    const options: EstimateOptions = { convention: 'deepspeed', largestLayerParams: 32e6 };
    const run = (zero: 2 | 3, offloadOptimizer: boolean, offloadParams: boolean, extra: EstimateOptions = {}) =>
      ok(estimate(planInputFor(model, { dp: 8, zero, offloadOptimizer, offloadParams, gpusPerNode: 8 }), { ...options, ...extra })).memory;

    it('ZeRO-2 with offload_optimizer=cpu: 5.31GB per GPU, 127.45GB per CPU', () => {
      const m = run(2, true, false);
      assert.equal(gb2(m.perDevice.total), '5.31');
      assert.equal(gb2(m.host.perNode), '127.45');
      assert.deepEqual(deepspeedZero2(2851e6, 8, 1, true), { gpu: 5702e6, cpu: 136848e6 });
    });
    it("ZeRO-2 without offload: the current code's 2Ψ + 18Ψ/N, and the docs' printed 15.93GB with the legacy 4Ψ + 16Ψ/N", () => {
      assert.equal(run(2, false, false).perDevice.total, 2 * 2851e6 + (18 * 2851e6) / 8);
      const legacy = run(2, false, false, { deepspeedLegacyZero2: true });
      assert.equal(gb2(legacy.perDevice.total), '15.93');
      assert.equal(gb2(legacy.host.perNode), '127.45');
    });
    it('ZeRO-3: 0.12GB (params and optimizer offloaded), 0.78GB (optimizer offloaded), 6.09GB (none)', () => {
      assert.equal(gb2(run(3, true, true).perDevice.total), '0.12');
      assert.equal(gb2(run(3, true, false).perDevice.total), '0.78');
      assert.equal(gb2(run(3, false, false).perDevice.total), '6.09');
    });
    it('ZeRO-3 host memory: 71.69 / 63.72 / 1.43 GB with zero_init, 127.45 GB without', () => {
      assert.equal(gb2(run(3, true, true).host.perNode), '71.69');
      assert.equal(gb2(run(3, true, false).host.perNode), '63.72');
      assert.equal(gb2(run(3, false, false).host.perNode), '1.43');
      for (const [o, p] of [
        [true, true],
        [true, false],
        [false, false],
      ] as const) {
        assert.equal(gb2(run(3, o, p, { deepspeedZeroInit: false }).host.perNode), '127.45');
      }
      assert.equal(deepspeedZero3(2851e6, 32e6, 8, 1, false, false).largestLayerMemory, 128e6);
    });
    it("ZeRO-3 with parameter offload but no optimizer offload: DeepSpeed's no-offload branch, 18Ψ/N kept (6.09GB, 1.43GB host)", () => {
      // stage3.py reads cpu_offload_params only under cpu_offload: gpu = 4·largest + int(18Ψ/N), host = largest·4·gpn·1.5.
      const m = run(3, false, true);
      assert.equal(m.perDevice.total, 4 * 32e6 + Math.trunc((18 * 2851e6) / 8));
      assert.equal(gb2(m.perDevice.total), '6.09');
      assert.equal(m.host.perNode, 32e6 * 4 * 8 * 1.5);
      assert.equal(gb2(run(3, false, true, { deepspeedZeroInit: false }).host.perNode), '127.45');
      assert.ok(
        m.notes.some((n) => n.includes('no-offload branch')),
        m.notes.join('; '),
      );
    });
  });

  describe('deepspeed: the "largest layer" is the largest module of the HuggingFace model', () => {
    // DeepSpeed: max over model.modules() of sum(p.numel() for p in m.parameters(recurse=False)).
    const largestOf = (modules: number[]) => Math.max(...modules);
    it('HF Llama: separate q/k/v/o and gate/up/down projections, not a fused QKV', () => {
      // A Llama-shaped model with a small vocabulary, so that a fused QKV (h·3h) would wrongly be the largest.
      const model: PlanModel = {
        layers: 4,
        hidden: 4096,
        heads: 32,
        kvHeads: 32,
        ffnHidden: 4096,
        vocab: 8000,
        seqLen: 2048,
        activation: 'swiglu',
        norm: 'rmsnorm',
        tiedEmbeddings: false,
        bias: false,
        positionEmbedding: 'rope',
      };
      const h = 4096;
      const hfModules = [
        8000 * h /* embed_tokens */,
        h * h /* q_proj */,
        h * h /* k_proj */,
        h * h /* v_proj */,
        h * h /* o_proj */,
        h * 4096 /* gate_proj */,
        h * 4096 /* up_proj */,
        4096 * h /* down_proj */,
        h /* input_layernorm */,
        8000 * h /* lm_head */,
      ];
      const r = ok(estimate(planInputFor(model, { dp: 8, zero: 3, gpusPerNode: 8 }), { convention: 'deepspeed' }));
      const buffers = r.memory.terms.find((t) => t.label.startsWith('4 × largest layer'))!;
      assert.equal(buffers.bytes, 4 * largestOf(hfModules));
      assert.equal(buffers.bytes, 4 * 8000 * h);
      assert.notEqual(buffers.bytes, 4 * h * 3 * h, "a fused QKV is GPT-2's c_attn, not a Llama module");
      // Llama-2-7B: the embedding (32000·4096) is the largest either way.
      assert.equal(largestModuleParams(MODEL_PRESETS['llama-2-7b']), 32000 * 4096);
    });
    it('GPT-2 / NeoX: the fused c_attn (h·3h + 3h) counts as one module; model.fusedQkv overrides the guess', () => {
      const gpt: PlanModel = {
        layers: 4,
        hidden: 4096,
        heads: 32,
        kvHeads: 32,
        ffnHidden: 4096,
        vocab: 8000,
        seqLen: 1024,
        activation: 'gelu',
        norm: 'layernorm',
        tiedEmbeddings: true,
        bias: true,
        positionEmbedding: 'learned',
      };
      assert.equal(largestModuleParams(gpt), 4096 * 3 * 4096 + 3 * 4096);
      assert.equal(largestModuleParams({ ...gpt, fusedQkv: false }), Math.max(8000 * 4096, 4096 * 4096 + 4096, 4096 * 4096 + 4096));
    });
  });

  describe('megatron: theoretical_memory_usage.py in its own terms', () => {
    // 7.5B of Table 1: L=36, h=4096, a=32, V=51200, s=2048; tp=4, dp=32, micro-batch 1.
    const base = planInputFor(megatronGpt(36, 4096, 32), { tp: 4, dp: 32, gpusPerNode: 8, gpu: 'A100-80GB', globalBatch: 512 });
    const withLayout = (patch: Partial<PlanInput['parallel']>, recompute: PlanInput['train']['recompute']): PlanInput => ({
      ...base,
      parallel: { ...base.parallel, ...patch },
      train: { ...base.train, recompute },
    });

    it('18 bytes per parameter of the most loaded shard; 6 + 12/d with the distributed optimizer', () => {
      // Linear weights per layer 2h·f + 2h²(1 + 1) = 201,326,592, split over tp; norms 2h·2 = 16,384 per layer
      // plus the final 2h, replicated on every tp rank (current code, Megatron-LM PR #4687).
      // most loaded shard = (36·201,326,592 + h·V)/tp + (36·16,384 + 8,192) = 1,864,368,128 + 598,016 = 1,864,966,144
      const shard = 1_864_966_144;
      assert.equal(shard, (36 * 201_326_592 + 4096 * 51200) / 4 + 36 * 16_384 + 8192);
      const r = ok(estimate(withLayout({}, 'selective'), { convention: 'megatron' }));
      assert.equal(r.memory.params.perDevice, shard);
      assert.equal(r.memory.perDevice.params + r.memory.perDevice.grads + r.memory.perDevice.optimizer, 18 * shard);
      // The code before that PR divided the norms by tp too: (block + h·V)/tp = 1,864,517,632.
      const layout = { dp: 32, tp: 4, pp: 1, vpp: 1, zero: 0, microBatch: 1, recompute: 'selective', sequenceParallel: false, offloadOptimizer: false, offloadParams: false } as const;
      const current = megatronWeightAndOptimizer(megatronArgs(withLayout({}, 'selective'), layout));
      const legacy = megatronWeightAndOptimizer({ ...megatronArgs(withLayout({}, 'selective'), layout), legacyNormsSharded: true });
      assert.equal(legacy.mostLoadedShardParams, 1_864_517_632);
      assert.equal(legacy.totalParams, current.totalParams, 'only the sharding changed, not the count');
      const dist = ok(estimate(withLayout({ zero: 1 }, 'selective'), { convention: 'megatron' }));
      assert.equal(dist.memory.perDevice.params + dist.memory.perDevice.grads + dist.memory.perDevice.optimizer, (6 + 12 / 32) * shard);
    });

    it('activations with sequence parallelism and selective recompute: sbh(18 + 4f/h) per layer + embedding and output terms, / tp', () => {
      const sbh = 2048 * 4096;
      // 36·34·sbh + 8·s·b·p + sbh·p + 4·sbh·(1 + V/h) (pp = 1), all / 4
      const expected = (36 * 34 * sbh + 8 * 2048 + sbh + 4 * sbh * (1 + 51200 / 4096)) / 4;
      const r = ok(estimate(withLayout({ sequenceParallel: true }, 'selective'), { convention: 'megatron' }));
      assert.equal(r.memory.perDevice.activations, expected);
      assert.equal(r.memory.perDevice.activations, 2_682_261_504);
    });

    it('otherwise compute_activation_memory_without_sp: sbh(10 + 24/t) per layer, output layer in 2 bytes, × 1.05', () => {
      const sbh = 2048 * 4096;
      const expected = (36 * sbh * (10 + 24 / 4) + 8 * 2048 + sbh + ((2048 * 51200) / 4 + sbh) * 2) * 1.05;
      const r = ok(estimate(withLayout({}, 'full'), { convention: 'megatron' }));
      assert.equal(r.memory.perDevice.activations, expected);
    });

    it('interleaving multiplies by 1 + (p−1)/(p·v); 1F1B discounts by min(1, m/p)', () => {
      const args = megatronArgs(
        { ...base, parallel: { ...base.parallel, tp: 4, pp: 4, dp: 8, sequenceParallel: true } },
        { dp: 8, tp: 4, pp: 4, vpp: 1, zero: 0, microBatch: 1, recompute: 'selective', sequenceParallel: true, offloadOptimizer: false, offloadParams: false },
      );
      const plain = megatronActivations(args, 64).bytes;
      assert.equal(megatronActivations({ ...args, virtualPipelineModelParallelSize: 3 }, 64).bytes, plain * (1 + 3 / 12));
      assert.equal(megatronActivations(args, 2).bytes, plain * (2 / 4));
      // (tp-sharded block/pp + embedding)/tp + replicated norms/pp: (36·201,326,592/4 + 209,715,200)/4 + 598,016/4
      assert.equal(megatronWeightAndOptimizer(args).mostLoadedShardParams, ((36 * 201_326_592) / 4 + 209_715_200) / 4 + 598_016 / 4);
    });

    it('refuses what Megatron has no terms for: ZeRO-2/3 and offload', () => {
      const r = estimate(withLayout({ zero: 2 }, 'none'), { convention: 'megatron' });
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.issues[0]!.message : '', /Megatron-LM has no ZeRO-2/);
    });
  });

  describe('korthikanti: Table 2 per-layer activation bytes', () => {
    // GPT-3 175B: s=2048, h=12288, a=96, b=1, t=8.
    const s = 2048,
      b = 1,
      h = 12288,
      a = 96,
      t = 8;
    const sbh = s * b * h;
    const rows: [string, boolean, 'none' | 'selective' | 'full', number][] = [
      ['tensor parallel', false, 'none', sbh * (10 + 24 / t + (5 * a * s) / (h * t))],
      ['tensor + sequence parallel', true, 'none', sbh * (34 / t + (5 * a * s) / (h * t))],
      ['tensor parallel + selective recompute', false, 'selective', sbh * (10 + 24 / t)],
      ['tensor + sequence parallel + selective recompute', true, 'selective', sbh * (34 / t)],
      ['full recompute', false, 'full', 2 * sbh],
    ];
    for (const [name, sp, rc, bytes] of rows) {
      it(`${name}`, () => {
        assert.equal(korthikantiLayerBytes(s, b, h, a, t, sp, rc), bytes);
      });
    }
    it('no parallelism: sbh(34 + 5as/h); FlashAttention removes the 5as²b term; fp32 doubles the tensors, not the masks', () => {
      assert.equal(korthikantiLayerBytes(s, b, h, a, 1, false, 'none'), sbh * (34 + (5 * a * s) / h));
      assert.equal(korthikantiLayerBytes(s, b, h, a, 1, false, 'none', true), sbh * 34);
      assert.equal(korthikantiLayerBytes(s, b, h, a, 1, false, 'none', false, 4), sbh * (66 + (9 * a * s) / h));
    });
    it('through the estimator: per-layer bytes × L layers in flight on the first stage (p micro-batches of L/p layers)', () => {
      const input = planInputFor({ ...MODEL_PRESETS['gpt3-175b'], dropout: 0.1 }, { tp: 8, pp: 8, dp: 1, gpusPerNode: 8, globalBatch: 64, sequenceParallel: true, recompute: 'selective' });
      const r = ok(estimate(input, { convention: 'korthikanti' }));
      assert.equal(r.memory.perDevice.activations, 96 * sbh * (34 / t));
      assert.deepEqual(r.memory.notCovered, ['params', 'grads', 'optimizer', 'buffers', 'overhead']);
    });
    it("ScaleLM's per-tensor accounting equals Table 2 for GPT shapes with dropout", () => {
      for (const [, sp, rc, bytes] of rows) {
        const x = { s, b, h, heads: a, kvHeads: a, ffn: 4 * h, gated: false, tp: t, sequenceParallel: sp, e: 2, mask: 1, flashAttention: false };
        assert.equal(layerActivationBytes(x, rc), bytes);
      }
    });
  });

  describe('accelerate: estimate-memory takes the max, not the sum', () => {
    const gpt2 = { ...MODEL_PRESETS.gpt2 };
    const fp32Size = 4 * 124_439_808;
    it('fp32: "Training using Adam" is 4× the model (the optimizer step), not 16× + activations', () => {
      const r = ok(estimate(planInputFor(gpt2, { precision: 'fp32' }), { convention: 'accelerate' }));
      assert.equal(r.memory.perDevice.total, 4 * fp32Size);
      assert.equal(r.memory.perDevice.params, fp32Size);
      assert.equal(r.memory.perDevice.grads, fp32Size);
      assert.equal(r.memory.perDevice.optimizer, 2 * fp32Size);
    });
    it('mixed precision: the max is the optimizer (2× the fp32 model) — about half the sum real mixed Adam needs', () => {
      const r = ok(estimate(planInputFor(gpt2, { precision: 'bf16-mixed' }), { convention: 'accelerate' }));
      assert.equal(r.memory.perDevice.total, 2 * fp32Size);
      assert.equal(r.memory.perDevice.grads, fp32Size + fp32Size / 2);
      assert.deepEqual(accelerateTrainingUsage(fp32Size, 'float16').reported, 2 * fp32Size);
      const real = ok(estimate(planInputFor(gpt2, { precision: 'bf16-mixed' })));
      const states = real.memory.perDevice.params + real.memory.perDevice.grads + real.memory.perDevice.optimizer;
      assert.ok(states / r.memory.perDevice.total > 2, `scalelm model states ${states} vs accelerate ${r.memory.perDevice.total}`);
    });
    it('counts AutoModel: an untied LM head is left out', () => {
      const llama = { ...MODEL_PRESETS['llama-2-7b'] };
      const r = ok(estimate(planInputFor(llama, { precision: 'bf16-mixed' }), { convention: 'accelerate' }));
      assert.equal(r.memory.params.perDevice, 6_738_415_616 - 32000 * 4096);
    });
    it('refuses parallel layouts: it sizes the whole model on one device', () => {
      const r = estimate(planInputFor(gpt2, { tp: 2 }), { convention: 'accelerate' });
      assert.equal(r.ok, false);
    });
  });
});
