// Records the synthetic 8-GPU run (synthetic.ts) through the telemetry RunRecorder into
// test/fixtures/streams/llama7b-8xh200/metrics.jsonl, exactly as the runtime would write it (validation,
// alert engine, time stamps). Date.now is replaced by the run's own clock while recording, so the file is
// the same on every machine. The real single-device run next to it (tiny-cpu/) was recorded with
//   scalelm train examples/tiny.scalelm.json --steps 120 --set train.evalEvery=20 --set train.checkpointEvery=60
// Usage: node out/test/webview/record-streams.js [steps [totalSteps]] | multinode
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { RunRecorder } from '../../runtime/telemetry/recorder';
import { estimate } from '../../runtime/planner';
import { ROOT } from './harness';
import { MULTINODE_RUN_ID, SYNTHETIC_RUN_ID, syntheticConfig, syntheticMessages } from './synthetic';

export const STREAMS_DIR = join(ROOT, 'test/fixtures/streams');
const RECORDED_AT = Date.UTC(2025, 5, 2, 9, 30, 0);

/** The multi-node fixture: the same model on 8 nodes × 8 H200s; rank 45 (node 5) leaks. */
// A day before the 8-GPU run, so a server of the fixtures shows that one first, as before.
export const MULTINODE = { world: 64, nodes: 8, leakRank: 45, steps: 30, startedAt: Date.UTC(2025, 5, 1, 9, 30, 0) } as const;

export async function recordSynthetic(
  steps = 300,
  totalSteps = 2000,
  dir = join(STREAMS_DIR, SYNTHETIC_RUN_ID),
  shape: { world: number; nodes: number; leakRank?: number; runId: string; startedAt?: number } = { world: 8, nodes: 1, runId: SYNTHETIC_RUN_ID },
): Promise<string> {
  const startedAt = shape.startedAt ?? RECORDED_AT;
  rmSync(join(dir, 'metrics.jsonl'), { force: true });
  const realNow = Date.now;
  let clock = startedAt;
  Date.now = () => clock;
  try {
    const config = syntheticConfig(totalSteps, shape.world);
    const est = estimate(config, { convention: 'scalelm' });
    const plan = est.ok ? { convention: 'scalelm', perDevice: { ...est.memory.perDevice }, stepMs: est.time.stepMs, tokensPerSec: est.time.tokensPerSec, mfu: est.time.mfu } : undefined;
    const rec = RunRecorder.open({
      runDir: dir,
      runId: shape.runId,
      name: config.name,
      config,
      ...(plan ? { plan } : {}),
      world: shape.world,
      tensorboard: false,
      gpu: false,
      startedAt,
      capacityBytes: (143771 - 614) * 2 ** 20,
    });
    clock += 1200;
    rec.log('info', `backend: tfjs-node-gpu (CUDA 12.4, ${shape.world} × NVIDIA H200${shape.nodes > 1 ? ` on ${shape.nodes} nodes` : ''}) — synthetic stream for tests`, { source: 'trainer' });
    rec.log('info', `model: llama-2-7b, 6,738,415,616 parameters; ${shape.world} ranks, data-parallel ${shape.world}, ZeRO-1`, { source: 'trainer' });
    clock += 40_000;
    rec.status('running', { step: 0 });
    for (const m of syntheticMessages({
      steps,
      totalSteps,
      startedAt,
      gpuEvery: 5,
      commEvery: 5,
      world: shape.world,
      nodes: shape.nodes,
      ...(shape.leakRank !== undefined ? { leakRank: shape.leakRank } : {}),
    })) {
      const t = (m as { t?: number }).t;
      if (typeof t === 'number') clock = Math.max(clock, t);
      rec.publish(m);
      if (m.type === 'checkpoint') rec.log('info', `checkpoint written: ${m.path}`, { source: 'trainer' });
    }
    clock += 5000;
    // The user stopped it there (a run of 2000 steps, recorded for 300).
    await rec.close({ state: 'stopped', by: 'a client', reason: `stopped at step ${steps} of ${totalSteps}` });
  } finally {
    Date.now = realNow;
  }
  return join(dir, 'metrics.jsonl');
}

/** Records test/fixtures/streams/llama7b-64xh200 (8 nodes × 8 ranks). */
export function recordMultiNode(dir = join(STREAMS_DIR, MULTINODE_RUN_ID)): Promise<string> {
  return recordSynthetic(MULTINODE.steps, 2000, dir, { ...MULTINODE, runId: MULTINODE_RUN_ID });
}

if (require.main === module) {
  // `node out/test/webview/record-streams.js multinode` records the 64-rank fixture; else the 8-GPU one.
  const multi = process.argv[2] === 'multinode';
  const steps = Number(process.argv[2] ?? 300);
  (multi ? recordMultiNode() : recordSynthetic(steps, Number(process.argv[3] ?? 2000))).then(
    (path) => console.log(`wrote ${path}`),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
