// Exports a layout for running elsewhere: a DeepSpeed config JSON, Megatron-LM arguments, a torchrun command,
// a Slurm batch script.
// Each export is checked for consistency before it is returned (train_batch_size = micro · accum · dp,
// world = dp · tp · pp), and the checks are exported so tests can feed them tampered output. Pure.
import { DEFAULT_OVERHEADS } from './memory';
import type { Layout, Overheads, PlanInput, PlanIssue } from './types';
import { planIssues } from './validate';

export const EXPORT_TARGETS = ['deepspeed', 'megatron', 'torchrun', 'slurm'] as const;
export type ExportTarget = (typeof EXPORT_TARGETS)[number];

/** Optional training hyper-parameters a full RunConfig carries. */
interface Hyper {
  lr?: number;
  minLr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  gradClip?: number;
  steps?: number;
  warmupSteps?: number;
  schedule?: string;
}

export interface ExportOptions {
  /** DeepSpeed bucket sizes and ZeRO-3 limits (the same values the estimate used). */
  overheads?: Partial<Overheads>;
  /** The DeepSpeed training script torchrun launches when the layout needs DeepSpeed (default train.py). */
  script?: string;
  /** The DeepSpeed config file the torchrun command passes (default ds_config.json). */
  deepspeedConfigFile?: string;
  masterPort?: number;
  /** What the Slurm script runs on every node (--to slurm). */
  slurm?: SlurmOptions;
}

export interface SlurmOptions {
  /** The job's name (#SBATCH --job-name, the run's name, the output file). */
  name: string;
  /** The user's own training entry for torchrun (script and arguments), instead of the built-in trainer. */
  entry?: string[];
  /**
   * The built-in torch trainer's `--args` content (docs/rank-channel.md) without `device`: the resolved run
   * config and where its relative paths start. Required unless `entry` is given.
   */
  trainer?: { config: unknown; baseDir: string };
  /** Where the `scalelm` Python package lies (the script's default SCALELM_PYTHON_PACKAGE). */
  pythonPackage?: string;
  /** CPU cores per GPU (--cpus-per-task = this × GPUs per node; default 8). */
  cpusPerGpu?: number;
}

export type ExportResult = { ok: true; target: ExportTarget; text: string; notes: string[] } | { ok: false; issues: PlanIssue[] };

/** The file an export is written to, next to the config `<base>.scalelm.json`: the CLI's --write and the extension use the same names. */
export function exportFileName(base: string, target: ExportTarget): string {
  return target === 'deepspeed' ? `${base}.ds_config.json` : target === 'megatron' ? `${base}.megatron.sh` : target === 'slurm' ? `${base}.slurm.sh` : `${base}.torchrun.sh`;
}

const hyper = (input: PlanInput): Hyper => input.train as Hyper;

/** Whether the layout needs DeepSpeed (ZeRO-2/3 or offload) rather than Megatron-LM. */
export function needsDeepSpeed(layout: Layout): boolean {
  return layout.zero >= 2 || layout.offloadOptimizer || layout.offloadParams;
}

export function deepspeedConfig(input: PlanInput, layout: Layout, options: ExportOptions = {}): Record<string, unknown> {
  const ov = { ...DEFAULT_OVERHEADS, ...options.overheads };
  const h = hyper(input);
  const accum = input.train.globalBatch / (layout.microBatch * layout.dp);
  const zero: Record<string, unknown> = { stage: layout.zero };
  if (layout.zero >= 1) {
    Object.assign(zero, { overlap_comm: ov.overlapComm, contiguous_gradients: true, reduce_scatter: true, reduce_bucket_size: ov.reduceBucketElements });
    if (layout.zero <= 2) zero.allgather_bucket_size = ov.allgatherBucketElements;
    if (layout.zero === 3) Object.assign(zero, { stage3_max_live_parameters: ov.stage3MaxLiveParameters, stage3_prefetch_bucket_size: ov.stage3PrefetchElements });
    if (layout.offloadOptimizer) zero.offload_optimizer = { device: 'cpu', pin_memory: true };
    if (layout.offloadParams) zero.offload_param = { device: 'cpu', pin_memory: true };
  }
  const cfg: Record<string, unknown> = {
    train_batch_size: input.train.globalBatch,
    train_micro_batch_size_per_gpu: layout.microBatch,
    gradient_accumulation_steps: accum,
  };
  if (h.gradClip !== undefined && h.gradClip > 0) cfg.gradient_clipping = h.gradClip;
  if (input.train.precision === 'bf16-mixed') cfg.bf16 = { enabled: true };
  if (input.train.precision === 'fp16-mixed') cfg.fp16 = { enabled: true, loss_scale: 0, initial_scale_power: 16, loss_scale_window: 1000, hysteresis: 2, min_loss_scale: 1 };
  if (input.train.optimizer !== 'sgd') {
    cfg.optimizer = {
      type: input.train.optimizer === 'adamw' ? 'AdamW' : 'Adam',
      params: { lr: h.lr ?? 3e-4, betas: [h.beta1 ?? 0.9, h.beta2 ?? 0.95], eps: h.eps ?? 1e-8, weight_decay: h.weightDecay ?? 0.1 },
    };
  }
  const sched = deepspeedScheduler(input);
  if (sched) cfg.scheduler = sched;
  cfg.zero_optimization = zero;
  // DeepSpeed's activation-checkpointing settings (read by deepspeed.checkpointing, which Megatron-DeepSpeed and
  // scripts calling deepspeed.checkpointing.checkpoint use); the script still decides which layers to wrap.
  if (layout.recompute !== 'none')
    cfg.activation_checkpointing = {
      partition_activations: layout.tp > 1,
      contiguous_memory_optimization: false,
      cpu_checkpointing: false,
      number_checkpoints: null,
      synchronize_checkpoint_boundary: false,
      profile: false,
    };
  cfg.steps_per_print = 10;
  cfg.wall_clock_breakdown = false;
  return cfg;
}

