// `npm run bench -- parallel [--steps N] [--rounds R] [--quick] [--no-peer]`: training throughput of the
// parallel engine at a fixed global batch — dp=1 (the single-device trainer), dp=2, tp=2, dp=2 with ZeRO 1,
// 2 and 3 — on bench/train's GPT-2 (L4 h256 a4, vocab 4096, seq 128, global batch 8), one wasm thread per
// rank: tokens/s, the scaling efficiency of dp=2 over dp=1, and the share of step time spent blocked on
// communication; against PyTorch DistributedDataParallel (gloo, CPU, one thread per process) on the same
// model and global batch in the same run. Every configuration runs in its own process; rounds alternate
// the order so the shared machine's load hits every side alike; medians over rounds are reported.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';

const MODEL = { layers: 4, hidden: 256, heads: 4, vocab: 4096, seq: 128, batch: 8 };

interface Layout {
  name: string;
  dp: number;
  tp: number;
  zero: 0 | 1 | 2 | 3;
}

const LAYOUTS: Layout[] = [
  { name: 'dp=1 (single device)', dp: 1, tp: 1, zero: 0 },
  { name: 'dp=2', dp: 2, tp: 1, zero: 0 },
  { name: 'tp=2', dp: 1, tp: 2, zero: 0 },
  { name: 'dp=2 ZeRO-1', dp: 2, tp: 1, zero: 1 },
  { name: 'dp=2 ZeRO-2', dp: 2, tp: 1, zero: 2 },
  { name: 'dp=2 ZeRO-3', dp: 2, tp: 1, zero: 3 },
];

