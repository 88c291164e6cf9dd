// Memory per rank, measured by each rank (tfjs buffers + registered communication buffers + gathered ZeRO-3
// parameters) against the planner's `runtime` convention for the same layout: every category within 5% on
// every rank. The planner lumps communication buffers and gathered parameters into `buffers`.
import assert from 'node:assert/strict';
import type { MemoryMessage } from '../../common/protocol';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { EXAMPLES } from './train/fixtures';
import { describe_, tinyConfig, type Layout } from './parallel/helpers';

const CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'buffers'] as const;
const table: string[] = [];

async function measure(layout: Layout, extra: Parameters<typeof tinyConfig>[1] = {}): Promise<MemoryMessage[]> {
  const config = tinyConfig(layout, extra);
  config.train.steps = 2;
  const trainer = await createLocalRun({ config, baseDir: EXAMPLES, threads: 1, timeoutMs: 60_000 });
  const last = new Map<number, MemoryMessage>();
  trainer.subscribe((m) => {
    if (m.type === 'memory' && m.step === 2) last.set(m.rank, m);
  });
  await trainer.run();
  trainer.dispose();
  return [...last.values()].sort((a, b) => a.rank - b.rank);
}

function check(layout: Layout, extra: Parameters<typeof tinyConfig>[1] = {}, label = describe_(layout)): void {
  it(`${label}: measured bytes per category within 5% of the planner's runtime convention on every rank`, async () => {
    const ranks = await measure(layout, extra);
    assert.equal(ranks.length, (layout.dp ?? 1) * (layout.tp ?? 1));
    const cells: string[] = [];
    for (const m of ranks) {
      assert.ok(m.predicted, 'the memory message carries the prediction');
      for (const c of CATEGORIES) {
        const measured = c === 'buffers' ? m.categories.buffers! + m.categories.gathered! : m.categories[c]!;
        const predicted = m.predicted[c]!;
        const err = predicted === 0 ? (measured === 0 ? 0 : Infinity) : Math.abs(measured - predicted) / predicted;
        if (m.rank === 0) cells.push(`${c} ${(measured / 1024).toFixed(1)}/${(predicted / 1024).toFixed(1)} KiB${predicted ? ` (${(100 * err).toFixed(1)}%)` : ''}`);
        assert.ok(err <= 0.05, `rank ${m.rank} ${c}: measured ${measured} B, predicted ${predicted} B (${(100 * err).toFixed(1)}%)`);
      }
    }
    table.push(`${label.padEnd(44)} ${cells.join('  ')}`);
  });
}

describe('parallel: measured memory per rank agrees with the planner', function () {
  this.timeout(120_000);
  after(() => {
    if (table.length) console.log(`      rank 0, measured/predicted:\n${table.map((l) => `        ${l}`).join('\n')}`);
  });
  for (const [dp, tp] of [
    [2, 1],
    [4, 1],
    [1, 2],
    [1, 4],
    [2, 2],
  ] as const) {
    for (const zero of [0, 1, 2, 3] as const) check({ dp, tp, zero });
  }
  check({ dp: 2, tp: 2, zero: 3, recompute: 'full' });
  check({ dp: 2, tp: 2, zero: 2, recompute: 'selective' });
  check({ dp: 2, zero: 3, microBatch: 1 });
  // Small buckets: several per step, both staging buffers in use, the first bucket capped apart.
  check({ dp: 2, zero: 2 }, { model: { layers: 4 }, parallel: { bucketMB: 0.02 } }, 'dp=2 zero=2, 4 layers, 20 kB buckets');
  check({ dp: 4, zero: 3 }, { model: { layers: 3, hidden: 30, heads: 2 }, parallel: { bucketMB: 0.02 } }, 'dp=4 zero=3, h30 (padded partitions), 20 kB buckets');
});
