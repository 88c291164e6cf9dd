// The planner's `torch` convention for bf16-mixed runs (torch.autocast on GPUs): the engine keeps fp32 parameters,
// gradients and AdamW state (4 + 4 + 8 = 16 B/param, sharded by FSDP2 on dim 0 under ZeRO-2/3), not DeepSpeed's
// 2 + 6 + 12 = 20; its total carries the GPU overheads of the scalelm convention. Activations under autocast are
// checked against the engine's model by python/tests/test_memory_bf16.py.
import * as assert from 'node:assert/strict';
import { hfActivationModel } from '../../runtime/config/huggingface';
import { parseConfig } from '../../runtime/config/parse';
import { predictFromReport } from '../../runtime/launch/plan';
import { DEFAULT_OVERHEADS } from '../../runtime/planner/memory';
import { estimate } from '../../runtime/planner/estimate';
import { planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import type { EstimateResult, PlanModel } from '../../runtime/planner/types';

// One GPT-2 layer small enough to count by hand: C 4, F 8, V 10, T 5.
const tiny: PlanModel = {
  layers: 1,
  hidden: 4,
  heads: 2,
  kvHeads: 2,
  ffnHidden: 8,
  vocab: 10,
  seqLen: 5,
  activation: 'gelu',
  norm: 'layernorm',
  tiedEmbeddings: true,
  bias: true,
  positionEmbedding: 'learned',
};
// wte 10×4, wpe 5×4, ln_1 4+4, c_attn 4×12+12, c_proj 4×4+4, ln_2 4+4, c_fc 4×8+8, c_proj 8×4+4, ln_f 4+4.
const TINY_PARAMS = 40 + 20 + 8 + 60 + 20 + 8 + 40 + 36 + 8;
// dp rank 0 under FSDP2 holds ceil(rows / 3) dim-0 rows of each: wte 4×4, wpe 2×4, ln_1 2+2, c_attn 2×12 + 4,
// c_proj 2×4 + 2, ln_2 2+2, c_fc 2×8 + 3, c_proj 3×4 + 2, ln_f 2+2 — torch.chunk's padding puts more on rank 0.
const TINY_RANK0_OF_3 = 16 + 8 + 4 + 28 + 10 + 4 + 19 + 14 + 4;

function ok(r: EstimateResult) {
  if (!r.ok) throw new Error(r.issues.map((i) => `${i.path}: ${i.message}`).join('; '));
  return r;
}
const torch = (o: PlanInputOptions, m: PlanModel = tiny) => ok(estimate(planInputFor(m, { gpusPerNode: 8, ...o }), { convention: 'torch' })).memory;
const states = (o: PlanInputOptions) => {
  const d = torch(o).perDevice;
  return { params: d.params, grads: d.grads, optimizer: d.optimizer };
};

describe('planner: torch convention, bf16-mixed', () => {
  it('ZeRO-0: fp32 parameters, gradients and AdamW state, replicated: 4 + 4 + 8 = 16 B/param, as in fp32', () => {
    assert.equal(TINY_PARAMS, 240);
    const want = { params: 4 * TINY_PARAMS, grads: 4 * TINY_PARAMS, optimizer: 8 * TINY_PARAMS };
    assert.deepEqual(states({ dp: 2, precision: 'bf16-mixed' }), want);
    assert.deepEqual(states({ dp: 2, precision: 'fp32' }), want);
  });

  it("ZeRO-3 (FSDP2): rank 0's dim-0 chunks of every parameter, padding included, 16 B per element it holds", () => {
    const want = { params: 4 * TINY_RANK0_OF_3, grads: 4 * TINY_RANK0_OF_3, optimizer: 8 * TINY_RANK0_OF_3 };
    assert.deepEqual(states({ dp: 3, zero: 3, precision: 'bf16-mixed' }), want);
    assert.ok(TINY_RANK0_OF_3 > TINY_PARAMS / 3);
  });

  it('a large model under ZeRO-3: 16 B per parameter per dp rank where the scalelm convention says 20', () => {
    const o: PlanInputOptions = { dp: 8, zero: 3, precision: 'bf16-mixed', flashAttention: true };
    const t = torch(o, { ...llama8b });
    const s = ok(estimate(planInputFor(llama8b, { gpusPerNode: 8, ...o }))).memory.perDevice;
    const P = t.params.total;
    const bpp = (x: { params: number; grads: number; optimizer: number }) => (x.params + x.grads + x.optimizer) / (P / 8);
    assert.ok(Math.abs(bpp(t.perDevice) - 16) < 0.01, `torch: ${bpp(t.perDevice)} B/param`);
    assert.ok(Math.abs(bpp(s) - 20) < 0.05, `scalelm: ${bpp(s)} B/param`);
  });

  it('on GPUs the total is the device figure: allocated tensors, + allocator slack = reserved, + CUDA context and NCCL', () => {
    const m = torch({ dp: 2, zero: 3, precision: 'bf16-mixed' });
    const d = m.perDevice;
    const allocated = d.params + d.grads + d.optimizer + d.activations + d.buffers;
    assert.equal(m.totalIs, 'device');
    assert.ok(m.figures);
    assert.equal(m.figures.allocated, allocated);
    assert.equal(m.figures.reserved, allocated + allocated * DEFAULT_OVERHEADS.allocatorSlack);
    assert.equal(m.figures.device, d.total);
    assert.equal(d.total, m.figures.reserved + DEFAULT_OVERHEADS.cudaContext + DEFAULT_OVERHEADS.ncclPerCommunicator);
    assert.deepEqual(m.figures.allocatedBy, { params: d.params, grads: d.grads, optimizer: d.optimizer, activations: d.activations, buffers: d.buffers });
    // fp32 (CPU): what the engine counts, nothing on top.
    const cpu = torch({ dp: 2, zero: 3, precision: 'fp32' });
    assert.equal(cpu.totalIs, 'allocated');
    assert.equal(cpu.figures, undefined);
    assert.equal(cpu.perDevice.overhead, 0);
  });

  it('activations under autocast: bf16 matmul inputs and weight copies, fp32 norms and loss (full recompute keeps fp32 block inputs)', () => {
    const m: PlanModel = { ...tiny, layers: 4, hidden: 64, heads: 4, kvHeads: 4, ffnHidden: 256, vocab: 1000, seqLen: 128 };
    const act = (precision: 'fp32' | 'bf16-mixed', recompute: 'none' | 'full') => torch({ precision, recompute, microBatch: 2 }, m).perDevice.activations;
    assert.ok(act('bf16-mixed', 'none') < act('fp32', 'none'));
    // Full recompute: the same fp32 block inputs; bf16 adds the block weights and addmm biases autocast's cast
    // cache keeps until the forward ends, and the tail differs by the bf16 ln_f cast and output-weight copy.
    const BT = 2 * 128;
    const C = 64;
    const cached = 4 * 2 * (4 * C * C + 2 * C * 256 + 3 * C + 256);
    assert.equal(act('bf16-mixed', 'full') - act('fp32', 'full'), cached + 2 * 1000 * C + 2 * BT * C - 4 * BT * C);
  });

  it('fp16-mixed is refused (the engine trains bf16-mixed or fp32); HuggingFace activations are modelled in fp32 only', () => {
    const r = estimate(planInputFor(tiny, { precision: 'fp16-mixed' }), { convention: 'torch' });
    assert.ok(!r.ok);
    assert.match(r.issues.map((i) => i.message).join('\n'), /bf16-mixed or fp32, not fp16-mixed/);
    const hf = { model_type: 'gpt2' };
    assert.ok(hfActivationModel(hf, 'sdpa', { tp: 1, recompute: 'none', precision: 'fp32' }).ok);
    const bf = hfActivationModel(hf, 'sdpa', { tp: 1, recompute: 'none', precision: 'bf16-mixed' });
    assert.ok(!bf.ok && /bf16-mixed is not modelled/.test(bf.why));
  });
});

describe('launch plan: which convention a launched run is predicted in', () => {
  const parsed = parseConfig({ model: { preset: 'tiny' }, train: { precision: 'bf16-mixed' }, parallel: { dp: 2 }, cluster: { gpusPerNode: 2, nodes: 1, gpuMemory: 2 ** 36 } });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const file = { file: 'p.scalelm.json', source: 'scalelm' as const, config: parsed.config, notes: [] };
  const line = (r: ReturnType<typeof predictFromReport>) => r.lines.join('\n');
  it('bf16-mixed under autocast (reported precision): the torch convention', () => {
    assert.match(line(predictFromReport({ k: 'shape', rank: 0, layout: { world: 2, precision: 'bf16-mixed' } }, file)), /torch convention\): .*bf16-mixed/);
  });
  it('bf16 parameters without autocast, or a HuggingFace model in bf16: the scalelm convention', () => {
    assert.match(line(predictFromReport({ k: 'shape', rank: 0, layout: { world: 2, paramDtype: 'bf16' } }, file)), /scalelm convention\): .*bf16-mixed/);
    const hf = { model_type: 'gpt2', n_layer: 2, n_embd: 64, n_head: 4, n_positions: 32, vocab_size: 100 };
    assert.match(line(predictFromReport({ k: 'shape', rank: 0, model: hf, layout: { world: 2, precision: 'bf16-mixed', attention: 'sdpa' } })), /scalelm convention\): .*bf16-mixed/);
  });
});

const llama8b: PlanModel = {
  layers: 32,
  hidden: 4096,
  heads: 32,
  kvHeads: 8,
  ffnHidden: 14336,
  vocab: 128256,
  seqLen: 8192,
  activation: 'swiglu',
  norm: 'rmsnorm',
  tiedEmbeddings: false,
  bias: false,
  positionEmbedding: 'rope',
};
