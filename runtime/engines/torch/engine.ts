// The torch engine: `torchrun` with the python/ package's trainer as the ranks (docs/torch-engine.md). It only
// starts and ends them; everything they report arrives over the rank channel at the shared coordinator
// (runtime/coordinator/coordinator.ts), which owns the run directory, checkpoint commits, the lifecycle and
// failures, exactly as for the local engine. What it declares: full checkpoints (rank 0 gathers the full
// tensors under HF names, so the local engine and transformers read them), GPT-2 and Llama models, the
// planner's `torch` convention, and a stop that may need ending (ranks stuck in a collective).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunConfig } from '../../config/types';
import { Coordinator, type RunSetup } from '../../coordinator/coordinator';
import type { Engine, EngineBackend, RankExit, RankLaunch, RankSet, RunDescription, StartFrom } from '../../coordinator/engine';
import { gptShape } from '../../model/gpt';
import { ParallelError, type ParallelLayout } from '../../parallel/layout';
import { countParams } from '../../planner/params';
import { hfConfig, type ModelRecord } from '../../train/checkpoint';
import type { EngineChoice } from './choose';
import { Torchrun } from './torchrun';

export type TorchChoice = Extract<EngineChoice, { name: 'torch' }>;

export interface TorchEngineOptions {
  /** The trainer module (tests: a protocol-conformance rank). */
  module?: string;
  /** PYTHONPATH head (default: the bundled package). */
  pythonPath?: string;
}

/** Where the python trainer starts from (python/scalelm/train.py): its checkpoints are always full ones. */
type TrainerStart = { kind: 'fresh' } | { kind: 'init'; folder: string } | { kind: 'resume'; folder: string };

function trainerStart(start: StartFrom): TrainerStart {
  if (start.kind === 'resume-full' || start.kind === 'resume-sharded') return { kind: 'resume', folder: start.folder };
  return start;
}

export class TorchEngine implements Engine {
  readonly name = 'torch' as const;
  readonly convention = 'torch' as const;
  /** Stop waits this long for the ranks' checkpoint before ending them. */
  readonly stopTimeoutMs = 60_000;
  /** torchrun's agent ends the other ranks itself when one fails; if it has not within this, the coordinator does. */
  readonly failureGraceMs = 3000;
  readonly ranksReadData = true;
  /** The agent of the latest start (tests check nothing of it is left running). */
  launcherPid?: number;

  constructor(
    readonly choice: TorchChoice,
    readonly options: TorchEngineOptions = {},
  ) {}

  check(config: RunConfig, _layout: ParallelLayout): void {
    // resolveLayout (the coordinator's) has refused pp, sequence parallel, offload and tp divisibility already.
    if (this.choice.device === 'cpu' && config.train.precision !== 'fp32') {
      throw new ParallelError(`train.precision="${config.train.precision}" needs CUDA GPUs; the torch engine runs on CPU here (${this.choice.reason}), in fp32 only`);
    }
  }

  async backend(_config: RunConfig): Promise<EngineBackend> {
    return { name: this.choice.device, label: this.choice.backend, reason: this.choice.reason };
  }

  describe(config: RunConfig, layout: ParallelLayout): RunDescription {
    const m = config.model;
    const gpt2 = isGpt2(m);
    const P = countParams(m, 1, 1).total;
    return {
      model: modelRecord(config),
      hfConfig: hfModelConfig(config),
      checkpoint: { kind: 'full' },
      modelLine: `${m.name} ${gpt2 ? 'GPT-2' : 'Llama'} ${m.layers}L h${m.hidden} a${m.heads}${m.kvHeads !== m.heads ? ` kv${m.kvHeads}` : ''} vocab ${m.vocab} seq ${m.seqLen}, ${P.toLocaleString('en-US')} parameters`,
      ranksLine: `dp=${layout.dp} tp=${layout.tp}${layout.zero ? ` zero=${layout.zero}` : ''} (${layout.world} rank${layout.world === 1 ? '' : 's'} under torchrun, ${this.choice.backend}); python ${this.choice.probe.executable}`,
    };
  }

