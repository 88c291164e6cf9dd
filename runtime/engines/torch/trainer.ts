// One run on the torch engine: `torchrun` with the python/ package's trainer as the ranks, everything they
// report arriving over the rank channel (docs/rank-channel.md) and relayed to the run exactly like the local
// coordinator's (so monitorTrainer, metrics.jsonl and the dashboard serve it unchanged); checkpoint parts
// committed once every rank saved them; the first failure of any rank turned into one error naming the rank,
// the step and the cause, with the whole process tree (agent included) ended.
// TODO(onepath): once runtime/coordinator/engine.ts is on main, this becomes an Engine (start/kill/exited)
// plugged into the shared coordinator, and the relaying below goes away.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Message, StepMessage } from '../../../common/protocol';
import type { RunConfig } from '../../config/types';
import { gptShape } from '../../model/gpt';
import { ChannelServer, type RankReport } from '../../parallel/channel';
import { ParallelError, resolveLayout, statusError, type ParallelLayout } from '../../parallel/layout';
import { checkpointFolder, readState, tmpCheckpointTemplate } from '../../parallel/checkpoint';
import { estimate } from '../../planner/estimate';
import { planTarget } from '../../planner/target';
import type { RankProcess } from '../../telemetry/gpu-sampler';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, commitCheckpointFolder, fsyncDir, hfConfig, latestCheckpoint, removeTemporaries, writeFileSynced } from '../../train/checkpoint';
import { optimizerHyper } from '../../train/optimizer';
import { noCheckpointMessage } from '../../train/run-dir';
import { RunEvents } from '../../train/run-events';
import { formatStep, type RunResult, type RunSetup } from '../../coordinator/coordinator';
import type { EngineChoice } from './choose';
import { rootFailure, type RankFailure } from './failure';
import { Torchrun } from './torchrun';

export type TorchStart = { kind: 'fresh' } | { kind: 'init'; folder: string } | { kind: 'resume'; folder: string };

export interface TorchSetup extends Omit<RunSetup, 'engine' | 'engineReason'> {
  /** Which engine runs this and why, announced in the hello. */
  engine?: { name: 'torch'; reason: string; backend?: string };
  choice: Extract<EngineChoice, { name: 'torch' }>;
  /** The trainer module (tests: a protocol-conformance rank). */
  module?: string;
  /** PYTHONPATH head (default: the bundled package). */
  pythonPath?: string;
  /** How long Stop waits for the ranks' checkpoint before ending them (ms). */
  stopTimeoutMs?: number;
}

const now = (): number => Date.now();

type Failure = RankFailure;

export class TorchTrainer extends RunEvents {
  readonly layout: ParallelLayout;
  readonly world: number;
  step = 0;
  lastLoss?: number;
  readonly losses: number[] = [];
  private channel?: ChannelServer;
  private torchrun?: Torchrun;
  private stopRequested = false;
  /** Who asked to stop (recorded in the stopped status). */
  private stopBy: string | undefined;
  private readonly pids = new Map<number, number>();
  private readonly progress = new Map<number, number>();
  private readonly finished = new Map<number, { step: number; reason: 'completed' | 'stopped' }>();
  private readonly saved = new Map<number, { ranks: Set<number>; bytes: number; metricsBytes: number }>();
  private readonly failures: Failure[] = [];
  private lastCommitted = -1;
  private readonly nonce = randomBytes(4).toString('hex');
  private readonly predicted?: Record<string, number>;
  private ranksListener?: (ranks: RankProcess[]) => void;
  private truncateTo?: number;

  private constructor(readonly setup: TorchSetup, private readonly start: TorchStart, private readonly resumedFrom?: string) {
    super();
    this.layout = resolveLayout(setup.config);
    this.world = this.layout.world;
    if (setup.runDir) {
      const dir = setup.runDir;
      this.subscribe((m) => dir.publish(m));
    }
    const planned = estimate(planTarget(setup.config).input, { convention: 'torch' });
    if (planned.ok) {
      const p = planned.memory.perDevice;
      this.predicted = { params: p.params, grads: p.grads, optimizer: p.optimizer, activations: p.activations, buffers: p.buffers };
    }
  }

