// The coordinator of a parallel run, in the process that owns the run (`scalelm train`): it starts dp × tp
// ranks (worker threads over shared memory, or one process per device over sockets), relays what they
// report — rank 0's step and eval records, every rank's memory and communication gauges — to its
// subscribers exactly like the single-device Trainer (so monitorTrainer serves it unchanged), routes
// stop/checkpoint requests to the ranks, commits their checkpoint shards, and turns the first failure of
// any rank into one error naming the rank, the step and the cause, with no rank left running.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { launchProcessWorld, launchThreadWorld, type WorldResult } from '../comm/launch';
import type { RunConfig } from '../config/types';
import { Gpt, gptShape } from '../model/gpt';
import { tpVocab } from '../model/tp-layers';
import { estimate } from '../planner/estimate';
import { planTarget } from '../planner/target';
import type { Message, StepMessage } from '../../common/protocol';
import type { RankProcess } from '../telemetry/gpu-sampler';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, latestCheckpoint, loadHfFolder, readModelTensors } from '../train/checkpoint';
import { noCheckpointMessage } from '../train/run-dir';
import { loadTokens } from '../train/data';
import { optimizerHyper } from '../train/optimizer';
import type { RunResult, TrainerSetup } from '../train/trainer';
import { RunEvents } from '../train/run-events';
import { formatStep } from '../train/trainer';
import { ChannelServer, type RankToCoordinator } from './channel';
import { commitCheckpoint, consolidate, hasFullFiles, isSharded, readState, removeStaleTemporaries, tmpCheckpointTemplate, type ShardedState } from './checkpoint';
import type { StartFrom } from './engine';
import { FlatLayout } from './flat';
import { describeParallel, ParallelError, resolveLayout, type ParallelLayout } from './layout';
import { checkpointFolder, type RankArgs, type RankFaults, type RankResult } from './parallel-rank';
import { localSpecs } from './shard-files';
import { isSharded as isShardedParam, joinShards } from './shards';
import type { Faults } from './engine';

export interface ParallelSetup extends TrainerSetup {
  /** Test hooks: ranks that misbehave on purpose. */
  faults?: Faults & RankFaults;
  /** Collect the final parameters (full tensors, by HF name) into `finalParams`. */
  returnState?: boolean;
  /** Comm call timeout per rank (default the comm library's). */
  timeoutMs?: number;
  /** Force the transport (default: threads, or processes for GPU backends and devices.transport "tcp"). */
  transport?: ParallelLayout['transport'];
}

const now = (): number => Date.now();
/** The rank entry module, next to this file in out/ and in the bundle (dist/parallel-rank.js). */
export const RANK_ENTRY = join(__dirname, 'parallel-rank.js');

export class ParallelTrainer extends RunEvents {
  readonly layout: ParallelLayout;
  readonly world: number;
  step = 0;
  lastLoss?: number;
  /** Per step, the mean loss over the data-parallel ranks (index 0 = the first step of this run). */
  readonly losses: number[] = [];
  /** Per step, per rank: the step's time and the part spent blocked on communication (benchmarks). */
  readonly timings = new Map<number, { stepMs: number; exposedCommMs: number }[]>();
  /** With returnState: the trained parameters as full single-device tensors. */
  finalParams?: Map<string, Float32Array>;
  private channel?: ChannelServer;
  private stopRequested = false;
  private readonly pids = new Map<number, number>();
  private readonly progress = new Map<number, number>();
  private readonly saved = new Map<number, { ranks: Set<number>; bytes: number; metricsBytes: number }>();
  private readonly commits: Promise<void>[] = [];
  private lastCommitted = -1;
  private readonly nonce = randomBytes(4).toString('hex');
  private readonly start: StartFrom;
  private readonly resumedFrom?: string;
  private readonly predicted?: Record<string, number>;
  /** Shared memory per rank for its registered buffers (and the comm library's staging). */
  readonly arenaBytes: number;
  private truncateTo: number | undefined;
  private dataDescription = '';
  private prompt: Uint16Array<ArrayBufferLike> = new Uint16Array(0);
  private ranksListener?: (ranks: RankProcess[]) => void;

