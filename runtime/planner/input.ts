// Builds a PlanInput without a config file: for the search's callers, the bench, the webview and tests. Pure.
import { GPU_PRESETS, MODEL_PRESETS, type GpuPresetName, type ModelPresetName } from '../config/presets';
import type { Layout, PlanInput, PlanModel, PlanTraining } from './types';

/** Fraction of peak FLOP/s large GEMMs reach (cuBLAS on A100/H100); small GEMMs, memory-bound ops and communication come on top (time.ts). */
export const DEFAULT_EFFICIENCY = 0.7;

export interface PlanInputOptions extends Partial<Layout> {
  gpus?: number;
  gpusPerNode?: number;
  gpu?: GpuPresetName;
  /** Overrides the preset's memory, bytes. */
  gpuMemory?: number;
  globalBatch?: number;
  precision?: PlanTraining['precision'];
  optimizer?: PlanTraining['optimizer'];
  flashAttention?: boolean;
  beta1?: number;
  efficiency?: number;
  headroom?: number;
  bucketMB?: number;
}

/** A dense GPT in Megatron's Table 1 style (f = 4h, tied, learned positions, biases, V = 51200, s = 2048). */
export function megatronGpt(layers: number, hidden: number, heads: number, dropout = 0.1): PlanModel {
  return {
    layers,
    hidden,
    heads,
    kvHeads: heads,
    ffnHidden: 4 * hidden,
    vocab: 51200,
    seqLen: 2048,
    activation: 'gelu',
    norm: 'layernorm',
    tiedEmbeddings: true,
    bias: true,
    positionEmbedding: 'learned',
    dropout,
    name: `gpt-${layers}x${hidden}`,
  };
}

/** Defaults: one GPU per rank of the layout, 8 per node, H100-SXM, bf16-mixed AdamW, no accumulation. */
export function planInputFor(model: PlanModel | ModelPresetName, o: PlanInputOptions = {}): PlanInput {
  const m: PlanModel = typeof model === 'string' ? { ...MODEL_PRESETS[model], name: model } : model;
  const tp = o.tp ?? 1;
  const pp = o.pp ?? 1;
  const gpus = o.gpus ?? (o.dp ?? 1) * tp * pp;
  const gpusPerNode = Math.min(o.gpusPerNode ?? 8, gpus);
  const dp = o.dp ?? gpus / (tp * pp);
  const microBatch = o.microBatch ?? 1;
  const spec = { ...GPU_PRESETS[o.gpu ?? 'H100-SXM'] };
  if (o.gpuMemory !== undefined) spec.memory = o.gpuMemory;
  return {
    model: m,
    train: {
      microBatch,
      globalBatch: o.globalBatch ?? microBatch * dp,
      precision: o.precision ?? 'bf16-mixed',
      optimizer: o.optimizer ?? 'adamw',
      recompute: o.recompute ?? 'none',
      flashAttention: o.flashAttention ?? false,
      ...(o.beta1 !== undefined ? { beta1: o.beta1 } : {}),
    },
    parallel: {
      dp,
      tp,
      pp,
      vpp: o.vpp ?? 1,
      zero: o.zero ?? 0,
      sequenceParallel: o.sequenceParallel ?? false,
      offloadOptimizer: o.offloadOptimizer ?? false,
      offloadParams: o.offloadParams ?? false,
      bucketMB: o.bucketMB ?? 25,
    },
    cluster: { gpusPerNode, nodes: Math.ceil(gpus / gpusPerNode), spec, efficiency: o.efficiency ?? DEFAULT_EFFICIENCY, headroom: o.headroom ?? 0.05 },
  };
}
