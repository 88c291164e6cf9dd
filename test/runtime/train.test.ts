import * as assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../runtime/model/backend';
import { Gpt, gptShape } from '../../runtime/model/gpt';
import { ParamStore } from '../../runtime/model/params';
import { learningRate } from '../../runtime/train/schedule';
import { setKernelFlavor } from '../../runtime/model/ops';
import { GradAccumulator, Optimizer, updateTensor, type OptimizerHyper } from '../../runtime/train/optimizer';
import { BatchSampler, DataError, loadTokens, syntheticTokens } from '../../runtime/train/data';
import { encodeSafetensors, parseSafetensors, readSafetensors, SafetensorsError, writeSafetensors } from '../../runtime/train/safetensors';
import { CheckpointError, latestCheckpoint, loadCheckpoint, loadHfFolder, saveCheckpoint, hfConfig, type CheckpointData } from '../../runtime/train/checkpoint';
import { RankEngine } from '../../runtime/parallel/engine';
import { EXAMPLES, smallConfig, tempDir } from './train/fixtures';
import { randomValues } from './train/autodiff';

describe('train: learning-rate schedule', () => {
  const c = { lr: 1e-3, minLr: 1e-4, warmupSteps: 10, schedule: 'cosine' as const, steps: 110 };
  it('warms up linearly to lr over warmupSteps', () => {
    assert.equal(learningRate(c, 1), 1e-4);
    assert.equal(learningRate(c, 5), 5e-4);
    assert.equal(learningRate(c, 10), 1e-3);
  });
  it('decays by a half cosine to minLr at the last step', () => {
    assert.equal(learningRate(c, 11), 1e-3);
    assert.ok(Math.abs(learningRate(c, 61) - 5.5e-4) < 1e-12);
    assert.ok(Math.abs(learningRate({ ...c, steps: 110 }, 111) - 1e-4) < 1e-12);
  });
  it('linear and constant schedules', () => {
    assert.ok(Math.abs(learningRate({ ...c, schedule: 'linear' }, 61) - 5.5e-4) < 1e-12);
    assert.equal(learningRate({ ...c, schedule: 'constant' }, 100), 1e-3);
  });
});

