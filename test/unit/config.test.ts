import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildJsonSchema, loadConfig, modelFromHuggingFace, parseConfig, setPath, ConfigError, MODEL_PRESETS, GPU_PRESETS } from '../../runtime/config';
import { isHuggingFaceConfig } from '../../runtime/config/huggingface';
import { buildMarkdownReference } from '../../runtime/config/schema';
import { parseBytes, formatBytes } from '../../common/units';

const root = join(__dirname, '..', '..', '..');

function errorsOf(input: unknown): { path: string; message: string }[] {
  const r = parseConfig(input);
  assert.equal(r.ok, false, `expected errors for ${JSON.stringify(input)}`);
  return r.ok ? [] : r.errors;
}
function only(input: unknown, path: string): string {
  const errors = errorsOf(input);
  const at = errors.filter((e) => e.path === path);
  assert.equal(at.length, 1, `expected one error at ${path}, got ${JSON.stringify(errors)}`);
  return at[0]!.message;
}
const gpt2 = (extra: Record<string, unknown> = {}) => ({ model: { preset: 'gpt2' }, ...extra });

describe('run config: valid files', () => {
  it('resolves the tiny example with every default filled in', () => {
    const config = loadConfig(readFileSync(join(root, 'examples/tiny.scalelm.json'), 'utf8'));
    assert.equal(config.model.layers, MODEL_PRESETS.tiny.layers);
    assert.equal(config.model.vocab, 256);
    assert.equal(config.train.globalBatch, config.train.microBatch * config.parallel.dp);
    assert.equal(config.train.minLr, config.train.lr / 10);
    assert.equal(config.devices.count, 1);
    assert.equal(config.devices.memory, 2 ** 30);
    assert.equal(config.monitor.host, '127.0.0.1');
    assert.equal(config.cluster.explicit, false);
  });

  it('lets explicit model fields override the preset', () => {
    const c = loadConfig({ model: { preset: 'gpt2', layers: 6, seqLen: 256 } });
    assert.equal(c.model.layers, 6);
    assert.equal(c.model.seqLen, 256);
    assert.equal(c.model.hidden, 768);
  });

  it('accepts a fully explicit model and derives kvHeads and ffnHidden', () => {
    const c = loadConfig({ model: { layers: 2, hidden: 64, heads: 4, vocab: 100, seqLen: 32 } });
    assert.equal(c.model.kvHeads, 4);
    assert.equal(c.model.ffnHidden, 256);
    assert.equal(c.model.name, 'custom');
  });

  it('derives the cluster from the layout when none is given, and checks one that is', () => {
    const c = loadConfig(gpt2({ parallel: { dp: 4, tp: 4 } }));
    assert.deepEqual([c.cluster.nodes, c.cluster.gpusPerNode], [2, 8]);
    assert.equal(c.cluster.spec.memory, GPU_PRESETS['H100-SXM'].memory);
    const explicit = loadConfig(gpt2({ parallel: { dp: 4, tp: 4 }, cluster: { gpu: 'A100-40GB', nodes: 2, gpuMemory: '39GiB', peakTflops: 300 } }));
    assert.equal(explicit.cluster.spec.memory, 39 * 2 ** 30);
    assert.equal(explicit.cluster.spec.peakFlops, 300e12);
    assert.equal(explicit.cluster.explicit, true);
  });

  it('accepts every model preset with its own heads as tp and a valid pp', () => {
    for (const [name, shape] of Object.entries(MODEL_PRESETS)) {
      const r = parseConfig({ model: { preset: name }, parallel: { tp: shape.kvHeads % 2 === 0 ? 2 : 1 } });
      assert.ok(r.ok, `${name}: ${JSON.stringify(!r.ok && r.errors)}`);
    }
  });

  it('validates every example config in examples/', () => {
    for (const f of readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.scalelm.json'))) {
      const r = parseConfig(readFileSync(join(root, 'examples', f), 'utf8'));
      assert.ok(r.ok, `${f}: ${JSON.stringify(!r.ok && r.errors)}`);
    }
  });
});

