// One rank of the comm benchmark: times a collective over a range of sizes, nccl-tests style.
import type { Comm } from '../../runtime/comm/comm';
import { now } from '../../runtime/comm/types';

export interface RankArgs {
  op: 'all_reduce' | 'all_gather' | 'reduce_scatter' | 'broadcast';
  sizes: number[]; // bytes
  kinds: Array<'registered' | 'heap'>;
  budgetMs: number; // per size and kind, roughly
  reps: number;
}
export interface Row {
  bytes: number;
  kind: 'registered' | 'heap';
  /** Median over reps of the per-call time of the slowest rank, in microseconds. */
  us: number;
  algorithm: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export function main(comm: Comm, args: RankArgs): Row[] {
  const g = comm.world;
  const n = g.size;
  const slowest = comm.alloc(1);
  const rows: Row[] = [];
  for (const bytes of args.sizes) {
    const count = Math.floor(bytes / 4);
    for (const kind of args.kinds) {
      const make = (l: number) => (kind === 'registered' ? comm.alloc(l) : new Float32Array(l));
      // Zeros: repeated sums stay finite and normal, so every iteration does the same arithmetic.
      const big = make(count);
      const part = make(g.chunk(count).end - g.chunk(count).start);
      const call = () => {
        switch (args.op) {
          case 'all_reduce': return g.allReduce(big);
          case 'broadcast': return g.broadcast(big, 0);
          case 'all_gather': return g.allGather(big, part);
          case 'reduce_scatter': return g.reduceScatter(part, big);
        }
      };
      const timeOf = (iters: number): number => {
        g.barrier();
        const t0 = now();
        for (let i = 0; i < iters; i++) call();
        slowest[0] = (now() - t0) / iters;
        g.allReduce(slowest, 'max');
        return slowest[0]!;
      };
      timeOf(2); // warm-up: JIT, page faults, the comm thread's first touch
      const once = timeOf(1);
      const iters = Math.max(1, Math.min(2000, Math.round(args.budgetMs / args.reps / Math.max(once, 0.001))));
      const times: number[] = [];
      for (let r = 0; r < args.reps; r++) times.push(timeOf(iters));
      comm.takeRecords();
      call();
      const algorithm = comm.takeRecords().records.find((x) => x.op === args.op)?.algorithm ?? '?';
      rows.push({ bytes, kind, us: median(times) * 1000, algorithm });
      if (kind === 'registered') {
        comm.free(big);
        comm.free(part);
      }
      void n;
    }
  }
  return comm.rank === 0 ? rows : [];
}