  private constructor(readonly setup: ParallelSetup, start: StartFrom, resumedFrom: string | undefined, startStep: number, lastLoss: number | undefined) {
    super();
    const { config } = setup;
    this.layout = resolveLayout(config);
    if (setup.transport) this.layout.transport = setup.transport;
    this.world = this.layout.world;
    this.start = start;
    this.step = startStep;
    if (lastLoss !== undefined) this.lastLoss = lastLoss;
    if (resumedFrom) this.resumedFrom = resumedFrom;
    if (setup.runDir) {
      const dir = setup.runDir;
      this.subscribe((m) => dir.publish(m));
    }
    const target = planTarget(config);
    const planned = estimate(target.input, { convention: 'runtime' });
    if (planned.ok) {
      const p = planned.memory.perDevice;
      this.predicted = { params: p.params, grads: p.grads, optimizer: p.optimizer, activations: p.activations, buffers: p.buffers };
    }
    this.arenaBytes = Math.ceil((registeredBytes(config, this.layout) * 1.25 + 48 * 2 ** 20) / 65536) * 65536;
  }

  static async create(setup: ParallelSetup): Promise<ParallelTrainer> {
    const { config } = setup;
    const layout = resolveLayout(config);
    if (config.train.precision !== 'fp32') throw new ParallelError(`train.precision="${config.train.precision}": the local runtime trains in fp32`);
    const shape = gptShape(config.model);
    // Surface data errors here, before any rank starts.
    const data = loadTokens(config.data, setup.baseDir, { vocab: config.model.vocab, seqLen: config.model.seqLen }, config.train.seed, config.train.evalEvery > 0);
    let start: StartFrom = { kind: 'fresh' };
    let resumedFrom: string | undefined;
    let startStep = 0;
    let lastLoss: number | undefined;
    let truncate: number | undefined;
    if (setup.resume) {
      if (!setup.runDir) throw new ParallelError('resume needs a run directory');
      const folder = latestCheckpoint(setup.runDir.checkpoints);
      if (!folder) throw new ParallelError(noCheckpointMessage(setup.runDir.checkpoints));
      const state = readState(folder);
      const diffs = (['layers', 'hidden', 'heads', 'vocab', 'positions', 'ffnHidden'] as const).filter((k) => state.model[k] !== shape[k]);
      if (diffs.length) throw new ParallelError(`${folder} was trained with a different model (${diffs.join(', ')} differ); resume with the run's own config`);
      if (state.optimizer.kind !== config.train.optimizer) throw new ParallelError(`${folder} holds ${state.optimizer.kind} state but train.optimizer is ${config.train.optimizer}`);
      if (isSharded(state) && state.layout.dp === layout.dp && state.layout.tp === layout.tp && state.layout.zero === layout.zero) start = { kind: 'resume-sharded', folder };
      else {
        // Another layout: go through the single-device files (consolidating the shards once if needed).
        if (isSharded(state) && !hasFullFiles(folder)) {
          setup.log?.(`checkpoint ${folder} is sharded for dp=${state.layout.dp} tp=${state.layout.tp} zero=${state.layout.zero}; consolidating it to resume as ${describeParallel(layout)}`);
          consolidate(folder);
        }
        start = { kind: 'resume-full', folder };
      }
      startStep = state.step;
      lastLoss = state.lastLoss;
      truncate = state.metricsBytes;
      setup.runDir.checkTruncation(truncate); // before any rank starts or anything is written
      resumedFrom = folder;
    } else if (setup.initFrom) {
      // Check the folder here (names, shapes) so a bad one fails before the ranks start.
      const specs = new Gpt(shape).paramSpecs();
      if (existsSync(join(setup.initFrom, 'state.json')) && existsSync(join(setup.initFrom, 'model.safetensors'))) readModelTensors(join(setup.initFrom, 'model.safetensors'), specs);
      else loadHfFolder(setup.initFrom, specs, shape);
      start = { kind: 'init', folder: setup.initFrom };
    }
    const t = new ParallelTrainer(setup, start, resumedFrom, startStep, lastLoss);
    if (t.layout.transport === 'threads' && t.world * t.arenaBytes > 4 * 2 ** 30 - 64 * 2 ** 20) {
      throw new ParallelError(
        `the ranks' communication buffers need ${((t.world * t.arenaBytes) / 2 ** 30).toFixed(2)} GiB of shared memory, more than the 4 GiB a worker-thread world can map; ` +
          'use parallel.zero ≥ 2 (gradients partitioned, two staging buckets), or devices.transport "tcp" (one process per rank)',
      );
    }
    t.truncateTo = truncate;
    t.dataDescription = data.description;
    t.prompt = data.val.subarray(0, Math.min(32, data.val.length));
    return t;
  }

