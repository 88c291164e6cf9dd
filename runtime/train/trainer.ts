// The single-device training loop: deterministic data, gradient accumulation, clipping by global norm, the
// optimizer and schedule, evaluation, checkpoints, and one protocol message per event to its subscribers
// (the run directory's metrics.jsonl, the metric bus, tests). Per step it measures the bytes held by
// parameters, gradients, optimizer states, saved activations and temporaries, and the step's peak.
import * as tf from '@tensorflow/tfjs-core';
import type { RunConfig } from '../config/types';
import type { StepMessage } from '../../common/protocol';
import { formatBytes } from '../../common/units';
import { activeBackend, initBackend, type BackendInfo } from '../model/backend';
import { disposeForwardState, Gpt, gptShape, type ForwardState } from '../model/gpt';
import type { LayerContext } from '../model/layers';
import { MemoryTracker, type StepMemory } from '../model/memory';
import { ParamStore } from '../model/params';
import { mix, Rng, sampleToken } from '../model/rng';
import { BatchSampler, byteTokenizer, loadTokens, type TokenStream } from './data';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, latestCheckpoint, loadCheckpoint, loadHfFolder, readModelTensors, saveCheckpoint, type SaveHooks } from './checkpoint';
import { GradAccumulator, Optimizer, optimizerHyper } from './optimizer';
import { learningRate } from './schedule';
import { noCheckpointMessage, type RunDir } from './run-dir';
import { RunEvents } from './run-events';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';

export class TrainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainError';
  }
}

export interface TrainerSetup {
  config: RunConfig;
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
  /** wasm threads (default: SCALELM_WASM_THREADS, else one per core up to 4). */
  threads?: number;
  /** For text data: bytes to sample from the trained model at the end of the run (0 or absent: none). */
  sampleBytes?: number;
  /** The planner's prediction for this layout, announced in the run's hello message. */
  plan?: object;
}

export interface StepResult {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  stepMs: number;
  tokensPerSec: number;
  memory: StepMemory;
}

export interface RunResult {
  reason: 'completed' | 'stopped';
  step: number;
  lastLoss?: number;
  checkpoint?: string;
}

export type { MessageListener } from './run-events';

const now = (): number => Date.now();

export class Trainer extends RunEvents {
  readonly model: Gpt;
  readonly params: ParamStore;
  readonly optimizer: Optimizer;
  readonly tracker = new MemoryTracker();
  readonly sampler: BatchSampler;
  readonly evalSampler?: BatchSampler;
  readonly accumulation: number;
  readonly tokensPerStep: number;
  /** Optimizer steps completed. */
  step = 0;
  lastLoss?: number;
  private stopRequested = false;
  private checkpointRequested = false;
  private lastCheckpointStep = -1;
  private resumedFrom?: string;

  private constructor(
    readonly setup: TrainerSetup,
    readonly backend: BackendInfo,
    readonly data: TokenStream,
  ) {
    super();
    const { config } = setup;
    const t = config.train;
    this.model = new Gpt(gptShape(config.model), t.recompute);
    this.tracker.install();
    this.tracker.device = `${backend.label} device 0`;
    this.tracker.capacity = backend.name === 'wasm' || backend.name === 'cpu' ? config.devices.memory : Infinity;
    this.params = new ParamStore(this.model.paramSpecs(), this.tracker);
    this.optimizer = new Optimizer(optimizerHyper(t), this.tracker);
    this.accumulation = t.globalBatch / t.microBatch;
    this.tokensPerStep = t.globalBatch * config.model.seqLen;
    this.sampler = new BatchSampler(data.train, config.model.seqLen, t.seed, 'train');
    if (t.evalEvery > 0) this.evalSampler = new BatchSampler(data.val, config.model.seqLen, t.seed, 'val');
    if (setup.runDir) {
      const dir = setup.runDir;
      this.subscribe((m) => dir.publish(m));
    }
  }