describe('train: optimizer semantics (PyTorch 1.13)', () => {
  before(async () => {
    await initBackend('wasm');
  });

  /** Float64 reference of torch.optim.AdamW/Adam/SGD on one tensor. */
  function reference(h: OptimizerHyper, p0: number[], grads: number[][], lrs: number[], decay: boolean): number[] {
    const p = [...p0];
    const m = p.map(() => 0);
    const v = p.map(() => 0);
    grads.forEach((g, t) => {
      const step = t + 1;
      const lr = lrs[t]!;
      const wd = decay ? h.weightDecay : 0;
      for (let i = 0; i < p.length; i++) {
        let gi = g[i]!;
        if (h.kind === 'sgd') {
          const d = gi + wd * p[i]!;
          m[i] = step === 1 ? d : h.beta1 * m[i]! + d;
          p[i] = p[i]! - lr * m[i]!;
          continue;
        }
        if (h.kind === 'adamw') p[i] = p[i]! * (1 - lr * wd);
        else gi += wd * p[i]!;
        m[i] = h.beta1 * m[i]! + (1 - h.beta1) * gi;
        v[i] = h.beta2 * v[i]! + (1 - h.beta2) * gi * gi;
        const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - h.beta2 ** step) + h.eps;
        p[i] = p[i]! - (lr / (1 - h.beta1 ** step)) * (m[i]! / denom);
      }
    });
    return p;
  }

  for (const flavor of ['wasm', 'portable'] as const)
    for (const kind of ['adamw', 'adam', 'sgd'] as const) {
      for (const decay of [true, false]) {
        it(`${kind}, ${decay ? 'with' : 'without'} weight decay, over 4 steps (${flavor === 'wasm' ? 'fused host kernel' : 'tfjs ops'})`, () => {
          setKernelFlavor(flavor);
          const h: OptimizerHyper = { kind, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
          const p0 = Array.from(randomValues(10, 1));
          const grads = [2, 3, 4, 5].map((s) => Array.from(randomValues(10, s)));
          const lrs = [1e-2, 3e-2, 2e-2, 1e-2];
          let p = tf.tensor1d(p0);
          let state = kind === 'sgd' ? [tf.zeros([10])] : [tf.zeros([10]), tf.zeros([10])];
          grads.forEach((g, t) => {
            const gt = tf.tensor1d(g);
            const r = updateTensor(h, p, gt, state, lrs[t]!, t + 1, decay);
            tf.dispose([p, gt, ...state]);
            p = r.p as tf.Tensor1D;
            state = r.state;
          });
          const got = p.dataSync();
          const want = reference(h, p0, grads, lrs, decay);
          want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) <= 1e-6 * Math.max(1, Math.abs(w)), `${i}: ${got[i]} vs ${w}`));
          tf.dispose([p, ...state]);
          setKernelFlavor('wasm');
        });
      }
    }

  it('decays matrices and embeddings but not biases or LayerNorm', () => {
    const specs = new Gpt(gptShape(smallConfig().model)).paramSpecs();
    const decayed = specs.filter((s) => s.decay).map((s) => s.name);
    assert.ok(decayed.includes('wte.weight') && decayed.includes('wpe.weight') && decayed.includes('h.0.attn.c_attn.weight'));
    assert.ok(!decayed.some((n) => n.endsWith('.bias') || n.includes('ln_')));
  });

  it('clips by global norm like clip_grad_norm_ (norm of the per-tensor norms)', async () => {
    const acc = new GradAccumulator();
    acc.add('a', tf.tensor1d([3, 0]));
    acc.add('b', tf.tensor1d([0, 4]));
    acc.add('a', tf.tensor1d([0, 0])); // accumulation sums
    const norm = acc.clipByGlobalNorm(1);
    assert.ok(Math.abs((await norm.data())[0]! - 5) < 1e-6);
    const a = await acc.grads.get('a')!.data();
    assert.ok(Math.abs(a[0]! - 3 / (5 + 1e-6)) < 1e-7);
    norm.dispose();
    acc.dispose();
  });

  it('the optimizer step leaves the parameter, gradient and state bytes where they were', () => {
    const specs = new Gpt(gptShape(smallConfig().model)).paramSpecs();
    const store = new ParamStore(specs);
    store.initialize(1);
    const opt = new Optimizer({ kind: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    opt.init(store);
    const before = tf.memory().numTensors;
    const grads = new Map(specs.map((s) => [s.name, tf.ones(s.shape)]));
    opt.step(store, grads, 1e-3);
    assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
    assert.equal(grads.size, 0);
    store.dispose();
    opt.dispose();
  });
});

