// A rank for the rank-layer attack test: `rounds` all-reduces a little apart (so the attack lands while the
// world is working), returning every result for the test to check against the arithmetic.
import type { Comm } from '../../../runtime/comm/comm';

export async function main(comm: Comm, args: { rounds: number; sleepMs: number }): Promise<number[]> {
  const sums: number[] = [];
  for (let i = 0; i < args.rounds; i++) {
    const buf = new Float32Array(1000).fill(comm.rank + 1 + i);
    comm.world.allReduce(buf);
    sums.push(buf[0]!, buf[999]!);
    await new Promise((r) => setTimeout(r, args.sleepMs));
  }
  return sums;
}
