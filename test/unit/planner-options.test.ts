// Every adjustable allowance moves exactly its own term, and every malformed input gets a reason.
import * as assert from 'node:assert/strict';
import { estimate } from '../../runtime/planner/estimate';
import { deepspeedConfig } from '../../runtime/planner/export';
import { megatronGpt, planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import { DEFAULT_OVERHEADS, layoutOf } from '../../runtime/planner/memory';
import { DEFAULT_COMM } from '../../runtime/planner/time';
import type { CommModel, EstimateOptions, EstimateResult, Overheads, PlanInput } from '../../runtime/planner/types';

const model = megatronGpt(24, 2048, 16);
function ok(r: EstimateResult) {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r;
}
const input = (o: PlanInputOptions) => planInputFor(model, { gpusPerNode: 8, ...o });

describe('planner: options', () => {
  // Each allowance, a layout where it applies, and the term label it changes.
  const overheadCases: [keyof Overheads, PlanInputOptions, string][] = [
    ['cudaContext', {}, 'CUDA context'],
    ['allocatorSlack', {}, 'allocator slack'],
    ['ncclPerCommunicator', { dp: 8 }, 'NCCL buffers'],
    ['reduceBucketElements', { dp: 8, zero: 2 }, 'reduce bucket'],
    ['allgatherBucketElements', { dp: 8, zero: 2 }, 'all-gather bucket'],
    ['stage3MaxLiveParameters', { dp: 8, zero: 3 }, 'gathered and prefetched'],
    ['stage3PrefetchElements', { dp: 8, zero: 3 }, 'gathered and prefetched'],
    ['fp32LogitCopies', {}, 'fp32 logits'],
    ['hostPerProcess', {}, 'process baseline'],
  ];
  for (const [key, o, label] of overheadCases) {
    it(`overheads.${key} changes "${label}" and nothing else but the slack`, () => {
      const value = DEFAULT_OVERHEADS[key] as number;
      // Halve the bucket sizes and live-parameter limit (they are capped by the model), double the rest.
      const changed = key === 'stage3MaxLiveParameters' || key.endsWith('BucketElements') ? value / 1000 : value * 2;
      const a = ok(estimate(input(o))).memory.terms;
      const b = ok(estimate(input(o), { overheads: { [key]: changed } })).memory.terms;
      const diffs = a.map((t, i) => ({ label: t.label, d: b[i]!.bytes - t.bytes })).filter((x) => x.d !== 0);
      assert.ok(
        diffs.some((x) => x.label.includes(label)),
        `${key}: ${JSON.stringify(diffs)}`,
      );
      assert.ok(
        diffs.every((x) => x.label.includes(label) || x.label.includes('allocator slack')),
        `${key}: ${JSON.stringify(diffs)}`,
      );
    });
  }

  it('overheads.overlapComm halves the DeepSpeed reduce bucket', () => {
    const bucket = (e: EstimateOptions) => ok(estimate(input({ dp: 8, zero: 2 }), e)).memory.terms.find((t) => t.label.includes('reduce bucket'))!.bytes;
    assert.equal(bucket({ overheads: { overlapComm: false } }) * 2, bucket({}));
  });

  const commCases: [keyof CommModel, PlanInputOptions, (i: PlanInput) => void][] = [
    ['intraNodeLatency', { tp: 8 }, () => {}],
    ['interNodeLatency', { dp: 16, gpus: 16 }, (i) => (i.cluster.spec = { ...i.cluster.spec, interNodeBandwidth: 1e6 })],
    ['hostBandwidth', { dp: 8, zero: 2, offloadOptimizer: true }, () => {}],
    ['cpuOptimizerParamsPerSec', { dp: 8, zero: 2, offloadOptimizer: true }, () => {}],
  ];
  for (const [key, o, patch] of commCases) {
    it(`comm.${key} changes the step time where it applies`, () => {
      const i = input({ globalBatch: 64, ...o });
      patch(i);
      const a = ok(estimate(i)).time.stepMs;
      const b = ok(estimate(i, { comm: { [key]: DEFAULT_COMM[key] * 10 } })).time.stepMs;
      assert.notEqual(a, b);
    });
  }

  it('cluster.efficiency scales the matrix work, not the memory-bound ops', () => {
    const at = (efficiency: number, comm = {}) => ok(estimate({ ...input({}), cluster: { ...input({}).cluster, efficiency } }, { comm })).time.breakdown.compute;
    const matrixOnly = { elementwiseBytesReplicated: 0, elementwiseBytesSharded: 0, attentionBytesPerScore: 0, lossBytesPerLogit: 0 };
    assert.ok(Math.abs(at(0.25, matrixOnly) / at(0.5, matrixOnly) - 2) < 1e-9);
    const ratio = at(0.25) / at(0.5);
    assert.ok(ratio > 1.5 && ratio < 2, `${ratio}`);
  });

  it('cluster.headroom decides what fits', () => {
    const i = input({ dp: 8 });
    const r = ok(estimate(i));
    const need = r.memory.perDevice.total / i.cluster.spec.memory;
    assert.equal(ok(estimate({ ...i, cluster: { ...i.cluster, headroom: Math.max(0, 1 - need - 0.01) } })).fits, true);
    assert.equal(ok(estimate({ ...i, cluster: { ...i.cluster, headroom: 1 - need + 0.01 } })).fits, false);
  });

  it('adam and adamw keep the same states; the DeepSpeed export names the optimizer', () => {
    const adam = input({ optimizer: 'adam' });
    assert.deepEqual(ok(estimate(adam)).memory.perDevice, ok(estimate(input({}))).memory.perDevice);
    assert.equal((deepspeedConfig(adam, layoutOf(adam)).optimizer as { type: string }).type, 'Adam');
  });

  const malformed: [string, (i: PlanInput) => void, RegExp][] = [
    ['a fractional layer count', (i) => (i.model = { ...i.model, layers: 2.5 }), /model\.layers must be a positive whole number, got 2\.5/],
    ['a zero vocabulary', (i) => (i.model = { ...i.model, vocab: 0 }), /model\.vocab must be a positive whole number/],
    ['a zero tensor-parallel degree', (i) => (i.parallel = { ...i.parallel, tp: 0 }), /parallel\.tp must be a positive whole number, got 0/],
    ['a fractional micro-batch', (i) => (i.train = { ...i.train, microBatch: 1.5 }), /train\.microBatch must be a positive whole number/],
    ['a zero global batch', (i) => (i.train = { ...i.train, globalBatch: 0 }), /train\.globalBatch must be a positive whole number/],
    ['no GPU memory', (i) => (i.cluster = { ...i.cluster, spec: { ...i.cluster.spec, memory: 0 } }), /GPU memory must be positive/],
  ];
  for (const [name, patch, re] of malformed) {
    it(`refuses ${name}`, () => {
      const i = input({});
      patch(i);
      const r = estimate(i);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.issues.map((x) => x.message).join('\n'), re);
    });
  }
});