/**
 * The LR schedule in DeepSpeed's scheduler names: warm-up then cosine (WarmupCosineLR, decaying to minLr/lr),
 * linear (WarmupDecayLR, to 0) or constant (WarmupLR). Needs train.steps (total_num_steps); undefined without.
 */
export function deepspeedScheduler(input: PlanInput): Record<string, unknown> | undefined {
  const h = hyper(input);
  const lr = h.lr ?? 3e-4;
  const warmup = h.warmupSteps ?? 0;
  const schedule = h.schedule ?? 'cosine';
  if (schedule === 'constant') return { type: 'WarmupLR', params: { warmup_min_lr: 0, warmup_max_lr: lr, warmup_num_steps: warmup, warmup_type: 'linear' } };
  if (h.steps === undefined) return undefined;
  if (schedule === 'linear') return { type: 'WarmupDecayLR', params: { total_num_steps: h.steps, warmup_min_lr: 0, warmup_max_lr: lr, warmup_num_steps: warmup, warmup_type: 'linear' } };
  return { type: 'WarmupCosineLR', params: { total_num_steps: h.steps, warmup_min_ratio: 0, warmup_num_steps: warmup, cos_min_ratio: (h.minLr ?? lr / 10) / lr } };
}

/** DeepSpeed's own rule: train_batch_size = micro · accumulation · data-parallel size. */
export function checkDeepspeedConfig(cfg: Record<string, unknown>, dp: number): PlanIssue[] {
  const issues: PlanIssue[] = [];
  const tbs = cfg.train_batch_size,
    mbs = cfg.train_micro_batch_size_per_gpu,
    gas = cfg.gradient_accumulation_steps;
  for (const [k, v] of [
    ['train_batch_size', tbs],
    ['train_micro_batch_size_per_gpu', mbs],
    ['gradient_accumulation_steps', gas],
  ] as const) {
    if (!Number.isInteger(v) || (v as number) < 1) issues.push({ path: k, message: `${k} must be a positive whole number, got ${JSON.stringify(v)}` });
  }
  if (!issues.length && (tbs as number) !== (mbs as number) * (gas as number) * dp) {
    issues.push({
      path: 'train_batch_size',
      message: `train_batch_size=${tbs} must equal train_micro_batch_size_per_gpu · gradient_accumulation_steps · dp = ${mbs}·${gas}·${dp} = ${(mbs as number) * (gas as number) * dp}`,
    });
  }
  const z = cfg.zero_optimization as Record<string, unknown> | undefined;
  if (z && z.offload_param !== undefined && z.stage !== 3) issues.push({ path: 'zero_optimization.offload_param', message: 'offload_param needs ZeRO stage 3' });
  if (z && z.offload_optimizer !== undefined && !((z.stage as number) >= 1)) issues.push({ path: 'zero_optimization.offload_optimizer', message: 'offload_optimizer needs ZeRO stage 1 or more' });
  return issues;
}

