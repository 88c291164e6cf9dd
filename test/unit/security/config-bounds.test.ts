// Issue 12, items 3, 4 and 10: numbers from a config, an HF config.json or a message are range-checked with
// stated bounds; nothing on user input is more than linear; prototype names are unknown keys everywhere.
import assert from 'node:assert/strict';
import { decodeClientMessage, decodeMessage } from '../../../common/protocol';
import { parseBytes } from '../../../common/units';
import { modelFromHuggingFace } from '../../../runtime/config/huggingface';
import { parseConfig } from '../../../runtime/config/parse';
import { divisorsOf } from '../../../runtime/config/rules';

const base = () => ({ model: { layers: 2, hidden: 64, heads: 2, vocab: 256, seqLen: 16 } });
const errorsOf = (raw: unknown): string[] => {
  const r = parseConfig(raw);
  return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
};

describe('security: numbers are bounded, work is linear', () => {
  it('divisorsOf is O(√n), exact, and refuses what it cannot bound', () => {
    for (let n = 1; n <= 500; n++) {
      const slow = Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);
      assert.deepEqual(divisorsOf(n), slow, `n=${n}`);
    }
    assert.deepEqual(divisorsOf(2 ** 40).length, 41);
    for (const n of [1e15, 1e308, Infinity, NaN, -4, 2.5, 2 ** 53 + 1]) assert.deepEqual(divisorsOf(n), [], String(n));
  });

  const cases: Array<[string, (r: ReturnType<typeof base> & Record<string, any>) => void, RegExp]> = [
    ['heads 1e15', (r) => (r.model.heads = 1e15), /model\.heads=1000000000000000 must be at most 65536/],
    ['layers 1e308', (r) => (r.model.layers = 1e308), /model\.layers=1e\+308 must be at most 10000/],
    ['seqLen 1e9', (r) => (r.model.seqLen = 1e9), /model\.seqLen=1000000000 must be at most 16777216/],
    ['vocab 1e12', (r) => (r.model.vocab = 1e12), /model\.vocab=1000000000000 must be at most 16777216/],
    ['steps 1e308', (r) => (r.train = { steps: 1e308 }), /train\.steps=1e\+308 must be at most 1000000000/],
    ['steps 2^53+1', (r) => (r.train = { steps: 2 ** 53 + 1 }), /train\.steps=9007199254740992 must be at most 1000000000/],
    ['lr 1e308', (r) => (r.train = { lr: 1e308 }), /train\.lr=1e\+308 must be at most 10/],
    ['devices.memory "0B"', (r) => (r.devices = { memory: '0B' }), /devices\.memory="0B" must be at least 1 byte/],
    ['devices.memory 1e308', (r) => (r.devices = { memory: 1e308 }), /devices\.memory: a size in bytes must be a whole number from 1 to 2\^53-1/],
    ['devices.memory "99999999TiB"', (r) => (r.devices = { memory: '99999999TiB' }), /too large a size|must be at most 16\.00 TiB/],
    ['devices.memory "1PiB"-ish', (r) => (r.devices = { memory: '1000TiB' }), /devices\.memory="1000TiB" must be at most 16\.00 TiB/],
    ['cluster.nodes 1e15', (r) => (r.cluster = { nodes: 1e15 }), /cluster\.nodes=1000000000000000 must be at most 1000000/],
  ];
  for (const [name, mutate, want] of cases) {
    it(`${name}: refused, naming the bound`, () => {
      const raw = base() as ReturnType<typeof base> & Record<string, any>;
      mutate(raw);
      const errors = errorsOf(raw);
      assert.ok(
        errors.some((e) => want.test(e)),
        errors.join('\n'),
      );
    });
  }

  it('parseBytes is exact or refuses (no Infinity, no rounding past 2^53)', () => {
    assert.equal(parseBytes('80GiB'), 80 * 2 ** 30);
    assert.throws(() => parseBytes('9'.repeat(400) + 'TiB'), /too large a size/);
    assert.throws(() => parseBytes(2 ** 53), /whole number from 1 to 2\^53-1/);
  });

  it('an HF config with n_layer 1e308 or a prototype model_type is refused, not read as a model', () => {
    const huge = modelFromHuggingFace({ model_type: 'gpt2', n_layer: 1e308, n_embd: 768, n_head: 12, vocab_size: 50257 });
    assert.equal(huge.ok, false);
    assert.match(JSON.stringify(huge), /n_layer must be a whole number from 1 to 2147483647/);
    for (const t of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf']) {
      const r = modelFromHuggingFace({ model_type: t, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 2, intermediate_size: 128, vocab_size: 256 });
      assert.equal(r.ok, false, t);
      assert.match(JSON.stringify(r), /is not supported/);
    }
    const optionalHuge = modelFromHuggingFace({ model_type: 'gpt2', n_layer: 2, n_embd: 64, n_head: 2, vocab_size: 256, n_positions: 1e308 });
    assert.equal(optionalHuge.ok, false);
  });
});

describe('security: prototype names are unknown keys', () => {
  const names = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf'];
  for (const k of names) {
    it(`"${k}" in the config (root and a section) and in a message`, () => {
      const root = JSON.parse(`{"model":{"layers":2,"hidden":64,"heads":2,"vocab":256,"seqLen":16},"${k}":1}`) as unknown;
      assert.ok(
        errorsOf(root).some((e) => e.startsWith(`${k}: unknown key "${k}"`)),
        errorsOf(root).join('\n'),
      );
      const section = JSON.parse(`{"model":{"layers":2,"hidden":64,"heads":2,"vocab":256,"seqLen":16,"${k}":1}}`) as unknown;
      assert.ok(
        errorsOf(section).some((e) => e.startsWith(`model.${k}: unknown key`)),
        errorsOf(section).join('\n'),
      );
      const control = decodeClientMessage(`{"type":"control","id":"1","action":"stop","${k}":1}`);
      assert.equal(control.ok, false);
      assert.match((control as { reason: string }).reason, new RegExp(`${k.replace(/_/g, '_')}.*is not a field`));
      const status = decodeMessage(`{"type":"status","state":"running","t":1,"${k}":{}}`);
      assert.equal(status.ok, false);
    });
  }
  it('"__proto__" inside a message\'s opaque config is refused, not turned into the copy\'s prototype (found by the fuzzer)', () => {
    const r = decodeMessage('{"type":"hello","protocol":1,"runId":"r","name":"n","startedAt":1,"world":1,"config":{"a":1,"__proto__":{"polluted":true}}}');
    assert.equal(r.ok, false);
    assert.match((r as { reason: string }).reason, /config\.__proto__.*is not allowed as a key/);
  });
  it('a metric spelled as a prototype name is not a number', () => {
    const r = decodeMessage('{"type":"eval","step":1,"loss":"toString"}');
    assert.equal(r.ok, false);
  });
});
