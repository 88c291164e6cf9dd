// A synthetic 8-GPU run as protocol v1 messages: Llama-2-7B, data-parallel 8 with ZeRO-1 on one H200
// node. `scalelm train` runs one local device for now, so a multi-GPU stream cannot be recorded from a
// real run here; the values below are made up but shaped like one (the planner's prediction with
// measured-looking deviations, a loss curve with one spike, a warm-up + cosine learning rate, cumulative
// collective totals, nvidia-smi-like GPU samples) and rank 7 slowly leaks memory towards the end so the
// memory alerts fire. Used to record test/fixtures/streams/synthetic-8xh200 (through RunRecorder) and,
// in memory, by bench/dashboard for 100k steps. Deterministic (seeded). With `nodes`, the same run spread
// over several machines (8 GPUs each): every memory and GPU message says its node, each node's GPU sampler
// reports its own devices, and the ranks differ a little (a seeded imbalance) so a heatmap has texture;
// test/fixtures/streams/llama7b-64xh200 is 8 nodes × 8 ranks.
import { parseConfig } from '../../runtime/config/parse';
import type { RunConfig } from '../../runtime/config/types';
import { estimate } from '../../runtime/planner';
import type { CommMessage, GpuMessage, MemoryMessage, Message, StepMessage } from '../../common/protocol';

export const SYNTHETIC_RUN_ID = 'llama7b-8xh200';
export const MULTINODE_RUN_ID = 'llama7b-64xh200';
const MiB = 2 ** 20;
const GiB = 2 ** 30;

export function syntheticConfig(steps: number, world = 8): RunConfig {
  const nodes = Math.max(1, Math.ceil(world / 8));
  const r = parseConfig({
    name: nodes > 1 ? `llama-2-7b · ${world}×H200 (${nodes} nodes) · ZeRO-1` : 'llama-2-7b · 8×H200 · ZeRO-1',
    model: { preset: 'llama-2-7b' },
    train: {
      microBatch: 3,
      globalBatch: 12 * world,
      precision: 'bf16-mixed',
      steps,
      lr: 3e-4,
      warmupSteps: Math.min(100, Math.ceil(steps / 10)),
      flashAttention: true,
      evalEvery: 50,
      checkpointEvery: 200,
    },
    parallel: { dp: world, zero: 1 },
    cluster: { gpu: 'H200', gpusPerNode: Math.min(8, world), nodes },
    devices: { backend: 'tfjs-node-gpu' },
  });
  if (!r.ok) throw new Error(`synthetic config: ${JSON.stringify(r.errors)}`);
  return r.config;
}

/** mulberry32: a small seeded PRNG, so fixtures, benches and the fuzzer are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SyntheticOptions {
  /** Steps to generate. */
  steps: number;
  /** train.steps of the config (the schedule's length); default `steps`. */
  totalSteps?: number;
  startedAt: number;
  world?: number;
  /** Publish a GPU sample every this many steps (the real sampler runs at 1 Hz). */
  gpuEvery?: number;
  commEvery?: number;
  seed?: number;
  /** Added to every loss (a second, slightly worse run to compare with). */
  lossOffset?: number;
  /** Spread the ranks over this many machines (world / nodes each; default 1: no node info, as one machine). */
  nodes?: number;
  /** The rank that slowly leaks memory (default the last). */
  leakRank?: number;
}

/** The host names of a synthetic multi-node run (node k of the job). */
export const syntheticHost = (node: number): string => `h200-${String.fromCharCode(97 + (node % 26))}${Math.floor(node / 26) || ''}.cluster.internal`;

