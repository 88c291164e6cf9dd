// One rank of a data × tensor parallel run with ZeRO 0–3: its shard of the model, its data, its gradient
// reduction and optimizer partition, and its measured memory. How a step runs on a rank:
//   for each micro-batch: forward (TP all-reduces inside the layers; ZeRO-3 gathers each unit first),
//     backward (TP all-reduces; each gradient goes to its bucket, full buckets reduce asynchronously),
//   one world all-reduce of [loss, Σg², stop, checkpoint] (global norm across TP shards and ZeRO partitions),
//   the update of this rank's partition (clipped), then ZeRO 1/2 all-gather the new parameters.
// What the rank starts from (fresh, init weights, a checkpoint) is loaded by resume.ts.
import * as tf from '@tensorflow/tfjs-core';
import type { Comm, ProcessGroup } from '../comm/comm';
import type { RunConfig } from '../config/types';
import { activeBackend, initBackend, type BackendInfo } from '../model/backend';
import { Gpt, gptShape, disposeForwardState, NO_HOOKS, type ForwardState, type GptShape, type UnitHooks } from '../model/gpt';
import type { LayerContext } from '../model/layers';
import { MemoryTracker, type StepMemory } from '../model/memory';
import { ParamStore, type ParamSource, type ParamSpec } from '../model/params';
import { mix } from '../model/rng';
import { setHostIds } from '../model/tp-layers';
import { BatchSampler, loadTokens, type TokenStream } from '../train/data';
import { clipCoefficient, GradAccumulator, Optimizer, optimizerHyper, stateSlots, sumSquares, updateRange, type OptimizerHyper } from '../train/optimizer';
import { learningRate } from '../train/schedule';
import { FlatLayout, type Segment } from './flat';
import { GradReducer, type CommTimer } from './grads';
import { ParallelError, resolveLayout, type ParallelLayout } from './layout';
import { loadStart } from './resume';
import { CommTensorGroup } from './tensor-group';
import { readFloats, tensorFromHost } from './tensor-io';
import { Zero3Params } from './zero3';

import type { StartFrom } from '../coordinator/engine';
export type { StartFrom } from '../coordinator/engine';

export interface EngineOptions {
  config: RunConfig;
  baseDir: string;
  start: StartFrom;
  /** Optimizer steps already taken (resume). */
  optimizerSteps?: number;
  threads?: number;
}

/** A step computed (forward, backward, gradients reduced) but not yet applied. */
export interface ComputedStep {
  step: number;
  /** performance.now() at the step's start. */
  t0: number;
  /** Σ of this rank's micro-batch losses (float32). */
  lossSum: number;
}

export interface StepOutcome {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  stepMs: number;
  memory: StepMemory;
  /** Summed over the world: some rank asked to stop — this step was computed but not applied (no update). */
  stop: boolean;
  checkpoint: boolean;
  /** ms this rank waited on communication during the step. */
  exposedCommMs: number;
}

/** Test hooks: make a rank misbehave on purpose. */
export interface Faults {
  /** This (global) rank sees other tokens than its tensor-parallel peers. */
  corruptDataRank?: number;
}

export class RankEngine {
  readonly layout: ParallelLayout;
  readonly shape: GptShape;
  readonly tracker = new MemoryTracker();
  /** GPT-2 with this rank's tensor-parallel layers (at tp = 1, the single-device model itself). */
  readonly model: Gpt;
  readonly flat: FlatLayout;
  readonly mine: Segment[];
  readonly tpGroup: CommTensorGroup;
  readonly tp: ProcessGroup;
  readonly dp: ProcessGroup;
  readonly coords: { tp: number; dp: number };
  readonly hyper: OptimizerHyper;
  readonly reducer: GradReducer;
  readonly params: ParamStore | undefined;
  readonly zero3: Zero3Params | undefined;
  /** Optimizer state over this rank's partition, in stateSlots order. */
  readonly state: Float32Array[];
  readonly sampler: BatchSampler;
  readonly evalSampler: BatchSampler | undefined;
  readonly timer: CommTimer = { exposedMs: 0 };
  /** Full (unsharded) parameter specs, in the single-device order. */
  readonly fullSpecs: ParamSpec[];
  readonly paddedVocab: number;
  optimizerSteps = 0;
  faults: Faults = {};
  /** Made by alone(): dispose closes the comm too. */
  private ownsComm = false;
  private readonly specs: ParamSpec[];