  static async create(setup: TrainerSetup): Promise<Trainer> {
    const { config } = setup;
    const p = config.parallel;
    if (p.dp * p.tp * p.pp !== 1 || p.zero !== 0) {
      throw new TrainError(`parallel.dp=${p.dp}, tp=${p.tp}, pp=${p.pp}, zero=${p.zero}: \`scalelm train\` runs one device for now; set them to 1, 1, 1 and 0 (plan parallel layouts with \`scalelm plan\`)`);
    }
    if (config.train.precision !== 'fp32') throw new TrainError(`train.precision="${config.train.precision}": the local runtime trains in fp32; mixed precision is for planning GPU runs`);
    gptShape(config.model); // refuses non-GPT-2 shapes before anything starts
    const backend = activeBackend() ?? (await initBackend(config.devices.backend, setup.threads !== undefined ? { threads: setup.threads } : {}));
    const data = loadTokens(config.data, setup.baseDir, { vocab: config.model.vocab, seqLen: config.model.seqLen }, config.train.seed, config.train.evalEvery > 0);
    const trainer = new Trainer(setup, backend, data);
    try {
      await trainer.initState();
    } catch (e) {
      trainer.dispose();
      throw e;
    }
    return trainer;
  }

  private async initState(): Promise<void> {
    const { setup } = this;
    const specs = this.params.specs;
    this.tracker.where = { step: 0, phase: 'setup', layer: 'parameters' };
    if (setup.resume) {
      if (!setup.runDir) throw new TrainError('resume needs a run directory');
      const folder = latestCheckpoint(setup.runDir.checkpoints);
      if (!folder) throw new CheckpointError(noCheckpointMessage(setup.runDir.checkpoints));
      const ck = loadCheckpoint(folder, specs, { shape: this.model.shape, optimizer: this.optimizer.hyper.kind });
      for (const [name, v] of ck.params) this.params.setValues(name, v);
      for (const [name, vs] of ck.optimizer) this.optimizer.setState(name, vs.map((v) => tf.tensor(v, this.params.spec(name).shape)));
      this.optimizer.steps = ck.state.optimizer.steps;
      this.step = ck.state.step;
      this.lastCheckpointStep = ck.state.step;
      if (ck.state.lastLoss !== undefined) this.lastLoss = ck.state.lastLoss;
      setup.runDir.truncateMetrics(ck.state.metricsBytes);
      this.resumedFrom = folder;
      return;
    }
    if (setup.initFrom) {
      const dir = setup.initFrom;
      const values = existsSync(join(dir, 'state.json')) && existsSync(join(dir, 'model.safetensors')) ? readModelTensors(join(dir, 'model.safetensors'), specs) : loadHfFolder(dir, specs, this.model.shape);
      for (const [name, v] of values) this.params.setValues(name, v);
    } else this.params.initialize(this.setup.config.train.seed);
    this.optimizer.init(this.params);
  }

  protected get lineSinks() {
    return this.setup;
  }

  /** Ends the run after the current step, with a checkpoint. */
  requestStop(): void {
    this.stopRequested = true;
  }

  /** Writes a checkpoint after the current step. */
  requestCheckpoint(): void {
    this.checkpointRequested = true;
  }

  get totalSteps(): number {
    return this.setup.config.train.steps;
  }

  private context(step: number, micro: number, train: boolean): LayerContext {
    const t = this.setup.config.train;
    return { params: this.params, tracker: this.tracker, seq: this.setup.config.model.seqLen, dropout: train ? this.setup.config.model.dropout : 0, dropoutSeed: mix(t.seed, step, micro, 0xd0) };
  }