  async start(launch: RankLaunch): Promise<RankSet> {
    const { config, layout } = launch;
    // The file the trainer reads (docs/rank-channel.md), in the run folder (or a temporary one).
    const scratch = launch.runDir ? undefined : mkdtempSync(join(tmpdir(), 'scalelm-torch-'));
    const folder = launch.runDir ?? scratch!;
    const argsFile = join(folder, 'torch-args.json');
    let torchrun: Torchrun;
    try {
      const args = {
        config,
        baseDir: launch.baseDir,
        start: trainerStart(launch.start),
        startStep: launch.startStep,
        device: this.choice.device,
        ...(launch.predicted ? { predicted: launch.predicted } : {}),
      };
      writeFileSync(argsFile, JSON.stringify(args, null, 2) + '\n', { mode: 0o600 });
      torchrun = new Torchrun({
        python: this.choice.probe.executable,
        nproc: layout.world,
        argsFile,
        env: {
          SCALELM_CHANNEL: launch.channel.address,
          SCALELM_CHANNEL_TOKEN: launch.channel.token,
          ...(launch.runDir ? { SCALELM_RUN_DIR: launch.runDir } : {}),
          ...(launch.checkpointTemplate ? { SCALELM_CHECKPOINT_TEMPLATE: launch.checkpointTemplate } : {}),
        },
        ...(this.options.module ? { module: this.options.module } : {}),
        ...(this.options.pythonPath ? { pythonPath: this.options.pythonPath } : {}),
        cwd: launch.baseDir,
        onLine: (line, stream) => launch.output?.(stream === 'stderr' ? `[torchrun] ${line}` : line, stream),
      });
    } catch (e) {
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      throw e;
    }
    this.launcherPid = torchrun.pid;
    let end: Awaited<typeof torchrun.exited> | undefined;
    // torchrun says only how the whole world ended: the ranks' own failures arrive over the channel.
    const exited = torchrun.exited.then((x): RankExit[] => {
      end = x;
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      return Array.from({ length: layout.world }, () => ({ ok: x.code === 0 }));
    });
    return {
      pids: () => Array.from({ length: layout.world }, () => torchrun.pid),
      exited,
      kill: async () => {
        await torchrun.kill();
        await exited;
      },
      track: (pid) => torchrun.addRankPid(pid),
      launcherReport: () => (end ? { launcher: 'torchrun', ended: end.code !== null ? `exit ${end.code}` : `signal ${end.signal}`, cause: causeLines(end.stderrTail) } : undefined),
    };
  }
}

export interface TorchRunSetup extends Omit<RunSetup, 'engine'>, TorchEngineOptions {
  choice: TorchChoice;
}

/** A run of the torch engine: the shared coordinator with torchrun's ranks. */
export function createTorchRun(setup: TorchRunSetup): Promise<Coordinator> {
  const { choice, module, pythonPath, ...run } = setup;
  return Coordinator.create({ engineReason: choice.reason, ...run, engine: new TorchEngine(choice, { ...(module ? { module } : {}), ...(pythonPath ? { pythonPath } : {}) }) });
}

/**
 * What in torchrun's stderr says why: the exception lines of the ranks' tracebacks (torchrun's own summary,
 * which follows them, only repeats the exit code), else the last lines.
 */
export function causeLines(stderr: string[]): string {
  const lines = stderr.filter((l) => l.trim());
  const errors = lines.filter((l) => /(\w(Error|Exception|Interrupt)\b:?|No module named|Segmentation fault|Killed)/.test(l) && !/ChildFailedError|^\s+(File |raise )/.test(l));
  const summary = lines.filter((l) => /^\s*(rank|exitcode)\s*:/.test(l));
  const picked = errors.length ? [...errors.slice(-3), ...summary.slice(-2)] : lines.slice(-20);
  return picked.join('\n');
}

const isGpt2 = (m: RunConfig['model']): boolean => m.activation === 'gelu' && m.norm === 'layernorm' && m.positionEmbedding === 'learned';

/** state.json's `model`: the local engine's GptShape, plus the family and kv heads for Llama (python/scalelm/checkpoint.py model_state). */
function modelRecord(cfg: RunConfig): ModelRecord {
  const m = cfg.model;
  if (isGpt2(m)) return gptShape(m);
  return { layers: m.layers, hidden: m.hidden, heads: m.heads, vocab: m.vocab, positions: m.seqLen, ffnHidden: m.ffnHidden, eps: 1e-5, family: 'llama', kvHeads: m.kvHeads };
}

/** The HuggingFace config.json: GPT2Config, or LlamaConfig (the same fields as python/scalelm/checkpoint.py hf_config). */
function hfModelConfig(cfg: RunConfig): Record<string, unknown> {
  const m = cfg.model;
  if (isGpt2(m)) return hfConfig(gptShape(m), m.dropout);
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: m.vocab,
    hidden_size: m.hidden,
    intermediate_size: m.ffnHidden,
    num_hidden_layers: m.layers,
    num_attention_heads: m.heads,
    num_key_value_heads: m.kvHeads,
    max_position_embeddings: m.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: 'silu',
    tie_word_embeddings: m.tiedEmbeddings,
    attention_bias: m.bias,
    attention_dropout: m.dropout,
    initializer_range: 0.02,
    torch_dtype: 'float32',
  };
}