  /** Refuses what the engine cannot run before anything starts; decides where the ranks start from. */
  static create(setup: TorchSetup): TorchTrainer {
    const layout = resolveLayout(setup.config); // pp, sequence parallel, offload, tp divisibility: refused with the reason
    if (setup.choice.device === 'cpu' && setup.config.train.precision !== 'fp32') {
      throw new ParallelError(`train.precision="${setup.config.train.precision}" needs CUDA GPUs; the torch engine runs on CPU here (${setup.choice.reason}), in fp32 only`);
    }
    let start: TorchStart = { kind: 'fresh' };
    let resumedFrom: string | undefined;
    let startStep = 0;
    let lastLoss: number | undefined;
    let truncate: number | undefined;
    if (setup.resume) {
      if (!setup.runDir) throw new ParallelError('resume needs a run directory');
      const folder = latestCheckpoint(setup.runDir.checkpoints);
      if (!folder) throw new ParallelError(noCheckpointMessage(setup.runDir.checkpoints));
      const state = readState(folder);
      start = { kind: 'resume', folder };
      resumedFrom = folder;
      startStep = state.step;
      lastLoss = state.lastLoss;
      truncate = state.metricsBytes;
      setup.runDir.checkTruncation(truncate); // before any rank starts or anything is written
    } else if (setup.initFrom) start = { kind: 'init', folder: setup.initFrom };
    const t = new TorchTrainer(setup, start, resumedFrom);
    t.step = startStep;
    if (lastLoss !== undefined) t.lastLoss = lastLoss;
    t.truncateTo = truncate;
    void layout;
    return t;
  }

  protected get lineSinks() {
    return this.setup;
  }

  get totalSteps(): number {
    return this.setup.config.train.steps;
  }

