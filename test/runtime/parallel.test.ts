// The core bar of the parallel engine: from identical weights and data, every layout reproduces the
// single-device run (a world of one, stepped in the test's thread) — loss at every one of 20 steps within 1e-5 relative, and the
// trained parameters. dp ∈ {1,2,4} × tp ∈ {1,2,4} × ZeRO 0–3 on up to 4 ranks, recompute, gradient
// accumulation, worker threads and (a representative subset) processes over sockets.
//
// Parameters: every tensor within 1e-4 relative (L2) — except the key bias of c_attn. Softmax does not
// change when a constant is added to every score of a row, so the key bias's gradient is exactly zero in
// exact arithmetic and rounding noise (~1e-9) is all AdamW sees: its updates are ±lr·noise-driven in the
// single-device run too. It stays ~1e-4 in size; we check it against an absolute 5e-4.
import assert from 'node:assert/strict';
import { tpRegionSeed } from '../../runtime/model/tp-layers';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { RankEngine } from '../../runtime/parallel/engine';
import { EXAMPLES } from './train/fixtures';
import { describe_, GLOBAL_BATCH, maxRelative, parallelRun, singleRun, STEPS, tinyConfig, type Layout } from './parallel/helpers';

const LOSS_TOLERANCE = 1e-5;
const PARAM_TOLERANCE = 1e-4;
const KEY_BIAS_ABS = 5e-4;

/** Parameter agreement with the key-bias exception above; returns the worst relative difference. */
function checkParams(got: Map<string, Float32Array>, want: Map<string, Float32Array>, hidden: number): number {
  let worst = 0;
  for (const [name, w] of want) {
    const g = got.get(name);
    assert.ok(g && g.length === w.length, `${name}: missing or wrong size`);
    const keyBias = /attn\.c_attn\.bias$/.test(name);
    let num = 0;
    let den = 0;
    for (let i = 0; i < w.length; i++) {
      if (keyBias && i >= hidden && i < 2 * hidden) {
        assert.ok(Math.abs(g[i]! - w[i]!) <= KEY_BIAS_ABS, `${name}[${i}] (key bias): ${g[i]} vs ${w[i]}`);
        continue;
      }
      num += (g[i]! - w[i]!) ** 2;
      den += w[i]! ** 2;
    }
    const rel = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
    assert.ok(rel <= PARAM_TOLERANCE, `${name}: relative difference ${rel.toExponential(2)} > ${PARAM_TOLERANCE}`);
    worst = Math.max(worst, rel);
  }
  return worst;
}

const table: string[] = [];

function equivalence(layout: Layout & { transport?: 'threads' | 'processes' }, extra?: Parameters<typeof tinyConfig>[1], what = ''): void {
  const label = `${describe_(layout)}${what}${layout.transport === 'processes' ? ' (processes, sockets)' : ''}`;
  it(`${label} matches the single-device loss for ${STEPS} steps and its final parameters`, async () => {
    const config = tinyConfig(layout, extra);
    const reference = await singleRun(config);
    const run = await parallelRun(config, layout.transport ? { transport: layout.transport } : {});
    assert.equal(run.losses.length, STEPS);
    const rel = maxRelative(run.losses, reference.losses);
    const params = checkParams(run.params, reference.params, config.model.hidden);
    table.push(`${label.padEnd(52)} loss ${rel.toExponential(2)}  params ${params.toExponential(2)}`);
    assert.ok(rel <= LOSS_TOLERANCE, `max relative loss difference ${rel.toExponential(2)} > ${LOSS_TOLERANCE}\n${run.losses.join(' ')}\n${reference.losses.join(' ')}`);
  });
}