describe('train: data', () => {
  const shape = { vocab: 256, seqLen: 16 };
  it('reads a UTF-8 text file as bytes and holds out the tail', () => {
    const d = loadTokens({ source: 'text', path: 'data/tiny.txt', valFraction: 0.1 }, EXAMPLES, shape, 1, true);
    const bytes = readFileSync(join(EXAMPLES, 'data/tiny.txt'));
    assert.equal(d.train.length + d.val.length, bytes.length);
    assert.equal(d.val.length, Math.floor(bytes.length * 0.1));
    assert.equal(d.train[0], bytes[0]);
  });

  it('reads nanoGPT uint16 .bin files and rejects bad ones precisely', () => {
    const dir = tempDir();
    try {
      const toks = Uint16Array.from({ length: 100 }, (_, i) => (i * 7) % 50);
      writeFileSync(join(dir.path, 'ok.bin'), Buffer.from(toks.buffer));
      const d = loadTokens({ source: 'tokens', path: 'ok.bin', valFraction: 0.2 }, dir.path, { vocab: 50, seqLen: 8 }, 1, true);
      assert.deepEqual(Array.from(d.train.slice(0, 5)), [0, 7, 14, 21, 28]);
      writeFileSync(join(dir.path, 'odd.bin'), Buffer.alloc(7));
      assert.throws(() => loadTokens({ source: 'tokens', path: 'odd.bin', valFraction: 0 }, dir.path, shape, 1, false), /size \(7 bytes\) is odd/);
      assert.throws(
        () => loadTokens({ source: 'tokens', path: 'ok.bin', valFraction: 0 }, dir.path, { vocab: 40, seqLen: 8 }, 1, false),
        /token 42 at position 6 \(byte offset 12\) is not below model.vocab=40/,
      );
      assert.throws(() => loadTokens({ source: 'tokens', path: 'missing.bin', valFraction: 0 }, dir.path, shape, 1, false), /cannot read data.path .*missing.bin: no such file/);
      assert.throws(
        () => loadTokens({ source: 'tokens', path: 'ok.bin', valFraction: 0 }, dir.path, { vocab: 50, seqLen: 200 }, 1, false),
        (e: Error) => e instanceof DataError && /fewer than one sequence/.test(e.message),
      );
      assert.throws(() => loadTokens({ source: 'tokens', path: 'ok.bin', valFraction: 0.05 }, dir.path, { vocab: 50, seqLen: 8 }, 1, true), /held-out split .* has 5 tokens/);
      assert.throws(() => loadTokens({ source: 'text', path: 'ok.bin', valFraction: 0 }, dir.path, { vocab: 100, seqLen: 8 }, 1, false), /byte-level tokens \(256 ids\) but model.vocab=100/);
    } finally {
      dir.remove();
    }
  });

  it('synthetic data is deterministic and learnable (4 successors per token)', () => {
    const a = syntheticTokens(64, 3, 5000);
    assert.deepEqual(a, syntheticTokens(64, 3, 5000));
    assert.notDeepEqual(a, syntheticTokens(64, 4, 5000));
    const next = new Map<number, Set<number>>();
    for (let i = 0; i + 1 < a.length; i++) (next.get(a[i]!) ?? next.set(a[i]!, new Set()).get(a[i]!)!).add(a[i + 1]!);
    assert.ok([...next.values()].every((s) => s.size <= 4));
  });

  it('a batch row is a pure function of (seed, step, row): the same for any micro-batch split', () => {
    const s = new BatchSampler(syntheticTokens(256, 1, 10000), 16, 9, 'train');
    const whole = s.batch(5, 0, 8);
    const half = s.batch(5, 4, 4);
    assert.deepEqual(whole.tokens.slice(4 * 16), half.tokens);
    assert.deepEqual(whole.targets.slice(0, 15), whole.tokens.slice(1, 16));
    assert.notDeepEqual(s.batch(6, 0, 8).tokens, whole.tokens);
    assert.deepEqual(new BatchSampler(syntheticTokens(256, 1, 10000), 16, 9, 'train').batch(5, 0, 8), whole);
  });
});

describe('train: safetensors', () => {
  it('round-trips tensors and metadata in the HuggingFace layout (8-byte aligned header)', () => {
    const bytes = Buffer.concat(
      encodeSafetensors(
        [
          ['a', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
          ['b', { shape: [1], data: Float32Array.from([7]) }],
        ],
        { format: 'pt' },
      ),
    );
    assert.equal(Number(bytes.readBigUInt64LE(0)) % 8, 0);
    const f = parseSafetensors(bytes, 'x.safetensors');
    assert.equal(f.metadata.format, 'pt');
    assert.deepEqual(f.tensors.get('a')!.shape, [2, 3]);
    assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(f.tensors.get('b')!.bytes).buffer)), [7]);
  });

  it('says precisely what is wrong with a corrupt file', () => {
    const good = Buffer.concat(encodeSafetensors([['w', { shape: [4], data: new Float32Array(4) }]]));
    const headerLen = Number(good.readBigUInt64LE(0));
    const cases: [Buffer, RegExp][] = [
      [good.subarray(0, 5), /too short for a safetensors file/],
      [Buffer.concat([Buffer.from([255, 255, 0, 0, 0, 0, 0, 0]), good.subarray(8)]), /header claims 65535 bytes/],
      [good.subarray(0, good.length - 4), /tensor w: data ends at byte 16 but the file holds 12 bytes of data: the file is truncated/],
      [Buffer.concat([good.subarray(0, 8), Buffer.from('{not json'.padEnd(headerLen)), good.subarray(8 + headerLen)]), /header is not valid JSON/],
      [rewrite(good, (h) => ({ ...h, w: { ...h.w, dtype: 'F99' } })), /tensor w: unknown dtype "F99"/],
      [rewrite(good, (h) => ({ ...h, w: { ...h.w, shape: [5] } })), /tensor w: 16 bytes of data for F32 \[5\], which needs 20/],
      [rewrite(good, (h) => ({ ...h, v: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } })), /tensors w and v overlap/],
    ];
    for (const [buf, re] of cases)
      assert.throws(
        () => parseSafetensors(buf, 'bad.safetensors'),
        (e: Error) => e instanceof SafetensorsError && e.message.startsWith('bad.safetensors: ') && re.test(e.message),
        String(re),
      );
  });
});

