// The coordinator of a run, in the process that owns it (`scalelm train`), the same for every engine: it
// decides where the run starts (fresh, --init-from, or the latest checkpoint in this or another layout),
// starts the ranks through the run's engine (engine.ts), relays what they report over the rank channel —
// rank 0's step and eval records, every rank's memory and communication gauges — to its subscribers
// (the run directory, the RunRecorder, the server), routes stop/checkpoint requests to the ranks, commits
// their checkpoint shards, owns the lifecycle messages (starting … done/failed), and turns the first failure
// of any rank into one error naming the rank, the step and the cause, with no rank left running.
// One device is a world of one: the same path, its rank in a worker thread, so this event loop (and the
// server on it) never waits on a step. It knows no model family: what a checkpoint records about the model,
// how the ranks write it (sharded or full), the start-up lines and text samples come from the engine.
import { randomBytes } from 'node:crypto';
import { join, relative } from 'node:path';
import type { RunConfig } from '../config/types';
import { estimate } from '../planner/estimate';
import { planTarget } from '../planner/target';
import type { JsonObject, Message, PlanSummary, StepMessage } from '../../common/protocol';
import { formatBytes } from '../../common/units';
import { describeSystemError } from '../files';
import type { RankProcess } from '../telemetry/gpu-sampler';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, latestCheckpoint, removeTemporaries, type CheckpointState } from '../train/checkpoint';
import { byteTokenizer, loadTokens } from '../train/data';
import { optimizerHyper } from '../train/optimizer';
import type { RunDir } from '../train/run-dir';
import { noCheckpointMessage } from '../train/run-dir';
import { RunEvents } from '../train/run-events';
import { ChannelServer, type RankReport } from '../parallel/channel';
import { checkpointFolder, commitCheckpoint, commitFullCheckpoint, consolidate, hasFullFiles, isSharded, readState, tmpCheckpointTemplate } from '../parallel/checkpoint';
import { ParallelError, resolveLayout, statusError, type ParallelLayout } from '../parallel/layout';
import { PEER_GONE, rootFailure, type RankFailure } from './failure';
import type { Engine, EngineBackend, RankExit, RankSet, RunDescription, StartFrom } from './engine';

export interface RunSetup {
  config: RunConfig;
  /** The engine that runs the ranks. */
  engine: Engine;
  /** Folder that data.path is relative to. */
  baseDir: string;
  /** Where metrics, logs and checkpoints go; without one nothing is written (tests, benchmarks). */
  runDir?: RunDir;
  /** Continue from the run directory's latest checkpoint. */
  resume?: boolean;
  /** Initial weights from a HuggingFace GPT-2 folder or a ScaleLM checkpoint folder. */
  initFrom?: string;
  /** Called with every human-readable line (the CLI prints them). */
  log?: (line: string) => void;
  /** For text data: bytes to sample from the trained model before and after the run (0 or absent: none). */
  sampleBytes?: number;
  /** The planner's prediction for this layout, announced in the run's hello message. */
  plan?: PlanSummary;
  /** Why this engine runs the run (devices.engine and what was found), announced in the hello. */
  engineReason?: string;
  /** How long a requested stop may take before the ranks are ended (ms; default: the engine's). */
  stopTimeoutMs?: number;
}

/** A failure a rank reported over the channel: its own error line, or its socket closing without `done`. */
type ChannelFailure = RankFailure;

export interface RunResult {
  reason: 'completed' | 'stopped';
  step: number;
  lastLoss?: number;
  checkpoint?: string;
}

const now = (): number => Date.now();