  private constructor(
    readonly comm: Comm,
    readonly options: EngineOptions,
    readonly backend: BackendInfo,
    readonly data: TokenStream,
    mesh: { tp: ProcessGroup; dp: ProcessGroup; coords: { tp: number; dp: number } },
  ) {
    const { config } = options;
    this.layout = resolveLayout(config);
    this.shape = gptShape(config.model);
    this.tp = mesh.tp;
    this.dp = mesh.dp;
    this.coords = mesh.coords;
    this.tracker.install();
    this.tracker.device = `rank ${comm.rank} (${backend.label}, tp ${this.coords.tp}, dp ${this.coords.dp})`;
    this.tracker.capacity = backend.name === 'wasm' || backend.name === 'cpu' ? config.devices.memory : Infinity;
    this.tracker.where = { step: 0, phase: 'setup', layer: 'parameters' };
    this.hyper = optimizerHyper(config.train);
    this.tpGroup = new CommTensorGroup(comm, this.tp, this.tracker, this.timer);
    this.model = new Gpt(this.shape, config.train.recompute, this.tpGroup);
    this.paddedVocab = this.model.paddedVocab;
    this.fullSpecs = new Gpt(this.shape, config.train.recompute).paramSpecs();
    this.specs = this.model.paramSpecs();
    const L = this.layout;
    this.flat = new FlatLayout(this.model.units(), L.zero >= 1 ? L.dp : 1, L.firstBucketBytes, L.bucketBytes);
    this.mine = this.flat.segments(L.zero >= 1 ? this.coords.dp : 0);
    this.sampler = new BatchSampler(data.train, config.model.seqLen, config.train.seed, 'train');
    if (config.train.evalEvery > 0) this.evalSampler = new BatchSampler(data.val, config.model.seqLen, config.train.seed, 'val');
    if (L.tp > 1) this.tpGroup.reserve(config.train.microBatch * config.model.seqLen * this.shape.hidden);
    if (L.zero === 3) {
      const owned = comm.alloc(this.flat.partition);
      owned.fill(0);
      this.tracker.hold('params', 4 * this.flat.partition);
      this.zero3 = new Zero3Params(comm, this.dp, this.flat, owned, this.tracker, this.timer);
      this.params = undefined;
    } else {
      this.params = new ParamStore(this.specs, this.tracker);
      this.zero3 = undefined;
    }
    this.state = stateSlots(this.hyper.kind).map(() => new Float32Array(this.flat.partition));
    this.tracker.hold('optimizer', 4 * this.flat.partition * this.state.length);
    this.reducer = new GradReducer(comm, this.dp, this.flat, L.zero, this.tracker, this.timer);
  }

  static async create(comm: Comm, options: EngineOptions): Promise<RankEngine> {
    const { config } = options;
    const layout = resolveLayout(config);
    if (layout.world !== comm.size) throw new ParallelError(`the layout needs ${layout.world} ranks but the world has ${comm.size}`);
    const backend = activeBackend() ?? (await initBackend(config.devices.backend, options.threads !== undefined ? { threads: options.threads } : {}));
    if (backend.name === 'webgpu' && (layout.world > 1 || layout.zero > 0))
      throw new ParallelError(
        'devices.backend="webgpu": the parallel engine reads tensors synchronously for its collectives, which WebGPU in Node cannot; use wasm or cpu when dp·tp > 1 or with ZeRO',
      );
    const mesh = comm.mesh({ tp: layout.tp, pp: 1 });
    const data = loadTokens(config.data, options.baseDir, { vocab: config.model.vocab, seqLen: config.model.seqLen }, config.train.seed, config.train.evalEvery > 0);
    const engine = new RankEngine(comm, options, backend, data, { tp: mesh.tp, dp: mesh.dp, coords: { tp: mesh.coords.tp, dp: mesh.coords.dp } });
    try {
      engine.initState();
      if (backend.name === 'webgpu') engine.onDevice = engine.deviceOptimizer();
    } catch (e) {
      engine.dispose();
      throw e;
    }
    return engine;
  }

