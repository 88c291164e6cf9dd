import * as assert from 'node:assert/strict';
import { MODEL_PRESETS } from '../../runtime/config/presets';
import { countParams, megatronClosedForm, paddedVocab, stageParams, largestModuleParams, ParamCountError } from '../../runtime/planner/params';
import { megatronGpt } from '../../runtime/planner/input';
import type { PlanModel } from '../../runtime/planner/types';

const gpt2: PlanModel = { ...MODEL_PRESETS.gpt2 };

// Narayanan et al. 2021, Table 1: (layers, hidden, heads) -> parameters in billions as printed.
const TABLE1: [number, number, number, number][] = [
  [24, 2304, 24, 1.7],
  [30, 3072, 32, 3.6],
  [36, 4096, 32, 7.5],
  [40, 6144, 48, 18.4],
  [48, 8192, 64, 39.1],
  [60, 10240, 80, 76.1],
  [80, 12288, 96, 145.6],
  [96, 16384, 128, 310.1],
  [105, 20480, 128, 529.6],
  [128, 25600, 160, 1008.0],
];

describe('planner: parameter counting', () => {
  it('GPT-2 small has 124,439,808 parameters (unpadded vocabulary 50257, tied, learned positions, biases)', () => {
    assert.equal(countParams(gpt2, 1, 1).total, 124_439_808);
  });

  it('the total is the true count even when ranks hold a padded vocabulary', () => {
    const c = countParams(gpt2, 4);
    assert.equal(c.total, 124_439_808);
    assert.equal(c.paddedVocab, 50688);
    assert.equal(c.paddedTotal - c.total, (50688 - 50257) * 768);
  });

  it('pads the vocabulary to a multiple of 128·tp like Megatron', () => {
    assert.equal(paddedVocab(50257, 1), 50304);
    assert.equal(paddedVocab(50257, 4), 50688);
    assert.equal(paddedVocab(50257, 8), 51200);
    assert.equal(paddedVocab(51200, 8), 51200);
    assert.equal(paddedVocab(32000, 8), 32768);
  });

  it("reproduces every parameter count in Megatron's Table 1 (V=51200, s=2048) to the printed 0.1 B", () => {
    for (const [L, h, a, billions] of TABLE1) {
      const model = megatronGpt(L, h, a);
      const total = countParams(model, 8).total;
      assert.equal((total / 1e9).toFixed(1), billions.toFixed(1), `${L}L h${h}`);
      // Megatron's closed form 12Lh²(1 + 13/(12h) + (V+s)/(12Lh)) leaves out only the final LayerNorm's 2h.
      assert.equal(total - megatronClosedForm(L, h, 51200, 2048), 2 * h, `${L}L h${h} closed form`);
    }
  });

  it('counts Llama-2-7B (6,738,415,616) and Llama-3-8B (8,030,261,248): SwiGLU, RMSNorm, untied, rotary, GQA, no biases', () => {
    assert.equal(countParams({ ...MODEL_PRESETS['llama-2-7b'] }, 1, 1).total, 6_738_415_616);
    assert.equal(countParams({ ...MODEL_PRESETS['llama-3-8b'] }, 1, 1).total, 8_030_261_248);
  });

  it('each architectural option changes the count by exactly its tensors', () => {
    const base: PlanModel = {
      layers: 2,
      hidden: 64,
      heads: 8,
      kvHeads: 8,
      ffnHidden: 256,
      vocab: 1000,
      seqLen: 128,
      activation: 'gelu',
      norm: 'layernorm',
      tiedEmbeddings: true,
      bias: true,
      positionEmbedding: 'learned',
    };
    const n = (m: Partial<PlanModel>) => countParams({ ...base, ...m }, 1, 1).total;
    const b = n({});
    // per layer: qkv 3·64²+3·64, proj 64²+64, fc1 64·256+256, fc2 256·64+64, 2 LayerNorms 4·64
    assert.equal(b, 2 * (3 * 4096 + 192 + 4096 + 64 + 16384 + 256 + 16384 + 64 + 256) + 1000 * 64 + 128 * 64 + 128);
    assert.equal(b - n({ tiedEmbeddings: false }), -1000 * 64, 'untied adds an output layer');
    assert.equal(b - n({ positionEmbedding: 'rope' }), 128 * 64, 'rotary has no position table');
    assert.equal(b - n({ norm: 'rmsnorm' }), (2 * 2 + 1) * 64, 'RMSNorm has no bias: 2 per layer + final');
    assert.equal(b - n({ bias: false }), 2 * (192 + 64 + 256 + 64) + (2 * 2 + 1) * 64, 'no linear biases and weight-only norms');
    assert.equal(n({ activation: 'swiglu' }) - b, 2 * (64 * 256 + 256), 'SwiGLU adds a gate projection (and its bias)');
    // GQA with 2 KV heads of size 8: K and V shrink from 64 to 16 columns each.
    assert.equal(b - n({ kvHeads: 2 }), 2 * (2 * 64 * 48 + 2 * 48));
  });

  it('takes a given total: the layers absorb the difference, the embeddings stay as shaped', () => {
    const c = countParams({ ...gpt2, totalParams: 125_000_000 }, 1, 1);
    assert.equal(c.total, 125_000_000);
    assert.equal(c.embedding, 50257 * 768);
    assert.ok(Math.abs(c.perLayer * 12 + c.embedding + c.positions + c.finalNorm - 125_000_000) < 1e-3);
    assert.throws(() => countParams({ ...gpt2, totalParams: 1_000_000 }), ParamCountError);
    assert.throws(() => countParams({ ...gpt2, totalParams: 1_000_000 }), /not more than the embeddings alone/);
  });

  it('the first stage holds the embedding, the last the output layer (a copy of the tied embedding when pp > 1)', () => {
    const m = megatronGpt(8, 512, 8);
    const c = countParams(m, 2);
    const mid = stageParams(c, 8, 2, 4, 1);
    const first = stageParams(c, 8, 2, 4, 0);
    const last = stageParams(c, 8, 2, 4, 3);
    assert.equal(mid.embedding + mid.output, 0);
    assert.equal(first.params - mid.params, c.embedding / 2 + c.positions);
    assert.equal(last.params - mid.params, c.embedding / 2 + c.finalNorm);
    const single = stageParams(c, 8, 2, 1, 0);
    assert.equal(single.params, 4 * mid.params + c.embedding / 2 + c.positions + c.finalNorm, 'pp=1, tied: one copy');
    const untied = countParams({ ...m, tiedEmbeddings: false }, 2);
    assert.equal(stageParams(untied, 8, 2, 1, 0).params - single.params, untied.outputLayer / 2);
  });

  it('tensor-parallel shards add up to the model, with norms and row-parallel biases replicated', () => {
    const m = megatronGpt(4, 256, 8);
    const tp = 4;
    const c = countParams(m, tp);
    const shard = stageParams(c, 4, tp, 1, 0).params;
    const replicatedPerLayer = 2 * 2 * 256 + 256 + 256; // two LayerNorms + proj and fc2 biases
    const replicated = 4 * replicatedPerLayer + c.positions + c.finalNorm;
    assert.equal(tp * shard - (tp - 1) * replicated, c.paddedTotal);
  });

  it("DeepSpeed's largest layer is the largest single module", () => {
    assert.equal(largestModuleParams(gpt2), 50257 * 768);
    assert.equal(largestModuleParams({ ...gpt2, vocab: 100 }), 768 * 3072 + 3072);
  });
});