  /** One optimizer step: accumulation over micro-batches, clipping, update. */
  async trainStep(): Promise<StepResult> {
    const cfg = this.setup.config;
    const t = cfg.train;
    const step = this.step + 1;
    const lr = learningRate(t, step);
    this.tracker.beginStep(step);
    const t0 = performance.now();
    const grads = new GradAccumulator(this.tracker);
    let lossSum: tf.Scalar | undefined;
    let state: ForwardState | undefined;
    let gradNorm: tf.Scalar | undefined;
    try {
      for (let a = 0; a < this.accumulation; a++) {
        const b = this.sampler.batch(step, a * t.microBatch, t.microBatch);
        const ctx = this.context(step, a, true);
        const tokens = tf.tensor1d(b.tokens, 'int32');
        const targets = tf.tensor1d(b.targets, 'int32');
        const out = this.model.forward(ctx, tokens, targets, true);
        tokens.dispose();
        targets.dispose();
        state = out.state;
        const prev = lossSum;
        lossSum = prev ? (tf.add(prev, out.loss) as tf.Scalar) : out.loss;
        if (prev) {
          prev.dispose();
          out.loss.dispose();
        }
        this.model.backward(ctx, state!, 1 / this.accumulation, grads.add);
        state = undefined;
      }
      this.tracker.where = { step, phase: 'optimizer', layer: 'clip' };
      gradNorm = grads.clipByGlobalNorm(t.gradClip);
      this.tracker.where.layer = 'update';
      this.optimizer.step(this.params, grads.grads, lr);
      const [lossTotal, norm] = await Promise.all([lossSum!.data(), gradNorm.data()]);
      const stepMs = performance.now() - t0;
      const loss = lossTotal[0]! / this.accumulation;
      this.step = step;
      this.lastLoss = loss;
      return { step, loss, lr, gradNorm: norm[0]!, stepMs, tokensPerSec: this.tokensPerStep / (stepMs / 1000), memory: this.tracker.stepMemory() };
    } finally {
      disposeForwardState(state);
      grads.dispose();
      lossSum?.dispose();
      gradNorm?.dispose();
    }
  }

  /** Mean loss over train.evalBatches fixed held-out micro-batches. */
  async evaluate(): Promise<number> {
    if (!this.evalSampler) throw new TrainError('evaluation needs train.evalEvery > 0 (a held-out split)');
    const t = this.setup.config.train;
    let sum: tf.Scalar | undefined;
    for (let i = 0; i < t.evalBatches; i++) {
      const b = this.evalSampler.batch(0, i * t.microBatch, t.microBatch);
      const tokens = tf.tensor1d(b.tokens, 'int32');
      const targets = tf.tensor1d(b.targets, 'int32');
      const { loss } = this.model.forward(this.context(this.step, i, false), tokens, targets, false);
      tokens.dispose();
      targets.dispose();
      const prev = sum;
      sum = prev ? (tf.add(prev, loss) as tf.Scalar) : loss;
      if (prev) {
        prev.dispose();
        loss.dispose();
      }
    }
    const v = (await sum!.data())[0]! / t.evalBatches;
    sum!.dispose();
    return v;
  }

  /**
   * Continues a prompt by sampling `count` tokens (temperature, deterministic for a seed) from the current
   * weights; for text data the result is the decoded bytes. Shows at a glance what the model has learned.
   */
  async sample(prompt: Uint16Array | number[], count: number, temperature = 0.8, seed = this.setup.config.train.seed): Promise<number[]> {
    const rng = new Rng(seed, `sample/${this.step}`);
    const positions = this.model.shape.positions;
    const out = Array.from(prompt);
    if (!out.length) out.push(0);
    for (let i = 0; i < count; i++) {
      const window = out.slice(-positions);
      const tokens = tf.tensor1d(window, 'int32');
      const logits = this.model.nextTokenLogits({ params: this.params, seq: window.length, dropout: 0, dropoutSeed: 0 }, tokens);
      tokens.dispose();
      const values = (await logits.data()) as Float32Array;
      logits.dispose();
      out.push(sampleToken(values, temperature, rng));
    }
    return out.slice(prompt.length || 1);
  }