describe('run config: structural errors', () => {
  it('reports invalid JSON with line and column', () => {
    const [e] = errorsOf('{\n  "model": {,}\n}');
    assert.match(e!.message, /not valid JSON at line 2, column 13/);
  });

  it('requires the model section and explains presets when fields are missing', () => {
    assert.match(only({}, 'model'), /model is required/);
    const errors = errorsOf({ model: { hidden: 64 } });
    assert.deepEqual(errors.map((e) => e.path).sort(), ['model.heads', 'model.layers', 'model.seqLen', 'model.vocab']);
    assert.match(errors[0]!.message, /model\.preset/);
  });

  it('refuses unknown keys with a "did you mean"', () => {
    assert.equal(only(gpt2({ parallel: { tensorParallel: 2, dp: 1 } }), 'parallel.tensorParallel').includes('did you mean'), false);
    assert.match(only(gpt2({ paralel: {} }), 'paralel'), /unknown key "paralel"; did you mean "parallel"\?/);
    assert.match(only(gpt2({ train: { microBatc: 2 } }), 'train.microBatc'), /did you mean "train.microBatch"/);
    assert.match(only(gpt2({ parallel: { tensorParallel: 2 } }), 'parallel.tensorParallel'), /allowed keys: dp, tp/);
  });

  it('checks types, whole numbers, ranges and enums with the JSON path', () => {
    assert.match(only(gpt2({ parallel: { tp: '2' } }), 'parallel.tp'), /parallel\.tp must be a whole number, got "2"/);
    assert.match(only(gpt2({ parallel: { tp: 1.5 } }), 'parallel.tp'), /must be a whole number/);
    assert.match(only(gpt2({ parallel: { dp: 0 } }), 'parallel.dp'), /must be at least 1/);
    assert.match(only(gpt2({ parallel: { zero: 4 } }), 'parallel.zero'), /is not one of 0, 1, 2, 3/);
    assert.match(only(gpt2({ train: { precision: 'bf16' } }), 'train.precision'), /did you mean "bf16-mixed"/);
    assert.match(only({ model: { preset: 'gpt-2' } }, 'model.preset'), /did you mean "gpt2"/);
    assert.match(only(gpt2({ train: { lr: 0 } }), 'train.lr'), /greater than 0/);
    assert.match(only(gpt2({ devices: { memory: '2 gigs' } }), 'devices.memory'), /size like "80GiB"/);
    assert.match(only(gpt2({ model: { preset: 'gpt2', bias: 'yes' } }), 'model.bias'), /true or false/);
    assert.match(only([], ''), /must be an object, got an array/);
  });

  it('reports every problem at once, not only the first', () => {
    assert.equal(errorsOf(gpt2({ parallel: { tp: 0, dp: 'x' }, train: { steps: -1 } })).length, 3);
  });
});

