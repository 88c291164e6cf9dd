// The typed parts of a run's hello: its resolved config read back through the config parser, and its plan
// as the one PlanSummary shape.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { planSummary, validateMessage, type HelloMessage } from '../../common/protocol';
import { loadConfig } from '../../runtime/config/parse';
import { readResolvedConfig } from '../../runtime/config/resolved';

const ROOT = join(__dirname, '..', '..', '..');
const helloOf = (stream: string): HelloMessage => {
  const r = validateMessage(JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'streams', stream, 'metrics.jsonl'), 'utf8').split('\n')[0]!));
  assert.ok(r.ok && r.value.type === 'hello');
  return r.value as HelloMessage;
};

describe('hello: the config and plan read back typed', () => {
  it('a resolved config comes back as the parser resolves it (examples, cluster given or derived)', () => {
    for (const f of ['tiny.scalelm.json', 'tiny-parallel.scalelm.json', 'llama-2-70b-h100.scalelm.json']) {
      const c = loadConfig(readFileSync(join(ROOT, 'examples', f), 'utf8'));
      const r = readResolvedConfig(JSON.parse(JSON.stringify(c)));
      assert.ok(r.ok, f);
      assert.deepEqual(r.config, c);
    }
  });

  it('runs recorded by older runtimes are read (fields they lacked take the defaults)', () => {
    for (const s of ['tiny-cpu', 'llama7b-8xh200']) assert.ok(readResolvedConfig(helloOf(s).config).ok, s);
  });

  it("refuses what is not a run's resolved config, naming the field", () => {
    const partial = readResolvedConfig({ model: { preset: 'tiny' } });
    assert.ok(!partial.ok && partial.errors[0]!.path === 'train');
    const c = JSON.parse(JSON.stringify(loadConfig(readFileSync(join(ROOT, 'examples', 'tiny.scalelm.json'), 'utf8')))) as { train: { microBatch: unknown; globalBatch: number } };
    c.train.microBatch = 'x';
    const bad = readResolvedConfig(c);
    assert.ok(!bad.ok && bad.errors.some((e) => e.path === 'train.microBatch'));
    const edited = JSON.parse(JSON.stringify(loadConfig(readFileSync(join(ROOT, 'examples', 'llama-2-70b-h100.scalelm.json'), 'utf8')))) as {
      cluster: { explicit: boolean; spec: { memoryBandwidth: number } };
    };
    assert.equal(edited.cluster.explicit, true);
    edited.cluster.spec.memoryBandwidth = 1; // derived from the GPU preset: no config says this
    const derived = readResolvedConfig(edited);
    assert.ok(!derived.ok && derived.errors[0]!.path === 'cluster.spec.memoryBandwidth', JSON.stringify(derived));
  });

  it('the plan: one PlanSummary shape, anything else is not taken for one', () => {
    const plan = planSummary(helloOf('llama7b-8xh200'));
    assert.ok(plan);
    assert.equal(plan.convention, 'scalelm');
    assert.ok(plan.perDevice.total! > 1e11);
    const base = helloOf('llama7b-8xh200');
    assert.equal(planSummary({ ...base, plan: { memory: { perDevice: { params: 1 } } } }), undefined);
    assert.equal(planSummary({ ...base, plan: { convention: 'torch', perDevice: { params: -1 } } }), undefined);
    assert.deepEqual(planSummary({ ...base, plan: { convention: 'torch', target: '2 × cpu', capacity: 2 ** 30, perDevice: { params: 10, total: 20 } } }), {
      convention: 'torch',
      target: '2 × cpu',
      capacity: 2 ** 30,
      perDevice: { params: 10, total: 20 },
    });
  });
});