  /** For text data (and setup.sampleBytes): logs the model's continuation of the held-out text's first line. */
  private async logSample(): Promise<void> {
    if (this.setup.config.data.source !== 'text' || !this.setup.sampleBytes) return;
    const prompt = this.data.val.subarray(0, Math.min(32, this.data.val.length));
    const text = byteTokenizer.decode(await this.sample(prompt, this.setup.sampleBytes)).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\uFFFD]/g, '?'); // no terminal control bytes
    this.log(`sample ${this.step ? `after ${this.step} steps` : 'before training'}, continuing «${byteTokenizer.decode(prompt).replace(/\n/g, '⏎')}»:\n${text}`);
  }

  /** Writes a checkpoint of the current step into the run directory. */
  async checkpoint(hooks: SaveHooks = {}): Promise<string> {
    const dir = this.setup.runDir;
    if (!dir) throw new TrainError('checkpoints need a run directory');
    // A resume truncates metrics.jsonl back to here: what follows belongs to steps after this checkpoint.
    const metricsBytes = dir.metricsBytes();
    this.publish({ type: 'status', state: 'checkpointing', t: now(), step: this.step });
    const params = await this.params.readAll();
    const optimizer = new Map<string, Float32Array[]>();
    for (const [name, ts] of this.optimizer.state) optimizer.set(name, await Promise.all(ts.map(async (x) => (await x.data()) as Float32Array)));
    const cfg = this.setup.config;
    const { path, bytes } = saveCheckpoint(
      dir.checkpoints,
      {
        params,
        optimizer,
        state: {
          format: CHECKPOINT_FORMAT,
          version: CHECKPOINT_VERSION,
          step: this.step,
          tokens: this.step * this.tokensPerStep,
          data: { nextStep: this.step + 1, description: this.data.description },
          rng: { seed: cfg.train.seed },
          optimizer: { ...this.optimizer.hyper, steps: this.optimizer.steps },
          model: this.model.shape,
          metricsBytes,
          ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}),
          savedAt: new Date().toISOString(),
          config: cfg,
        },
      },
      this.params.specs,
      cfg.model.dropout,
      hooks,
    );
    this.lastCheckpointStep = this.step;
    this.publish({ type: 'checkpoint', step: this.step, path: relative(dir.path, path), bytes, t: now() });
    this.publish({ type: 'status', state: 'running', t: now(), step: this.step });
    return path;
  }

  /** Trains to train.steps (or until requestStop), evaluating and checkpointing as configured. */
  async run(): Promise<RunResult> {
    const cfg = this.setup.config;
    const t = cfg.train;
    const dir = this.setup.runDir;
    if (!this.resumedFrom) {
      this.publish({ type: 'hello', protocol: 1, runId: dir?.runId ?? 'run', name: cfg.name, startedAt: now(), world: 1, config: JSON.parse(JSON.stringify(cfg)), ...(this.setup.plan ? { plan: JSON.parse(JSON.stringify(this.setup.plan)) } : {}) });
    }
    this.publish({ type: 'status', state: 'starting', t: now(), step: this.step, ...(this.resumedFrom ? { reason: `resumed from ${this.resumedFrom}` } : {}) });
    this.log(`backend: ${this.backend.label} — ${this.backend.reason}`);
    this.log(`model: ${cfg.model.name} GPT-2 ${cfg.model.layers}L h${cfg.model.hidden} a${cfg.model.heads} vocab ${cfg.model.vocab} seq ${cfg.model.seqLen}, ${this.params.totalElements().toLocaleString('en-US')} parameters; data: ${this.data.description}`);
    this.log(
      `batch: ${t.globalBatch} sequences (${this.accumulation} × ${t.microBatch}) = ${this.tokensPerStep.toLocaleString('en-US')} tokens/step; ${t.steps} steps; ${t.optimizer} lr ${t.lr} (${t.schedule}, warm-up ${t.warmupSteps}); recompute ${t.recompute}` +
        (this.resumedFrom ? `; resuming after step ${this.step}` : ''),
    );
    this.publish({ type: 'status', state: 'running', t: now(), step: this.step });
    if (this.step === 0) await this.logSample();
    let reason: RunResult['reason'] = 'completed';
    try {
      while (this.step < t.steps) {
        // On CPU backends a step never leaves JavaScript; let signals (Ctrl-C), sockets and timers run.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.stopRequested) {
          reason = 'stopped';
          break;
        }
        const r = await this.trainStep();
        this.publish(stepMessage(r, this.step * this.tokensPerStep));
        this.publish({ type: 'memory', rank: 0, t: now(), step: r.step, categories: { params: r.memory.params, grads: r.memory.grads, optimizer: r.memory.optimizer, activations: r.memory.activations, temporaries: r.memory.temporaries }, stepPeak: r.memory.peak, capacity: Number.isFinite(this.tracker.capacity) ? this.tracker.capacity : 0, device: 'cpu:0' });
        this.log(formatStep(r, t.steps), 'info', false);
        if (this.evalSampler && t.evalEvery > 0 && r.step % t.evalEvery === 0) {
          const loss = await this.evaluate();
          this.publish({ type: 'eval', step: r.step, loss });
          this.log(`eval  step ${r.step}: held-out loss ${loss.toFixed(4)}`, 'info', false);
        }
        if (dir && ((t.checkpointEvery > 0 && r.step % t.checkpointEvery === 0) || this.checkpointRequested)) {
          this.checkpointRequested = false;
          const path = await this.checkpoint();
          this.log(`checkpoint: ${path}`);
        }
      }
      if (reason === 'stopped') this.publish({ type: 'status', state: 'stopping', t: now(), step: this.step, reason: 'stop requested' });
      if (reason === 'completed') await this.logSample();
      let checkpoint: string | undefined;
      if (dir && this.lastCheckpointStep !== this.step) {
        checkpoint = await this.checkpoint();
        this.log(`checkpoint: ${checkpoint}`);
      } else if (dir) checkpoint = latestCheckpoint(dir.checkpoints);
      this.publish({ type: 'status', state: 'done', t: now(), step: this.step, ...(reason === 'stopped' ? { reason: `stopped at step ${this.step}` } : {}) });
      return { reason, step: this.step, ...(this.lastLoss !== undefined ? { lastLoss: this.lastLoss } : {}), ...(checkpoint ? { checkpoint } : {}) };
    } catch (e) {
      const err = e as Error;
      this.publish({ type: 'status', state: 'failed', t: now(), step: this.step, error: { message: err.message.slice(0, 16_000) || err.name, kind: err.name } });
      throw e;
    }
  }

  dispose(): void {
    this.params.dispose();
    this.optimizer.dispose();
    this.tracker.dispose();
    this.setup.runDir?.close();
  }
}

export function stepMessage(r: StepResult, tokens: number): StepMessage {
  return {
    type: 'step',
    step: r.step,
    loss: r.loss,
    lr: r.lr,
    gradNorm: r.gradNorm,
    tokensPerSec: r.tokensPerSec,
    stepMs: r.stepMs,
    memory: { params: r.memory.params, grads: r.memory.grads, optimizer: r.memory.optimizer, activations: r.memory.activations, peak: r.memory.peak, temporaries: r.memory.temporaries } as StepMessage['memory'],
    tokens,
  };
}

export function formatStep(r: StepResult, total: number): string {
  const w = String(total).length;
  return (
    `step ${String(r.step).padStart(w)}/${total}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  gnorm ${r.gradNorm.toFixed(3)}  ` +
    `${Math.round(r.tokensPerSec).toLocaleString('en-US')} tokens/s  ${r.stepMs.toFixed(0)} ms  peak ${formatBytes(r.memory.peak, 1)}`
  );
}
