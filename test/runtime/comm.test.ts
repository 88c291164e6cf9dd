// runtime/comm: every operation on both transports (worker threads over shared memory, processes over
// sockets) for world sizes 1, 2, 3, 4 and 8, sub-groups, uneven and zero lengths, every reduce op — checked
// against the tutorial's oracles and a naive reference (test/runtime/comm/checks.ts) — plus the failure
// behaviour: absent, dying and mismatched ranks fail everyone with named errors, and launchers leave
// nothing running. Ranks run as workers or child processes: the mocha thread itself never blocks.

import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { Arena } from '../../runtime/comm/arena';
import { freePort, launchProcessWorld, launchThreadWorld, type WorldResult } from '../../runtime/comm/launch';
import { meshCoords, meshGroups, resolveMesh } from '../../runtime/comm/mesh';
import { CallLog } from '../../runtime/comm/records';
import { reduceKernel, reduceKernelWasm } from '../../runtime/comm/simd-kernel';
import { chunkRange, CommAbortedError, CommMismatchError, CommTimeoutError, REDUCE_OPS, reviveError, type SerializedError } from '../../runtime/comm/types';
import { CHECKS, reference, type SuiteArgs } from './comm/checks';
import type { Outcome, Scenario } from './comm/failure-entry';

const SUITE = join(__dirname, 'comm', 'suite-entry.js');
const FAILURE = join(__dirname, 'comm', 'failure-entry.js');
const SIZES = [1, 2, 3, 4, 8];
// Small chunk/round/piece sizes so modest buffers already take the multi-chunk, pipelined paths.
const LARGE = 30011;
const THREAD_OPTIONS = { chunkBytes: 64 * 1024, smallBytes: 4096, p2pBytes: 64 * 1024, timeoutMs: 20_000 };
const SOCKET_OPTIONS = { smallBytes: 4096, pieceBytes: 16 * 1024, roundBytes: 64 * 1024, p2pBytes: 32 * 1024 };

describe('comm: process groups from a device mesh', () => {
  it("puts tp fastest, then dp, then pp (Megatron's order): 16 ranks, tp=2, pp=4, dp=2", () => {
    const groups = meshGroups(resolveMesh(16, { tp: 2, pp: 4 }));
    assert.deepEqual(groups.tp, [
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
      [8, 9],
      [10, 11],
      [12, 13],
      [14, 15],
    ]);
    assert.deepEqual(groups.dp, [
      [0, 2],
      [1, 3],
      [4, 6],
      [5, 7],
      [8, 10],
      [9, 11],
      [12, 14],
      [13, 15],
    ]);
    assert.deepEqual(groups.pp, [
      [0, 4, 8, 12],
      [1, 5, 9, 13],
      [2, 6, 10, 14],
      [3, 7, 11, 15],
    ]);
  });
  it('gives each rank coordinates that match the groups it is in', () => {
    const shape = resolveMesh(24, { tp: 2, pp: 3 });
    const groups = meshGroups(shape);
    for (let r = 0; r < 24; r++) {
      const c = meshCoords(r, shape);
      assert.equal(groups.tp.find((g) => g.includes(r))!.indexOf(r), c.tp);
      assert.equal(groups.dp.find((g) => g.includes(r))!.indexOf(r), c.dp);
      assert.equal(groups.pp.find((g) => g.includes(r))!.indexOf(r), c.pp);
    }
  });
  it('rejects a mesh whose product is not the world size, naming the numbers', () => {
    assert.throws(() => resolveMesh(8, { tp: 3 }), /tp=3 \* pp=1 \* dp=\? must equal the world size 8/);
    assert.throws(() => resolveMesh(8, { tp: 2, pp: 2, dp: 4 }), /must equal the world size 8/);
  });
  it('splits uneven lengths like numpy.array_split, including lengths below the group size', () => {
    assert.deepEqual(
      [0, 1, 2].map((i) => chunkRange(10, 3, i)),
      [
        { start: 0, end: 4 },
        { start: 4, end: 7 },
        { start: 7, end: 10 },
      ],
    );
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => chunkRange(2, 4, i)),
      [
        { start: 0, end: 1 },
        { start: 1, end: 2 },
        { start: 2, end: 2 },
        { start: 2, end: 2 },
      ],
    );
  });
});