  /**
   * WebGPU in Node has no synchronous reads, which the host-side step (gradient buckets, the update over
   * flat ranges) needs: on one device it steps on the device instead — gradients summed as tensors, clipped
   * and updated by the same optimizer's tensor form (train/optimizer.ts) — and reads back only at a
   * checkpoint. Every other backend and layout takes computeStep/finishStep.
   */
  onDevice: Optimizer | undefined;

  private deviceOptimizer(): Optimizer {
    const opt = new Optimizer(this.hyper, this.tracker);
    for (const spec of this.specs) {
      const slots = this.state.map(() => new Float32Array(spec.shape.reduce((a, b) => a * b, 1)));
      for (const s of this.segmentsOf(spec.name)) slots.forEach((v, i) => v.set(this.state[i]!.subarray(s.at, s.at + s.length), s.from));
      opt.setState(
        spec.name,
        slots.map((v) => tf.tensor(v, spec.shape)),
      );
    }
    opt.steps = this.optimizerSteps;
    return opt;
  }

  /** One step on the device (see onDevice); asynchronous reads only. */
  async stepOnDevice(step: number, ask: { stop?: boolean; checkpoint?: boolean } = {}): Promise<StepOutcome> {
    const t = this.options.config.train;
    const A = this.layout.accumulation;
    const opt = this.onDevice!;
    this.tracker.beginStep(step);
    const t0 = performance.now();
    const grads = new GradAccumulator(this.tracker);
    let lossSum: tf.Scalar | undefined;
    let state: ForwardState | undefined;
    let norm: tf.Scalar | undefined;
    try {
      for (let a = 0; a < A; a++) {
        const b = this.batch(step, a);
        const ctx = this.context(step, a, true);
        const tokens = tf.tensor1d(b.tokens, 'int32');
        const targets = tf.tensor1d(b.targets, 'int32');
        const out = this.model.forward(ctx, tokens, targets, true);
        tokens.dispose();
        targets.dispose();
        state = out.state;
        const prev = lossSum;
        lossSum = prev ? (tf.add(prev, out.loss) as tf.Scalar) : out.loss;
        if (prev) tf.dispose([prev, out.loss]);
        this.model.backward(ctx, state!, 1 / A, grads.add);
        state = undefined;
      }
      this.tracker.where = { step, phase: 'optimizer', layer: 'clip' };
      norm = grads.clipByGlobalNorm(t.gradClip);
      this.tracker.where.layer = 'update';
      // As on the host path: a stop asked before this step discards it.
      if (!ask.stop) {
        opt.step(this.params!, grads.grads, learningRate(t, step));
        this.optimizerSteps = opt.steps;
      }
      const [loss, gradNorm] = await Promise.all([lossSum!.data(), norm.data()]);
      return {
        step,
        loss: loss[0]! / A,
        lr: learningRate(t, step),
        gradNorm: gradNorm[0]!,
        stepMs: performance.now() - t0,
        memory: this.tracker.stepMemory(),
        stop: Boolean(ask.stop),
        checkpoint: Boolean(ask.checkpoint),
        exposedCommMs: 0,
      };
    } finally {
      disposeForwardState(state);
      grads.dispose();
      lossSum?.dispose();
      norm?.dispose();
    }
  }

  /**
   * A world of one in this thread, driven step by step by the caller (tests and benchmarks that look
   * inside a step: measured memory, the exact batches, the weights between steps). Training runs go
   * through the coordinator, which starts the same rank in a worker thread.
   */
  static async alone(options: EngineOptions): Promise<RankEngine> {
    const layout = resolveLayout(options.config);
    if (layout.world !== 1) throw new ParallelError(`RankEngine.alone runs a world of one; this layout has ${layout.world} ranks`);
    const { arenaBytes } = await import('./local-engine');
    const { ShmBackend } = await import('../comm/shm-backend');
    const { createShmWorld } = await import('../comm/shm-world');
    const { Comm: CommClass } = await import('../comm/comm');
    const comm = new CommClass(new ShmBackend(createShmWorld(1, { arenaBytes: arenaBytes(options.config, layout) }), 0, { spin: 0 }));
    try {
      const engine = await RankEngine.create(comm, options);
      engine.ownsComm = true;
      return engine;
    } catch (e) {
      comm.close();
      throw e;
    }
  }

  /** The ParamSource the layers read: the store, or ZeRO-3's gathered units. */
  private source(): ParamSource {
    return this.zero3 ?? this.params!;
  }