/** Megatron-LM `pretrain_gpt.py` arguments for the model, the layout and the training settings. */
export function megatronArguments(input: PlanInput, layout: Layout): string[] {
  const m = input.model;
  const h = hyper(input);
  const a: string[] = ['--tensor-model-parallel-size', String(layout.tp), '--pipeline-model-parallel-size', String(layout.pp)];
  if (layout.vpp > 1) a.push('--num-layers-per-virtual-pipeline-stage', String(m.layers / (layout.pp * layout.vpp)));
  a.push('--num-layers', String(m.layers), '--hidden-size', String(m.hidden), '--num-attention-heads', String(m.heads), '--ffn-hidden-size', String(m.ffnHidden));
  if (m.kvHeads !== m.heads) a.push('--group-query-attention', '--num-query-groups', String(m.kvHeads));
  a.push('--seq-length', String(m.seqLen), '--max-position-embeddings', String(m.seqLen));
  if (m.activation === 'swiglu') a.push('--swiglu');
  if (m.norm === 'rmsnorm') a.push('--normalization', 'RMSNorm');
  if (m.positionEmbedding === 'rope') a.push('--position-embedding-type', 'rope');
  if (!m.tiedEmbeddings) a.push('--untie-embeddings-and-output-weights');
  if (!m.bias) a.push('--disable-bias-linear');
  const dropout = m.dropout ?? 0;
  a.push('--attention-dropout', String(dropout), '--hidden-dropout', String(dropout));
  a.push('--micro-batch-size', String(layout.microBatch), '--global-batch-size', String(input.train.globalBatch));
  if (layout.sequenceParallel) a.push('--sequence-parallel');
  if (layout.recompute === 'selective') a.push('--recompute-granularity', 'selective');
  if (layout.recompute === 'full') a.push('--recompute-granularity', 'full', '--recompute-method', 'uniform', '--recompute-num-layers', '1');
  if (layout.zero === 1) a.push('--use-distributed-optimizer');
  if (input.train.flashAttention) a.push('--use-flash-attn');
  if (input.train.precision === 'bf16-mixed') a.push('--bf16');
  if (input.train.precision === 'fp16-mixed') a.push('--fp16');
  a.push('--optimizer', input.train.optimizer === 'sgd' ? 'sgd' : 'adam');
  if (h.lr !== undefined) a.push('--lr', num(h.lr));
  if (h.minLr !== undefined) a.push('--min-lr', num(h.minLr));
  if (input.train.optimizer !== 'sgd') {
    if (h.beta1 !== undefined) a.push('--adam-beta1', num(h.beta1));
    if (h.beta2 !== undefined) a.push('--adam-beta2', num(h.beta2));
    if (h.eps !== undefined) a.push('--adam-eps', num(h.eps));
  } else if (h.beta1 !== undefined) a.push('--sgd-momentum', num(h.beta1));
  if (h.weightDecay !== undefined) a.push('--weight-decay', num(h.weightDecay));
  if (h.gradClip !== undefined) a.push('--clip-grad', num(h.gradClip));
  if (h.steps !== undefined) a.push('--train-iters', String(h.steps));
  if (h.warmupSteps !== undefined) a.push('--lr-warmup-iters', String(h.warmupSteps));
  if (h.schedule !== undefined) a.push('--lr-decay-style', h.schedule === 'linear' ? 'linear' : h.schedule === 'constant' ? 'constant' : 'cosine');
  return a;
}

/** 1.4999999999999999e-5 -> "0.000015": twelve significant digits are plenty for hyper-parameters. */
function num(x: number): string {
  return String(Number(x.toPrecision(12)));
}

function argValue(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i === -1) return undefined;
  const v = Number(args[i + 1]);
  return Number.isFinite(v) ? v : NaN;
}

/** Megatron's rules: world = dp·tp·pp, global batch a multiple of micro · dp, sequence parallel needs tp > 1. */
export function checkMegatronArguments(args: string[], world: number, layers: number): PlanIssue[] {
  const issues: PlanIssue[] = [];
  const tp = argValue(args, '--tensor-model-parallel-size') ?? 1;
  const pp = argValue(args, '--pipeline-model-parallel-size') ?? 1;
  const mbs = argValue(args, '--micro-batch-size');
  const gbs = argValue(args, '--global-batch-size');
  if (!Number.isInteger(tp) || !Number.isInteger(pp) || world % (tp * pp) !== 0) {
    issues.push({ path: '--tensor-model-parallel-size', message: `tp·pp = ${tp}·${pp} must divide the world size ${world}` });
    return issues;
  }
  const dp = world / (tp * pp);
  if (mbs === undefined || gbs === undefined || !Number.isInteger(mbs) || !Number.isInteger(gbs))
    issues.push({ path: '--global-batch-size', message: '--micro-batch-size and --global-batch-size must both be given as whole numbers' });
  else if (gbs % (mbs * dp) !== 0) issues.push({ path: '--global-batch-size', message: `--global-batch-size ${gbs} must be a multiple of --micro-batch-size · dp = ${mbs}·${dp} = ${mbs * dp}` });
  if (args.includes('--sequence-parallel') && tp === 1) issues.push({ path: '--sequence-parallel', message: '--sequence-parallel needs --tensor-model-parallel-size > 1' });
  const perVirtual = argValue(args, '--num-layers-per-virtual-pipeline-stage');
  if (perVirtual !== undefined && (!Number.isInteger(perVirtual) || (layers / pp) % perVirtual !== 0))
    issues.push({ path: '--num-layers-per-virtual-pipeline-stage', message: `--num-layers-per-virtual-pipeline-stage ${perVirtual} must divide the ${layers / pp} layers of a stage` });
  return issues;
}

/**
 * A runnable bash script: checks the variables it needs (`: "${DATA_PATH:?…}"`), then launches
 * Megatron-LM's pretrain_gpt.py with torchrun on this node, with the layout, the model, the training settings,
 * the data and the tokenizer (GPT-2 BPE files for GPT-2-style models, a HuggingFace tokenizer otherwise).
 */
