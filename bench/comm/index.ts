// Collective bandwidth, nccl-tests style. `npm run bench -- comm [--quick] [--reps 5] [--budget 250]`
//
// For each transport (worker threads over shared memory; processes over Unix sockets) and 2 and 4 ranks,
// times all-reduce from 1 KiB to 64 MiB with registered buffers (comm.alloc, what gradient buckets use) and
// plain Float32Arrays, next to a memcpy of the same sizes measured in the same run. Reports, as
// nccl-tests defines them: time per call (the slowest rank; for small sizes this is the latency),
// algbw = bytes / time, busbw = algbw * 2(n-1)/n for all-reduce (* (n-1)/n for all-gather and
// reduce-scatter), and busbw / memcpy. Ends with `RESULT {json}`.
import { loadavg, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { launchProcessWorld, launchThreadWorld } from '../../runtime/comm/launch';
import type { RankArgs, Row } from './rank';

const flag = (name: string) => process.argv.includes(`--${name}`);
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const quick = flag('quick');
const reps = arg('reps', quick ? 3 : 5);
const budgetMs = arg('budget', quick ? 80 : 250);
const KiB = 1024,
  MiB = 1024 * 1024;
const SIZES: number[] = quick ? [KiB, 64 * KiB, MiB, 16 * MiB] : [KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB];
const ENTRY = join(__dirname, 'rank.js');
const fmtSize = (b: number) => (b >= MiB ? `${b / MiB} MiB` : `${b / KiB} KiB`);
const busFactor = (op: RankArgs['op'], n: number) => (op === 'all_reduce' ? (2 * (n - 1)) / n : op === 'broadcast' ? 1 : (n - 1) / n);

interface Config {
  transport: 'threads' | 'sockets';
  ranks: number;
}

async function run(c: Config, args: RankArgs): Promise<Row[]> {
  const options = { args, timeoutMs: 120_000, arenaBytes: 3 * 64 * MiB + 32 * MiB };
  const world = c.transport === 'threads' ? await launchThreadWorld<Row[]>(c.ranks, ENTRY, options) : await launchProcessWorld<Row[]>(c.ranks, ENTRY, { ...options, socket: 'unix' });
  if (!world.ok)
    throw new Error(
      world.errors
        .filter(Boolean)
        .map((e) => e!.message)
        .join('\n'),
    );
  return world.results[0]!;
}

const load = [loadavg()[0]!];
console.log(
  `comm bench: ${availableParallelism()} cores, load average ${load[0]!.toFixed(2)} at start; ${reps} reps, ~${budgetMs} ms per point; times are the slowest rank, medians over reps; memcpy GB/s measured at each point\n`,
);

interface Point {
  busbw: number;
  memcpy: number;
  ratio: number;
  us: number;
  algorithm: string;
}
const headline: Record<string, Record<string, Point>> = {};

async function table(op: RankArgs['op'], c: Config, sizes: number[], kinds: Array<'registered' | 'heap'>): Promise<void> {
  const rows = await run(c, { op, sizes, kinds, budgetMs, reps });
  const key = `${c.transport}${c.ranks}`;
  console.log(`${op}  ${c.transport === 'threads' ? 'worker threads, shared memory' : 'processes, Unix sockets'}  ${c.ranks} ranks`);
  const cols = kinds.map((k) => (k === 'registered' ? 'registered buffers (comm.alloc)' : 'plain Float32Array'));
  console.log(`${''.padStart(9)}  ${cols.map((h) => h.padEnd(66)).join('')}`);
  console.log(
    `${'size'.padStart(9)}  ${kinds.map(() => `${'time us'.padStart(10)}${'algbw'.padStart(8)}${'busbw'.padStart(8)}${'memcpy'.padStart(8)}${'bus/memcpy'.padStart(11)}  ${'algorithm'.padEnd(17)}`).join('')}`,
  );
  for (const bytes of sizes) {
    const cells = kinds.map((kind) => {
      const r = rows.find((x) => x.bytes === bytes && x.kind === kind)!;
      const algbw = bytes / (r.us / 1e6) / 1e9;
      const busbw = algbw * busFactor(op, c.ranks);
      const ratio = busbw / r.memcpy;
      (headline[`${op} ${key} ${kind}`] ??= {})[fmtSize(bytes)] = { busbw: +busbw.toFixed(3), memcpy: +r.memcpy.toFixed(2), ratio: +ratio.toFixed(3), us: +r.us.toFixed(1), algorithm: r.algorithm };
      return `${r.us.toFixed(1).padStart(10)}${algbw.toFixed(2).padStart(8)}${busbw.toFixed(2).padStart(8)}${r.memcpy.toFixed(2).padStart(8)}${ratio.toFixed(2).padStart(11)}  ${r.algorithm.padEnd(17)}`;
    });
    console.log(`${fmtSize(bytes).padStart(9)}  ${cells.join('')}`);
  }
  console.log('');
}

async function main(): Promise<void> {
  for (const transport of ['threads', 'sockets'] as const) {
    for (const ranks of [2, 4]) await table('all_reduce', { transport, ranks }, SIZES, ['registered', 'heap']);
  }
  // ZeRO's pair at one size: reduce-scatter of gradients, all-gather of parameters.
  for (const op of ['reduce_scatter', 'all_gather'] as const) {
    for (const ranks of [2, 4]) await table(op, { transport: 'threads', ranks }, [16 * MiB], ['registered', 'heap']);
  }
  load.push(loadavg()[0]!);
  const at = (op: string, key: string, kind: string, size: string) => headline[`${op} ${key} ${kind}`]?.[size];
  const aim = at('all_reduce', 'threads2', 'registered', '16 MiB')!;
  console.log(`aim: all-reduce busbw >= 0.6 x memcpy at 16 MiB with 2 thread ranks: ${aim.ratio.toFixed(2)} (${aim.ratio >= 0.6 ? 'met' : 'NOT met'})`);
  console.log(
    `load average: ${load.map((l) => l.toFixed(2)).join(' -> ')} on ${availableParallelism()} cores${load.some((l) => l > availableParallelism() * 0.5) ? ' (the machine was busy with other work: treat figures as noisy)' : ''}`,
  );
  const result = {
    bench: 'comm',
    cores: availableParallelism(),
    loadavg: load.map((l) => +l.toFixed(2)),
    aim: { metric: 'all_reduce busbw / memcpy, 16 MiB, 2 thread ranks, registered buffers', target: 0.6, value: aim.ratio, met: aim.ratio >= 0.6 },
    allReduce16MiB: Object.fromEntries(
      ['threads2', 'threads4', 'sockets2', 'sockets4'].flatMap((k) => (['registered', 'heap'] as const).map((kind) => [`${k} ${kind}`, at('all_reduce', k, kind, '16 MiB')])),
    ),
    latency1KiBus: Object.fromEntries(['threads2', 'threads4', 'sockets2', 'sockets4'].map((k) => [k, at('all_reduce', k, 'registered', '1 KiB')?.us])),
    zero16MiB: Object.fromEntries(
      ['reduce_scatter', 'all_gather'].flatMap((op) => ['threads2', 'threads4'].flatMap((k) => (['registered', 'heap'] as const).map((kind) => [`${op} ${k} ${kind}`, at(op, k, kind, '16 MiB')]))),
    ),
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