  requestStop(): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    this.channel?.send(0, { k: 'control', action: 'stop' });
    // Ranks that do not come to a stop (stuck in a collective, ignoring the request) are ended.
    const tr = this.torchrun;
    if (tr) setTimeout(() => void tr.stop(2000), this.setup.stopTimeoutMs ?? 60_000).unref();
  }

  requestCheckpoint(): void {
    this.channel?.send(0, { k: 'control', action: 'checkpoint' });
  }

  rankProcesses(): RankProcess[] {
    const gpu = this.setup.choice.device === 'cuda';
    return Array.from({ length: this.world }, (_, rank) => ({ rank, pid: this.pids.get(rank) ?? this.torchrun?.pid ?? process.pid, device: gpu ? rank : rank }));
  }

  onRanks(listener: (ranks: RankProcess[]) => void): void {
    this.ranksListener = listener;
  }

  private fail(rank: number, message: string, kind?: string, abrupt = false): void {
    if (this.failures.some((f) => f.rank === rank)) return;
    this.failures.push({ rank, message, abrupt, ...(kind ? { kind } : {}), ...(this.progress.has(rank) ? { step: this.progress.get(rank)! } : {}) });
    // torchrun's agent ends the others itself; if it does not within a moment, we do.
    const tr = this.torchrun;
    if (tr && this.failures.length === 1) setTimeout(() => void tr.stop(2000), 3000).unref();
  }

  private onRank(m: RankReport): void {
    switch (m.k) {
      case 'hello':
        this.pids.set(m.rank, m.pid);
        this.torchrun?.addRankPid(m.pid);
        if (this.pids.size === this.world) this.ranksListener?.(this.rankProcesses());
        return;
      case 'progress':
        this.progress.set(m.rank, m.step);
        return;
      case 'timing':
        return;
      case 'error':
        this.progress.set(m.rank, m.step);
        this.fail(m.rank, m.message, m.kind);
        return;
      case 'done':
        this.finished.set(m.rank, { step: m.step, reason: m.reason });
        return;
      case 'msg': {
        const msg: Message = m.m;
        this.publish(msg);
        if (msg.type === 'step') {
          const s: StepMessage = msg;
          this.step = s.step;
          this.lastLoss = s.loss;
          this.losses.push(s.loss);
          this.log(formatStep({ step: s.step, loss: s.loss, lr: s.lr, gradNorm: s.gradNorm, stepMs: s.stepMs, tokensPerSec: s.tokensPerSec, memory: s.memory } as unknown as Parameters<typeof formatStep>[0], this.totalSteps), 'info', false);
        } else if (msg.type === 'eval') this.log(`eval  step ${msg.step}: held-out loss ${msg.loss.toFixed(4)}`, 'info', false);
        return;
      }
      case 'saved': {
        const entry = this.saved.get(m.step) ?? { ranks: new Set<number>(), bytes: 0, metricsBytes: 0 };
        entry.ranks.add(m.rank);
        entry.bytes += m.bytes;
        if (m.rank === 0) entry.metricsBytes = this.setup.runDir?.metricsBytes() ?? 0;
        this.saved.set(m.step, entry);
        if (entry.ranks.size === this.world) {
          this.saved.delete(m.step);
          try {
            this.commit(m.step, entry.bytes, entry.metricsBytes);
          } catch (e) {
            this.fail(0, `checkpoint of step ${m.step}: ${(e as Error).message}`, 'CheckpointError');
          }
        }
        return;
      }
    }
  }

  private commit(step: number, shardBytes: number, metricsBytes: number): void {
    const dir = this.setup.runDir!;
    const cfg = this.setup.config;
    this.publish({ type: 'status', state: 'checkpointing', t: now(), step });
    // The trainer gathers full tensors (HF names) into the folder, so the checkpoint is a single-device one:
    // the local engine resumes from it (GPT-2) and transformers loads it. No layout: nothing to consolidate.
    const state = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      engine: 'torch',
      step,
      tokens: step * cfg.train.globalBatch * cfg.model.seqLen,
      data: { nextStep: step + 1, description: `${cfg.data.source} data` },
      rng: { seed: cfg.train.seed },
      optimizer: { ...optimizerHyper(cfg.train), steps: step },
      model: modelState(cfg),
      metricsBytes,
      ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}),
      savedAt: new Date().toISOString(),
      config: cfg,
    };
    const tmp = checkpointFolder(tmpCheckpointTemplate(dir.checkpoints, this.nonce), step);
    let bytes = 0;
    for (const f of readdirSync(tmp)) bytes += statSync(join(tmp, f)).size;
    bytes += writeFileSynced(join(tmp, 'config.json'), JSON.stringify(hfModelConfig(cfg), null, 2) + '\n');
    bytes += writeFileSynced(join(tmp, 'state.json'), JSON.stringify(state, null, 2) + '\n');
    fsyncDir(tmp);
    const path = commitCheckpointFolder(dir.checkpoints, tmp, step);
    this.lastCommitted = step;
    this.publish({ type: 'checkpoint', step, path: relative(dir.path, path), bytes: Math.max(bytes, shardBytes), t: now() });
    this.publish({ type: 'status', state: 'running', t: now(), step });
    this.log(`checkpoint: ${path}`);
  }

  /** The file the trainer reads (docs/rank-channel.md), in the run folder (or a temporary one). */
  private writeArgs(config: RunConfig, folder: string): string {
    const file = join(folder, 'torch-args.json');
    const args = {
      config,
      baseDir: this.setup.baseDir,
      start: this.start,
      startStep: this.step,
      device: this.setup.choice.device,
      ...(this.predicted ? { predicted: this.predicted } : {}),
    };
    writeFileSync(file, JSON.stringify(args, null, 2) + '\n', { mode: 0o600 });
    return file;
  }

  async run(): Promise<RunResult> {
    const cfg = this.setup.config;
    const dir = this.setup.runDir;
    const choice = this.setup.choice;
    if (this.truncateTo !== undefined) dir?.truncateMetrics(this.truncateTo);
    if (!this.resumedFrom) {
      this.publish({
        type: 'hello', protocol: 1, runId: dir?.runId ?? 'run', name: cfg.name, startedAt: now(), world: this.world, config: JSON.parse(JSON.stringify(cfg)),
        ...(this.setup.plan ? { plan: JSON.parse(JSON.stringify(this.setup.plan)) } : {}),
        engine: { name: 'torch', reason: choice.reason },
        backend: { name: choice.device, label: choice.backend },
      });
    }
    this.publish({ type: 'status', state: 'starting', t: now(), step: this.step, ...(this.resumedFrom ? { reason: `resumed from ${this.resumedFrom}` } : {}) });
    const l = this.layout;
    this.log(`parallel: dp=${l.dp} tp=${l.tp} zero=${l.zero} (${l.world} rank${l.world === 1 ? '' : 's'} under torchrun, ${choice.backend}); python ${choice.probe.executable}`);
    if (dir) removeTemporaries(dir.checkpoints);
    const scratch = dir ? undefined : mkdtempSync(join(tmpdir(), 'scalelm-torch-'));
    this.channel = await ChannelServer.open((m) => this.onRank(m), {
      world: this.world,
      onReject: (reason) => this.log(reason, 'warn'),
      onDisconnect: (rank) => {
        if (!this.finished.has(rank)) this.fail(rank, 'its process ended before the run finished', undefined, true);
      },
    });
    if (this.stopRequested) this.channel.send(0, { k: 'control', action: 'stop' });
    let exit;
    try {
      const argsFile = this.writeArgs(cfg, dir?.path ?? scratch!);
      this.publish({ type: 'status', state: 'running', t: now(), step: this.step });
      this.torchrun = new Torchrun({
        python: choice.probe.executable,
        nproc: this.world,
        argsFile,
        env: {
          ...this.channel.env(),
          ...(dir ? { SCALELM_RUN_DIR: dir.path, SCALELM_CHECKPOINT_TEMPLATE: tmpCheckpointTemplate(dir.checkpoints, this.nonce) } : {}),
        },
        ...(this.setup.module ? { module: this.setup.module } : {}),
        ...(this.setup.pythonPath ? { pythonPath: this.setup.pythonPath } : {}),
        cwd: this.setup.baseDir,
        onLine: (line, stream) => {
          if (line.trim()) (stream === 'stderr' ? dir?.log(`[torchrun] ${line}`) : this.setup.log?.(line));
        },
      });
      if (this.stopRequested) this.requestStopAgain();
      exit = await this.torchrun.exited;
    } finally {
      await this.channel.close(1000).catch(() => {});
      this.channel = undefined;
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    }
    const allDone = this.finished.size === this.world;
    if (exit.code !== 0 || !allDone || this.failures.length) {
      const err = this.describeFailure(exit);
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: statusError(err) });
      throw err;
    }
    const r0 = this.finished.get(0)!;
    if (r0.reason === 'stopped') this.publish({ type: 'status', state: 'stopping', t: now(), step: r0.step, reason: 'stop requested', ...(this.stopBy ? { by: this.stopBy } : {}) });
    const checkpoint = dir && this.lastCommitted >= 0 ? join(dir.checkpoints, `step-${String(this.lastCommitted).padStart(6, '0')}`) : dir ? latestCheckpoint(dir.checkpoints) : undefined;
    this.publish({ type: 'status', state: r0.reason === 'stopped' ? 'stopped' : 'finished', t: now(), step: r0.step, ...(r0.reason === 'stopped' ? { reason: `stopped at step ${r0.step}`, ...(this.stopBy ? { by: this.stopBy } : {}) } : {}) });
    return { reason: r0.reason, step: r0.step, ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}), ...(checkpoint ? { checkpoint } : {}) };
  }

  private requestStopAgain(): void {
    this.stopRequested = false;
    this.requestStop();
  }

  /** "rank R, step S: cause" — the rank's own error line, else its end with torchrun's stderr tail. */
  private describeFailure(exit: { code: number | null; signal: string | null; stderrTail: string[] }): Error {
    const f = rootFailure(this.failures);
    const tail = causeLines(exit.stderrTail);
    let message: string;
    if (f) {
      message = `rank ${f.rank}${f.step !== undefined ? `, step ${f.step}` : ''}: ${f.kind ? `${f.kind}: ` : ''}${f.message}`;
      if (!/Error|Traceback/.test(f.message) && tail) message += `\n${tail}`;
    } else if (this.pids.size < this.world) {
      message = `torchrun ended (${exit.code !== null ? `exit ${exit.code}` : `signal ${exit.signal}`}) before every rank had joined the run (${this.pids.size} of ${this.world})${tail ? `:\n${tail}` : ''}`;
    } else {
      message = `torchrun ended with ${exit.code !== null ? `exit ${exit.code}` : `signal ${exit.signal}`}${tail ? `:\n${tail}` : ''}`;
    }
    return new ParallelError(`${message}${this.world > 1 ? ` — the whole run stopped (${this.world} ranks, none left running)` : ''}`, f?.rank);
  }

  dispose(): void {
    void this.torchrun?.kill();
    this.setup.runDir?.close();
  }
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
function modelState(cfg: RunConfig): Record<string, unknown> {
  const m = cfg.model;
  if (isGpt2(m)) return { ...gptShape(m) };
  return { layers: m.layers, hidden: m.hidden, heads: m.heads, vocab: m.vocab, positions: m.seqLen, ffnHidden: m.ffnHidden, eps: 1e-5, family: 'llama', kvHeads: m.kvHeads };
}

/** The HuggingFace config.json: GPT2Config, or LlamaConfig (the same fields as python/scalelm/checkpoint.py hf_config). */
function hfModelConfig(cfg: RunConfig): Record<string, unknown> {
  const m = cfg.model;
  if (isGpt2(m)) return hfConfig(gptShape(m), m.dropout);
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: m.vocab, hidden_size: m.hidden, intermediate_size: m.ffnHidden,
    num_hidden_layers: m.layers, num_attention_heads: m.heads, num_key_value_heads: m.kvHeads, max_position_embeddings: m.seqLen,
    rms_norm_eps: 1e-5, rope_theta: 10000.0, hidden_act: 'silu', tie_word_embeddings: m.tiedEmbeddings, attention_bias: m.bias,
    attention_dropout: m.dropout, initializer_range: 0.02, torch_dtype: 'float32',
  };
}