describe('run config: cross-field rules', () => {
  it('tp must divide heads, kvHeads and ffnHidden, with the valid choices listed', () => {
    assert.equal(only({ model: { layers: 2, hidden: 64, heads: 8, vocab: 100, seqLen: 16 }, parallel: { tp: 3 } }, 'parallel.tp'), 'parallel.tp=3 must divide model.heads=8; choose 1, 2, 4 or 8');
    assert.match(only({ model: { preset: 'llama-2-70b' }, parallel: { tp: 16 } }, 'parallel.tp'), /must divide model.kvHeads=8; choose 1, 2, 4 or 8/);
    assert.match(only({ model: { layers: 2, hidden: 64, heads: 4, vocab: 100, seqLen: 16, ffnHidden: 90 }, parallel: { tp: 4 } }, 'parallel.tp'), /must divide model.ffnHidden=90; choose 1 or 2/);
  });

  it('dp·tp·pp must equal the device count and the cluster size', () => {
    assert.match(only(gpt2({ parallel: { dp: 2, tp: 2 }, devices: { count: 2 } }), 'devices.count'), /= 4 must equal devices.count=2/);
    assert.match(only(gpt2({ parallel: { dp: 2 }, cluster: { nodes: 1, gpusPerNode: 8 } }), 'cluster'), /= 2 must equal the cluster's GPUs/);
  });

  it('globalBatch must be divisible by microBatch·dp, with the nearest choices', () => {
    assert.equal(
      only(gpt2({ parallel: { dp: 2 }, train: { microBatch: 3, globalBatch: 10 } }), 'train.globalBatch'),
      'train.globalBatch=10 must be divisible by train.microBatch·parallel.dp = 3·2 = 6; choose 6 or 12',
    );
  });

  it('pp (times vpp) must divide layers; vpp needs pp', () => {
    assert.match(only(gpt2({ parallel: { pp: 5 } }), 'parallel.pp'), /parallel.pp=5 must divide model.layers=12; choose pp in 1, 2, 3, 4, 6 or 12/);
    assert.match(only(gpt2({ parallel: { pp: 2, vpp: 4 } }), 'parallel.pp'), /pp·parallel.vpp=2·4=8 must divide/);
    assert.match(only(gpt2({ parallel: { vpp: 2 } }), 'parallel.vpp'), /needs pipeline parallelism/);
  });

  it('refuses ZeRO-2/3 with pipeline parallelism, with the reason', () => {
    assert.match(only(gpt2({ parallel: { pp: 2, zero: 2 } }), 'parallel.zero'), /cannot be combined with parallel.pp=2: ZeRO-2\/3 partition gradients/);
    assert.ok(parseConfig(gpt2({ parallel: { pp: 2, zero: 1 } })).ok);
  });

  it('offload and sequence parallelism need the right stage and tp', () => {
    assert.match(only(gpt2({ parallel: { offloadOptimizer: true } }), 'parallel.offloadOptimizer'), /needs parallel.zero >= 1/);
    assert.match(only(gpt2({ parallel: { zero: 2, offloadParams: true } }), 'parallel.offloadParams'), /needs parallel.zero=3/);
    assert.match(only(gpt2({ parallel: { sequenceParallel: true } }), 'parallel.sequenceParallel'), /needs parallel.tp > 1/);
  });

  it('model shape rules: heads divide hidden, kvHeads divide heads', () => {
    assert.match(only({ model: { layers: 2, hidden: 100, heads: 3, vocab: 10, seqLen: 8 } }, 'model.heads'), /must divide model.hidden=100/);
    assert.match(only({ model: { preset: 'llama-2-7b', kvHeads: 5 } }, 'model.kvHeads'), /must divide model.heads=32/);
  });

  it('data, schedule and monitor rules', () => {
    assert.match(only(gpt2({ data: { source: 'text' } }), 'data.path'), /needs data.path/);
    assert.match(only({ model: { preset: 'tiny', vocab: 100 }, data: { source: 'text', path: 'x.txt' } }, 'model.vocab'), /byte-level tokens/);
    // A warm-up longer than the run is allowed: a short trial run (--steps 3) of a real config must not be refused.
    assert.ok(parseConfig(gpt2({ train: { steps: 10, warmupSteps: 20 } })).ok);
    assert.match(only(gpt2({ train: { lr: 1e-4, minLr: 1e-3 } }), 'train.minLr'), /must not exceed/);
    assert.match(only(gpt2({ monitor: { host: '0.0.0.0' } }), 'monitor.host'), /not a loopback address/);
    assert.ok(parseConfig(gpt2({ monitor: { host: '0.0.0.0', allowRemote: true } })).ok);
  });

  it('loadConfig throws a ConfigError listing every problem', () => {
    assert.throws(
      () => loadConfig(gpt2({ parallel: { tp: 5 } }), 'x.scalelm.json'),
      (e: unknown) => e instanceof ConfigError && /x\.scalelm\.json: 1 problem in the config:\n {2}- parallel\.tp=5/.test(e.message),
    );
  });
});

describe('--set path=value', () => {
  it('sets numbers, booleans and bare strings, creating sections', () => {
    const raw: Record<string, unknown> = { model: { preset: 'gpt2' } };
    setPath(raw, 'parallel.zero=3');
    setPath(raw, 'parallel.sequenceParallel=true');
    setPath(raw, 'train.precision=bf16-mixed');
    assert.deepEqual(raw.parallel, { zero: 3, sequenceParallel: true });
    assert.deepEqual(raw.train, { precision: 'bf16-mixed' });
  });

  it('refuses malformed assignments and prototype keys', () => {
    assert.throws(() => setPath({}, 'parallel.zero'), /needs path=value/);
    assert.throws(() => setPath({}, '__proto__.polluted=1'), /not a valid config path/);
    assert.throws(() => setPath({ model: 'x' }, 'model.layers=2'), /"model" is not an object/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('HuggingFace config.json', () => {
  const hf = (name: string) => JSON.parse(readFileSync(join(root, 'test/fixtures/hf', name), 'utf8')) as unknown;
  const modelOf = (name: string) => {
    const r = modelFromHuggingFace(hf(name));
    assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
    return loadConfig({ model: r.model }).model;
  };

  it('reads GPT-2 into the same shape as the gpt2 preset', () => {
    const m = modelOf('gpt2.config.json');
    for (const k of ['layers', 'hidden', 'heads', 'kvHeads', 'ffnHidden', 'vocab', 'seqLen', 'activation', 'norm', 'tiedEmbeddings', 'bias', 'positionEmbedding'] as const)
      assert.equal(m[k], MODEL_PRESETS.gpt2[k], k);
  });

  it('reads Llama into the same shape as the llama-2-7b preset', () => {
    const m = modelOf('llama-2-7b.config.json');
    for (const k of ['layers', 'hidden', 'heads', 'kvHeads', 'ffnHidden', 'vocab', 'seqLen', 'activation', 'norm', 'tiedEmbeddings', 'bias', 'positionEmbedding'] as const)
      assert.equal(m[k], MODEL_PRESETS['llama-2-7b'][k], k);
  });

  it('reads Mistral (GQA), Qwen2 (tied) and GPT-NeoX key names', () => {
    const mistral = modelOf('mistral-7b.config.json');
    assert.deepEqual([mistral.kvHeads, mistral.ffnHidden, mistral.activation], [8, 14336, 'swiglu']);
    const qwen = modelOf('qwen2-0.5b.config.json');
    assert.deepEqual([qwen.layers, qwen.hidden, qwen.heads, qwen.kvHeads, qwen.tiedEmbeddings], [24, 896, 14, 2, true]);
    const neox = modelOf('gpt-neox-20b.config.json');
    assert.deepEqual([neox.layers, neox.hidden, neox.heads, neox.ffnHidden, neox.norm, neox.positionEmbedding, neox.tiedEmbeddings], [44, 6144, 64, 24576, 'layernorm', 'rope', false]);
  });

  it('recognises HF configs and refuses unsupported or broken ones precisely', () => {
    assert.ok(isHuggingFaceConfig(hf('gpt2.config.json')));
    assert.equal(isHuggingFaceConfig({ model: { preset: 'gpt2' } }), false);
    const t5 = modelFromHuggingFace({ model_type: 't5', d_model: 512 });
    assert.ok(!t5.ok && /model_type "t5" is not supported/.test(t5.errors[0]!.message));
    const broken = modelFromHuggingFace({ model_type: 'llama', hidden_size: 4096, num_hidden_layers: 'many' });
    assert.ok(!broken.ok);
    assert.deepEqual(broken.errors.map((e) => e.path).sort(), ['intermediate_size', 'num_attention_heads', 'num_hidden_layers', 'vocab_size']);
  });
});

describe('JSON schema and units', () => {
  it('the schema shipped in media/ is the one generated from the config source', () => {
    const shipped = JSON.parse(readFileSync(join(root, 'media/scalelm.schema.json'), 'utf8')) as unknown;
    assert.deepEqual(shipped, JSON.parse(JSON.stringify(buildJsonSchema())));
  });

  it('docs/config.md is the reference generated from the same source', () => {
    assert.equal(readFileSync(join(root, 'docs/config.md'), 'utf8'), buildMarkdownReference() + '\n');
  });

  it('describes every section, forbids unknown keys and lists enums', () => {
    const schema = buildJsonSchema() as { properties: Record<string, { properties?: Record<string, { enum?: unknown[] }>; additionalProperties?: boolean }> };
    for (const section of ['model', 'train', 'parallel', 'cluster', 'devices', 'data', 'monitor']) assert.equal(schema.properties[section]!.additionalProperties, false, section);
    assert.deepEqual(schema.properties.parallel!.properties!.zero!.enum, [0, 1, 2, 3]);
    assert.ok(schema.properties.model!.properties!.preset!.enum!.includes('llama-3-70b'));
  });

  it('parses and formats sizes', () => {
    assert.equal(parseBytes('80GiB'), 80 * 2 ** 30);
    assert.equal(parseBytes('40GB'), 40e9);
    assert.equal(parseBytes('1.5 MiB'), 1.5 * 2 ** 20);
    assert.equal(parseBytes(1024), 1024);
    assert.throws(() => parseBytes('lots'), /is not a size/);
    assert.equal(formatBytes(1.5 * 2 ** 30), '1.50 GiB');
    assert.equal(formatBytes(512), '512 B');
  });
});