interface Side {
  stepMs: number;
  /** Median ms per step rank 0 spent blocked on communication (waits and blocking collectives). */
  exposedCommMs?: number;
  /** Median ms per step of all rank 0's collectives, overlapped with compute or not. */
  commMs?: number;
  label?: string;
  torch?: string;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function worker(args: { layout: Layout; steps: number; warmup: number }): Promise<void> {
  const { loadConfig } = await import('../runtime/config/parse');
  const { layout } = args;
  const config = loadConfig({
    name: 'bench-parallel',
    model: { layers: MODEL.layers, hidden: MODEL.hidden, heads: MODEL.heads, vocab: MODEL.vocab, seqLen: MODEL.seq },
    train: { microBatch: MODEL.batch / layout.dp, globalBatch: MODEL.batch, steps: args.warmup + args.steps, lr: 3e-4, warmupSteps: 0 },
    parallel: { dp: layout.dp, tp: layout.tp, zero: layout.zero },
    devices: { backend: 'wasm', memory: '3GiB' },
    data: { source: 'synthetic' },
  });
  // One device is a world of one: the same path as every layout.
  const { createLocalRun } = await import('../runtime/parallel/local-engine');
  const trainer = await createLocalRun({ config, baseDir: process.cwd(), threads: 1 });
  const commTotals = new Map<number, number>();
  trainer.subscribe((m) => {
    if (m.type === 'comm' && m.rank === 0 && m.step !== undefined)
      commTotals.set(
        m.step,
        m.collectives.reduce((s, c) => s + c.ms, 0),
      );
  });
  await trainer.run();
  trainer.dispose();
  const timed = [...trainer.timings.entries()].filter(([s]) => s > args.warmup);
  const side: Side = {
    // A step ends when its slowest rank is done.
    stepMs: median(timed.map(([, r]) => Math.max(...r.map((x) => x.stepMs)))),
    exposedCommMs: median(timed.map(([, r]) => r[0]!.exposedCommMs)),
    commMs: median(timed.map(([s]) => (commTotals.get(s) ?? 0) - (commTotals.get(s - 1) ?? 0))),
    label: 'wasm (1 thread per rank)',
  };
  console.log(`SIDE ${JSON.stringify(side)}`);
  process.exit(0);
}

function findPython(): string | undefined {
  for (const p of [process.env.SCALELM_PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => Boolean(x))) {
    if (spawnSync(p, ['-c', 'import torch.distributed as d; assert d.is_gloo_available()'], { timeout: 60_000 }).status === 0) return p;
  }
  return undefined;
}

/** The peer at its best (see bench/train.ts): OpenBLAS's AVX-512 kernels where the CPU has them, passive OpenMP waits. */
function peerEnv(python: string): { env: NodeJS.ProcessEnv; note: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' };
  let avx512 = false;
  try {
    avx512 = /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    // not Linux
  }
  if (!avx512) return { env, note: `OPENBLAS_CORETYPE=${env.OPENBLAS_CORETYPE ?? '(detected)'}` };
  const rate = (e: NodeJS.ProcessEnv) => {
    const code =
      'import torch,time;torch.set_num_threads(1);a=torch.randn(1024,1024);[a@a for _ in range(3)];t=time.perf_counter();[a@a for _ in range(10)];print(2*1024**3*10/(time.perf_counter()-t)/1e9)';
    const r = spawnSync(python, ['-c', code], { encoding: 'utf8', env: e, timeout: 120_000 });
    return r.status === 0 ? Number(r.stdout.trim()) : 0;
  };
  // An inherited OPENBLAS_CORETYPE (or 0.3.21's own detection) may pick slower kernels than SkylakeX: measure both.
  const inherited = rate(env);
  const skx = rate({ ...env, OPENBLAS_CORETYPE: 'SkylakeX' });
  if (skx > inherited) env.OPENBLAS_CORETYPE = 'SkylakeX';
  return {
    env,
    note: `OPENBLAS_CORETYPE=${env.OPENBLAS_CORETYPE ?? '(detected)'} (sgemm ${Math.max(skx, inherited).toFixed(0)} GFLOP/s on one thread; SkylakeX ${skx.toFixed(0)}, inherited/detected ${inherited.toFixed(0)})`,
  };
}

function runSide(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Side {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, maxBuffer: 64 << 20, timeout: 30 * 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('SIDE ') || l.startsWith('{'));
  if (r.status !== 0 || !line) throw new Error(`${cmd} ${args[0]} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line.replace(/^SIDE /, '')) as Side;
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--worker') return worker(JSON.parse(argv[1]!));
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  const steps = Number(flag('steps') ?? (quick ? 4 : 6));
  const rounds = Number(flag('rounds') ?? (quick ? 1 : 3));
  const warmup = 2;
  const python = argv.includes('--no-peer') ? undefined : findPython();
  const peer = python ? peerEnv(python) : undefined;
  const tokens = MODEL.batch * MODEL.seq;
  console.log(
    `bench parallel: GPT-2 L${MODEL.layers} h${MODEL.hidden} a${MODEL.heads} vocab ${MODEL.vocab} seq ${MODEL.seq}, global batch ${MODEL.batch} (${tokens} tokens/step) at every layout; ` +
      `one wasm thread per rank, ${availableParallelism()} cores (load average ${loadavg()[0]!.toFixed(1)} at the start); ${steps} timed steps after ${warmup}, ${rounds} round${rounds === 1 ? '' : 's'}, medians. The machine is shared: treat differences under ~30% as noise.`,
  );
  console.log(
    python
      ? `PyTorch DDP peer: ${python}, gloo, one thread per process; ${peer!.note}; OMP_WAIT_POLICY=${peer!.env.OMP_WAIT_POLICY}`
      : 'PyTorch DDP peer: not run (no Python with torch.distributed + gloo; Debian: python3-torch; or set SCALELM_PYTHON)',
  );
  const ours = new Map<string, Side[]>();
  const torch = new Map<number, Side[]>();
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? LAYOUTS : [...LAYOUTS].reverse();
    for (const layout of order) {
      const side = runSide(process.execPath, [__filename, '--worker', JSON.stringify({ layout, steps, warmup })]);
      ours.set(layout.name, [...(ours.get(layout.name) ?? []), side]);
      console.log(`  round ${r + 1}: ${layout.name.padEnd(22)} ${side.stepMs.toFixed(0)} ms/step`);
    }
    if (python) {
      for (const world of r % 2 === 0 ? [1, 2] : [2, 1]) {
        const side = runSide(python, [join(__dirname, '..', '..', 'bench', 'parallel_peer.py'), JSON.stringify({ ...MODEL, threads: 1, world, steps, warmup })], peer!.env);
        torch.set(world, [...(torch.get(world) ?? []), side]);
        console.log(`  round ${r + 1}: PyTorch DDP world ${world}    ${side.stepMs.toFixed(0)} ms/step`);
      }
    }
  }
  const med = (sides: Side[], k: keyof Side) => median(sides.map((s) => Number(s[k] ?? 0)));
  const base = med(ours.get(LAYOUTS[0]!.name)!, 'stepMs');
  const rows = LAYOUTS.map((l) => {
    const sides = ours.get(l.name)!;
    const stepMs = med(sides, 'stepMs');
    const exposed = med(sides, 'exposedCommMs');
    return {
      layout: l.name,
      dp: l.dp,
      tp: l.tp,
      zero: l.zero,
      ranks: l.dp * l.tp,
      stepMs: round(stepMs),
      tokensPerSec: round(tokens / (stepMs / 1000)),
      speedup: round(base / stepMs, 2),
      efficiency: round(base / stepMs / (l.dp * l.tp), 2),
      exposedCommMs: round(exposed),
      commShare: round(exposed / stepMs, 3),
      collectivesMs: round(med(sides, 'commMs')),
    };
  });
  console.log('\n| layout | ranks | ms/step | tokens/s | vs dp=1 | efficiency | blocked on comm | share of step | all collectives (overlapped too) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.layout} | ${r.ranks} | ${r.stepMs} | ${fmt(r.tokensPerSec)} | ${r.speedup}× | ${Math.round(r.efficiency * 100)}% | ${r.exposedCommMs} ms | ${(r.commShare * 100).toFixed(1)}% | ${r.collectivesMs} ms |`,
    );
  const result: Record<string, unknown> = { bench: 'parallel', model: MODEL, steps, rounds, rows };
  const dp2 = rows.find((r) => r.layout === 'dp=2')!;
  console.log(`\nscaling efficiency of dp=2 over dp=1: ${Math.round(dp2.efficiency * 100)}% (${dp2.speedup}× the throughput on 2 ranks)`);
  if (python) {
    const t1 = med(torch.get(1)!, 'stepMs');
    const t2 = med(torch.get(2)!, 'stepMs');
    const peerRows = {
      world1: { stepMs: round(t1), tokensPerSec: round(tokens / (t1 / 1000)) },
      world2: { stepMs: round(t2), tokensPerSec: round(tokens / (t2 / 1000)), efficiency: round(t1 / t2 / 2, 2) },
      torch: torch.get(1)![0]!.torch,
    };
    console.log(
      `PyTorch ${peerRows.torch} DDP (gloo): world 1 ${peerRows.world1.stepMs} ms/step (${fmt(peerRows.world1.tokensPerSec)} tokens/s), world 2 ${peerRows.world2.stepMs} ms/step (${fmt(peerRows.world2.tokensPerSec)} tokens/s): efficiency ${Math.round(peerRows.world2.efficiency * 100)}%`,
    );
    console.log(`ScaleLM / PyTorch throughput: dp=1 ${round(t1 / base, 2)}, dp=2 ${round(t2 / dp2.stepMs, 2)}`);
    Object.assign(result, { peer: peerRows, vsTorch: { dp1: round(t1 / base, 3), dp2: round(t2 / dp2.stepMs, 3) } });
  }
  console.log(`load average at the end: ${loadavg()[0]!.toFixed(1)} (on ${availableParallelism()} cores; 2-rank layouts need both cores to scale)`);
  result.loadAverage = round(loadavg()[0]!, 2);
  console.log(`RESULT ${JSON.stringify(result)}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