function rewrite(file: Buffer, edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => object): Buffer {
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
  const text = Buffer.from(JSON.stringify(edit(header)));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, file.subarray(8 + n)]);
}

describe('train: checkpoints', function () {
  const config = smallConfig();
  const shape = gptShape(config.model);
  const specs = new Gpt(shape).paramSpecs();
  const params = new Map(
    specs.map((s, i) => [
      s.name,
      randomValues(
        s.shape.reduce((a, b) => a * b, 1),
        i,
      ),
    ]),
  );
  const data = (step: number): CheckpointData => ({
    params,
    optimizer: new Map(specs.map((s) => [s.name, [params.get(s.name)!, params.get(s.name)!]])),
    state: {
      format: 'scalelm-checkpoint',
      version: 1,
      step,
      tokens: 0,
      data: { nextStep: step + 1, description: 'x' },
      rng: { seed: 1 },
      optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, steps: step },
      model: shape,
      metricsBytes: 0,
      savedAt: '',
      config: {},
    },
  });

  it('writes HF GPT-2 names in Conv1D layout, a HF config.json, optimizer state and state.json', () => {
    const dir = tempDir();
    try {
      const { path } = saveCheckpoint(dir.path, data(3), specs, 0);
      const st = readSafetensors(join(path, 'model.safetensors'));
      assert.deepEqual(st.tensors.get('h.0.attn.c_attn.weight')!.shape, [32, 96]);
      assert.deepEqual(st.tensors.get('h.1.mlp.c_proj.weight')!.shape, [128, 32]);
      assert.ok(st.tensors.has('wte.weight') && st.tensors.has('ln_f.bias'));
      assert.equal(st.metadata.format, 'pt');
      const cfg = JSON.parse(readFileSync(join(path, 'config.json'), 'utf8'));
      assert.deepEqual([cfg.model_type, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.vocab_size, cfg.n_positions, cfg.activation_function], ['gpt2', 32, 2, 2, 256, 16, 'gelu_new']);
      assert.ok(readSafetensors(join(path, 'optimizer.safetensors')).tensors.has('wte.weight.exp_avg_sq'));
      const back = loadCheckpoint(path, specs, { shape, optimizer: 'adamw' });
      assert.deepEqual(back.params.get('h.1.ln_2.weight'), params.get('h.1.ln_2.weight'));
      assert.equal(back.state.step, 3);
    } finally {
      dir.remove();
    }
  });

  it('a crash while writing leaves the last good checkpoint whole and latest.json pointing at it', () => {
    const dir = tempDir();
    try {
      saveCheckpoint(dir.path, data(2), specs, 0);
      assert.throws(
        () =>
          saveCheckpoint(dir.path, data(4), specs, 0, {
            beforeCommit: () => {
              throw new Error('power cut');
            },
          }),
        /power cut/,
      );
      assert.ok(
        readdirSync(dir.path).some((f) => f.startsWith('.tmp-step-000004')),
        'the interrupted write is left as a temporary folder',
      );
      assert.equal(latestCheckpoint(dir.path), join(dir.path, 'step-000002'));
      assert.equal(loadCheckpoint(latestCheckpoint(dir.path)!, specs, { shape, optimizer: 'adamw' }).state.step, 2);
      saveCheckpoint(dir.path, data(6), specs, 0);
      assert.ok(!readdirSync(dir.path).some((f) => f.startsWith('.tmp-')), 'leftovers are cleaned by the next write');
      assert.equal(latestCheckpoint(dir.path), join(dir.path, 'step-000006'));
      // A step folder without state.json (say, copied by hand and interrupted) is never taken for a checkpoint.
      mkdirSync(join(dir.path, 'step-000009'));
      writeFileSync(join(dir.path, 'latest.json'), 'garbage');
      assert.equal(latestCheckpoint(dir.path), join(dir.path, 'step-000006'));
    } finally {
      dir.remove();
    }
  });

  it('keeps the newest three step folders', () => {
    const dir = tempDir();
    try {
      for (const s of [1, 2, 3, 4, 5]) saveCheckpoint(dir.path, data(s), specs, 0);
      assert.deepEqual(
        readdirSync(dir.path)
          .filter((f) => f.startsWith('step-'))
          .sort(),
        ['step-000003', 'step-000004', 'step-000005'],
      );
    } finally {
      dir.remove();
    }
  });

  it('refuses a checkpoint of another model or optimizer, naming the difference', () => {
    const dir = tempDir();
    try {
      const { path } = saveCheckpoint(dir.path, data(1), specs, 0);
      assert.throws(
        () => loadCheckpoint(path, specs, { shape: { ...shape, hidden: 64 }, optimizer: 'adamw' }),
        (e: Error) => e instanceof CheckpointError && /hidden \(n_embd\) 32 there vs 64 in the config/.test(e.message),
      );
      assert.throws(() => loadCheckpoint(path, specs, { shape, optimizer: 'sgd' }), /holds adamw state but train.optimizer is sgd/);
      writeFileSync(join(path, 'model.safetensors'), readFileSync(join(path, 'model.safetensors')).subarray(0, 1000));
      assert.throws(
        () => loadCheckpoint(path, specs, { shape, optimizer: 'adamw' }),
        (e: Error) => e instanceof SafetensorsError && /model\.safetensors: .*truncated/.test(e.message),
      );
      assert.throws(() => loadCheckpoint(dir.path, specs, { shape, optimizer: 'adamw' }), /state.json: missing: this folder is not a complete ScaleLM checkpoint/);
    } finally {
      dir.remove();
    }
  });

  it('loads a local HuggingFace GPT-2 folder (transformer. prefix, attn.bias buffers, lm_head)', () => {
    const dir = tempDir();
    try {
      const tensors: [string, { shape: number[]; data: Float32Array }][] = specs.map((s) => [`transformer.${s.name}`, { shape: s.shape, data: params.get(s.name)! }]);
      tensors.push(['transformer.h.0.attn.bias', { shape: [1, 1, 16, 16], data: new Float32Array(256) }]);
      tensors.push(['lm_head.weight', { shape: [256, 32], data: params.get('wte.weight')! }]);
      writeSafetensors(join(dir.path, 'model.safetensors'), tensors, { format: 'pt' });
      writeFileSync(join(dir.path, 'config.json'), JSON.stringify(hfConfig(shape, 0.1)));
      const loaded = loadHfFolder(dir.path, specs, shape);
      for (const s of specs) assert.deepEqual(loaded.get(s.name), params.get(s.name), s.name);

      writeFileSync(join(dir.path, 'config.json'), JSON.stringify({ ...hfConfig(shape, 0), n_embd: 768, n_layer: 12 }));
      assert.throws(
        () => loadHfFolder(dir.path, specs, shape),
        /different GPT-2: layers \(n_layer\) 12 there vs 2 in the config, hidden \(n_embd\) 768 there vs 32 .*--set model.layers=12 --set model.hidden=768/,
      );
      writeFileSync(join(dir.path, 'config.json'), JSON.stringify({ ...hfConfig(shape, 0), model_type: 'llama' }));
      assert.throws(() => loadHfFolder(dir.path, specs, shape), /model_type is "llama"/);
      writeFileSync(join(dir.path, 'config.json'), JSON.stringify(hfConfig(shape, 0)));
      const transposed = tensors.map(([n, t]): [string, { shape: number[]; data: Float32Array }] => [n, n.endsWith('c_fc.weight') ? { shape: [t.shape[1]!, t.shape[0]!], data: t.data } : t]);
      writeSafetensors(join(dir.path, 'model.safetensors'), transposed);
      assert.throws(
        () => loadHfFolder(dir.path, specs, shape),
        /transformer\.h\.0\.mlp\.c_fc\.weight has shape \[128,32\], expected \[32,128\] \(transposed: HF GPT-2 stores Conv1D weights as \[in, out\]/,
      );
      writeSafetensors(join(dir.path, 'model.safetensors'), tensors.filter(([n]) => !n.endsWith('ln_f.bias')).concat([['transformer.extra', { shape: [1], data: new Float32Array(1) }]]));
      assert.throws(() => loadHfFolder(dir.path, specs, shape), /missing 1 tensor of a GPT-2 with this shape: ln_f\.bias/);
      writeSafetensors(join(dir.path, 'model.safetensors'), tensors.concat([['transformer.extra', { shape: [1], data: new Float32Array(1) }]]));
      assert.throws(() => loadHfFolder(dir.path, specs, shape), /1 tensor that this GPT-2 does not have: transformer\.extra/);
    } finally {
      dir.remove();
    }
  });
});

