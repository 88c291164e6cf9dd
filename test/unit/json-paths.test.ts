import * as assert from 'node:assert/strict';
import { spanOfPath } from '../../extension/json-paths';

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