export function megatronScript(input: PlanInput, layout: Layout, options: ExportOptions = {}): string {
  const { gpusPerNode, nodes } = input.cluster;
  const gpt2Style = input.model.positionEmbedding === 'learned';
  const required: [string, string][] = [
    ['MEGATRON_LM', 'the Megatron-LM checkout (pretrain_gpt.py)'],
    ['DATA_PATH', 'the preprocessed data prefix (…_text_document)'],
    ...(gpt2Style
      ? ([
          ['VOCAB_FILE', 'GPT-2 vocab.json'],
          ['MERGE_FILE', 'GPT-2 merges.txt'],
        ] as [string, string][])
      : ([['TOKENIZER_MODEL', 'the HuggingFace tokenizer (name or directory)']] as [string, string][])),
    ['CHECKPOINT_DIR', 'where checkpoints are saved'],
  ];
  if (nodes > 1) required.push(['MASTER_ADDR', "node 0's address"], ['NODE_RANK', `this node's rank, 0..${nodes - 1}`]);
  const lines = [
    '#!/usr/bin/env bash',
    `# Megatron-LM pretraining for ${input.model.name ?? 'the model'}: ${nodes} node${nodes > 1 ? 's' : ''} × ${gpusPerNode} GPUs, dp${layout.dp}·tp${layout.tp}·pp${layout.pp}${layout.vpp > 1 ? ` v${layout.vpp}` : ''}. Written by \`scalelm export --to megatron\`.`,
    'set -euo pipefail',
    ...required.map(([v, what]) => `: "\${${v}:?set ${v} to ${what}}"`),
    ...(nodes > 1 ? [] : [': "${MASTER_ADDR:=127.0.0.1}"', ': "${NODE_RANK:=0}"']),
    'export CUDA_DEVICE_MAX_CONNECTIONS=1',
    `torchrun --nnodes ${nodes} --nproc-per-node ${gpusPerNode} --node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port ${options.masterPort ?? 29500} \\`,
    '  "$MEGATRON_LM/pretrain_gpt.py" \\',
  ];
  const args = megatronArguments(input, layout);
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      lines.push(`  ${args[i]} ${sh(next)} \\`);
      i++;
    } else lines.push(`  ${args[i]} \\`);
  }
  if (gpt2Style) lines.push('  --tokenizer-type GPT2BPETokenizer --vocab-file "$VOCAB_FILE" --merge-file "$MERGE_FILE" \\');
  else lines.push('  --tokenizer-type HuggingFaceTokenizer --tokenizer-model "$TOKENIZER_MODEL" \\');
  lines.push(
    '  --data-path "$DATA_PATH" --split 949,50,1 \\',
    '  --save "$CHECKPOINT_DIR" --load "$CHECKPOINT_DIR" --save-interval 1000 \\',
    '  --log-interval 10 --eval-interval 1000 --eval-iters 10 "$@"',
  );
  return `${lines.join('\n')}\n`;
}

