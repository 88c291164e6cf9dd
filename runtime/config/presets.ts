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
  // H200: same GH100 die and clocks as H100 SXM (BF16 989.4 dense / 1978.9 sparse — https://glennklockwood.com/garden/processors/h100),
  // 141 GB HBM3e, 4.8 TB/s, NVLink 4 450 GB/s per direction — https://www.saulelectric.com/nvidia-h200.html. nvidia-smi total: not checked.
  H200: { memory: 143771 * MiB, peakFlops: 989e12, memoryBandwidth: 4800e9, intraNodeBandwidth: 450e9, interNodeBandwidth: 50e9 },
  L4: { memory: 23034 * MiB, peakFlops: 121e12, memoryBandwidth: 300e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 12.5e9 },
  'RTX-4090': { memory: 24564 * MiB, peakFlops: 165e12, memoryBandwidth: 1008e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 12.5e9 },
  // Checked 2026-12-05 against the sources named (vendor tables as reproduced by the pages named where the vendor's own
  // page was not in the search corpus). Dense bf16 = half the datasheets' "with sparsity" figure. `memory` is nvidia-smi's
  // "Total" where a capture was found; `interNodeBandwidth` is not a GPU figure but a typical NIC per GPU (assumed).
  // A10G (AWS g5): 24 GB GDDR6, 600 GB/s — https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/, which
  // also says the A10G has less tensor compute than the A10; its bf16 figure was NOT found in a vendor source: 125 TFLOP/s
  // is the A10's datasheet figure, an upper bound. PCIe 4.0 x16; g5.48xlarge: 100 Gb/s per node (1.56 GB/s per GPU).
  A10G: { memory: 23028 * MiB, peakFlops: 125e12, memoryBandwidth: 600e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 1.5625e9 },
  // L40S: 48 GB GDDR6, 864 GB/s, BF16 tensor 362.05 dense (733 sparse), PCIe Gen4 x16 64 GB/s bidirectional, no NVLink —
  // NVIDIA's L40/L40S table as reproduced at https://www.mullet.se/product.html?product_id=355414. nvidia-smi total: not checked.
  L40S: { memory: 46068 * MiB, peakFlops: 362e12, memoryBandwidth: 864e9, intraNodeBandwidth: 32e9, interNodeBandwidth: 12.5e9 },
  // H100 NVL: 94 GB HBM3, 3.9 TB/s (https://grokipedia.com/page/210100120: "94 GB", "3.93 TB/s", PCIe 5.0 x16). BF16 835 dense
  // (1,671 sparse) is NVIDIA's H100 datasheet figure, NOT confirmed by a page found here. NVLink bridges pair the cards
  // (600 GB/s); across pairs it is PCIe 5.0 x16, 64 GB/s per direction (the planner models the slower one).
  'H100-NVL': { memory: 95830 * MiB, peakFlops: 835e12, memoryBandwidth: 3900e9, intraNodeBandwidth: 64e9, interNodeBandwidth: 50e9 },
  // B200 (HGX, 1,000 W): BF16 matrix 2,250 dense / 4,500 sparse, 8 TB/s — https://glennklockwood.com/garden/processors/B200;
  // NVLink 5 1.8 TB/s bidirectional per GPU — https://docs.vultr.com/inference-cookbook/cuda/getting-started/hardware-overview;
  // nvidia-smi "183359" MiB total in a gpustat capture of 8 × B200 (a `scripts.performance.llm.pretrain_llama3_8b -g b200` log).
  B200: { memory: 183359 * MiB, peakFlops: 2250e12, memoryBandwidth: 8000e9, intraNodeBandwidth: 900e9, interNodeBandwidth: 50e9 },
  // AMD MI300X: BF16 1307.4 dense, 5.3 TB/s, 192 GB HBM3 —
  // https://raw.githubusercontent.com/alpharomercoma/MI300X-vs-H200/6077fdc7bfc215171c33435b7cd76ca4c5f2b236/METHODOLOGY.md
  // (AMD's spec table); Infinity Fabric "128 GB/s bidirectional per link and 448 GB/s aggregate bandwidth for an 8-GPU system"
  // (read as 7 peers × 64 GB/s per direction) —
  // https://www.emergentmind.com/topics/amd-mi300x-gpu. rocm-smi total: not checked (196592 MiB assumed). RCCL stands in for NCCL.
  MI300X: { memory: 196592 * MiB, peakFlops: 1307e12, memoryBandwidth: 5300e9, intraNodeBandwidth: 448e9, interNodeBandwidth: 50e9 },
} as const satisfies Record<string, GpuSpec>;
export type GpuPresetName = keyof typeof GPU_PRESETS;
export const GPU_PRESET_NAMES = Object.keys(GPU_PRESETS) as GpuPresetName[];
