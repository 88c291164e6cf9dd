import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { RunDir } from '../../runtime/train/run-dir';
import { Gpt } from '../../runtime/model/gpt';
import { ParamStore } from '../../runtime/model/params';
import { RankEngine } from '../../runtime/parallel/engine';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { readModelTensors } from '../../runtime/train/checkpoint';
import { writeSafetensors } from '../../runtime/train/safetensors';
import { EXAMPLES, REPO, smallConfig, tempDir } from './train/fixtures';
import { findTorchPython } from './train/python';

const STEPS = 20;

describe('train: agreement with a PyTorch GPT-2 (same initial weights, same batches)', function () {
  this.timeout(180_000);
  const found = findTorchPython();

  before(function () {
    if ('missing' in found) {
      console.log(`      NOTICE: skipping the PyTorch agreement test: ${found.missing}`);
      this.skip();
    }
  });

  it(`the loss of each of ${STEPS} steps matches, and PyTorch loads the final checkpoint by its HF GPT-2 names`, async () => {
    const { python } = found as { python: string };
    const dir = tempDir();
    try {
      const config = smallConfig({
        model: { layers: 2, hidden: 64, heads: 4, vocab: 256, seqLen: 32 },
        train: { steps: STEPS, microBatch: 4, globalBatch: 8, lr: 3e-3, minLr: 3e-4, warmupSteps: 4, weightDecay: 0.1, gradClip: 1, beta2: 0.95, seed: 11 },
      });
      // The initial weights and the batches, from the rank itself (a world of one, not stepped).
      const rank = await RankEngine.alone({ config, baseDir: EXAMPLES, start: { kind: 'fresh' } });
      const init = await rank.params!.readAll();
      const specs = rank.fullSpecs;
      writeSafetensors(
        join(dir.path, 'init.safetensors'),
        specs.map((s) => [s.name, { shape: s.shape, data: init.get(s.name)! }]),
      );

      // The exact batches the trainer draws: [step][micro][tokens|targets][B][T], int32.
      const t = config.train;
      const A = t.globalBatch / t.microBatch;
      const T = config.model.seqLen;
      const batches = new Int32Array(STEPS * A * 2 * t.microBatch * T);
      let o = 0;
      for (let step = 1; step <= STEPS; step++) {
        for (let a = 0; a < A; a++) {
          const b = rank.sampler.batch(step, a * t.microBatch, t.microBatch);
          batches.set(b.tokens, o);
          batches.set(b.targets, o + b.tokens.length);
          o += 2 * b.tokens.length;
        }
      }
      writeFileSync(join(dir.path, 'batches.bin'), Buffer.from(batches.buffer));
      const held = rank.sampler.batch(10_000, 0, t.microBatch);
      rank.dispose();
      writeFileSync(join(dir.path, 'held.bin'), Buffer.from(new Int32Array([...held.tokens, ...held.targets]).buffer));

      const trainer = await createLocalRun({ config, baseDir: EXAMPLES, runDir: RunDir.create(join(dir.path, 'run')) });
      const ours: { loss: number; gradNorm: number }[] = [];
      trainer.subscribe((m) => m.type === 'step' && ours.push({ loss: m.loss, gradNorm: m.gradNorm }));
      const result = await trainer.run();
      trainer.dispose();
      const model = new Gpt(rank.shape);
      const final = new ParamStore(specs);
      for (const [name, v] of readModelTensors(join(result.checkpoint!, 'model.safetensors'), specs)) final.setValues(name, v);
      const heldLoss = tf.tidy(
        () => model.forward({ params: final, seq: T, dropout: 0, dropoutSeed: 0 }, tf.tensor1d(held.tokens, 'int32'), tf.tensor1d(held.targets, 'int32'), false).loss.dataSync()[0]!,
      );
      final.dispose();

      const spec = {
        model: rank.shape,
        ...{ lr: t.lr, minLr: t.minLr, warmupSteps: t.warmupSteps, steps: t.steps, beta1: t.beta1, beta2: t.beta2, eps: t.eps, weightDecay: t.weightDecay, gradClip: t.gradClip },
        microBatch: t.microBatch,
        accumulation: A,
        seq: T,
        initWeights: join(dir.path, 'init.safetensors'),
        batches: join(dir.path, 'batches.bin'),
        heldBatch: join(dir.path, 'held.bin'),
        checkpoint: result.checkpoint,
      };
      writeFileSync(join(dir.path, 'spec.json'), JSON.stringify(spec));
      const r = spawnSync(python, [join(REPO, 'test', 'runtime', 'train', 'gpt2_reference.py'), join(dir.path, 'spec.json')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
      assert.equal(r.status, 0, r.stderr);
      const ref = JSON.parse(r.stdout) as { losses: number[]; gradNorms: number[]; checkpointLoss: number; referenceFinalLoss: number; torch: string };

      const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);
      const worst = ours.reduce((w, s, i) => Math.max(w, rel(s.loss, ref.losses[i]!)), 0);
      console.log(
        `      PyTorch ${ref.torch}: loss ${ref.losses[0]!.toFixed(5)} -> ${ref.losses[STEPS - 1]!.toFixed(5)} over ${STEPS} steps; largest relative difference ${worst.toExponential(2)}; final weights on a held batch ${heldLoss.toFixed(6)} (ScaleLM) / ${ref.checkpointLoss.toFixed(6)} (checkpoint in PyTorch) / ${ref.referenceFinalLoss.toFixed(6)} (PyTorch's own run)`,
      );
      assert.equal(ours.length, STEPS);
      ours.forEach((s, i) => {
        assert.ok(rel(s.loss, ref.losses[i]!) < 1e-5, `step ${i + 1}: loss ${s.loss} vs PyTorch ${ref.losses[i]}`);
        assert.ok(rel(s.gradNorm, ref.gradNorms[i]!) < 1e-4, `step ${i + 1}: grad norm ${s.gradNorm} vs PyTorch ${ref.gradNorms[i]}`);
      });
      assert.ok(ref.losses[STEPS - 1]! < ref.losses[0]! - 0.5, 'both learn');
      assert.ok(rel(ref.checkpointLoss, heldLoss) < 1e-5, 'PyTorch computes the same loss from our checkpoint');
      assert.ok(rel(ref.referenceFinalLoss, heldLoss) < 1e-5, 'and the two trained models agree');
    } finally {
      dir.remove();
    }
  });
});
