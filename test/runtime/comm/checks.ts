// The collective test suite every rank of a world runs (thread or process transport, any world size).
// Each check makes the same sequence of calls on every rank and records failed expectations instead of
// throwing, so one wrong value does not desynchronise the world and every check reports on its own.
// Expected values come from the tutorial's oracles and from a naive reference computed locally: every
// rank can compute any rank's input, because inputs are a deterministic function of (rank, index, salt).

import type { Comm, ProcessGroup } from '../../../runtime/comm/comm';
import { REDUCE_OPS, type ReduceOp } from '../../../runtime/comm/types';
import { meshGroups, resolveMesh } from '../../../runtime/comm/mesh';

export interface SuiteArgs {
  /** Lengths that exercise the multi-chunk / multi-round paths (bigger than the configured chunk). */
  large: number;
}

export class Tally {
  readonly failures: string[] = [];
  expect(ok: boolean, message: () => string): void {
    if (!ok && this.failures.length < 8) this.failures.push(message());
  }
  equal(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
    if (got.length !== want.length) return this.expect(false, () => `${what}: length ${got.length}, expected ${want.length}`);
    for (let i = 0; i < got.length; i++) {
      if (!Object.is(got[i], want[i]) && !(got[i] === want[i])) {
        return this.expect(false, () => `${what}: [${i}] = ${got[i]}, expected ${want[i]} (length ${got.length})`);
      }
    }
  }
  close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol: number): void {
    for (let i = 0; i < want.length; i++) {
      const tol = rtol * Math.max(1, Math.abs(want[i]!));
      if (!(Math.abs(got[i]! - want[i]!) <= tol)) return this.expect(false, () => `${what}: [${i}] = ${got[i]}, expected ${want[i]} ±${tol}`);
    }
  }
}

export interface Check {
  name: string;
  run(comm: Comm, t: Tally, args: SuiteArgs): void;
}

/** Small integers: sums over 8 ranks stay exact in float32, so every algorithm must match exactly. */
export const value = (rank: number, i: number, salt: number) => ((rank * 31 + i * 17 + salt * 7) % 101) - 50;
export function input(rank: number, length: number, salt: number): Float32Array {
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = value(rank, i, salt);
  return a;
}
/** Floats with full mantissas, for the "identical on every rank, close to the reference" check. */
export function noisy(rank: number, length: number, salt: number): Float32Array {
  const a = new Float32Array(length);
  let s = (rank + 1) * 2654435761 + salt * 97;
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 3.7;
  }
  return a;
}

/** The naive reference: fold the members' inputs in member order with float32 arithmetic. */
export function reference(inputs: Float32Array[], op: ReduceOp): Float32Array {
  const n = inputs.length;
  const out = Float32Array.from(inputs[0]!);
  for (let i = 0; i < out.length; i++) {
    let acc = inputs[0]![i]!;
    for (let k = 1; k < n; k++) {
      const v = inputs[k]![i]!;
      acc = op === 'max' ? Math.max(acc, v) : op === 'min' ? Math.min(acc, v) : Math.fround(acc + v);
    }
    out[i] = op === 'avg' ? Math.fround(acc / n) : acc;
  }
  return out;
}
const groupInputs = (g: ProcessGroup, length: number, salt: number) => g.ranks.map((r) => input(r, length, salt));

function lengths(n: number, args: SuiteArgs): number[] {
  return [0, 1, n - 1, n + 1, 7, 1000, 4099, args.large];
}

/** Buffers of both kinds: a plain Float32Array, and one registered in the rank's shared memory. */
function kinds(comm: Comm): Array<['heap' | 'registered', (length: number) => Float32Array, (b: Float32Array) => void]> {
  return [
    ['heap', (l) => new Float32Array(l), () => {}],
    ['registered', (l) => comm.alloc(l), (b) => comm.free(b)],
  ];
}

function fill(make: (l: number) => Float32Array, data: Float32Array): Float32Array {
  const b = make(data.length);
  b.set(data);
  return b;
}

/** A checksum every rank can all-gather to prove results are bit-identical across ranks. */
function checksum(a: Float32Array): number {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  let h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i]!, 0x01000193);
  return (h >>> 8) + a.length; // exact in float32 after the shift
}

