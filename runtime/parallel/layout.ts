// The parallel layout of a run, checked once: dp × tp ranks (Megatron order: tp fastest), a ZeRO stage,
// the transport, gradient buckets. Pure (no tfjs), so the coordinator and the planner side can use it.
import type { RunConfig } from '../config/types';

export class ParallelError extends Error {
  /** The rank whose own error ended the run, when known: the failed status carries it as error.rank. */
  readonly rank: number | undefined;
  constructor(message: string, rank?: number) {
    super(message);
    this.name = 'ParallelError';
    this.rank = rank;
  }
}

/** A failed status's error: message and class, and the failing rank where the error names one (ParallelError.rank). */
export function statusError(e: Error, message = e.message.slice(0, 16_000) || e.name): { message: string; kind: string; rank?: number } {
  const rank = (e as { rank?: unknown }).rank;
  return { message, kind: e.name, ...(typeof rank === 'number' && Number.isInteger(rank) && rank >= 0 ? { rank } : {}) };
}

export type Transport = 'threads' | 'processes';

export interface ParallelLayout {
  dp: number;
  tp: number;
  zero: 0 | 1 | 2 | 3;
  world: number;
  transport: Transport;
  /** Gradient bucket size after the first (parallel.bucketMB). */
  bucketBytes: number;
  /** DDP's small first bucket: the last layers' gradients start reducing early. */
  firstBucketBytes: number;
  /** Micro-batches per optimizer step on each data-parallel rank. */
  accumulation: number;
}

/** 1 MiB like PyTorch DDP's first bucket. */
export const FIRST_BUCKET_BYTES = 1 << 20;

export function resolveLayout(config: RunConfig): ParallelLayout {
  const p = config.parallel;
  const m = config.model;
  if (p.pp > 1) {
    throw new ParallelError(
      `parallel.pp=${p.pp}: the local runtime has no pipeline parallelism yet (data, tensor and ZeRO only); set parallel.pp to 1 and use dp and tp (pipelines can still be planned with \`scalelm plan\`)`,
    );
  }
  if (p.sequenceParallel) throw new ParallelError('parallel.sequenceParallel: the local runtime has no sequence parallelism; set it to false');
  if (p.offloadOptimizer || p.offloadParams) throw new ParallelError('parallel.offloadOptimizer / offloadParams: the local runtime does not offload to host memory; turn them off');
  if (m.heads % p.tp !== 0 || m.ffnHidden % p.tp !== 0) {
    throw new ParallelError(`parallel.tp=${p.tp} must divide model.heads=${m.heads} and model.ffnHidden=${m.ffnHidden}`);
  }
  const world = p.dp * p.tp;
  if (config.devices.count !== world) {
    throw new ParallelError(`devices.count=${config.devices.count} but parallel.dp·tp = ${p.dp}·${p.tp} = ${world}: one rank per device`);
  }
  const t = config.train;
  if (t.globalBatch % (t.microBatch * p.dp) !== 0) {
    throw new ParallelError(`train.globalBatch=${t.globalBatch} must be divisible by train.microBatch·parallel.dp = ${t.microBatch}·${p.dp}`);
  }
  const gpu = config.devices.backend === 'webgpu' || config.devices.backend === 'tfjs-node-gpu';
  const transport: Transport = config.devices.transport === 'tcp' || gpu ? 'processes' : 'threads';
  return {
    dp: p.dp,
    tp: p.tp,
    zero: p.zero,
    world,
    transport,
    bucketBytes: Math.max(4, Math.round(p.bucketMB * 1e6)),
    firstBucketBytes: Math.min(FIRST_BUCKET_BYTES, Math.max(4, Math.round(p.bucketMB * 1e6))),
    accumulation: t.globalBatch / (t.microBatch * p.dp),
  };
}

export function describeParallel(l: ParallelLayout): string {
  const parts = [`dp=${l.dp}`, `tp=${l.tp}`];
  if (l.zero) parts.push(`zero=${l.zero}`);
  return `${parts.join(' ')} (${l.world} rank${l.world === 1 ? '' : 's'} as ${l.transport === 'threads' ? 'worker threads over shared memory' : 'processes over sockets'})`;
}