export class Coordinator extends RunEvents {
  readonly layout: ParallelLayout;
  readonly world: number;
  readonly engine: Engine;
  step = 0;
  lastLoss?: number;
  /** Per step, the mean loss over the data-parallel ranks (index 0 = the first step of this run). */
  readonly losses: number[] = [];
  /** Per step, per rank: the step's time and the part spent blocked on communication (benchmarks). */
  readonly timings = new Map<number, { stepMs: number; exposedCommMs: number }[]>();
  private channel?: ChannelServer;
  private ranks?: RankSet;
  private stopRequested = false;
  /** Who asked to stop (recorded in the stopped status). */
  private stopBy: string | undefined;
  private readonly pids = new Map<number, number>();
  private readonly progress = new Map<number, number>();
  /** Ranks that said `done`: their step and why they ended. */
  private readonly finished = new Map<number, { step: number; reason: 'completed' | 'stopped' }>();
  private readonly failures: ChannelFailure[] = [];
  private readonly saved = new Map<number, { ranks: Set<number>; bytes: number; metricsBytes: number }>();
  private readonly commits: Promise<void>[] = [];
  private commitError?: Error;
  private lastCommitted = -1;
  private readonly nonce = randomBytes(4).toString('hex');
  /** The rank channel's per-run secret (SCALELM_CHANNEL_TOKEN). */
  private readonly channelToken = randomBytes(32).toString('hex');
  private readonly predicted?: Record<string, number>;
  /** The engine's account of the model and ranks (state.json, config.json, start-up lines). */
  private readonly described: RunDescription;
  private backendInfo?: EngineBackend;
  private ranksListener?: (ranks: RankProcess[]) => void;

  private constructor(
    readonly setup: RunSetup,
    private readonly start: StartFrom,
    private readonly resumedFrom: string | undefined,
    startStep: number,
    lastLoss: number | undefined,
    private readonly truncateTo: number | undefined,
    private readonly dataDescription: string,
    private readonly prompt: Uint16Array<ArrayBufferLike>,
  ) {
    super();
    const { config } = setup;
    this.engine = setup.engine;
    this.layout = resolveLayout(config);
    this.world = this.layout.world;
    this.step = startStep;
    if (lastLoss !== undefined) this.lastLoss = lastLoss;
    if (setup.runDir) {
      const dir = setup.runDir;
      this.subscribe((m) => dir.publish(m));
    }
    this.described = this.engine.describe(config, this.layout);
    const target = planTarget(config);
    const planned = estimate(target.input, { convention: this.engine.convention });
    if (planned.ok) {
      const p = planned.memory.perDevice;
      this.predicted = { params: p.params, grads: p.grads, optimizer: p.optimizer, activations: p.activations, buffers: p.buffers };
    }
  }

