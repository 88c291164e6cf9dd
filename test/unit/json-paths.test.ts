import * as assert from 'node:assert/strict';
import { parseJsonc, patchConfigText, patchEdits, spanOfPath } from '../../extension/json-paths';

describe('config JSON paths to document spans (for diagnostics)', () => {
  const text = '{\n  "model": { "preset": "gpt2" },\n  "parallel": { "tp": 5, "dp": 2 }\n}';
  const at = (path: string) => {
    const s = spanOfPath(text, path);
    return text.slice(s.offset, s.offset + s.length);
  };
  it('points at the offending value', () => {
    assert.equal(at('parallel.tp'), '5');
    assert.equal(at('model.preset'), '"gpt2"');
  });
  it('points at the section key for object values and for missing keys inside it', () => {
    assert.equal(at('parallel'), '"parallel"');
    assert.equal(at('parallel.zero'), '"parallel"');
    assert.equal(at('train.globalBatch'), text);
  });
  it('survives text that is not JSON', () => {
    assert.deepEqual(spanOfPath('not json', 'a.b'), { offset: 0, length: 0 });
  });
});

describe('a planner layout merged into a config file (chooseLayout), checked by the config parser', () => {
  const text = '{\n  // my run\n  "model": { "preset": "tiny" },\n  "parallel": { "dp": 2 }\n}\n';
  it('writes each leaf in place, keeping comments, when the result parses', () => {
    const r = patchConfigText(text, { parallel: { dp: 4, zero: 1 }, train: { microBatch: 2 } });
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.match(r.text, /\/\/ my run/);
    const value = parseJsonc(r.text) as { parallel: { dp: number; zero: number }; train: { microBatch: number } };
    assert.deepEqual([value.parallel.dp, value.parallel.zero, value.train.microBatch], [4, 1, 2]);
    assert.deepEqual(patchEdits({ parallel: { dp: 4 }, cluster: { nodes: 2 } }), [
      { path: 'parallel.dp', value: 4 },
      { path: 'cluster.nodes', value: 2 },
    ]);
  });
  it('refuses a patch that would leave an invalid config, naming the field; nothing is returned to write', () => {
    const bad = patchConfigText(text, { parallel: { dp: 0 } });
    assert.ok(!bad.ok && /^parallel\.dp: /.test(bad.reason), JSON.stringify(bad));
    const unknown = patchConfigText(text, { parallel: { warp: 9 } });
    assert.ok(!unknown.ok && /parallel\.warp/.test(unknown.reason), JSON.stringify(unknown));
    const wrongType = patchConfigText(text, { train: { recompute: 'sometimes' } });
    assert.ok(!wrongType.ok && /train\.recompute/.test(wrongType.reason));
  });
});