describe('comm: the WebAssembly SIMD reduction kernel', () => {
  const memory = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true });
  const k = reduceKernel(memory);
  const f32 = new Float32Array(memory.buffer);

  it('is a valid module that uses SIMD (and no assembler at run time)', () => {
    const bytes = reduceKernelWasm();
    assert.ok(WebAssembly.validate(bytes));
    assert.ok(bytes.includes(0xfd), 'has SIMD opcodes');
  });
  it('adds, maxes, mins and divides every length 0..70 exactly like float32 scalar code, in place too', () => {
    for (let n = 0; n <= 70; n++) {
      const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + n) * 1e3);
      const b = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.3 - n) * 1e3);
      for (const op of ['add', 'max', 'min'] as const) {
        f32.set(a, 0);
        f32.set(b, 1000);
        f32.fill(-7, 2000, 2100);
        k[op](2000 * 4, 0, 1000 * 4, n);
        const want = a.map((x, i) => (op === 'add' ? Math.fround(x + b[i]!) : op === 'max' ? Math.max(x, b[i]!) : Math.min(x, b[i]!)));
        assert.deepEqual(f32.slice(2000, 2000 + n), want, `${op} n=${n}`);
        assert.equal(f32[2000 + n], -7, `${op} n=${n} wrote past the end`);
        k[op](0, 0, 1000 * 4, n); // dst aliases a
        assert.deepEqual(f32.slice(0, n), want, `${op} in place n=${n}`);
      }
      f32.set(a, 0);
      k.div(0, 0, n, 3);
      assert.deepEqual(
        f32.slice(0, n),
        a.map((x) => Math.fround(x / 3)),
        `div n=${n}`,
      );
    }
  });
  it('propagates NaN and orders -0 < +0 like Math.max/Math.min', () => {
    f32.set([NaN, 1, -0, 0, 5], 0);
    f32.set([1, NaN, 0, -0, 5], 100);
    k.max(200 * 4, 0, 400, 5);
    assert.deepEqual(
      [...f32.slice(200, 205)].map((v) => (Object.is(v, -0) ? '-0' : String(v))),
      ['NaN', 'NaN', '0', '0', '5'],
    );
    k.min(200 * 4, 0, 400, 5);
    assert.deepEqual(
      [...f32.slice(200, 205)].map((v) => (Object.is(v, -0) ? '-0' : String(v))),
      ['NaN', 'NaN', '-0', '-0', '5'],
    );
  });
  it('the naive reference folds in member order (a self-check of the oracle)', () => {
    const inputs = [Float32Array.of(1, 5), Float32Array.of(2, -1), Float32Array.of(3, 2)];
    assert.deepEqual([...reference(inputs, 'sum')], [6, 6]);
    assert.deepEqual([...reference(inputs, 'avg')], [2, 2]);
    assert.deepEqual([...reference(inputs, 'max')], [3, 5]);
    assert.deepEqual([...reference(inputs, 'min')], [1, -1]);
    assert.deepEqual(REDUCE_OPS, ['sum', 'max', 'min', 'avg']);
  });
});