  protected get lineSinks() {
    return this.setup;
  }

  requestStop(): void {
    this.stopRequested = true;
    this.channel?.send(0, { k: 'control', action: 'stop' });
  }

  requestCheckpoint(): void {
    this.channel?.send(0, { k: 'control', action: 'checkpoint' });
  }

  get totalSteps(): number {
    return this.setup.config.train.steps;
  }

  /** Which process each rank is (one pid for threads), for the GPU sampler and the dashboard. */
  rankProcesses(): RankProcess[] {
    return Array.from({ length: this.world }, (_, rank) => ({ rank, pid: this.pids.get(rank) ?? process.pid, device: rank }));
  }

  /** Called once every rank has said which process it is. */
  onRanks(listener: (ranks: RankProcess[]) => void): void {
    this.ranksListener = listener;
  }

  private onRank(m: RankToCoordinator): void {
    switch (m.k) {
      case 'hello':
        this.pids.set(m.rank, m.pid);
        if (this.pids.size === this.world) this.ranksListener?.(this.rankProcesses());
        if (m.rank === 0 && this.stopRequested) this.channel?.send(0, { k: 'control', action: 'stop' });
        return;
      case 'progress':
        this.progress.set(m.rank, m.step);
        return;
      case 'timing': {
        const t = this.timings.get(m.step) ?? [];
        t[m.rank] = { stepMs: m.stepMs, exposedCommMs: m.exposedCommMs };
        this.timings.set(m.step, t);
        return;
      }
      case 'msg': {
        const msg = m.m as Message;
        this.publish(msg);
        if (msg.type === 'step') {
          const s = msg as StepMessage;
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
        // A resume cuts metrics.jsonl back to here: rank 0 reports its shard after every message of the step
        // (step, gauges, eval) and before any of the next one's, on the same socket.
        if (m.rank === 0) entry.metricsBytes = this.setup.runDir?.metricsBytes() ?? 0;
        this.saved.set(m.step, entry);
        if (entry.ranks.size === this.world) {
          this.saved.delete(m.step);
          this.commits.push(this.commit(m.step, entry.bytes, entry.metricsBytes));
        }
        return;
      }
    }
  }

  private async commit(step: number, shardBytes: number, metricsBytes: number): Promise<void> {
    const dir = this.setup.runDir!;
    const cfg = this.setup.config;
    this.publish({ type: 'status', state: 'checkpointing', t: now(), step });
    const state: ShardedState = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      step,
      tokens: step * cfg.train.globalBatch * cfg.model.seqLen,
      data: { nextStep: step + 1, description: this.dataDescription },
      rng: { seed: cfg.train.seed },
      optimizer: { ...optimizerHyper(cfg.train), steps: step },
      model: gptShape(cfg.model),
      metricsBytes,
      ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}),
      savedAt: new Date().toISOString(),
      config: cfg,
      layout: { dp: this.layout.dp, tp: this.layout.tp, zero: this.layout.zero, paddedVocab: tpVocab(cfg.model.vocab, this.layout.tp) },
    };
    const tmp = checkpointFolder(tmpCheckpointTemplate(dir.checkpoints, this.nonce), step);
    const { path, bytes } = commitCheckpoint(dir.checkpoints, tmp, state, state.model, cfg.model.dropout);
    this.lastCommitted = step;
    this.publish({ type: 'checkpoint', step, path: relative(dir.path, path), bytes: Math.max(bytes, shardBytes), t: now() });
    this.publish({ type: 'status', state: 'running', t: now(), step });
    this.log(`checkpoint: ${path} (${this.layout.world} shards)`);
  }

  /** Trains to train.steps (or until requestStop) on dp × tp ranks. */
  async run(): Promise<RunResult> {
    const cfg = this.setup.config;
    const t = cfg.train;
    const dir = this.setup.runDir;
    if (this.truncateTo !== undefined) dir?.truncateMetrics(this.truncateTo);
    if (!this.resumedFrom) {
      this.publish({ type: 'hello', protocol: 1, runId: dir?.runId ?? 'run', name: cfg.name, startedAt: now(), world: this.world, config: JSON.parse(JSON.stringify(cfg)), ...(this.setup.plan ? { plan: JSON.parse(JSON.stringify(this.setup.plan)) } : {}) });
    }
    this.publish({ type: 'status', state: 'starting', t: now(), step: this.step, ...(this.resumedFrom ? { reason: `resumed from ${this.resumedFrom}` } : {}) });
    const shape = gptShape(cfg.model);
    const P = new Gpt(shape).paramSpecs().reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    this.log(`parallel: ${describeParallel(this.layout)}; backend ${cfg.devices.backend}`);
    this.log(`model: ${cfg.model.name} GPT-2 ${cfg.model.layers}L h${cfg.model.hidden} a${cfg.model.heads} vocab ${cfg.model.vocab}${this.layout.tp > 1 ? ` (padded to ${tpVocab(cfg.model.vocab, this.layout.tp)})` : ''} seq ${cfg.model.seqLen}, ${P.toLocaleString('en-US')} parameters`);
    this.log(
      `batch: ${t.globalBatch} sequences (${this.layout.dp} dp × ${this.layout.accumulation} × ${t.microBatch}) = ${(t.globalBatch * cfg.model.seqLen).toLocaleString('en-US')} tokens/step; ${t.steps} steps; ${t.optimizer} lr ${t.lr} (${t.schedule}, warm-up ${t.warmupSteps}); recompute ${t.recompute}` +
        (this.resumedFrom ? `; resuming after step ${this.step}` : ''),
    );
    this.publish({ type: 'status', state: 'running', t: now(), step: this.step });
    if (this.step === 0 && this.start.kind === 'fresh') await this.logSample('initial');
    if (dir) removeStaleTemporaries(dir.checkpoints);
    if (!existsSync(RANK_ENTRY)) {
      throw new ParallelError(`${RANK_ENTRY} is missing: a bundle of ScaleLM must emit runtime/parallel/parallel-rank.ts next to the CLI (scripts/build.mjs); from the compiled sources run out/runtime/cli.js`);
    }
    this.channel = await ChannelServer.open((m) => this.onRank(m));
    if (this.stopRequested) this.channel.send(0, { k: 'control', action: 'stop' });
    const args: RankArgs = {
      config: cfg,
      baseDir: this.setup.baseDir,
      start: this.start,
      startStep: this.step,
      channel: this.channel.path,
      ...(dir ? { checkpointTemplate: tmpCheckpointTemplate(dir.checkpoints, this.nonce) } : {}),
      // wasm threads per rank: the cores shared out (a rank's own XNNPACK threads beyond that only contend).
      threads: this.setup.threads ?? Math.max(1, Math.floor(availableParallelism() / this.world)),
      ...(this.predicted ? { predicted: this.predicted } : {}),
      ...(this.setup.faults ? { faults: this.setup.faults } : {}),
      ...(this.setup.returnState ? { returnState: true } : {}),
    };
    // Registered buffers (buckets, ZeRO partitions, TP scratch) live in each rank's comm arena.
    const arenaBytes = this.arenaBytes;
    let result: WorldResult<RankResult>;
    try {
      if (this.layout.transport === 'threads') {
        result = await launchThreadWorld<RankResult>(this.world, RANK_ENTRY, {
          args, arenaBytes, ...(this.setup.timeoutMs ? { timeoutMs: this.setup.timeoutMs } : {}),
          spin: this.world <= availableParallelism() ? 2000 : 0,
        });
      } else {
        result = await launchProcessWorld<RankResult>(this.world, RANK_ENTRY, { args, arenaBytes, ...(this.setup.timeoutMs ? { timeoutMs: this.setup.timeoutMs } : {}) });
      }
    } finally {
      await this.channel.close().catch(() => {});
      this.channel = undefined;
    }
    try {
      await Promise.all(this.commits);
    } catch (e) {
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: `checkpoint: ${(e as Error).message}`, kind: (e as Error).name } });
      throw e;
    }
    if (!result.ok) {
      const err = this.rootCause(result);
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: err.message.slice(0, 16_000), kind: err.name } });
      throw err;
    }
    const r0 = result.results[0]!;
    if (this.setup.returnState) this.finalParams = gatherFinalParams(cfg, this.layout, result.results as RankResult[]);
    if (r0.reason === 'completed' && dir && this.lastCommitted >= 0) await this.logSample(join(dir.checkpoints, `step-${String(this.lastCommitted).padStart(6, '0')}`));
    if (r0.reason === 'stopped') this.publish({ type: 'status', state: 'stopping', t: now(), step: r0.step, reason: 'stop requested' });
    const checkpoint = dir && this.lastCommitted >= 0 ? join(dir.checkpoints, `step-${String(this.lastCommitted).padStart(6, '0')}`) : dir ? latestCheckpoint(dir.checkpoints) : undefined;
    this.publish({ type: 'status', state: 'done', t: now(), step: r0.step, ...(r0.reason === 'stopped' ? { reason: `stopped at step ${r0.step}` } : {}) });
    return { reason: r0.reason, step: r0.step, ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}), ...(checkpoint ? { checkpoint } : {}) };
  }

  /** For text data (and setup.sampleBytes): the model's continuation of the held-out text, like the single-device trainer's. */
  private async logSample(from: 'initial' | string): Promise<void> {
    if (this.setup.config.data.source !== 'text' || !this.setup.sampleBytes) return;
    const { sampleText } = await import('./sample');
    const { readConsolidated } = await import('./checkpoint');
    const params = from === 'initial' ? 'initial' : readConsolidated(from).params;
    const text = await sampleText(this.setup.config, params, this.prompt, this.setup.sampleBytes, this.step);
    const { byteTokenizer } = await import('../train/data');
    this.log(`sample ${this.step ? `after ${this.step} steps` : 'before training'}, continuing «${byteTokenizer.decode(this.prompt).replace(/\n/g, '⏎')}»:\n${text}`);
  }

  /** The failure that started it: a rank's own error rather than the aborts it caused in the others. */
  private rootCause(result: WorldResult<RankResult>): Error {
    const failed = result.errors.map((e, rank) => ({ e, rank })).filter((x): x is { e: Error; rank: number } => x.e !== undefined);
    const own = failed.find((x) => x.e.name !== 'CommAbortedError') ?? failed[0]!;
    const step = this.progress.get(own.rank);
    let message = own.e.message;
    if (!/^rank \d+, step \d+: /.test(message)) message = `rank ${own.rank}${step !== undefined ? `, step ${step}` : ''}: ${message}`;
    const err = new ParallelError(`${message}${this.world > 1 ? ` — the whole run stopped (${this.world} ranks, none left running)` : ''}`);
    // Keep the user-facing class of errors a user can act on (out of memory, bad data, …).
    if (own.e.name && own.e.name !== 'Error' && own.e.name !== 'CommAbortedError') err.name = own.e.name;
    return err;
  }

  dispose(): void {
    this.setup.runDir?.close();
  }
}

