// `npm run bench -- train [--steps N] [--threads 1,2] [--no-peer]`: training throughput of a fixed GPT-2
// (L4 h256 a4, vocab 4096, seq 128, batch 8: 5.29M parameters, 27.4 GFLOP per step) against PyTorch on
// the same model and thread count in the same run, and against the backend's own matmul rate. The peer
// runs at its best: Debian's OpenBLAS with OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512 (0.3.21
// misdetects newer CPUs and falls back to slower kernels) and OMP_WAIT_POLICY=PASSIVE. Each side runs in
// its own process; sides alternate per thread count so machine noise hits both. Prints medians.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const MODEL = { layers: 4, hidden: 256, heads: 4, vocab: 4096, seq: 128, batch: 8 };

/** Matmul FLOPs of one training step (forward + backward = 3× forward; attention over the full T×T). */
export function stepFlops(m: typeof MODEL): number {
  const N = m.batch * m.seq;
  return 72 * N * m.layers * m.hidden ** 2 * (1 + m.seq / (6 * m.hidden) + m.vocab / (12 * m.layers * m.hidden));
}

interface Side {
  stepMs: number;
  stepsMs: number[];
  matmulGflops: number;
  peakBytes?: number;
  label?: string;
  torch?: string;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function worker(args: { threads: number; steps: number; warmup: number }): Promise<void> {
  const tf = await import('@tensorflow/tfjs-core');
  const { initBackend } = await import('../runtime/model/backend');
  const { loadConfig } = await import('../runtime/config/parse');
  const { RankEngine } = await import('../runtime/parallel/engine');
  const info = await initBackend('wasm', { threads: args.threads });
  const config = loadConfig({
    name: 'bench',
    model: { layers: MODEL.layers, hidden: MODEL.hidden, heads: MODEL.heads, vocab: MODEL.vocab, seqLen: MODEL.seq },
    train: { microBatch: MODEL.batch, steps: args.warmup + args.steps, lr: 3e-4, warmupSteps: 0 },
    devices: { backend: 'wasm', memory: '3GiB' },
    data: { source: 'synthetic' },
  });
  // One device's rank, stepped in this thread: the step alone, without the coordinator around it.
  const trainer = await RankEngine.alone({ config, baseDir: process.cwd(), start: { kind: 'fresh' } });
  const times: number[] = [];
  let peak = 0;
  for (let i = 0; i < args.warmup + args.steps; i++) {
    const r = trainer.trainStep(i + 1);
    if (i >= args.warmup) {
      times.push(r.stepMs);
      peak = Math.max(peak, r.memory.peak);
    }
  }
  trainer.dispose();
  const n = 1024;
  const a = tf.randomNormal([n, n]);
  const mm: number[] = [];
  for (let i = 0; i < 13; i++) {
    const t0 = performance.now();
    const c = tf.matMul(a, a);
    c.dataSync();
    if (i >= 3) mm.push(performance.now() - t0);
    c.dispose();
  }
  const side: Side = { stepMs: median(times), stepsMs: times, matmulGflops: (2 * n ** 3) / (median(mm) / 1000) / 1e9, peakBytes: peak, label: info.label };
  console.log(`SIDE ${JSON.stringify(side)}`);
  process.exit(0);
}

function findPython(): string | undefined {
  for (const p of [process.env.SCALELM_PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => Boolean(x))) {
    if (spawnSync(p, ['-c', 'import torch'], { timeout: 60_000 }).status === 0) return p;
  }
  return undefined;
}

/** sgemm GFLOP/s of this Python's PyTorch under an environment (one thread, 1024²). */
function sgemmRate(python: string, env: NodeJS.ProcessEnv): number {
  const code =
    'import torch,time;torch.set_num_threads(1);a=torch.randn(1024,1024);[a@a for _ in range(3)];t=time.perf_counter();[a@a for _ in range(10)];print(2*1024**3*10/(time.perf_counter()-t)/1e9)';
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', env: { ...env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' }, timeout: 120_000 });
  return r.status === 0 ? Number(r.stdout.trim()) : 0;
}

/**
 * The peer's environment at its best. Debian's OpenBLAS 0.3.21 detects newer AVX-512 CPUs as Haswell (or
 * worse) and an inherited OPENBLAS_CORETYPE may pin a slow kernel set: on AVX-512 CPUs both the inherited
 * choice and SkylakeX are measured and the faster is used. OMP_WAIT_POLICY=PASSIVE keeps idle OpenMP
 * threads from spinning against the busy ones on few cores.
 */
function peerEnv(python: string): { base: NodeJS.ProcessEnv; notes: string[] } {
  const notes: string[] = [];
  const base: NodeJS.ProcessEnv = { ...process.env };
  let avx512 = false;
  try {
    avx512 = /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    // not Linux: leave OpenBLAS to its own detection
  }
  if (avx512 && base.OPENBLAS_CORETYPE !== 'SkylakeX') {
    const inherited = base.OPENBLAS_CORETYPE;
    const asIs = sgemmRate(python, base);
    const skx = sgemmRate(python, { ...base, OPENBLAS_CORETYPE: 'SkylakeX' });
    if (skx > asIs) {
      base.OPENBLAS_CORETYPE = 'SkylakeX';
      notes.push(`OPENBLAS_CORETYPE=SkylakeX (sgemm ${skx.toFixed(0)} vs ${asIs.toFixed(0)} GFLOP/s with ${inherited ? `the inherited ${inherited}` : 'its own detection'})`);
    } else notes.push(`OPENBLAS_CORETYPE=${inherited ?? '(detected)'} (faster here than SkylakeX: ${asIs.toFixed(0)} vs ${skx.toFixed(0)} GFLOP/s)`);
  } else if (base.OPENBLAS_CORETYPE) notes.push(`OPENBLAS_CORETYPE=${base.OPENBLAS_CORETYPE}`);
  return { base, notes };
}