describe('train: measured memory per step', function () {
  this.timeout(60_000);

  it('params, grads and optimizer are 4, 4 and 8 bytes per parameter; activations match the documented per-layer formula', async () => {
    for (const recompute of ['none', 'selective', 'full'] as const) {
      const config = smallConfig({ train: { recompute } });
      const trainer = await RankEngine.alone({ config, baseDir: EXAMPLES, start: { kind: 'fresh' } });
      try {
        const r = trainer.trainStep(1);
        const P = trainer.params!.totalElements();
        assert.equal(r.memory.params, 4 * P);
        assert.equal(r.memory.grads, 4 * P);
        assert.equal(r.memory.optimizer, 8 * P);
        assert.equal(r.memory.activations, expectedActivations(config, recompute), `activations, recompute=${recompute}`);
        assert.ok(r.memory.peak >= r.memory.params + r.memory.optimizer + r.memory.atPeak.activations);
      } finally {
        trainer.dispose();
      }
    }
  });

  it('a CPU device with devices.memory fails like a GPU: out of memory naming the step, the layer and the breakdown', async () => {
    const config = smallConfig({ devices: { memory: '600KiB' } });
    const trainer = await RankEngine.alone({ config, baseDir: EXAMPLES, start: { kind: 'fresh' } });
    try {
      await assert.rejects(
        async () => trainer.trainStep(1),
        (e: Error) =>
          e.name === 'DeviceOutOfMemoryError' &&
          /out of memory at step 1, (forward|backward) of [a-z_0-9.]+: tried to allocate .* in use of 600\.00 KiB \(params 133\.50 KiB, grads .*, optimizer 267\.00 KiB, activations .*, temporaries .*\)\. Lower train\.microBatch/.test(
            e.message,
          ),
      );
    } finally {
      trainer.dispose();
    }
  });
});

/** docs/runtime.md's formula for the most bytes forward keeps for backward (fp32, b sequences of s tokens). */
function expectedActivations(config: ReturnType<typeof smallConfig>, recompute: 'none' | 'selective' | 'full'): number {
  const { layers: L, hidden: h, heads: a, vocab: V } = config.model;
  const s = config.model.seqLen;
  const b = config.train.microBatch;
  const N = b * s;
  const block = (selective: boolean): number => 4 * (16 * N * h + 2 * N + (selective ? 0 : a * b * s * s));
  const tokens = 4 * N;
  // final LayerNorm: x̂ and 1/σ; output layer: its input, the softmax probabilities and the targets.
  const top = 4 * (N * h + N) + 4 * N * h + 4 * N * V + 4 * N;
  if (recompute !== 'full') return L * block(recompute === 'selective') + tokens + top;
  // Full recompute keeps each block's input; the most is either the end of forward, or the last block's
  // replay in backward (the output layer's tensors are gone by then, one block's are back).
  return Math.max(4 * N * h * L + tokens + top, 4 * N * h * L + tokens + block(false));
}
