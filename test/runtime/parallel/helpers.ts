// Shared by the parallel tests: a tiny GPT-2, the single-device reference run, a parallel run, and the
// comparisons (relative loss difference per step, parameter agreement).
import { loadConfig } from '../../../runtime/config/parse';
import type { RunConfig } from '../../../runtime/config/types';
import { RankEngine } from '../../../runtime/parallel/engine';
import type { Coordinator } from '../../../runtime/coordinator/coordinator';
import { createLocalRun, type LocalEngine } from '../../../runtime/parallel/local-engine';
import { EXAMPLES } from '../train/fixtures';

export interface Layout {
  dp?: number;
  tp?: number;
  zero?: 0 | 1 | 2 | 3;
  microBatch?: number;
  recompute?: 'none' | 'selective' | 'full';
}

export const STEPS = 20;
export const GLOBAL_BATCH = 8;

/** L2 h32 a4, vocab 100 (synthetic data), seq 16: a step takes milliseconds. */
export function tinyConfig(layout: Layout = {}, extra: { train?: object; model?: object; data?: object; devices?: object; parallel?: object } = {}): RunConfig {
  const dp = layout.dp ?? 1;
  const tp = layout.tp ?? 1;
  return loadConfig({
    name: 'tiny-parallel-test',
    model: { layers: 2, hidden: 32, heads: 4, vocab: 100, seqLen: 16, ...extra.model },
    train: {
      microBatch: layout.microBatch ?? GLOBAL_BATCH / dp,
      globalBatch: GLOBAL_BATCH,
      steps: STEPS,
      lr: 0.01,
      warmupSteps: 3,
      seed: 11,
      recompute: layout.recompute ?? 'none',
      ...extra.train,
    },
    parallel: { dp, tp, zero: layout.zero ?? 0, ...extra.parallel },
    devices: { backend: 'wasm', memory: '1GiB', ...extra.devices },
    data: { source: 'synthetic', ...extra.data },
  });
}

export interface RunOutcome {
  losses: number[];
  params: Map<string, Float32Array>;
}

const singleCache = new Map<string, Promise<RunOutcome>>();

/** One device (a world of one, stepped in this thread) on the same model, data and global batch (memoised per config). */
export function singleRun(config: RunConfig): Promise<RunOutcome> {
  const reference: RunConfig = {
    ...config,
    parallel: { ...config.parallel, dp: 1, tp: 1, zero: 0 },
    devices: { ...config.devices, count: 1, transport: 'shm' },
    train: { ...config.train, microBatch: config.train.globalBatch },
  };
  const key = JSON.stringify(reference);
  let p = singleCache.get(key);
  if (!p) {
    p = (async () => {
      const trainer = await RankEngine.alone({ config: reference, baseDir: EXAMPLES, start: { kind: 'fresh' }, threads: 1 });
      try {
        const losses: number[] = [];
        for (let i = 0; i < reference.train.steps; i++) losses.push(trainer.trainStep(i + 1).loss);
        return { losses, params: await trainer.params!.readAll() };
      } finally {
        trainer.dispose();
      }
    })();
    singleCache.set(key, p);
  }
  return p;
}

export async function parallelRun(config: RunConfig, setup: Partial<Parameters<typeof createLocalRun>[0]> = {}): Promise<RunOutcome & { trainer: Coordinator }> {
  const trainer = await createLocalRun({ config, baseDir: EXAMPLES, threads: 1, returnState: true, timeoutMs: 60_000, ...setup });
  try {
    await trainer.run();
  } finally {
    trainer.dispose();
  }
  return { losses: trainer.losses, params: (trainer.engine as LocalEngine).finalParams!, trainer };
}

/** Largest |a−b|/|b| over the steps. */
export function maxRelative(a: number[], b: number[]): number {
  if (a.length !== b.length) throw new Error(`${a.length} losses against ${b.length}`);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!) / Math.abs(b[i]!)));
}

/** Per parameter ‖a−b‖/‖b‖; the worst one. */
export function paramDifference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): { worst: number; name: string } {
  let worst = 0;
  let name = '';
  for (const [k, want] of b) {
    const got = a.get(k);
    if (!got || got.length !== want.length) throw new Error(`parameter ${k}: ${got ? `${got.length} elements, expected ${want.length}` : 'missing'}`);
    let num = 0;
    let den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (got[i]! - want[i]!) ** 2;
      den += want[i]! ** 2;
    }
    const r = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
    if (r > worst) {
      worst = r;
      name = k;
    }
  }
  return { worst, name };
}

export function describe_(l: Layout): string {
  const parts = [`dp=${l.dp ?? 1}`, `tp=${l.tp ?? 1}`, `zero=${l.zero ?? 0}`];
  if (l.recompute && l.recompute !== 'none') parts.push(`recompute ${l.recompute}`);
  if (l.microBatch && l.microBatch * (l.dp ?? 1) < GLOBAL_BATCH) parts.push(`${GLOBAL_BATCH / (l.microBatch * (l.dp ?? 1))} micro-batches`);
  return parts.join(' ');
}