/** The run's messages after hello/status, step by step (a generator: 100k steps need no big array). */
export function* syntheticMessages(o: SyntheticOptions): Generator<Message> {
  const world = o.world ?? 8;
  const nodes = o.nodes ?? 1;
  const perNode = Math.ceil(world / nodes);
  const leakRank = o.leakRank ?? world - 1;
  const config = syntheticConfig(o.totalSteps ?? o.steps, world);
  const random = rng(o.seed ?? 7);
  // Per-rank imbalance of a multi-node run, from its own generator so the one-machine stream is unchanged.
  const imbalance = nodes > 1 ? Array.from({ length: world }, rng((o.seed ?? 7) + 1)).map((u) => u * 9 * GiB) : [];
  const nodeOf = (rank: number) => (nodes > 1 ? { rank: Math.floor(rank / perNode), host: syntheticHost(Math.floor(rank / perNode)) } : undefined);
  const noise = (scale: number) => (random() - 0.5) * 2 * scale;
  const est = estimate(config, { convention: 'scalelm' });
  if (!est.ok) throw new Error('synthetic plan failed');
  const pred = est.memory.perDevice;
  const predicted = Object.fromEntries(
    Object.entries({ params: pred.params, grads: pred.grads, optimizer: pred.optimizer, activations: pred.activations, buffers: pred.buffers, overhead: pred.overhead, peak: pred.total }).map(
      ([k, v]) => [k, Math.round(v)],
    ),
  );
  const memoryTotal = 143771 * MiB;
  const memoryReserved = 614 * MiB;
  const capacity = memoryTotal - memoryReserved;
  const tokensPerStep = config.train.globalBatch * config.model.seqLen;
  const baseTps = est.time.tokensPerSec * 0.86;
  const warmup = config.train.warmupSteps;
  const lrAt = (s: number) =>
    s <= warmup
      ? (config.train.lr * s) / warmup
      : config.train.minLr + 0.5 * (config.train.lr - config.train.minLr) * (1 + Math.cos((Math.PI * (s - warmup)) / Math.max(1, config.train.steps - warmup)));
  const psi = 6.74e9;
  const comm = Array.from({ length: world }, () => ({ rs: { calls: 0, bytes: 0, ms: 0 }, ag: { calls: 0, bytes: 0, ms: 0 }, ar: { calls: 0, bytes: 0, ms: 0 } }));
  let t = o.startedAt + 42_000;
  let tokens = 0;
  const leakFrom = Math.floor(o.steps * 0.6);
  // Rank 7 ends at 91.5% of its capacity: over the 90% alert line, under the dashboard's 92% "critical".
  const baseline = (pred.params + pred.grads + pred.optimizer + pred.activations * 1.045 + pred.buffers * 0.92 + 1.4 * GiB) * 0.985 + pred.overhead * 0.6;
  const leakTotal = (0.915 * capacity - baseline) / 0.985 - (imbalance[leakRank] ?? 0);
  const spikeAt = Math.floor(o.steps * 0.55);
  for (let step = 1; step <= o.steps; step++) {
    const tps = baseTps * (1 + noise(0.03)) * (step < 5 ? 0.6 : 1);
    const stepMs = (tokensPerStep / tps) * 1000;
    t += Math.round(stepMs);
    tokens += tokensPerStep;
    const progress = step / o.steps;
    let loss = 2.05 + 8.3 * Math.exp(-step / (o.steps * 0.06)) + 0.9 * Math.exp(-progress * 3) + noise(0.09);
    loss += o.lossOffset ?? 0;
    if (step === spikeAt) loss += 2.6;
    if (step === spikeAt + 1) loss += 0.9;
    const gradNorm = Math.max(0.05, 0.45 + 2.5 * Math.exp(-step / (o.steps * 0.05)) + noise(0.08) + (step === spikeAt ? 6.5 : 0) + (random() < 0.01 ? 2 * random() : 0));
    const leakBytes = step > leakFrom ? ((step - leakFrom) / (o.steps - leakFrom)) * leakTotal : 0;
    const ranks: MemoryMessage[] = [];
    for (let rank = 0; rank < world; rank++) {
      const act = pred.activations * (1.045 + noise(0.0008));
      const categories: Record<string, number> = {
        params: Math.round(pred.params),
        grads: Math.round(pred.grads),
        optimizer: Math.round(pred.optimizer),
        activations: Math.round(act),
        comm: Math.round(pred.buffers * 0.92),
        temporaries: Math.round(1.4 * GiB + noise(0.02 * GiB) + (rank === 0 ? 1.2 * GiB : 0) + (rank === leakRank ? leakBytes : 0) + (imbalance[rank] ?? 0)),
      };
      const sum = Object.values(categories).reduce((a, b) => a + b, 0);
      const stepPeak = Math.round(Math.min(capacity, sum * 0.985 + pred.overhead * 0.6));
      const node = nodeOf(rank);
      ranks.push({ type: 'memory', rank, t: t + rank, step, categories, stepPeak, capacity, predicted, ...(node ? { node } : {}), device: `GPU-5f1c${rank}a00-0000-4000-8000-00000000000${rank}` });
    }
    const msg: StepMessage = {
      type: 'step',
      step,
      loss,
      lr: lrAt(step),
      gradNorm,
      tokensPerSec: tps,
      stepMs,
      memory: {
        params: ranks[0]!.categories.params!,
        grads: ranks[0]!.categories.grads!,
        optimizer: ranks[0]!.categories.optimizer!,
        activations: ranks[0]!.categories.activations!,
        peak: ranks[0]!.stepPeak,
      },
      tokens,
      t,
    };
    yield msg;
    yield* ranks;
    if (step % (o.commEvery ?? 1) === 0 || step === 1) {
      for (let rank = 0; rank < world; rank++) {
        const c = comm[rank]!;
        const k = step - (c.rs.calls ? c.rs.calls : 0);
        const bw = 310e9 * (1 + noise(0.08));
        const rsBytes = 2 * psi * ((world - 1) / world);
        c.rs.calls += k;
        c.rs.bytes += k * Math.round(rsBytes);
        c.rs.ms += k * ((rsBytes / bw) * 1000);
        c.ag.calls += k;
        c.ag.bytes += k * Math.round(rsBytes);
        c.ag.ms += k * ((rsBytes / (bw * 1.1)) * 1000);
        c.ar.calls += 2 * k;
        c.ar.bytes += 2 * k * 8;
        c.ar.ms += 2 * k * (0.03 + noise(0.01));
        const m: CommMessage = {
          type: 'comm',
          rank,
          t: t + 10 + rank,
          step,
          collectives: [
            { kind: 'reduce-scatter', ...round(c.rs) },
            { kind: 'all-gather', ...round(c.ag) },
            { kind: 'all-reduce', ...round(c.ar) },
          ],
        };
        yield m;
      }
    }
    if (step % (o.gpuEvery ?? 1) === 0) {
      const devices: GpuMessage['devices'] = ranks.map((r, i) => {
        const proc = r.stepPeak + 420 * MiB + Math.round(random() * 64) * MiB;
        return {
          index: i,
          uuid: r.device!,
          name: 'NVIDIA H200',
          memoryUsed: proc + 4 * MiB,
          memoryTotal,
          memoryReserved,
          utilPercent: Math.round(93 + noise(5)),
          temperatureC: Math.round(61 + 5 * Math.min(1, step / 50) + noise(3)),
          powerW: Math.round(590 + noise(70)),
          powerLimitW: 700,
          smClockMHz: 1980,
          processes: [{ pid: 48210 + i, memory: proc, name: 'node', rank: i }],
          ranks: [i],
        };
      });
      if (nodes > 1) {
        // Each machine's sampler: its own devices, indexed from 0 there.
        for (let n = 0; n < nodes; n++) {
          const own = devices.slice(n * perNode, (n + 1) * perNode).map((d, i) => ({ ...d, index: i, processes: d.processes.map((p) => ({ ...p, pid: 48210 + i })) }));
          yield { type: 'gpu', t: t + 50 + n, devices: own, node: nodeOf(n * perNode)! };
        }
      } else yield { type: 'gpu', t: t + 50, devices };
    }
    if (config.train.evalEvery && step % config.train.evalEvery === 0) yield { type: 'eval', step, loss: loss + 0.04 + noise(0.02), t: t + 900 };
    if (config.train.checkpointEvery && step % config.train.checkpointEvery === 0)
      yield { type: 'checkpoint', step, path: `checkpoints/step-${String(step).padStart(6, '0')}`, bytes: Math.round(psi * 2 + psi * 12), t: t + 4000 };
  }
}

function round(c: { calls: number; bytes: number; ms: number }): { calls: number; bytes: number; ms: number } {
  return { calls: c.calls, bytes: c.bytes, ms: Math.round(c.ms * 1000) / 1000 };
}