/** The variables a Megatron script requires: every `: "${NAME:?…}"` line. */
export function requiredVariables(script: string): string[] {
  return [...script.matchAll(/^: "\$\{([A-Z_]+):\?/gm)].map((m) => m[1]!);
}

/** Quotes an argument for a POSIX shell only when it needs it. */
function sh(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function torchrunCommand(input: PlanInput, layout: Layout, options: ExportOptions = {}): string {
  const { gpusPerNode, nodes } = input.cluster;
  const lines = [
    `# Run on each of the ${nodes} node${nodes > 1 ? 's' : ''} with NODE_RANK=0..${nodes - 1} and MASTER_ADDR set to node 0.`,
    'export CUDA_DEVICE_MAX_CONNECTIONS=1',
    `torchrun --nnodes ${nodes} --nproc-per-node ${gpusPerNode} --node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port ${options.masterPort ?? 29500} \\`,
  ];
  if (needsDeepSpeed(layout)) {
    lines.push(`  ${sh(options.script ?? 'train.py')} --deepspeed --deepspeed_config ${sh(options.deepspeedConfigFile ?? 'ds_config.json')}`);
  } else {
    const args = megatronArguments(input, layout);
    const body: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const next = args[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        body.push(`${args[i]} ${sh(next)}`);
        i++;
      } else body.push(args[i]!);
    }
    lines.push('  pretrain_gpt.py \\', ...body.map((b) => `  ${b} \\`), '  $DATA_AND_TOKENIZER_ARGS');
  }
  return lines.join('\n');
}

/** torchrun's world (nnodes · nproc-per-node) must be the layout's dp·tp·pp. */
export function checkTorchrunCommand(text: string, layout: Layout): PlanIssue[] {
  const nnodes = Number(/--nnodes[ =](\d+)/.exec(text)?.[1]);
  const nproc = Number(/--nproc-per-node[ =](\d+)/.exec(text)?.[1]);
  const world = layout.dp * layout.tp * layout.pp;
  if (!Number.isInteger(nnodes) || !Number.isInteger(nproc)) return [{ path: 'torchrun', message: 'the command needs --nnodes and --nproc-per-node' }];
  if (nnodes * nproc !== world) return [{ path: 'torchrun', message: `--nnodes · --nproc-per-node = ${nnodes}·${nproc} = ${nnodes * nproc} must equal dp·tp·pp = ${world}` }];
  return [];
}

/**
 * Splits an entry command line ("train.py --lr 3e-4 --name 'a b'") into words like a POSIX shell does for
 * quotes and backslashes; no expansion. Throws an Error naming what it refuses (an unclosed quote, a newline,
 * a shell operator outside quotes), since the words are written into a script that every node runs.
 */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n' || c === '\r') throw new Error('the entry must be one line');
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unclosed ' in the entry: ${text}`);
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && j + 1 < text.length && '"\\$`'.includes(text[j + 1]!)) j++;
        else if (text[j] === '$' || text[j] === '`') throw new Error(`the entry is written into the script literally: no $ or \` expansion (in ${text}); read variables in your script instead`);
        word += text[j];
      }
      if (j >= text.length) throw new Error(`unclosed " in the entry: ${text}`);
      inWord = true;
      i = j;
    } else if (c === '\\') {
      if (i + 1 < text.length) word += text[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else if (';&|<>()`$'.includes(c)) {
      throw new Error(`the entry is one command, written into the script literally: "${c}" is not allowed outside quotes (in ${text})`);
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * What the built-in torch trainer (python/scalelm/train.py) cannot run, said at export time rather than after
 * the job waited in the queue. The trainer's own layout_issues stays the authority at run time.
 */
function torchTrainerIssues(input: PlanInput, layout: Layout): PlanIssue[] {
  const out: PlanIssue[] = [];
  const own = 'or export your own training script with --entry';
  if (layout.pp > 1 || layout.vpp > 1)
    out.push({
      path: 'parallel.pp',
      message: `the built-in torch trainer has no pipeline parallelism (pp=${layout.pp}${layout.vpp > 1 ? `, vpp=${layout.vpp}` : ''}): set parallel.pp and vpp to 1, ${own}`,
    });
  if (layout.sequenceParallel) out.push({ path: 'parallel.sequenceParallel', message: `the built-in torch trainer has no sequence parallelism: set it to false, ${own}` });
  if (layout.offloadOptimizer || layout.offloadParams)
    out.push({ path: 'parallel.offloadOptimizer', message: `the built-in torch trainer does not offload to host memory: turn offloading off, ${own}` });
  if (input.train.precision === 'fp16-mixed') out.push({ path: 'train.precision', message: `the built-in torch trainer trains in bf16-mixed or fp32, not fp16-mixed, ${own}` });
  return out;
}

/** A name Slurm and file names take as it is: letters, digits, . _ - only. */
function jobName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'scalelm';
}

/**
 * An sbatch script: one task per node (`--ntasks-per-node=1`) runs `scalelm launch --nnodes N --node-rank
 * $SLURM_NODEID --master NODE0:PORT -- torchrun … <entry>`, so the job is one ScaleLM run whose coordinator is
 * node 0's launch. It checks Slurm's variables and its own first, takes node 0 from
 * `scontrol show hostnames $SLURM_JOB_NODELIST | head -1` (at its NodeAddr), and makes a per-job token that
 * travels to every node in the environment srun passes (SCALELM_RUN_TOKEN), never on a command line. The
 * built-in trainer's `--args` file is written by the job, 0600, into SCALELM_JOB_DIR (shared storage).
 */
export function slurmScript(input: PlanInput, layout: Layout, o: SlurmOptions): string {
  const { gpusPerNode, nodes } = input.cluster;
  const name = jobName(o.name);
  const world = layout.dp * layout.tp * layout.pp;
  const builtIn = o.entry === undefined;
  const what = builtIn ? 'the built-in torch trainer' : sh(o.entry![0]!);
  const die = (msg: string) => `{ echo "scalelm slurm: ${msg}" >&2; exit 1; }`;
  const lines = [
    '#!/usr/bin/env bash',
    `# ScaleLM on Slurm: ${name}, ${nodes} node${nodes > 1 ? 's' : ''} × ${gpusPerNode} GPU${gpusPerNode > 1 ? 's' : ''}, dp${layout.dp}·tp${layout.tp}·pp${layout.pp}, running ${what}. Written by \`scalelm export --to slurm\`.`,
    '# Submit with `sbatch` from a shell whose PATH has `scalelm` and `torchrun` (srun passes that environment to',
    "# every node). One task per node runs `scalelm launch`, which runs torchrun there: node 0's launch is the",
    "# run's coordinator and every node's ranks report to it with a per-job token that travels in the environment",
    '# (SCALELM_RUN_TOKEN), never on a command line. The run is recorded in $SCALELM_JOB_DIR/run.',
    `#SBATCH --job-name=${name}`,
    `#SBATCH --nodes=${nodes}`,
    '#SBATCH --ntasks-per-node=1',
    `#SBATCH --gpus-per-node=${gpusPerNode}`,
    `#SBATCH --cpus-per-task=${gpusPerNode * (o.cpusPerGpu ?? 8)}`,
    `#SBATCH --output=${name}-%j.out`,
    'set -euo pipefail',
    ': "${SLURM_JOB_ID:?submit this script with sbatch: it reads its nodes from Slurm}"',
    ': "${SLURM_JOB_NODELIST:?submit this script with sbatch: it reads its nodes from Slurm}"',
    ': "${SLURM_NNODES:?submit this script with sbatch: it reads its nodes from Slurm}"',
    `[ "$SLURM_NNODES" = ${nodes} ] || ${die(`laid out for ${nodes} node${nodes > 1 ? 's' : ''} × ${gpusPerNode} GPU${gpusPerNode > 1 ? 's' : ''} (dp·tp·pp = ${world}) but the job has $SLURM_NNODES nodes; export again for that size`)}`,
    ': "${SCALELM:=scalelm}"',
    `command -v "$SCALELM" >/dev/null || ${die('$SCALELM (the ScaleLM CLI) is not on PATH; set SCALELM to its path')}`,
    `command -v torchrun >/dev/null || ${die('torchrun is not on PATH; activate the Python environment that has torch before sbatch')}`,
    `: "\${SCALELM_JOB_DIR:=$PWD/runs/${name}-$SLURM_JOB_ID}"`,
    "# Ports from the job id, so two jobs that share a node do not collide: torchrun's rendezvous and the coordinator.",
    ': "${MASTER_PORT:=$((20000 + SLURM_JOB_ID % 20000))}"',
    ': "${SCALELM_PORT:=$((MASTER_PORT + 1))}"',
  ];
  if (builtIn) {
    lines.push(
      `: "\${SCALELM_PYTHON_PACKAGE:=${sh(o.pythonPackage ?? 'python')}}"`,
      `[ -f "$SCALELM_PYTHON_PACKAGE/scalelm/train.py" ] || ${die('SCALELM_PYTHON_PACKAGE=$SCALELM_PYTHON_PACKAGE has no scalelm/train.py; set it to the folder holding the scalelm package, on storage every node shares')}`,
      'export PYTHONPATH="$SCALELM_PYTHON_PACKAGE${PYTHONPATH:+:$PYTHONPATH}"',
      "# Every rank saves its checkpoint part into the run's folder (node 0's launch sets this on its node only).",
      'export SCALELM_RUN_DIR="$SCALELM_JOB_DIR/run"',
      '# cuda on GPU nodes; cpu trains with gloo (fp32 only), for trying the job out on CPU nodes.',
      ': "${SCALELM_DEVICE:=cuda}"',
      `case "$SCALELM_DEVICE" in cuda|cpu) ;; *) ${die('SCALELM_DEVICE must be cuda or cpu, got $SCALELM_DEVICE')} ;; esac`,
    );
  } else {
    lines.push(
      '# The scalelm Monitor in your script: the package from SCALELM_PYTHON_PACKAGE when set (else installed).',
      `[ -z "\${SCALELM_PYTHON_PACKAGE:-}" ] || [ -f "$SCALELM_PYTHON_PACKAGE/scalelm/__init__.py" ] || ${die('SCALELM_PYTHON_PACKAGE=$SCALELM_PYTHON_PACKAGE has no scalelm/__init__.py')}`,
      '[ -z "${SCALELM_PYTHON_PACKAGE:-}" ] || export PYTHONPATH="$SCALELM_PYTHON_PACKAGE${PYTHONPATH:+:$PYTHONPATH}"',
    );
  }
  lines.push(
    'MASTER_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
    '# Node 0 at the address Slurm reaches it by (NodeAddr; its host name on most clusters).',
    'MASTER_ADDR=$(scontrol show node "$MASTER_NODE" | sed -n \'s/^ *NodeAddr=\\([^ ]*\\).*/\\1/p\')',
    'MASTER_ADDR=${MASTER_ADDR:-$MASTER_NODE}',
    "# The run's token: made here, handed to every node in the environment srun passes.",
    "SCALELM_RUN_TOKEN=$(od -vAn -N32 -tx1 /dev/urandom | tr -d ' \\n')",
    `[ \${#SCALELM_RUN_TOKEN} -eq 64 ] || ${die('could not read a token from /dev/urandom')}`,
    'export SCALELM_RUN_TOKEN',
    'mkdir -p "$SCALELM_JOB_DIR"',
  );
  let entry: string;
  if (builtIn) {
    const { config, baseDir } = o.trainer!;
    const args = JSON.stringify({ baseDir, start: { kind: 'fresh' }, startStep: 0, config }, null, 2);
    lines.push(
      'SCALELM_ARGS="$SCALELM_JOB_DIR/torch-args.json"',
      "# The trainer's --args (docs/rank-channel.md): the run config, readable by this user only.",
      '(',
      '  umask 077',
      '  { printf \'{\\n  "device": "%s",\\n\' "$SCALELM_DEVICE"; cat <<\'SCALELM_ARGS_JSON\'',
      args.slice(2),
      'SCALELM_ARGS_JSON',
      '  } >"$SCALELM_ARGS"',
      ')',
    );
    entry = '-m scalelm.train --args "$SCALELM_ARGS"';
  } else {
    lines.push('SCALELM_ARGS=');
    entry = o.entry!.map(sh).join(' ');
  }
  lines.push(
    `echo "scalelm: job $SLURM_JOB_ID, ${nodes} nodes from $MASTER_NODE ($MASTER_ADDR): coordinator port $SCALELM_PORT, torchrun port $MASTER_PORT, run in $SCALELM_JOB_DIR/run"`,
    "# What srun runs on every node; SLURM_NODEID is the node's rank.",
    'scalelm_node() {',
    '  set -euo pipefail',
    `  [ -z "$SCALELM_ARGS" ] || [ -r "$SCALELM_ARGS" ] || { echo "node $SLURM_NODEID ($(hostname)): cannot read $SCALELM_ARGS; SCALELM_JOB_DIR must be on storage every node shares" >&2; exit 1; }`,
    `  exec "$SCALELM" launch --name ${name} --run-dir "$SCALELM_JOB_DIR/run" \\`,
    // One node is a one-machine launch (it refuses the multi-node flags with --nnodes 1).
    nodes > 1 ? '    --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" --master "$MASTER_ADDR:$SCALELM_PORT" -- \\' : '    -- \\',
    `    torchrun --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" --nproc-per-node ${gpusPerNode} \\`,
    `    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" --max-restarts 0 \\`,
    `    ${entry}`,
    '}',
    'export -f scalelm_node',
    'export SCALELM SCALELM_JOB_DIR SCALELM_ARGS MASTER_ADDR MASTER_PORT SCALELM_PORT',
    // srun (22.05+) no longer takes --cpus-per-task from the batch allocation by itself.
    'srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" --kill-on-bad-exit=1 bash -c scalelm_node',
  );
  return `${lines.join('\n')}\n`;
}

/** The script's nodes × torchrun ranks per node must be the layout's world, with one rank per GPU it asks for. */
export function checkSlurmScript(text: string, layout: Layout): PlanIssue[] {
  const nodes = Number(/^#SBATCH --nodes=(\d+)$/m.exec(text)?.[1]);
  const gpus = Number(/^#SBATCH --gpus-per-node=(\d+)$/m.exec(text)?.[1]);
  const tasks = Number(/^#SBATCH --ntasks-per-node=(\d+)$/m.exec(text)?.[1]);
  const nproc = Number(/--nproc-per-node (\d+)/.exec(text)?.[1]);
  const checked = Number(/\[ "\$SLURM_NNODES" = (\d+) \]/.exec(text)?.[1]);
  const world = layout.dp * layout.tp * layout.pp;
  if (![nodes, gpus, tasks, nproc, checked].every(Number.isInteger))
    return [{ path: 'slurm', message: 'the script needs #SBATCH --nodes, --gpus-per-node, --ntasks-per-node, the node-count check and torchrun --nproc-per-node' }];
  const issues: PlanIssue[] = [];
  if (tasks !== 1) issues.push({ path: 'slurm', message: `--ntasks-per-node=${tasks}: one scalelm launch per node, so 1` });
  if (nproc !== gpus) issues.push({ path: 'slurm', message: `torchrun --nproc-per-node ${nproc} must be the ${gpus} GPUs per node the job asks for` });
  if (checked !== nodes) issues.push({ path: 'slurm', message: `the script checks for ${checked} nodes but asks for ${nodes}` });
  if (nodes * nproc !== world) issues.push({ path: 'slurm', message: `nodes · --nproc-per-node = ${nodes}·${nproc} = ${nodes * nproc} must equal dp·tp·pp = ${world}` });
  return issues;
}

/** Exports the layout, or says why it cannot (an impossible layout, or a target that lacks the feature). */
export function exportLayout(input: PlanInput, layout: Layout, target: ExportTarget, options: ExportOptions = {}): ExportResult {
  const issues = planIssues(input, layout);
  if (issues.length) return { ok: false, issues };
  const world = layout.dp * layout.tp * layout.pp;
  const notes: string[] = [];
  let text: string;
  let check: PlanIssue[];
  if (target === 'deepspeed') {
    const cfg = deepspeedConfig(input, layout, options);
    text = JSON.stringify(cfg, null, 2);
    check = checkDeepspeedConfig(JSON.parse(text) as Record<string, unknown>, layout.dp);
    if (layout.tp > 1 || layout.pp > 1)
      notes.push(
        `tp=${layout.tp} and pp=${layout.pp} are not DeepSpeed config keys: pass them to the training script (e.g. Megatron-DeepSpeed's --tensor-model-parallel-size / --pipeline-model-parallel-size)`,
      );
    if (layout.recompute === 'full')
      notes.push("activation_checkpointing configures DeepSpeed's checkpointing; the script still wraps the layers (deepspeed.checkpointing.checkpoint, or gradient_checkpointing_enable() in HF)");
    if (layout.recompute === 'selective')
      notes.push(
        "cannot express: selective recompute (attention core only) is Megatron's; DeepSpeed's activation_checkpointing rebuilds whole layers — pass --recompute-granularity selective to Megatron-DeepSpeed",
      );
    if (layout.vpp > 1)
      notes.push(
        `cannot express: interleaved pipeline stages (vpp=${layout.vpp}) are not a DeepSpeed config key — pass --num-layers-per-virtual-pipeline-stage ${input.model.layers / (layout.pp * layout.vpp)} to Megatron-DeepSpeed`,
      );
    if (layout.sequenceParallel) notes.push('cannot express: sequence parallelism is not a DeepSpeed config key — pass --sequence-parallel to Megatron-DeepSpeed');
    if (!deepspeedScheduler(input)) notes.push('no "scheduler": the LR schedule needs train.steps (total_num_steps)');
    notes.push(
      `batch arithmetic for ${world} GPUs: train_batch_size ${input.train.globalBatch} = micro ${layout.microBatch} × accumulation ${input.train.globalBatch / (layout.microBatch * layout.dp)} × dp ${layout.dp} (dp = world / (tp·pp))`,
    );
    if (input.train.optimizer === 'sgd') notes.push('DeepSpeed has no built-in SGD: the config leaves "optimizer" out so the script passes its own');
  } else if (target === 'megatron') {
    if (needsDeepSpeed(layout)) {
      return {
        ok: false,
        issues: [
          {
            path: 'parallel.zero',
            message: `Megatron-LM has no ${layout.zero >= 2 ? `ZeRO-${layout.zero}` : 'offload'} (ZeRO-1 is its --use-distributed-optimizer); export with --to deepspeed, or use zero ≤ 1 without offload`,
          },
        ],
      };
    }
    const args = megatronArguments(input, layout);
    text = megatronScript(input, layout, options);
    check = checkMegatronArguments(args, world, input.model.layers);
    notes.push(`a bash script: set ${requiredVariables(text).join(', ')} and run it on each node; dp is implied: world / (tp·pp) = ${layout.dp}`);
  } else if (target === 'slurm') {
    const o = options.slurm;
    if (!o || (!o.entry && !o.trainer))
      return { ok: false, issues: [{ path: 'entry', message: 'a Slurm script needs what to train: a ScaleLM run config (the built-in torch trainer) or your own script (--entry)' }] };
    if (o.entry && !o.entry.length) return { ok: false, issues: [{ path: 'entry', message: '--entry is empty: give the training script and its arguments, e.g. --entry "train.py --lr 3e-4"' }] };
    if (o.entry && /(^|\/)(torchrun|srun|sbatch|scalelm)$/.test(o.entry[0]!))
      return {
        ok: false,
        issues: [
          {
            path: 'entry',
            message: `--entry is what torchrun runs on each node (e.g. "train.py --lr 3e-4"), not a launcher: the script already runs scalelm launch and torchrun, got "${o.entry[0]}"`,
          },
        ],
      };
    if (!o.entry) {
      const refused = torchTrainerIssues(input, layout);
      if (refused.length) return { ok: false, issues: refused };
    }
    text = slurmScript(input, layout, o);
    check = checkSlurmScript(text, layout);
    if ((input.cluster as { explicit?: boolean }).explicit === false)
      notes.push(
        `the config has no "cluster" section: the script asks for ${input.cluster.nodes} node${input.cluster.nodes > 1 ? 's' : ''} × ${input.cluster.gpusPerNode} GPU${input.cluster.gpusPerNode > 1 ? 's' : ''}, from its layout; add a cluster section for another shape`,
      );
    notes.push(
      `submit with \`sbatch FILE\` from a shell with scalelm and torchrun on PATH; ${input.cluster.nodes} node${input.cluster.nodes > 1 ? 's' : ''} × ${input.cluster.gpusPerNode} GPU${input.cluster.gpusPerNode > 1 ? 's' : ''}; the run is recorded in $SCALELM_JOB_DIR/run (default runs/<name>-<job id> in the job's working folder, which every node must share)`,
    );
  } else {
    text = torchrunCommand(input, layout, options);
    check = checkTorchrunCommand(text, layout);
    if (needsDeepSpeed(layout)) {
      const cfg = deepspeedConfig(input, layout, options);
      check.push(...checkDeepspeedConfig(cfg, layout.dp));
      notes.push(`write ${options.deepspeedConfigFile ?? 'ds_config.json'} with \`scalelm export <file> --to deepspeed --write\``);
    } else check.push(...checkMegatronArguments(megatronArguments(input, layout), world, input.model.layers));
  }
  if (check.length) return { ok: false, issues: check.map((i) => ({ path: i.path, message: `internal: the ${target} export is inconsistent: ${i.message}` })) };
  return { ok: true, target, text, notes };
}