function identicalEverywhere(g: ProcessGroup, t: Tally, what: string, a: Float32Array): void {
  const sums = new Float32Array(g.size);
  g.allGather(sums, Float32Array.of(checksum(a)));
  t.expect(
    sums.every((s) => s === sums[0]),
    () => `${what}: results differ across ranks (checksums ${[...sums].join(', ')})`,
  );
}

// ---- the checks --------------------------------------------------------------------------------------------------

function allReduceChecks(comm: Comm, t: Tally, args: SuiteArgs, g: ProcessGroup, label: string): void {
  let salt = 0;
  for (const [kind, make, release] of kinds(comm)) {
    for (const length of lengths(g.size, args)) {
      for (const op of REDUCE_OPS) {
        salt++;
        const buf = fill(make, input(comm.rank, length, salt));
        g.allReduce(buf, op);
        t.equal(`${label} all_reduce ${op} ${kind} length ${length}`, buf, reference(groupInputs(g, length, salt), op));
        release(buf);
      }
    }
  }
}

export const CHECKS: Check[] = [
  {
    name: 'tutorial oracle: reduce-scatter of rank*[1,10,100,1000]',
    run(comm, t) {
      const g = comm.world;
      const base = [1, 10, 100, 1000];
      const out = new Float32Array(g.chunk(4).end - g.chunk(4).start);
      g.reduceScatter(out, Float32Array.from(base.map((x) => x * comm.rank)));
      const total = (g.size * (g.size - 1)) / 2;
      const { start } = g.chunk(4);
      t.equal(
        'reduce-scatter',
        out,
        base.slice(start, start + out.length).map((x) => x * total),
      );
      if (g.size === 4) t.equal('the tutorial values', out, [[6], [60], [600], [6000]][comm.rank]!);
    },
  },
  {
    name: 'tutorial oracle: all-reduce SUM of ones*rank',
    run(comm, t) {
      const buf = new Float32Array(10).fill(comm.rank);
      comm.world.allReduce(buf);
      t.equal('all-reduce', buf, new Array(10).fill((comm.size * (comm.size - 1)) / 2));
    },
  },
  {
    name: 'all-reduce: every reduce op, uneven and zero lengths, plain and registered buffers',
    run(comm, t, args) {
      allReduceChecks(comm, t, args, comm.world, 'world');
    },
  },
  {
    name: 'all-reduce of full-mantissa floats is close to the reference and bit-identical on every rank',
    run(comm, t, args) {
      for (const op of REDUCE_OPS) {
        const buf = noisy(comm.rank, args.large, 5);
        comm.world.allReduce(buf, op);
        t.close(
          `noisy ${op}`,
          buf,
          reference(
            comm.world.ranks.map((r) => noisy(r, args.large, 5)),
            op,
          ),
          1e-5,
        );
        identicalEverywhere(comm.world, t, `noisy ${op}`, buf);
      }
    },
  },
  {
    name: 'reduce to a root: every op; only the root changes',
    run(comm, t, args) {
      const g = comm.world;
      let salt = 100;
      for (const root of [...new Set([0, g.size - 1])]) {
        for (const [kind, make, release] of kinds(comm)) {
          for (const length of [0, 3, 1000, args.large]) {
            for (const op of REDUCE_OPS) {
              salt++;
              const mine = input(comm.rank, length, salt);
              const buf = fill(make, mine);
              g.reduce(buf, root, op);
              const want = g.rank === root ? reference(groupInputs(g, length, salt), op) : mine;
              t.equal(`reduce root ${root} ${op} ${kind} length ${length}`, buf, want);
              release(buf);
            }
          }
        }
      }
    },
  },
  {
    name: 'broadcast from the first and the last rank',
    run(comm, t, args) {
      const g = comm.world;
      let salt = 200;
      for (const root of [...new Set([0, g.size - 1])]) {
        for (const [kind, make, release] of kinds(comm)) {
          for (const length of [0, 1, 1000, args.large]) {
            salt++;
            const buf = fill(make, input(comm.rank, length, salt));
            g.broadcast(buf, root);
            t.equal(`broadcast root ${root} ${kind} length ${length}`, buf, input(g.ranks[root]!, length, salt));
            release(buf);
          }
        }
      }
    },
  },
  {
    name: 'reduce-scatter: every op, uneven and zero lengths, plain, registered and in-place',
    run(comm, t, args) {
      const g = comm.world;
      let salt = 300;
      for (const [kind, make, release] of kinds(comm)) {
        for (const length of lengths(g.size, args)) {
          for (const op of REDUCE_OPS) {
            salt++;
            const { start, end } = g.chunk(length);
            const inBuf = fill(make, input(comm.rank, length, salt));
            const out = make(end - start);
            g.reduceScatter(out, inBuf, op);
            t.equal(`reduce_scatter ${op} ${kind} length ${length}`, out, reference(groupInputs(g, length, salt), op).subarray(start, end));
            release(out);
            release(inBuf);
          }
        }
      }
      // A true in-place reduce-scatter (output aliases the input) on a registered buffer.
      const length = args.large;
      const { start, end } = g.chunk(length);
      const buf = comm.alloc(length);
      buf.set(input(comm.rank, length, 399));
      g.reduceScatter(buf.subarray(start, end), buf, 'sum');
      t.equal('in-place reduce_scatter', buf.subarray(start, end), reference(groupInputs(g, length, 399), 'sum').subarray(start, end));
      comm.free(buf);
    },
  },
  {
    name: 'all-gather: uneven and zero lengths, plain, registered and in-place',
    run(comm, t, args) {
      const g = comm.world;
      let salt = 400;
      const whole = (length: number, s: number) => {
        const w = new Float32Array(length);
        for (let j = 0; j < g.size; j++) {
          const c = g.chunk(length, j);
          w.set(input(g.ranks[j]!, length, s).subarray(c.start, c.end), c.start);
        }
        return w;
      };
      for (const [kind, make, release] of kinds(comm)) {
        for (const length of lengths(g.size, args)) {
          salt++;
          const { start, end } = g.chunk(length);
          const mine = fill(make, input(comm.rank, length, salt).subarray(start, end));
          const out = make(length);
          g.allGather(out, mine);
          t.equal(`all_gather ${kind} length ${length}`, out, whole(length, salt));
          release(out);
          release(mine);
        }
      }
      const length = args.large;
      const { start, end } = g.chunk(length);
      const buf = comm.alloc(length);
      buf.set(input(comm.rank, length, 499).subarray(start, end), start);
      g.allGather(buf, buf.subarray(start, end));
      t.equal('in-place all_gather', buf, whole(length, 499));
      comm.free(buf);
    },
  },
  {
    name: 'scatter and gather with uneven parts, to and from the first and last rank',
    run(comm, t, args) {
      const g = comm.world;
      let salt = 500;
      for (const root of [...new Set([0, g.size - 1])]) {
        for (const [kind, make, release] of kinds(comm)) {
          for (const length of [0, 1, g.size + 1, 1000, args.large]) {
            salt++;
            const { start, end } = g.chunk(length);
            const isRoot = g.rank === root;
            const full = input(g.ranks[root]!, length, salt);
            const out = make(end - start);
            g.scatter(out, isRoot ? fill(make, full) : null, root, length);
            t.equal(`scatter root ${root} ${kind} length ${length}`, out, full.subarray(start, end));

            const mine = fill(make, input(comm.rank, length, salt).subarray(start, end));
            const gathered = isRoot ? make(length) : null;
            g.gather(mine, gathered, root, length);
            if (gathered) {
              const want = new Float32Array(length);
              for (let j = 0; j < g.size; j++) {
                const c = g.chunk(length, j);
                want.set(input(g.ranks[j]!, length, salt).subarray(c.start, c.end), c.start);
              }
              t.equal(`gather root ${root} ${kind} length ${length}`, gathered, want);
              release(gathered);
            }
            release(out);
            release(mine);
          }
        }
      }
    },
  },
  {
    name: 'barrier, and zero-length calls, keep every rank in step',
    run(comm, t) {
      const g = comm.world;
      for (let k = 0; k < 5; k++) g.barrier();
      const empty = new Float32Array(0);
      g.allReduce(empty);
      g.broadcast(empty, g.size - 1);
      g.allGather(empty, empty);
      const after = Float32Array.of(comm.rank + 1);
      g.allReduce(after);
      t.equal('sum after zero-length calls', after, [(g.size * (g.size + 1)) / 2]);
    },
  },
  {
    name: 'send/recv around a ring, small and multi-piece messages, with tags',
    run(comm, t, args) {
      const g = comm.world;
      const n = g.size;
      if (n === 1) return;
      const next = (g.rank + 1) % n,
        prev = (g.rank + n - 1) % n;
      for (const [kind, make, release] of kinds(comm)) {
        for (const length of [0, 5, args.large * 2]) {
          const msg = fill(make, input(comm.rank, length, 600 + length));
          const got = make(length);
          // Even ranks send first: messages longer than the eager buffer wait for their receiver.
          if (g.rank % 2 === 0) {
            g.send(msg, next, 7);
            g.recv(got, prev, 7);
          } else {
            g.recv(got, prev, 7);
            g.send(msg, next, 7);
          }
          t.equal(`ring recv ${kind} length ${length}`, got, input(g.ranks[prev]!, length, 600 + length));
          release(msg);
          release(got);
        }
      }
      // Several messages between the same pair arrive in order.
      if (g.rank === 0) for (let k = 0; k < 3; k++) g.send(Float32Array.of(k, k * 10), 1, k);
      if (g.rank === 1) {
        for (let k = 0; k < 3; k++) {
          const m = new Float32Array(2);
          g.recv(m, 0, k);
          t.equal(`message ${k} in order`, m, [k, k * 10]);
        }
      }
    },
  },
  {
    name: 'isend/irecv exchange both ways at once',
    run(comm, t) {
      const g = comm.world;
      if (g.size === 1) return;
      const peer = g.rank ^ 1;
      if (peer >= g.size) {
        g.barrier();
        return;
      }
      const mine = input(comm.rank, 3000, 700);
      const got = new Float32Array(3000);
      const r = g.irecv(got, peer, 1);
      const s = g.isend(mine, peer, 1);
      s.wait();
      r.wait();
      t.equal('exchanged', got, input(g.ranks[peer]!, 3000, 700));
      g.barrier();
    },
  },
  {
    name: 'async collectives complete in order and overlap with blocking calls on other groups',
    run(comm, t, args) {
      const g = comm.world;
      const bufs = [0, 1, 2].map((k) => input(comm.rank, k === 1 ? args.large : 1000, 800 + k));
      const reg = comm.alloc(4099);
      reg.set(input(comm.rank, 4099, 803));
      const other = comm.newGroup(g.ranks, 'world-again')!;
      const works = [...bufs.map((b) => g.allReduceAsync(b, 'sum')), g.allReduceAsync(reg, 'max')];
      // A blocking call on another group while those are in flight.
      const meanwhile = Float32Array.of(1);
      other.allReduce(meanwhile);
      t.equal('blocking call on another group', meanwhile, [g.size]);
      for (const w of works) w.wait();
      bufs.forEach((b, k) => t.equal(`async all_reduce ${k}`, b, reference(groupInputs(g, b.length, 800 + k), 'sum')));
      t.equal('async all_reduce registered max', reg, reference(groupInputs(g, 4099, 803), 'max'));
      t.expect(
        works.every((w) => w.test()),
        () => 'test() is true after wait()',
      );
      comm.free(reg);
      // Async reduce-scatter + all-gather (ZeRO's pattern) on plain buffers.
      const length = 1001;
      const { start, end } = g.chunk(length);
      const part = new Float32Array(end - start);
      const rs = g.reduceScatterAsync(part, input(comm.rank, length, 810), 'avg');
      rs.wait();
      t.equal('async reduce_scatter avg', part, reference(groupInputs(g, length, 810), 'avg').subarray(start, end));
      const whole = new Float32Array(length);
      g.allGatherAsync(whole, part).wait();
      t.equal('async all_gather', whole, reference(groupInputs(g, length, 810), 'avg'));
      // Progress without wait(): test() only looks, so this loop ends only if the comm thread does the work
      // while this thread computes (the overlap a backward pass relies on).
      const overlap = comm.alloc(args.large);
      overlap.set(input(comm.rank, args.large, 820));
      const w = g.allReduceAsync(overlap, 'sum');
      let busy = 0;
      for (let spins = 0; !w.test() && spins < 2e8; spins++) busy += Math.sqrt(spins);
      t.expect(w.test(), () => `the async all-reduce made no progress while this thread was busy (${busy})`);
      w.wait();
      t.equal('async all_reduce done in the background', overlap, reference(groupInputs(g, args.large, 820), 'sum'));
      comm.free(overlap);
      const b = Float32Array.of(comm.rank);
      g.broadcastAsync(b, g.size - 1).wait();
      g.barrierAsync().wait();
      t.equal('async broadcast', b, [g.size - 1]);
    },
  },
  {
    name: 'mesh groups follow Megatron order and reduce within their members',
    run(comm, t) {
      const n = comm.size;
      const shape = n === 8 ? { tp: 2, pp: 2 } : n === 4 ? { tp: 2 } : n === 2 ? { tp: 2 } : { tp: 1 };
      const mesh = comm.mesh(shape);
      const resolved = resolveMesh(n, shape);
      const all = meshGroups(resolved);
      for (const kind of ['tp', 'dp', 'pp'] as const) {
        const g = mesh[kind];
        const expected = all[kind].find((ranks) => ranks.includes(comm.rank))!;
        t.equal(`${kind} members`, g.ranks, expected);
        const buf = Float32Array.of(comm.rank, 1);
        g.allReduce(buf);
        t.equal(`${kind} all_reduce`, buf, [expected.reduce((a, b) => a + b, 0), expected.length]);
        allReduceChecks(comm, t, { large: 5000 }, g, kind);
      }
      const c = mesh.coords;
      t.expect(c.pp * resolved.tp * resolved.dp + c.dp * resolved.tp + c.tp === comm.rank, () => `coords ${JSON.stringify(c)} do not give back rank ${comm.rank}`);
    },
  },
  {
    name: 'a sub-group of some ranks, and groups of one',
    run(comm, t) {
      const n = comm.size;
      const evens = comm.newGroup(
        Array.from({ length: n }, (_, r) => r).filter((r) => r % 2 === 0),
        'evens',
      );
      const single = Array.from({ length: n }, (_, r) => comm.newGroup([r], `solo${r}`)).find((g) => g !== undefined)!;
      t.expect((evens !== undefined) === (comm.rank % 2 === 0), () => 'membership of the evens group');
      if (evens) {
        const buf = Float32Array.of(comm.rank);
        evens.allReduce(buf);
        t.equal('evens sum', buf, [evens.ranks.reduce((a, b) => a + b, 0)]);
        const out = new Float32Array(evens.chunk(5).end - evens.chunk(5).start);
        evens.reduceScatter(out, new Float32Array(5).fill(1), 'sum');
        t.equal('evens reduce_scatter', out, new Array(out.length).fill(evens.size));
      }
      t.equal('solo ranks', single.ranks, [comm.rank]);
      const x = Float32Array.of(3, -1);
      single.allReduce(x, 'avg');
      single.broadcast(x, 0);
      single.reduce(x, 0, 'max');
      const gathered = new Float32Array(2);
      single.allGather(gathered, x);
      const part = new Float32Array(2);
      single.reduceScatter(part, x, 'sum');
      single.barrier();
      single.allReduceAsync(x).wait();
      t.equal('group of one leaves data alone', x, [3, -1]);
      t.equal('group of one gathers itself', gathered, [3, -1]);
      t.equal('group of one reduce-scatters itself', part, [3, -1]);
      comm.world.barrier();
    },
  },
  {
    name: 'every call is recorded with op, group, bytes, times and algorithm',
    run(comm, t) {
      comm.takeRecords();
      const g = comm.world;
      g.allReduce(new Float32Array(100));
      g.allReduceAsync(new Float32Array(10)).wait();
      g.barrier();
      const { records } = comm.takeRecords();
      const ops = records.map((r) => r.op);
      t.equal(
        'ops recorded in order',
        ops.map((o) => ['all_reduce', 'barrier'].indexOf(o)),
        [0, 0, 1],
      );
      const first = records[0]!;
      t.expect(first.group === 'world' && first.bytes === 400, () => `first record ${JSON.stringify(first)}`);
      t.expect(
        records.every((r) => r.end >= r.start && r.algorithm.length > 0),
        () => `records ${JSON.stringify(records)}`,
      );
      const totals = comm.totals();
      t.expect(totals.all_reduce.calls > 0 && totals.all_reduce.bytes > 0, () => `totals ${JSON.stringify(totals.all_reduce)}`);
    },
  },
];

/** Runs every check in order; returns each check's failures (empty = passed). */
export function runChecks(comm: Comm, args: SuiteArgs): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const check of CHECKS) {
    const t = new Tally();
    try {
      check.run(comm, t, args);
    } catch (e) {
      t.failures.push(`threw ${(e as Error).name}: ${(e as Error).message}`);
    }
    out[check.name] = t.failures;
  }
  return out;
}