  private hooks(): UnitHooks {
    return this.zero3 ?? NO_HOOKS;
  }

  // ---- initial state ----------------------------------------------------------------------------------

  private initState(): void {
    const { start, config } = this.options;
    const target = {
      layout: this.layout,
      coords: this.coords,
      shape: this.shape,
      fullSpecs: this.fullSpecs,
      specs: this.specs,
      paddedVocab: this.paddedVocab,
      optimizer: this.hyper.kind,
      params: this.params,
      owned: this.zero3?.owned,
      state: this.state,
      segmentsOf: (name: string) => this.segmentsOf(name),
    };
    this.optimizerSteps = loadStart(target, start, config.train.seed, this.options.optimizerSteps ?? 0);
  }

  /** This rank's partition segments of one parameter. */
  private segmentsOf(name: string): Segment[] {
    return this.mine.filter((s) => s.slot.name === name);
  }

  // ---- one step -----------------------------------------------------------------------------------------

  private context(step: number, micro: number, train: boolean): LayerContext {
    const { config } = this.options;
    return { params: this.source(), tracker: this.tracker, seq: config.model.seqLen, dropout: train ? config.model.dropout : 0, dropoutSeed: mix(config.train.seed, step, micro, 0xd0) };
  }

  /** The rows of step `step`'s global batch that micro-batch `a` of this data-parallel rank trains on. */
  private batch(step: number, a: number): { tokens: Int32Array; targets: Int32Array } {
    const t = this.options.config.train;
    const perRank = t.globalBatch / this.layout.dp;
    const b = this.sampler.batch(step, this.coords.dp * perRank + a * t.microBatch, t.microBatch);
    if (this.faults.corruptDataRank === this.comm.rank) b.tokens[0] = (b.tokens[0]! + 1) % this.shape.vocab;
    return b;
  }

  /** Ranks of one tensor-parallel group must see identical tokens (DeepSpeed's guard): a mismatch is an error. */
  private checkSameData(tokens: Int32Array, targets: Int32Array, step: number, micro: number): void {
    if (this.layout.tp === 1) return;
    const h = new Float32Array(4);
    const hash = (a: Int32Array) => {
      let x = 0x811c9dc5;
      for (let i = 0; i < a.length; i++) x = Math.imul(x ^ a[i]!, 0x01000193);
      return (x >>> 8) & 0xffffff; // exact in float32
    };
    h[0] = hash(tokens);
    h[1] = -h[0];
    h[2] = hash(targets);
    h[3] = -h[2];
    this.tp.allReduce(h, 'max');
    if (h[0] !== -h[1] || h[2] !== -h[3]) {
      throw new ParallelError(
        `data mismatch inside tensor-parallel group ${this.tp.name} at step ${step}, micro-batch ${micro}: its ranks were given different tokens (every rank of a TP group must train on the same rows)`,
      );
    }
  }

  /**
   * One optimizer step. `ask`: this rank's requests (stop, checkpoint), summed over the world in the
   * step's single scalar all-reduce so every rank acts on the same step.
   */
  trainStep(step: number, ask: { stop?: boolean; checkpoint?: boolean } = {}): StepOutcome {
    return this.finishStep(this.computeStep(step), ask);
  }

  /**
   * The first part of a step: forward and backward over this rank's micro-batches, gradients reduced.
   * Between it and finishStep the caller may wait for the step's requests (rank 0 waits for the
   * coordinator's ack while nothing is left to compute).
   */
  computeStep(step: number): ComputedStep {
    const A = this.layout.accumulation;
    this.tracker.beginStep(step);
    this.timer.exposedMs = 0;
    const t0 = performance.now();
    let state: ForwardState | undefined;
    let lossSum = 0;
    this.reducer.beginStep();
    try {
      for (let a = 0; a < A; a++) {
        const b = this.batch(step, a);
        this.checkSameData(b.tokens, b.targets, step, a);
        const ctx = this.context(step, this.coords.dp * A + a, true);
        const tokens = tf.tensor1d(b.tokens, 'int32');
        const targets = tf.tensor1d(b.targets, 'int32');
        setHostIds(tokens, b.tokens);
        setHostIds(targets, b.targets);
        this.zero3?.begin(this.model.unitSchedule(true));
        const out = this.model.forward(ctx, tokens, targets, true, this.hooks());
        tokens.dispose();
        targets.dispose();
        state = out.state;
        lossSum = Math.fround(lossSum + readFloats(out.loss)[0]!); // float32, as a sum of loss tensors
        out.loss.dispose();
        this.reducer.beginMicro(a, a === A - 1);
        this.model.backward(ctx, state!, 1 / A, this.reducer.sink, this.hooks());
        state = undefined;
        this.reducer.endMicro();
      }
      return { step, t0, lossSum };
    } finally {
      disposeForwardState(state);
    }
  }