  /** Checks the config against the engine and decides where the run starts; nothing runs yet. */
  static async create(setup: RunSetup): Promise<Coordinator> {
    const { config, engine } = setup;
    const layout = resolveLayout(config);
    engine.check(config, layout);
    const described = engine.describe(config, layout);
    // Surface data errors here, before any rank starts — unless the engine's ranks read (and check) it themselves.
    const data = engine.ranksReadData ? undefined : loadTokens(config.data, setup.baseDir, { vocab: config.model.vocab, seqLen: config.model.seqLen }, config.train.seed, config.train.evalEvery > 0);
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
      const diffs = modelDiffs(state.model, described.model);
      if (diffs.length) throw new ParallelError(`${folder} was trained with a different model (${diffs.join(', ')} differ); resume with the run's own config`);
      if (state.optimizer.kind !== config.train.optimizer) throw new ParallelError(`${folder} holds ${state.optimizer.kind} state but train.optimizer is ${config.train.optimizer}`);
      // The engine's own shards in the same layout are read as they are; anything else goes through the full files.
      if (isSharded(state) && described.checkpoint.kind === 'sharded' && state.layout.dp === layout.dp && state.layout.tp === layout.tp && state.layout.zero === layout.zero)
        start = { kind: 'resume-sharded', folder };
      else {
        // Another layout: go through the single-device files (consolidating the shards once if needed).
        if (isSharded(state) && !hasFullFiles(folder)) {
          setup.log?.(`checkpoint ${folder} is sharded for dp=${state.layout.dp} tp=${state.layout.tp} zero=${state.layout.zero}; consolidating it to resume as ${described.ranksLine}`);
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
      engine.checkInit?.(config, setup.initFrom);
      start = { kind: 'init', folder: setup.initFrom };
    }
    const prompt = data ? data.val.subarray(0, Math.min(32, data.val.length)) : new Uint16Array(0);
    const description = data?.description ?? `${config.data.source} data${config.data.path ? ` ${config.data.path}` : ''}`;
    return new Coordinator(setup, start, resumedFrom, startStep, lastLoss, truncate, description, prompt);
  }

  protected get lineSinks() {
    return this.setup;
  }

  requestStop(by?: string): void {
    const first = !this.stopRequested;
    this.stopRequested = true;
    this.stopBy ??= by;
    this.channel?.send(0, { k: 'control', action: 'stop' });
    if (first) this.armStopTimeout();
  }

  /** Ranks that do not come to a stop in time (stuck in a collective, ignoring the request) are ended. */
  private armStopTimeout(): void {
    const ms = this.setup.stopTimeoutMs ?? this.engine.stopTimeoutMs;
    const ranks = this.ranks;
    if (ms !== undefined && ranks) setTimeout(() => void ranks.kill(`the ranks did not stop within ${ms} ms of the request`), ms).unref();
  }

  requestCheckpoint(): void {
    this.channel?.send(0, { k: 'control', action: 'checkpoint' });
  }

  get totalSteps(): number {
    return this.setup.config.train.steps;
  }

  /** The backend the ranks train on (known once run() has started). */
  get backend(): EngineBackend | undefined {
    return this.backendInfo;
  }

  /** Which process each rank is (one pid for threads), for the GPU sampler and the dashboard. */
  rankProcesses(): RankProcess[] {
    return Array.from({ length: this.world }, (_, rank) => ({ rank, pid: this.pids.get(rank) ?? this.ranks?.pids()[rank] ?? process.pid, device: rank }));
  }

  /** Called once every rank has said which process it is. */
  onRanks(listener: (ranks: RankProcess[]) => void): void {
    this.ranksListener = listener;
  }

  private onRank(m: RankReport): void {
    switch (m.k) {
      case 'hello':
        this.pids.set(m.rank, m.pid);
        this.ranks?.track?.(m.pid);
        if (this.pids.size === this.world) this.ranksListener?.(this.rankProcesses());
        if (m.rank === 0 && this.stopRequested) this.channel?.send(0, { k: 'control', action: 'stop' });
        return;
      case 'progress':
        this.progress.set(m.rank, m.step);
        if (m.sync) this.channel?.send(m.rank, { k: 'ack', step: m.step });
        return;
      case 'error':
        this.progress.set(m.rank, m.step);
        this.fail({ rank: m.rank, message: m.message, ...(m.kind ? { kind: m.kind } : {}), abrupt: false });
        return;
      case 'done':
        this.finished.set(m.rank, { step: m.step, reason: m.reason });
        return;
      case 'timing': {
        const t = this.timings.get(m.step) ?? [];
        t[m.rank] = { stepMs: m.stepMs, exposedCommMs: m.exposedCommMs };
        this.timings.set(m.step, t);
        return;
      }
      case 'msg': {
        const msg: Message = m.m;
        this.publish(msg);
        if (msg.type === 'step') {
          const s = msg as StepMessage;
          this.step = s.step;
          this.lastLoss = s.loss;
          this.losses.push(s.loss);
          this.log(formatStep(s, this.totalSteps), 'info', false);
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
          this.commits.push(
            this.commit(m.step, entry.bytes, entry.metricsBytes).catch((e: Error) => {
              // A checkpoint that cannot be committed ends the run now: going on would lose the steps after it.
              // A file-system error (a run directory turned read-only, a full disk) is said in one sentence.
              const system = describeSystemError(e);
              this.commitError ??= system ? new CheckpointError(system) : e;
              void this.ranks?.kill(`checkpoint of step ${m.step} failed: ${e.message}`);
            }),
          );
        }
        return;
      }
    }
  }

  /** A rank's failure from the channel (the first one starts the engine's grace before the rest are ended). */
  private fail(f: ChannelFailure): void {
    if (this.failures.some((x) => x.rank === f.rank)) return;
    this.failures.push(f);
    const grace = this.engine.failureGraceMs;
    const ranks = this.ranks;
    if (this.failures.length === 1 && grace !== undefined && ranks) setTimeout(() => void ranks.kill(`rank ${f.rank} failed`), grace).unref();
  }

  private async commit(step: number, shardBytes: number, metricsBytes: number): Promise<void> {
    const dir = this.setup.runDir!;
    const cfg = this.setup.config;
    this.publish({ type: 'status', state: 'checkpointing', t: now(), step });
    const state: CheckpointState & { engine: string } = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      engine: this.engine.name,
      step,
      tokens: step * cfg.train.globalBatch * cfg.model.seqLen,
      data: { nextStep: step + 1, description: this.dataDescription },
      rng: { seed: cfg.train.seed },
      optimizer: { ...optimizerHyper(cfg.train), steps: step },
      model: this.described.model,
      metricsBytes,
      ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}),
      savedAt: new Date().toISOString(),
      config: cfg,
    };
    const tmp = checkpointFolder(tmpCheckpointTemplate(dir.checkpoints, this.nonce), step);
    const format = this.described.checkpoint;
    const { path, bytes } =
      format.kind === 'sharded'
        ? commitCheckpoint(dir.checkpoints, tmp, { ...state, layout: format.layout }, state.model, cfg.model.dropout, (f) => f.endsWith(`-${this.nonce}`))
        : commitFullCheckpoint(dir.checkpoints, tmp, state, this.described.hfConfig);
    this.lastCommitted = step;
    this.publish({ type: 'checkpoint', step, path: relative(dir.path, path), bytes: Math.max(bytes, shardBytes), t: now() });
    this.publish({ type: 'status', state: 'running', t: now(), step });
    this.log(`checkpoint: ${path}${format.kind === 'sharded' && this.world > 1 ? ` (${this.world} shards)` : ''}`);
  }

  /** Trains to train.steps (or until requestStop) on the layout's ranks. */
  async run(): Promise<RunResult> {
    const cfg = this.setup.config;
    const t = cfg.train;
    const dir = this.setup.runDir;
    const backend = await this.engine.backend(cfg);
    this.backendInfo = backend;
    if (this.truncateTo !== undefined) dir?.truncateMetrics(this.truncateTo);
    if (!this.resumedFrom) {
      this.publish({
        type: 'hello',
        protocol: 1,
        runId: dir?.runId ?? 'run',
        name: cfg.name,
        startedAt: now(),
        world: this.world,
        config: JSON.parse(JSON.stringify(cfg)),
        ...(this.setup.plan ? { plan: JSON.parse(JSON.stringify(this.setup.plan)) as JsonObject } : {}),
        engine: { name: this.engine.name, reason: (this.setup.engineReason ?? `devices.engine is "${cfg.devices.engine}"`).slice(0, 16_000) },
        backend: { name: backend.name, label: backend.label, reason: backend.reason.slice(0, 16_000) },
      });
    }
    this.publish({ type: 'status', state: 'starting', t: now(), step: this.step, ...(this.resumedFrom ? { reason: `resumed from ${this.resumedFrom}` } : {}) });
    this.logStartup(backend);
    this.publish({ type: 'status', state: 'running', t: now(), step: this.step });
    if (this.step === 0 && this.start.kind === 'fresh') await this.logSample('initial');
    if (dir) removeTemporaries(dir.checkpoints);
    this.channel = await ChannelServer.open((m) => this.onRank(m), {
      world: this.world,
      token: this.channelToken,
      onReject: (reason) => this.log(reason, 'warn'),
      onDisconnect: (rank) => {
        if (!this.finished.has(rank)) this.fail({ rank, message: 'its process ended before the run finished', abrupt: true });
      },
    });
    if (this.stopRequested) this.channel.send(0, { k: 'control', action: 'stop' });
    let exits: RankExit[];
    try {
      this.ranks = await this.engine.start({
        config: cfg,
        layout: this.layout,
        baseDir: this.setup.baseDir,
        ...(dir ? { runDir: dir.path, checkpointTemplate: tmpCheckpointTemplate(dir.checkpoints, this.nonce) } : {}),
        channel: { address: this.channel.address, token: this.channel.token },
        start: this.start,
        startStep: this.step,
        ...(this.predicted ? { predicted: this.predicted } : {}),
        output: (line, stream) => {
          if (!line.trim()) return;
          if (stream === 'stderr') dir?.log(line);
          else this.setup.log?.(line);
        },
      });
      if (this.stopRequested) this.armStopTimeout();
      exits = await this.ranks.exited;
    } catch (e) {
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: statusError(e as Error) });
      throw e;
    } finally {
      await this.channel.close().catch(() => {});
      this.channel = undefined;
    }
    await Promise.all(this.commits);
    if (this.commitError) {
      const e = this.commitError;
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: `checkpoint: ${e.message}`, kind: e.name } });
      throw e;
    }
    // A rank that ended without saying `done` (or said why it failed) failed, whatever its exit said.
    if (exits.some((x) => !x.ok) || this.failures.length || this.finished.size < this.world) {
      const err = this.rootCause(exits);
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: statusError(err) });
      throw err;
    }
    // Every rank ended well: rank 0 said which step it reached; a stop ends before train.steps.
    const step = this.finished.get(0)?.step ?? this.step;
    const reason: RunResult['reason'] = step < t.steps ? 'stopped' : 'completed';
    if (reason === 'completed' && dir && this.lastCommitted >= 0) await this.logSample(join(dir.checkpoints, `step-${String(this.lastCommitted).padStart(6, '0')}`));
    if (reason === 'stopped') this.publish({ type: 'status', state: 'stopping', t: now(), step, reason: 'stop requested', ...(this.stopBy ? { by: this.stopBy } : {}) });
    const checkpoint = dir && this.lastCommitted >= 0 ? join(dir.checkpoints, `step-${String(this.lastCommitted).padStart(6, '0')}`) : dir ? latestCheckpoint(dir.checkpoints) : undefined;
    this.publish({
      type: 'status',
      state: reason === 'stopped' ? 'stopped' : 'finished',
      t: now(),
      step,
      ...(reason === 'stopped' ? { reason: `stopped at step ${step}`, ...(this.stopBy ? { by: this.stopBy } : {}) } : {}),
    });
    return { reason, step, ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}), ...(checkpoint ? { checkpoint } : {}) };
  }

  /** The run's start-up report: backend, layout, model, batch. */
  private logStartup(backend: EngineBackend): void {
    const cfg = this.setup.config;
    const t = cfg.train;
    const L = this.layout;
    this.log(`backend: ${backend.label} — ${backend.reason}`);
    this.log(`parallel: ${this.described.ranksLine}; engine: ${this.engine.name}`);
    this.log(`model: ${this.described.modelLine}; data: ${this.dataDescription}`);
    this.log(
      `batch: ${t.globalBatch} sequences (${L.dp > 1 ? `${L.dp} dp × ` : ''}${L.accumulation} × ${t.microBatch}) = ${(t.globalBatch * cfg.model.seqLen).toLocaleString('en-US')} tokens/step; ${t.steps} steps; ${t.optimizer} lr ${t.lr} (${t.schedule}, warm-up ${t.warmupSteps}); recompute ${t.recompute}` +
        (this.resumedFrom ? `; resuming after step ${this.step}` : ''),
    );
  }

  /** For text data (and setup.sampleBytes): the model's continuation of the held-out text, before training and after it completes. */
  private async logSample(from: 'initial' | string): Promise<void> {
    if (this.setup.config.data.source !== 'text' || !this.setup.sampleBytes || !this.engine.sample) return;
    const text = await this.engine.sample(this.setup.config, from, this.prompt, this.setup.sampleBytes, this.step);
    this.log(`sample ${this.step ? `after ${this.step} steps` : 'before training'}, continuing «${byteTokenizer.decode(this.prompt).replace(/\n/g, '⏎')}»:\n${text}`);
  }

  /**
   * The failure that started it, as one error naming the rank and step: a rank's own error (from its exit,
   * then from its error line) rather than the aborts it caused in the others, then a rank that vanished, then
   * what the launcher saw.
   */
  private rootCause(exits: RankExit[]): Error {
    const failed = exits.map((x, rank) => ({ e: x.error, rank })).filter((x): x is { e: Error; rank: number } => x.e !== undefined);
    const ownExit = failed.find((x) => x.e.name !== 'CommAbortedError');
    const ownLine = this.failures.find((f) => !f.abrupt && !PEER_GONE.test(f.message));
    const line = ownLine ?? (failed.length ? undefined : rootFailure(this.failures));
    const report = this.ranks?.launcherReport?.();
    const at = (rank: number) => `rank ${rank}${this.progress.has(rank) ? `, step ${this.progress.get(rank)}` : ''}`;
    let message: string;
    let name: string | undefined;
    /** The rank whose own error (or disappearance) ended the run: the failed status carries it. */
    let rank: number | undefined;
    if (ownExit || (failed[0] && !ownLine)) {
      const own = (ownExit ?? failed[0])!;
      rank = own.rank;
      message = own.e.message;
      if (!/^rank \d+, step \d+: /.test(message)) message = `${at(own.rank)}: ${message}`;
      // Keep the user-facing class of errors a user can act on (out of memory, bad data, …).
      if (own.e.name && own.e.name !== 'Error' && own.e.name !== 'CommAbortedError') name = own.e.name;
    } else if (line) {
      const said = line.kind && !line.message.startsWith(`${line.kind}:`) ? `${line.kind}: ${line.message}` : line.message;
      rank = line.rank;
      message = `${at(line.rank)}: ${said}`;
      // A line that does not say why (a vanished rank) gets the cause lines of the ranks' stderr.
      if (report?.cause && !/Error|Traceback/.test(line.message)) message += `\n${report.cause}`;
    } else if (report) {
      const cause = report.cause ? `:\n${report.cause}` : '';
      message =
        this.pids.size < this.world
          ? `${report.launcher} ended (${report.ended}) before every rank had joined the run (${this.pids.size} of ${this.world})${cause}`
          : `${report.launcher} ended with ${report.ended}${cause}`;
    } else {
      rank = Math.max(
        0,
        exits.findIndex((x) => !x.ok),
      );
      message = `${at(rank)}: ${exits.some((x) => !x.ok) ? 'a rank failed without saying why' : 'it ended without saying it was done'}`;
    }
    const err = new ParallelError(`${message}${this.world > 1 ? ` — the whole run stopped (${this.world} ranks, none left running)` : ''}`, rank);
    if (name) err.name = name;
    return err;
  }

  dispose(): void {
    void this.ranks?.kill('the run was disposed');
    this.setup.runDir?.close();
  }
}

/** The model keys (either side's) in which a checkpoint's state.json differs from this run's model. */
function modelDiffs(stored: object, ours: object): string[] {
  const a = stored as Record<string, unknown>;
  const b = ours as Record<string, unknown>;
  return [...new Set([...Object.keys(b), ...Object.keys(a)])].filter((k) => a[k] !== b[k]);
}

/** The line a step prints. */
export function formatStep(s: StepMessage, total: number): string {
  const w = String(total).length;
  return (
    `step ${String(s.step).padStart(w)}/${total}  loss ${s.loss.toFixed(4)}  lr ${s.lr.toExponential(2)}  gnorm ${s.gradNorm.toFixed(3)}  ` +
    `${Math.round(s.tokensPerSec).toLocaleString('en-US')} tokens/s  ${s.stepMs.toFixed(0)} ms  peak ${formatBytes(s.memory.peak, 1)}`
  );
}
