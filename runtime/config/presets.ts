// Published shapes of common models and the datasheet figures of common GPUs. Pure data.

export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffnHidden: number;
  vocab: number;
  seqLen: number;
  activation: 'gelu' | 'swiglu';
  norm: 'layernorm' | 'rmsnorm';
  tiedEmbeddings: boolean;
  bias: boolean;
  positionEmbedding: 'learned' | 'rope';
}

const gpt2Family = (layers: number, hidden: number, heads: number): ModelShape => ({
  layers,
  hidden,
  heads,
  kvHeads: heads,
  ffnHidden: 4 * hidden,
  vocab: 50257,
  seqLen: 1024,
  activation: 'gelu',
  norm: 'layernorm',
  tiedEmbeddings: true,
  bias: true,
  positionEmbedding: 'learned',
});
const llamaFamily = (layers: number, hidden: number, heads: number, kvHeads: number, ffnHidden: number, vocab: number, seqLen: number): ModelShape => ({
  layers,
  hidden,
  heads,
  kvHeads,
  ffnHidden,
  vocab,
  seqLen,
  activation: 'swiglu',
  norm: 'rmsnorm',
  tiedEmbeddings: false,
  bias: false,
  positionEmbedding: 'rope',
});

export const MODEL_PRESETS = {
  /** A byte-level GPT small enough to train on a laptop CPU in a minute: the demo model. */
  tiny: { ...gpt2Family(4, 128, 4), vocab: 256, seqLen: 128 },
  gpt2: gpt2Family(12, 768, 12),
  'gpt2-medium': gpt2Family(24, 1024, 16),
  'gpt2-large': gpt2Family(36, 1280, 20),
  'gpt2-xl': gpt2Family(48, 1600, 25),
  'llama-2-7b': llamaFamily(32, 4096, 32, 32, 11008, 32000, 4096),
  'llama-2-13b': llamaFamily(40, 5120, 40, 40, 13824, 32000, 4096),
  'llama-2-70b': llamaFamily(80, 8192, 64, 8, 28672, 32000, 4096),
  'llama-3-8b': llamaFamily(32, 4096, 32, 8, 14336, 128256, 8192),
  'llama-3-70b': llamaFamily(80, 8192, 64, 8, 28672, 128256, 8192),
  'gpt3-175b': { ...gpt2Family(96, 12288, 96), seqLen: 2048 },
} as const satisfies Record<string, ModelShape>;
export type ModelPresetName = keyof typeof MODEL_PRESETS;
export const MODEL_PRESET_NAMES = Object.keys(MODEL_PRESETS) as ModelPresetName[];

export interface GpuSpec {
  /** Usable device memory in bytes as the driver reports it (nvidia-smi "Total"). */
  memory: number;
  /** Dense bf16/fp16 tensor-core peak, FLOP/s. */
  peakFlops: number;
  /** HBM bandwidth, bytes/s. */
  memoryBandwidth: number;
  /** Per-GPU, per-direction bandwidth inside a node (NVLink or PCIe), bytes/s. */
  intraNodeBandwidth: number;
  /** Per-GPU, per-direction bandwidth between nodes (InfiniBand/RoCE NIC), bytes/s. */
  interNodeBandwidth: number;
}

const MiB = 2 ** 20;
export const GPU_PRESETS = {
  'V100-32GB': { memory: 32510 * MiB, peakFlops: 125e12, memoryBandwidth: 900e9, intraNodeBandwidth: 150e9, interNodeBandwidth: 12.5e9 },
  'A100-40GB': { memory: 40960 * MiB, peakFlops: 312e12, memoryBandwidth: 1555e9, intraNodeBandwidth: 300e9, interNodeBandwidth: 25e9 },
  'A100-80GB': { memory: 81920 * MiB, peakFlops: 312e12, memoryBandwidth: 2039e9, intraNodeBandwidth: 300e9, interNodeBandwidth: 25e9 },
  'H100-PCIe': { memory: 81559 * MiB, peakFlops: 756e12, memoryBandwidth: 2000e9, intraNodeBandwidth: 64e9, interNodeBandwidth: 50e9 },
  'H100-SXM': { memory: 81559 * MiB, peakFlops: 989e12, memoryBandwidth: 3350e9, intraNodeBandwidth: 450e9, interNodeBandwidth: 50e9 },
  H200: { memory: 143771 * MiB, peakFlops: 989e12, memoryBandwidth: 4800e9, intraNodeBandwidth: 450e9, interNodeBandwidth: 50e9 },
  L4: { memory: 23034 * MiB, peakFlops: 121e12, memoryBandwidth: 300e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 12.5e9 },
  'RTX-4090': { memory: 24564 * MiB, peakFlops: 165e12, memoryBandwidth: 1008e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 12.5e9 },
  // Vendor datasheet figures (dense bf16, no sparsity); PCIe cards talk over PCIe 4.0/5.0 x16 inside a node.
  // AWS g5.48xlarge: 8 × A10G on PCIe, 100 Gb/s EFA per node (1.56 GB/s per GPU).
  A10G: { memory: 23028 * MiB, peakFlops: 125e12, memoryBandwidth: 600e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 1.5625e9 },
  L40S: { memory: 46068 * MiB, peakFlops: 362e12, memoryBandwidth: 864e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 12.5e9 },
  // H100 NVL: NVLink bridges pair the cards; across pairs it is PCIe 5.0 (the planner models the slower one).
  'H100-NVL': { memory: 95830 * MiB, peakFlops: 835e12, memoryBandwidth: 3900e9, intraNodeBandwidth: 64e9, interNodeBandwidth: 50e9 },
  B200: { memory: 183359 * MiB, peakFlops: 2250e12, memoryBandwidth: 8000e9, intraNodeBandwidth: 900e9, interNodeBandwidth: 50e9 },
  // AMD MI300X: 192 GB HBM3, Infinity Fabric 7 × 64 GB/s per GPU; ROCm's RCCL stands in for NCCL.
  MI300X: { memory: 196592 * MiB, peakFlops: 1307e12, memoryBandwidth: 5300e9, intraNodeBandwidth: 448e9, interNodeBandwidth: 50e9 },
} as const satisfies Record<string, GpuSpec>;
export type GpuPresetName = keyof typeof GPU_PRESETS;
export const GPU_PRESET_NAMES = Object.keys(GPU_PRESETS) as GpuPresetName[];