describe('comm: arena and call log', () => {
  it('allocates 64-byte aligned blocks, reuses freed space and names the limit when exhausted', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const arena = new Arena(memory, 100, 4000);
    const a = arena.allocBytes(1000),
      b = arena.allocBytes(1000);
    assert.equal(a % 64, 0);
    assert.ok(b >= a + 1000);
    arena.freeBytes(a);
    assert.equal(arena.allocBytes(900), a);
    assert.throws(() => arena.allocBytes(4000), /comm arena exhausted.*arenaBytes/);
    assert.throws(() => arena.freeBytes(12345), /not allocated here/);
  });
  it('keeps the most recent records in a fixed ring and running totals per op', () => {
    const log = new CallLog(4);
    for (let i = 0; i < 6; i++) log.add('all_reduce', 'dp0', 100 * i, i, i + 0.5, 'shm-oneshot');
    log.add('barrier', 'world', 0, 10, 11, 'shm-arrival');
    const { records, dropped } = log.take();
    assert.equal(dropped, 3);
    assert.deepEqual(
      records.map((r) => r.bytes),
      [300, 400, 500, 0],
    );
    assert.deepEqual(records[3], { op: 'barrier', group: 'world', bytes: 0, start: 10, end: 11, algorithm: 'shm-arrival' });
    assert.deepEqual(log.take().records, []);
    assert.deepEqual(log.totals().all_reduce, { calls: 6, bytes: 1500, ms: 3 });
  });
});

function suite(transport: 'threads' | 'processes' | 'tcp', size: number): void {
  const label = transport === 'threads' ? 'worker threads over shared memory' : transport === 'tcp' ? 'processes over TCP sockets' : 'processes over Unix sockets';
  describe(`comm: ${label}, world of ${size}`, function () {
    let world: WorldResult<Record<string, string[]>>;
    before(async function () {
      const args: SuiteArgs = { large: LARGE };
      world =
        transport === 'threads'
          ? await launchThreadWorld(size, SUITE, { args, ...THREAD_OPTIONS })
          : await launchProcessWorld(size, SUITE, { args, timeoutMs: 20_000, socketOptions: SOCKET_OPTIONS, socket: transport === 'tcp' ? 'tcp' : 'unix' });
      assert.ok(
        world.ok,
        `the world failed: ${world.errors
          .map((e, r) => e && `rank ${r}: ${e.message}`)
          .filter(Boolean)
          .join('\n')}`,
      );
    });
    for (const check of CHECKS) {
      it(check.name, () => {
        const failures = world.results.flatMap((r, rank) => r![check.name]!.map((f) => `rank ${rank}: ${f}`));
        assert.deepEqual(failures, []);
      });
    }
  });
}
for (const transport of ['threads', 'processes'] as const) for (const size of SIZES) suite(transport, size);
suite('tcp', 3);

// ---- failure behaviour -------------------------------------------------------------------------------------------

type Launch = (size: number, scenario: Scenario, victim: number, timeoutMs: number) => Promise<WorldResult<Outcome>>;
const LAUNCHERS: Record<'threads' | 'processes', Launch> = {
  threads: (size, scenario, victim, timeoutMs) => launchThreadWorld<Outcome>(size, FAILURE, { args: { scenario, victim, holdMs: 30_000 }, timeoutMs, graceMs: 500 }),
  processes: (size, scenario, victim, timeoutMs) => launchProcessWorld<Outcome>(size, FAILURE, { args: { scenario, victim, holdMs: 30_000 }, timeoutMs, graceMs: 500 }),
};

/** The error a rank saw, whether its entry caught it (Outcome) or the rank failed with it. */
function errorOf(world: WorldResult<Outcome>, rank: number): { name: string; message: string } | undefined {
  return world.results[rank]?.error ?? (world.errors[rank] ? { name: world.errors[rank]!.name, message: world.errors[rank]!.message } : undefined);
}

