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
  /** memcpy (Float32Array.set) of the same size on rank 0, measured between the reps of this point, GB/s. */
  memcpy: number;
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
          case 'all_reduce':
            return g.allReduce(big);
          case 'broadcast':
            return g.broadcast(big, 0);
          case 'all_gather':
            return g.allGather(big, part);
          case 'reduce_scatter':
            return g.reduceScatter(part, big);
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
      // The ceiling, measured in the same minutes as the collective (the machine's load drifts): rank 0
      // copies while the others wait in a barrier.
      const src = new Float32Array(count).fill(1);
      const dst = new Float32Array(count);
      const copyOf = (iters: number): number => {
        g.barrier();
        let ms = 0;
        if (comm.rank === 0) {
          const t0 = now();
          for (let i = 0; i < iters; i++) dst.set(src);
          ms = (now() - t0) / iters;
        }
        g.barrier();
        return ms;
      };
      timeOf(2); // warm-up: JIT, page faults, the comm thread's first touch
      copyOf(2);
      const once = timeOf(1);
      const iters = Math.max(1, Math.min(2000, Math.round(args.budgetMs / args.reps / Math.max(once, 0.001))));
      const copyIters = Math.max(1, Math.min(20000, Math.round(args.budgetMs / 4 / args.reps / Math.max(copyOf(1), 0.0005))));
      const times: number[] = [];
      const copies: number[] = [];
      for (let r = 0; r < args.reps; r++) {
        copies.push(copyOf(copyIters));
        times.push(timeOf(iters));
      }
      comm.takeRecords();
      call();
      const algorithm = comm.takeRecords().records.find((x) => x.op === args.op)?.algorithm ?? '?';
      rows.push({ bytes, kind, us: median(times) * 1000, memcpy: bytes / (median(copies) / 1000) / 1e9, algorithm });
      if (kind === 'registered') {
        comm.free(big);
        comm.free(part);
      }
      void n;
    }
  }
  return comm.rank === 0 ? rows : [];
}