  /** The rest of a step: the world's scalar all-reduce (with this rank's requests), clipping, the update. */
  finishStep(computed: ComputedStep, ask: { stop?: boolean; checkpoint?: boolean } = {}): StepOutcome {
    const { step, t0, lossSum } = computed;
    const t = this.options.config.train;
    const A = this.layout.accumulation;
    const lr = learningRate(t, step);
    this.tracker.where = { step, phase: 'optimizer', layer: 'clip' };
    // One scalar all-reduce over the world: the mean loss over dp, Σg² over TP shards and ZeRO
    // partitions (replicated parameters counted once), and the ranks' requests.
    const tpLead = this.coords.tp === 0;
    const partitioned = this.layout.zero >= 1;
    let sq = 0;
    if (partitioned || this.coords.dp === 0) {
      for (const s of this.mine) {
        if (!s.slot.sharded && !tpLead) continue;
        const [g, at] = this.reducer.gradOf(s);
        sq += sumSquares(g, at, s.length);
      }
    }
    const scalars = new Float32Array([tpLead ? lossSum / A / this.layout.dp : 0, sq, ask.stop ? 1 : 0, ask.checkpoint ? 1 : 0]);
    this.comm.world.allReduce(scalars, 'sum');
    const gradNorm = Math.sqrt(scalars[1]!);
    const coef = clipCoefficient(gradNorm, t.gradClip);
    this.tracker.where.layer = 'update';
    // A stop asked before this step was agreed discards it: every rank ends on the step before, as asked.
    if (scalars[2]! === 0) this.update(lr, coef);
    if (this.zero3 && this.zero3.live().length) throw new Error(`ZeRO-3: ${this.zero3.live().join(', ')} still gathered after the step`);
    const stepMs = performance.now() - t0;
    return {
      step,
      loss: scalars[0]!,
      lr,
      gradNorm,
      stepMs,
      memory: this.tracker.stepMemory(),
      stop: scalars[2]! > 0,
      checkpoint: scalars[3]! > 0,
      exposedCommMs: this.timer.exposedMs,
    };
  }

  /** Updates this rank's partition; ZeRO 0–2 rebuild the parameter tensors, ZeRO-3 updates its partition in place. */
  private update(lr: number, coef: number): void {
    const step = ++this.optimizerSteps;
    const [s0, s1] = this.state as [Float32Array, Float32Array | undefined];
    const args = (decay: boolean) => ({ lr, step, coef, decay });
    const zero = this.layout.zero;
    if (zero === 3) {
      const owned = this.zero3!.owned;
      for (const s of this.mine) {
        const [g, gAt] = this.reducer.gradOf(s);
        updateRange(this.hyper, args(s.slot.decay), owned, s.at, owned, s.at, g, gAt, s0, s1, s.at, s.length);
      }
      return;
    }
    const params = this.params!;
    if (zero === 0) {
      // Every rank holds every gradient (all-reduced): each updates the whole model, identically.
      let i = 0;
      while (i < this.mine.length) {
        const slot = this.mine[i]!.slot;
        const out = new Float32Array(slot.numel);
        const p = readFloats(params.get(slot.name));
        for (; i < this.mine.length && this.mine[i]!.slot === slot; i++) {
          const s = this.mine[i]!;
          const [g, gAt] = this.reducer.gradOf(s);
          updateRange(this.hyper, args(slot.decay), p, s.from, out, s.from, g, gAt, s0, s1, s.at, s.length);
        }
        params.set(slot.name, tensorFromHost(out, slot.shape));
      }
      return;
    }
    // ZeRO 1/2: update the partition into this rank's span of each bucket, all-gather, unpack into tensors.
    const k = this.coords.dp;
    this.reducer.gatherParams(
      (b, buf) => {
        for (const s of this.flat.bucketSegments(k, b)) {
          const [g, gAt] = this.reducer.gradOf(s);
          const p = readFloats(params.get(s.slot.name));
          updateRange(this.hyper, args(s.slot.decay), p, s.from, buf, k * b.part + (s.at - b.partOffset), g, gAt, s0, s1, s.at, s.length);
        }
      },
      (b, buf) => {
        for (const u of b.units) {
          for (const slot of this.flat.units[u]!.slots) {
            const v = new Float32Array(slot.numel);
            for (const [from, n, to] of slot.toBucket) v.set(buf.subarray(to, to + n), from);
            params.set(slot.name, tensorFromHost(v, slot.shape));
          }
        }
      },
    );
  }