for (const transport of ['threads', 'processes'] as const) {
  const launch = LAUNCHERS[transport];
  describe(`comm failures: ${transport}`, function () {
    it('a rank that never arrives makes the others time out, naming it and the operation', async () => {
      const world = await launch(3, 'absent', 1, 250);
      for (const rank of [0, 2]) {
        const e = errorOf(world, rank)!;
        assert.ok(e, `rank ${rank} should have failed`);
        assert.match(e.name, /CommTimeoutError|CommAbortedError/, e.message);
        assert.match(e.message, /all_reduce\(count=1000, op=SUM\)/);
        assert.match(e.message, /rank 1 has not reached this call \(it has made no call on this group\)/);
      }
      assert.ok(
        [0, 2].some((r) => errorOf(world, r)!.name === 'CommTimeoutError'),
        'someone timed out first',
      );
      assert.equal(world.results[0]?.intact, true, 'the buffer of the failed all-reduce was not half-written');
    });

    it('an async call whose peer never arrives fails its wait() with the timeout', async () => {
      const world = await launch(2, 'absent-async', 1, 250);
      const e = errorOf(world, 0)!;
      assert.equal(e.name, 'CommTimeoutError', e.message);
      assert.match(e.message, /all_reduce.*rank 1 has not reached this call/);
    });

    it('a rank that throws aborts the others at once (not at their timeout), naming it', async () => {
      const world = await launch(3, 'throws', 2, 60_000);
      assert.match(world.errors[2]!.message, /rank 2 fell over on purpose/);
      for (const rank of [0, 1]) {
        const e = errorOf(world, rank)!;
        assert.equal(e.name, 'CommAbortedError', e.message);
        assert.match(e.message, /all_reduce.*rank 2 failed: rank 2 fell over on purpose/);
      }
    });

    it('a rank that exits abruptly aborts the others at once, naming it', async () => {
      const world = await launch(3, 'exits', 1, 60_000);
      assert.ok(world.errors[1], 'the exited rank is reported');
      for (const rank of [0, 2]) {
        const e = errorOf(world, rank)!;
        assert.equal(e.name, 'CommAbortedError', e.message);
        assert.match(e.message, /all_reduce/);
        assert.match(e.message, /rank 1/);
      }
    });

    it('mismatched calls (all-reduce of 1000 vs all-gather of 10) are reported on every rank, not corrupted', async () => {
      const world = await launch(2, 'mismatch', -1, 60_000);
      for (const rank of [0, 1]) {
        const e = errorOf(world, rank)!;
        assert.match(e.name, /CommMismatchError|CommAbortedError/, e.message);
        assert.match(e.message, /all_reduce\(count=1000, op=SUM\)/);
        assert.match(e.message, /all_gather\(count=20\)/);
      }
      assert.ok([0, 1].some((r) => errorOf(world, r)!.name === 'CommMismatchError'));
      assert.equal(world.results[0]?.intact, true, "rank 0's buffer is untouched");
    });

    it('a recv that expects a different length than was sent is a mismatch', async () => {
      const world = await launch(2, 'p2p-mismatch', -1, 60_000);
      const e = errorOf(world, 1)!;
      assert.equal(e.name, 'CommMismatchError', e.message);
      assert.match(e.message, /recv from rank 0 expected 20 floats with tag 0, but rank 0 sent 10 floats with tag 0/);
    });

    it('a recv from a rank that never sends times out, naming it', async () => {
      const world = await launch(2, 'p2p-absent', 1, 250);
      const e = errorOf(world, 0)!;
      assert.equal(e.name, 'CommTimeoutError', e.message);
      assert.match(e.message, /recv from rank 1 .* timed out/);
    });

    it('ranks that create groups in different orders get a mismatch, not crossed wires', async () => {
      const world = await launch(3, 'group-order', -1, 10_000);
      const messages = [0, 1, 2].map((r) => errorOf(world, r)?.message ?? '');
      for (const m of messages) assert.match(m, /every rank must create groups in the same order/);
    });

    it('a stuck rank is terminated after the grace period when another fails: nothing is left running', async () => {
      const world = await launch(2, 'stuck', 1, 60_000);
      assert.match(world.errors[0]!.message, /rank 0 failed while rank 1 is stuck/);
      assert.match(world.errors[1]!.message, /rank 1: terminated by the launcher/);
      assert.equal(world.ok, false);
    });
  });
}