function threadEnv(base: NodeJS.ProcessEnv, threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  if (threads > 1 && !env.OMP_WAIT_POLICY) env.OMP_WAIT_POLICY = 'PASSIVE';
  return env;
}

function runSide(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Side {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, maxBuffer: 64 << 20, timeout: 30 * 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('SIDE ') || l.startsWith('{'));
  if (r.status !== 0 || !line) throw new Error(`${cmd} ${args[0]} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line.replace(/^SIDE /, '')) as Side;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--worker') return worker(JSON.parse(argv[1]!));
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const steps = Number(flag('steps') ?? 8);
  const warmup = 2;
  const threadCounts = (flag('threads') ?? '1,2').split(',').map(Number);
  const python = argv.includes('--no-peer') ? undefined : findPython();
  const flops = stepFlops(MODEL);
  const tokens = MODEL.batch * MODEL.seq;
  console.log(
    `bench train: GPT-2 L${MODEL.layers} h${MODEL.hidden} a${MODEL.heads} vocab ${MODEL.vocab} seq ${MODEL.seq} batch ${MODEL.batch} (${tokens} tokens, ${(flops / 1e9).toFixed(1)} GFLOP per step); ${steps} timed steps after ${warmup}; medians. The machine is shared: treat differences under ~30% as noise.`,
  );
  if (!python) console.log('PyTorch peer: not run (no Python with torch; install python3-torch and libopenblas0-pthread, or set SCALELM_PYTHON)');
  const peer0 = python ? peerEnv(python) : undefined;
  if (peer0) console.log(`PyTorch peer: ${python}; ${peer0.notes.join('; ') || 'OpenBLAS defaults'}`);
  const rows: Record<string, unknown>[] = [];
  for (const threads of threadCounts) {
    const ours = runSide(process.execPath, [__filename, '--worker', JSON.stringify({ threads, steps, warmup })]);
    let peer: Side | undefined;
    let notes: string[] = [];
    if (python && peer0) {
      const env = threadEnv(peer0.base, threads);
      notes = [`OPENBLAS_CORETYPE=${env.OPENBLAS_CORETYPE ?? '(detected)'}`, ...(env.OMP_WAIT_POLICY ? [`OMP_WAIT_POLICY=${env.OMP_WAIT_POLICY}`] : [])];
      peer = runSide(python, [join(__dirname, '..', '..', 'bench', 'train_peer.py'), JSON.stringify({ ...MODEL, threads, steps, warmup })], env);
    }
    const oursGflops = flops / (ours.stepMs / 1000) / 1e9;
    const row: Record<string, unknown> = {
      threads,
      backend: ours.label,
      stepMs: round(ours.stepMs),
      tokensPerSec: round(tokens / (ours.stepMs / 1000)),
      gflops: round(oursGflops),
      backendMatmulGflops: round(ours.matmulGflops),
      ofBackendMatmul: round(oursGflops / ours.matmulGflops, 3),
      peakBytes: ours.peakBytes,
    };
    if (peer) {
      const peerGflops = flops / (peer.stepMs / 1000) / 1e9;
      Object.assign(row, {
        torch: peer.torch,
        torchEnv: notes.join(' '),
        torchStepMs: round(peer.stepMs),
        torchTokensPerSec: round(tokens / (peer.stepMs / 1000)),
        torchGflops: round(peerGflops),
        torchMatmulGflops: round(peer.matmulGflops),
        torchOfMatmul: round(peerGflops / peer.matmulGflops, 3),
        vsTorch: round(peer.stepMs / ours.stepMs, 3),
      });
    }
    rows.push(row);
    console.log(
      `threads ${threads}: ScaleLM ${ours.label}: ${row.stepMs} ms/step, ${fmt(row.tokensPerSec)} tokens/s, ${row.gflops} GFLOP/s = ${pct(row.ofBackendMatmul)} of its 1024² matmul (${row.backendMatmulGflops} GFLOP/s); peak ${((ours.peakBytes ?? 0) / 2 ** 20).toFixed(1)} MiB (each buffer counted once)` +
        (peer
          ? `\n           PyTorch ${peer.torch} CPU (${notes.join(', ') || 'defaults'}): ${row.torchStepMs} ms/step, ${fmt(row.torchTokensPerSec)} tokens/s, ${row.torchGflops} GFLOP/s = ${pct(row.torchOfMatmul)} of its sgemm (${row.torchMatmulGflops} GFLOP/s)\n           ratio ScaleLM/PyTorch throughput: ${row.vsTorch}`
          : ''),
    );
  }
  console.log(`RESULT ${JSON.stringify({ bench: 'train', model: { ...MODEL, params: 5_290_000, gflopPerStep: round(flops / 1e9) }, steps, rows })}`);
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;
const fmt = (x: unknown): string => Number(x).toLocaleString('en-US');
const pct = (x: unknown): string => `${Math.round(Number(x) * 100)}%`;

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