describe('parallel: every layout reproduces the single-device run', function () {
  this.timeout(180_000);
  after(() => {
    if (table.length) console.log(`      max relative loss difference over ${STEPS} steps, worst parameter (global batch ${GLOBAL_BATCH}):\n${table.map((l) => `        ${l}`).join('\n')}`);
  });

  describe('dp × tp × ZeRO on up to 4 ranks (worker threads)', () => {
    for (const [dp, tp] of [
      [1, 1],
      [2, 1],
      [4, 1],
      [1, 2],
      [1, 4],
      [2, 2],
    ] as const) {
      for (const zero of [0, 1, 2, 3] as const) equivalence({ dp, tp, zero });
    }
  });

  describe('recompute and gradient accumulation', () => {
    equivalence({ dp: 2, tp: 2, zero: 3, recompute: 'full' });
    equivalence({ tp: 2, recompute: 'selective' });
    equivalence({ dp: 4, zero: 2, recompute: 'full' });
    equivalence({ dp: 2, zero: 1, recompute: 'selective' });
    equivalence({ dp: 2, zero: 0, microBatch: 1 });
    equivalence({ dp: 2, zero: 2, microBatch: 2 });
    equivalence({ dp: 2, zero: 3, microBatch: 1, recompute: 'full' });
    equivalence({ dp: 2, tp: 2, zero: 1, microBatch: 2 });
    equivalence({ tp: 2, microBatch: 2 });
  });

  describe('padded partitions and several buckets', () => {
    // h30 a2: units are not multiples of 4, so every ZeRO partition carries padding; 20 kB buckets: one per layer or so.
    const uneven = { model: { hidden: 30, heads: 2, layers: 3 }, parallel: { bucketMB: 0.02 } };
    for (const zero of [0, 1, 2, 3] as const) equivalence({ dp: 4, zero }, uneven, ', h30, 20 kB buckets');
    equivalence({ dp: 2, tp: 2, zero: 2, microBatch: 2 }, uneven, ', h30, 20 kB buckets');
  });

  describe('evaluation and dropout', () => {
    it("held-out loss (dp=2 tp=2 ZeRO-3, evaluation shared out over dp) equals the single-device trainer's with the same micro-batch", async () => {
      const config = tinyConfig({ dp: 2, tp: 2, zero: 3 }, { train: { steps: 10, evalEvery: 5, evalBatches: 3 } });
      const evals: number[] = [];
      const run = await createLocalRun({ config, baseDir: EXAMPLES, threads: 1 });
      run.subscribe((m) => {
        if (m.type === 'eval') evals.push(m.loss);
      });
      await run.run();
      run.dispose();
      assert.equal(run.losses.length, 10);
      const single = await RankEngine.alone({
        config: { ...config, parallel: { ...config.parallel, dp: 1, tp: 1, zero: 0 }, devices: { ...config.devices, count: 1 } },
        baseDir: EXAMPLES,
        start: { kind: 'fresh' },
        threads: 1,
      });
      const want: number[] = [];
      try {
        for (let i = 1; i <= 10; i++) {
          single.trainStep(i);
          if (i % 5 === 0) want.push(single.evaluate(i));
        }
      } finally {
        single.dispose();
      }
      assert.equal(evals.length, 2);
      assert.ok(maxRelative(evals, want) <= LOSS_TOLERANCE, `${evals} vs ${want}`);
    });
    it('dropout: masks inside TP regions differ per TP rank, outside they are shared — replicated parameters stay bit-identical across TP ranks and DP replicas', async () => {
      assert.equal(tpRegionSeed(12345, { size: 1, rank: 0 }), 12345);
      assert.notEqual(tpRegionSeed(12345, { size: 2, rank: 0 }), tpRegionSeed(12345, { size: 2, rank: 1 }));
      // parallelRun collects every rank's parameters and refuses any drift between replicas.
      const run = await parallelRun(tinyConfig({ dp: 2, tp: 2, zero: 1 }, { model: { dropout: 0.1 }, train: { steps: 5 } }));
      assert.equal(run.losses.length, 5);
      assert.ok(run.losses.every(Number.isFinite));
    });
  });

  describe('processes over sockets', () => {
    equivalence({ dp: 2, transport: 'processes' });
    equivalence({ tp: 2, transport: 'processes' });
    equivalence({ dp: 2, tp: 2, zero: 3, transport: 'processes' });
    equivalence({ dp: 2, zero: 2, microBatch: 2, transport: 'processes' });
  });
});
