// ZeRO on a toy model with hand-computed per-rank gradient partitions (DeepSpeed's way of testing it).
// Units in gradient order: ln_f (3 elements), h.0 (5), embedding (wte 2×2 tied + wpe 1); with dp = 2 each
// is padded to an even length and split in two, so rank 0 owns ln_f[0:2] h.0[0:3] emb[0:3] and rank 1
// ln_f[2:4] h.0[3:6] emb[3:6] — one padding element per unit, on rank 1. Rank r's gradients are (r+1)·g,
// so the reduced (AVG) gradient is 1.5·g; wte's is the sum of its two parts (output layer + embedding).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { launchThreadWorld } from '../../runtime/comm/launch';
import type { ToyResult } from './parallel/zero-entry';

const ENTRY = join(__dirname, 'parallel', 'zero-entry.js');

const EXPECTED = [
  // rank 0: ln_f 1,2 | h.0 10,20,30 | wte 100+1000, 200+2000, 300+3000            (× 1.5)
  [1.5, 3, 15, 30, 45, 1650, 3300, 4950],
  // rank 1: ln_f 3, pad | h.0 40,50, pad | wte 400+4000, wpe 7, pad                (× 1.5)
  [4.5, 0, 60, 75, 0, 6600, 10.5, 0],
];

async function run(zero: 1 | 2 | 3, bucketBytes: number, micro = 1): Promise<ToyResult[]> {
  const world = await launchThreadWorld<ToyResult>(2, ENTRY, { args: { zero, bucketBytes, micro }, timeoutMs: 30_000 });
  assert.ok(world.ok, world.errors.map((e) => e?.message).join('\n'));
  return world.results as ToyResult[];
}

describe('parallel: ZeRO partitions of a toy model, by hand', function () {
  this.timeout(60_000);
  for (const zero of [1, 2, 3] as const) {
    for (const [bucketBytes, what] of [
      [1 << 20, 'one bucket'],
      [4, 'a bucket per unit'],
    ] as const) {
      it(`ZeRO-${zero}, ${what}: each rank holds exactly its hand-computed partition of the averaged gradient, padding zero`, async () => {
        const ranks = await run(zero, bucketBytes);
        ranks.forEach((r, rank) => assert.deepEqual(r.partition, EXPECTED[rank], `rank ${rank}`));
      });
    }
  }
  it('ZeRO-2 with 4 micro-batches reduces every micro-batch and accumulates the same partition', async () => {
    const ranks = await run(2, 4, 4);
    ranks.forEach((r, rank) => r.partition.forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[rank]![i]!) <= 1e-4 * Math.max(1, Math.abs(EXPECTED[rank]![i]!)), `rank ${rank}[${i}]: ${v}`)));
  });
  it('ZeRO-3 gathers each unit whole from the two partitions (padding dropped), keeps at most two alive, and none after release', async () => {
    const ranks = await run(3, 4);
    for (const r of ranks) {
      assert.deepEqual(r.gathered, {
        'ln_f.weight': [1, 2, 3],
        'h.0.attn.c_attn.bias': [101, 102, 103, 104, 105],
        'wte.weight': [201, 202, 203, 204],
        'wpe.weight': [205],
      });
      assert.ok(r.maxLive! <= 2, `at most two units gathered or in flight (got ${r.maxLive})`);
      assert.deepEqual(r.liveAfter, []);
    }
  });
});