describe('comm failures: rendezvous (torchrun-style environment)', () => {
  /** Starts only `ranks` of a world of `size`, as a launcher that lost some processes would. */
  async function partialWorld(size: number, ranks: number[], timeoutMs: number): Promise<Array<Error | undefined>> {
    const port = await freePort();
    const secret = randomBytes(32).toString('hex');
    return Promise.all(
      ranks.map(
        (rank) =>
          new Promise<Error | undefined>((resolve) => {
            const child = fork(join(__dirname, '../../runtime/comm/process-rank.js'), [SUITE], {
              env: {
                ...process.env,
                MASTER_ADDR: '127.0.0.1',
                MASTER_PORT: String(port),
                WORLD_SIZE: String(size),
                RANK: String(rank),
                SCALELM_COMM_RENDEZVOUS_TIMEOUT_MS: String(timeoutMs),
                SCALELM_COMM_SECRET: secret,
              },
              serialization: 'advanced',
              stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
            });
            let outcome: Error | undefined;
            child.on('message', (m: { ok: boolean; error?: SerializedError }) => (outcome = m.ok ? undefined : reviveError(m.error!)));
            child.on('exit', () => resolve(outcome));
            child.send({ args: { large: 10 } });
          }),
      ),
    );
  }

  it('a missing rank makes the others fail within the timeout, naming it', async () => {
    const errors = await partialWorld(3, [0, 1], 500);
    for (const e of errors) assert.match(e!.message, /rendezvous: rank 2 did not join within 500 ms/);
  });
  it('a missing rank 0 (the store host) is named too', async () => {
    const errors = await partialWorld(2, [1], 500);
    assert.match(errors[0]!.message, /could not reach the rendezvous store .* \(hosted by rank 0\) within 500 ms/);
  });
  it('errors keep their classes across the thread/process boundary', () => {
    for (const E of [CommTimeoutError, CommMismatchError, CommAbortedError]) {
      const e = reviveError({ name: E.name, message: 'm', rank: 1, op: 'all_reduce', group: 'world' });
      assert.ok(e instanceof E);
    }
  });
});

describe('comm: tfjs tensors (thin wrappers), 2 worker threads', () => {
  it('all-reduce, broadcast, reduce, all-gather and reduce-scatter along rows and along the last dimension', async () => {
    type Got = Record<string, { shape: number[]; data: number[] }>;
    const world = await launchThreadWorld<Got>(2, join(__dirname, 'comm', 'tensor-entry.js'), { timeoutMs: 20_000 });
    assert.ok(world.ok, world.errors.map((e) => e?.message).join('\n'));
    const [r0, r1] = world.results as [Got, Got];
    for (const r of [r0, r1]) {
      assert.deepEqual(r.allReduce, { shape: [2, 2], data: [3, 12, 102, 1002] });
      assert.deepEqual(r.avg, { shape: [2, 2], data: [1.5, 6, 51, 501] });
      assert.deepEqual(r.broadcast, { shape: [2, 2], data: [2, 11, 101, 1001] });
      assert.deepEqual(r.gatherRows, { shape: [4, 2], data: [1, 1, 1, 1, 2, 11, 101, 1001] });
      assert.deepEqual(r.gatherCols, { shape: [2, 4], data: [1, 1, 2, 11, 1, 1, 101, 1001] });
    }
    assert.deepEqual(r0.reduce.data, [2, 11, 101, 1001]);
    assert.deepEqual(r1.reduce.data, [2, 11, 101, 1001], "a non-root's tensor comes back unchanged");
    assert.deepEqual(
      [r0.scatterRows, r1.scatterRows],
      [
        { shape: [1, 2], data: [3, 12] },
        { shape: [1, 2], data: [102, 1002] },
      ],
    );
    assert.deepEqual(
      [r0.scatterCols, r1.scatterCols],
      [
        { shape: [2, 1], data: [3, 102] },
        { shape: [2, 1], data: [12, 1002] },
      ],
    );
    assert.deepEqual(r0.inputUnchanged.data, [1, 1, 1, 1]);
  });
});