/** Bytes of registered (shared) memory a rank allocates: gradient buckets or staging, ZeRO-3 partition and gathers, TP scratch. */
export function registeredBytes(config: RunConfig, layout: ParallelLayout): number {
  const shape = gptShape(config.model);
  const Vp = tpVocab(shape.vocab, layout.tp);
  const specs = localSpecs(new Gpt(shape).paramSpecs(), layout.tp, Vp);
  const flat = new FlatLayout(specs, shape.layers, layout.zero >= 1 ? layout.dp : 1, layout.firstBucketBytes, layout.bucketBytes, (n) => isShardedParam(n, layout.tp));
  let floats = 0;
  if (layout.zero <= 1) floats += flat.buckets.reduce((n, b) => n + b.size, 0);
  else {
    const slots = [0, 0];
    for (const b of flat.buckets) slots[b.index % 2] = Math.max(slots[b.index % 2]!, b.size);
    floats += slots[0]! + slots[1]!;
  }
  if (layout.zero === 3) floats += flat.partition + 2 * Math.max(...flat.units.map((u) => u.padded));
  if (layout.tp > 1) floats += config.train.microBatch * config.model.seqLen * shape.hidden;
  return 4 * floats;
}

/** The full parameters from every rank's returned state (ZeRO-3 partitions, TP shards). */
function gatherFinalParams(config: RunConfig, layout: ParallelLayout, results: RankResult[]): Map<string, Float32Array> {
  const shape = gptShape(config.model);
  const Vp = tpVocab(shape.vocab, layout.tp);
  const fullSpecs = new Gpt(shape).paramSpecs();
  const specs = localSpecs(fullSpecs, layout.tp, Vp);
  const perTp: Map<string, Float32Array>[] = Array.from({ length: layout.tp }, () => new Map());
  const flat = new FlatLayout(specs, shape.layers, layout.zero >= 1 ? layout.dp : 1, 1, 1, (n) => isShardedParam(n, layout.tp));
  const sameBits = (a: Float32Array, b: Float32Array) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  for (const r of results) {
    const mine = perTp[r.coords.tp]!;
    if (r.params && r.coords.dp === 0) for (const [k, v] of Object.entries(r.params)) mine.set(k, v);
  }
  // Replicas must not drift: data-parallel copies (ZeRO 0–2) and tensor-parallel replicated parameters are bit-identical.
  for (const r of results) {
    if (!r.params) continue;
    for (const [k, v] of Object.entries(r.params)) {
      if (!sameBits(v, perTp[r.coords.tp]!.get(k)!)) throw new ParallelError(`${k} differs between data-parallel replicas (rank ${r.rank} vs dp rank 0)`);
      if (!isShardedParam(k, layout.tp) && !sameBits(v, perTp[0]!.get(k)!)) throw new ParallelError(`replicated ${k} differs between tensor-parallel ranks (rank ${r.rank})`);
    }
  }
  for (const r of results) {
    const mine = perTp[r.coords.tp]!;
    if (r.owned) {
      for (const s of specs) if (!mine.has(s.name)) mine.set(s.name, new Float32Array(s.shape.reduce((a, b) => a * b, 1)));
      for (const seg of flat.segments(r.coords.dp)) mine.get(seg.slot.name)!.set(r.owned.subarray(seg.at, seg.at + seg.length), seg.from);
    }
  }
  return new Map(fullSpecs.map((s) => [s.name, joinShards(s.name, s.shape, perTp.map((p) => p.get(s.name)!), layout.tp)]));
}

