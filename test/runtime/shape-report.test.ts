// The rank channel's `shape` line (runtime/parallel/shape-report.ts): what the Monitor's rank 0 reports for
// the planner is kept field by field; a wrong type refuses the line (the channel then drops that socket).
import assert from 'node:assert/strict';
import { parseRankLine } from '../../runtime/parallel/channel';

const good = {
  k: 'shape',
  rank: 0,
  totalSteps: 100,
  model: { model_type: 'llama', num_hidden_layers: 2, hidden_size: 64, architectures: ['LlamaForCausalLM'], tie_word_embeddings: false, torch_dtype: 'float32' },
  layout: { world: 4, strategy: 'fsdp2', zero: 3, tp: 2, microBatch: 8, seqLen: 512, precision: 'bf16-mixed', optimizer: 'adamw', attention: 'sdpa', future: 1 },
};

describe('rank channel: the shape line', () => {
  it('keeps what the planner reads and leaves out keys it does not know', () => {
    const r = parseRankLine(JSON.stringify(good));
    assert.ok(r.ok);
    assert.deepEqual(r.value, {
      k: 'shape',
      rank: 0,
      totalSteps: 100,
      model: { model_type: 'llama', num_hidden_layers: 2, hidden_size: 64, architectures: ['LlamaForCausalLM'], tie_word_embeddings: false },
      layout: { world: 4, strategy: 'fsdp2', zero: 3, tp: 2, microBatch: 8, seqLen: 512, precision: 'bf16-mixed', optimizer: 'adamw', attention: 'sdpa' },
    });
  });

  it('refuses a wrong type, naming the field', () => {
    const cases: [object, RegExp][] = [
      [{ ...good, layout: undefined }, /malformed shape line \(layout\)/],
      [{ ...good, layout: { ...good.layout, world: 0 } }, /\(layout\.world\)/],
      [{ ...good, layout: { ...good.layout, zero: 4 } }, /\(layout\.zero\)/],
      [{ ...good, layout: { ...good.layout, microBatch: 1.5 } }, /\(layout\.microBatch\)/],
      [{ ...good, layout: { ...good.layout, strategy: 'megatron' } }, /\(layout\.strategy\)/],
      [{ ...good, layout: { ...good.layout, precision: 'fp8' } }, /\(layout\.precision\)/],
      [{ ...good, totalSteps: -1 }, /\(totalSteps\)/],
      [{ ...good, model: { ...good.model, hidden_size: { n: 1 } } }, /\(model\.hidden_size\)/],
      [{ ...good, model: 'gpt2' }, /\(model\)/],
    ];
    for (const [line, why] of cases) {
      const r = parseRankLine(JSON.stringify(line));
      assert.equal(r.ok, false, JSON.stringify(line));
      if (!r.ok) assert.match(r.reason, why);
    }
  });
});
