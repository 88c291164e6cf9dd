// A layout that cannot exist gets a clear reason, never a number.
import * as assert from 'node:assert/strict';
import { estimate } from '../../runtime/planner/estimate';
import { megatronGpt, planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import type { ConventionName, PlanModel } from '../../runtime/planner/types';

const model: PlanModel = megatronGpt(24, 2048, 16);

function refused(o: PlanInputOptions, convention: ConventionName = 'scalelm', m: PlanModel = model): string {
  const r = estimate(planInputFor(m, { gpusPerNode: 8, ...o }), { convention });
  assert.equal(r.ok, false, `expected a refusal for ${JSON.stringify(o)} (${convention})`);
  if (r.ok) return '';
  assert.ok(!('memory' in r), 'a refusal carries no numbers');
  return r.issues.map((i) => `${i.path}: ${i.message}`).join('\n');
}

describe('planner: refusals', () => {
  const cases: [string, PlanInputOptions, RegExp, PlanModel?][] = [
    ['tp that does not divide the heads', { tp: 3 }, /parallel\.tp=3 must divide model\.heads=16; choose 1, 2, 4, 8 or 16/],
    ['tp that does not divide the KV heads', { tp: 8 }, /must divide model\.kvHeads=4/, { ...model, kvHeads: 4 }],
    ['pp that does not divide the layers', { pp: 5, globalBatch: 5 }, /parallel\.pp=5 must divide model\.layers=24/],
    ['vpp without a pipeline', { vpp: 2 }, /needs pipeline parallelism/],
    ['pp·vpp that does not divide the layers', { pp: 2, vpp: 5, globalBatch: 2 }, /pp·parallel\.vpp=2·5=10 must divide model\.layers=24/],
    ['ZeRO-2 with a pipeline', { pp: 2, dp: 2, zero: 2, globalBatch: 2 }, /ZeRO-2\/3 partition gradients that pipeline stages accumulate/],
    ['sequence parallelism without tensor parallelism', { sequenceParallel: true }, /sequenceParallel needs parallel\.tp > 1/],
    ['optimizer offload without ZeRO', { offloadOptimizer: true }, /offloadOptimizer needs parallel\.zero >= 1/],
    ['parameter offload below ZeRO-3', { dp: 2, zero: 2, offloadParams: true }, /offloadParams needs parallel\.zero=3/],
    ['a global batch the micro-batch and dp do not divide', { dp: 4, globalBatch: 6 }, /train\.globalBatch=6 must be a multiple of microBatch·dp = 1·4 = 4/],
    [
      'interleaving with micro-batches not a multiple of pp',
      { pp: 4, vpp: 2, dp: 2, globalBatch: 12 },
      /interleaved schedule \(vpp=2\) needs the micro-batches per step \(6\) to be a multiple of pp=4/,
    ],
    ['a total smaller than the embeddings', {}, /model\.totalParams=1000 is not more than the embeddings alone/, { ...model, totalParams: 1000 }],
    ['heads that do not divide the hidden size', {}, /model\.heads=15 must divide model\.hidden=2048/, { ...model, heads: 15, kvHeads: 15 }],
  ];
  for (const [name, o, re, m] of cases) {
    it(`refuses ${name}`, () => assert.match(refused(o, 'scalelm', m), re));
  }

  it("refuses a layout whose dp·tp·pp is not the cluster's GPU count, and says which dp fits", () => {
    const r = estimate({ ...planInputFor(model, { tp: 2, dp: 2 }), cluster: { ...planInputFor(model, { gpus: 8 }).cluster } });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.issues[0]!.message, /dp·tp·pp = 2·2·1 = 4 must equal the cluster's 8 GPUs .*use dp=4/);
  });

  const conventionCases: [ConventionName, PlanInputOptions, RegExp][] = [
    ['deepspeed', { dp: 8, zero: 1 }, /cover ZeRO-2 and ZeRO-3 only/],
    ['deepspeed', { tp: 2, dp: 4, zero: 2 }, /know no tensor or pipeline parallelism/],
    ['megatron', { dp: 8, zero: 3 }, /Megatron-LM has no ZeRO-3/],
    ['megatron', { dp: 8, zero: 1, offloadOptimizer: true }, /formula has no offload/],
    ['zero-paper', { dp: 8, zero: 2, offloadOptimizer: true }, /the ZeRO paper has no offload/],
    ['accelerate', { dp: 8, zero: 1 }, /whole model on one device/],
    ['accelerate', { optimizer: 'sgd' }, /assumes Adam/],
    ['runtime', { precision: 'bf16-mixed' }, /fp32 only/],
  ];
  for (const [convention, o, re] of conventionCases) {
    it(`--convention ${convention} refuses what its anchor has no terms for (${re.source})`, () => assert.match(refused(o, convention), re));
  }

  it('an unparallel layout is fine in every convention that can size it', () => {
    for (const convention of ['scalelm', 'zero-paper', 'megatron', 'korthikanti', 'accelerate'] as const) {
      assert.equal(estimate(planInputFor(model), { convention }).ok, true, convention);
    }
    assert.equal(estimate(planInputFor(model, { dp: 8, zero: 3 }), { convention: 'deepspeed' }).ok, true);
    assert.equal(estimate(planInputFor(model, { precision: 'fp32' }), { convention: 'runtime' }).ok, true);
  });
});