  /** Mean held-out loss over train.evalBatches micro-batches, shared out over the data-parallel ranks. */
  evaluate(step: number): number {
    if (!this.evalSampler) throw new ParallelError('evaluation needs train.evalEvery > 0');
    const t = this.options.config.train;
    const dp = this.layout.dp;
    // Every rank runs the same number of passes (ZeRO-3 gathers are collective); extras count for nothing.
    const passes = Math.ceil(t.evalBatches / dp);
    let sum = 0;
    for (let k = 0; k < passes; k++) {
      const i = this.coords.dp + k * dp;
      const b = this.evalSampler.batch(0, (i % t.evalBatches) * t.microBatch, t.microBatch);
      const tokens = tf.tensor1d(b.tokens, 'int32');
      const targets = tf.tensor1d(b.targets, 'int32');
      setHostIds(tokens, b.tokens);
      setHostIds(targets, b.targets);
      this.zero3?.begin(this.model.unitSchedule(false));
      const { loss } = this.model.forward(this.context(step, i, false), tokens, targets, false, this.hooks());
      tokens.dispose();
      targets.dispose();
      if (i < t.evalBatches && this.coords.tp === 0) sum += readFloats(loss)[0]!;
      loss.dispose();
    }
    const total = new Float32Array([sum]);
    this.comm.world.allReduce(total, 'sum');
    return total[0]! / t.evalBatches;
  }

  // ---- state out ------------------------------------------------------------------------------------------

  /** This rank's parameter shards by name (ZeRO-3: only the segments of its partition are filled). */
  async localParams(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    if (this.params) {
      for (const spec of this.specs) out.set(spec.name, new Float32Array((await this.params.get(spec.name).data()) as Float32Array));
    }
    return out;
  }

  /** What this rank writes into a sharded checkpoint (see shard-files.ts). */
  async shardContents(): Promise<{ params: Map<string, Float32Array>; partition: Map<string, Float32Array>; writes: boolean }> {
    const slots = stateSlots(this.hyper.kind);
    const partition = new Map<string, Float32Array>();
    const writesParams = this.layout.zero === 3 || this.coords.dp === 0;
    const writesState = this.layout.zero >= 1 || this.coords.dp === 0;
    if (this.onDevice) {
      // The device step keeps the optimizer state in tensors: bring it into the flat partition first.
      for (const spec of this.specs) {
        const values = await Promise.all(this.onDevice.state.get(spec.name)!.map(async (x) => (await x.data()) as Float32Array));
        for (const s of this.segmentsOf(spec.name)) values.forEach((v, i) => this.state[i]!.set(v.subarray(s.from, s.from + s.length), s.at));
      }
    }
    if (this.zero3) partition.set('params', this.zero3.owned.slice());
    if (writesState) slots.forEach((slot, i) => partition.set(slot, this.state[i]!.slice()));
    const params = this.params && writesParams ? await this.localParams() : new Map<string, Float32Array>();
    return { params, partition, writes: writesParams || writesState };
  }

  /** The partition of the flat parameters this rank owns (ZeRO-3), else undefined. */
  ownedParams(): Float32Array | undefined {
    return this.zero3?.owned;
  }

  dispose(): void {
    this.zero3?.dispose();
    this.reducer.dispose();
    this.tpGroup.release();
    this.params?.dispose();
    this.onDevice?.dispose();
    if (this.zero3) this.comm.free(this.zero3.owned);
    this.tracker.dispose();
    if (this.ownsComm) this.comm.close();
  }
}
