// The local engine: TypeScript ranks (parallel-rank.ts) as worker threads over shared memory, or as child
// processes over sockets — every layout, one device included (a world of one, in a worker thread, so the
// coordinator's event loop and its server never wait on a step).
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { startProcessWorld, startThreadWorld, type RunningWorld } from '../comm/launch';
import type { RunConfig } from '../config/types';
import { Coordinator, type RunSetup } from '../coordinator/coordinator';
import type { Engine, EngineBackend, RankExit, RankLaunch, RankSet, RunDescription } from '../coordinator/engine';
import { activeBackend, initBackend } from '../model/backend';
import { Gpt, gptShape } from '../model/gpt';
import { tpVocab } from '../model/tp-layers';
import { hfConfig, loadHfFolder, readModelTensors } from '../train/checkpoint';
import type { Faults } from './engine';
import { FlatLayout } from './flat';
import { describeParallel, ParallelError, resolveLayout, type ParallelLayout, type Transport } from './layout';
import type { RankArgs, RankFaults, RankResult } from './parallel-rank';
import { localUnits } from './shard-files';
import { isSplit, joinShards } from './shards';

/** The rank entry module, next to this file in out/ and in the bundle (dist/parallel-rank.js). */
export const RANK_ENTRY = join(__dirname, 'parallel-rank.js');

export interface LocalEngineOptions {
  /** wasm threads per rank (default: the cores shared out over the ranks). */
  threads?: number;
  /** Comm call timeout per rank (default the comm library's). */
  timeoutMs?: number;
  /** Force the transport (default: threads, or processes for GPU backends and devices.transport "tcp"). */
  transport?: Transport;
  /** Test hooks: ranks that misbehave on purpose. */
  faults?: Faults & RankFaults;
  /** Collect the final parameters (full tensors, by HF name) into `finalParams` (tests). */
  returnState?: boolean;
}

export class LocalEngine implements Engine {
  readonly name = 'local' as const;
  readonly convention = 'runtime' as const;
  /** With returnState: the trained parameters as full single-device tensors, once the ranks ended. */
  finalParams?: Map<string, Float32Array>;
  /** Every rank's result, once the ranks ended (benchmarks, tests). */
  results: (RankResult | undefined)[] = [];

  constructor(readonly options: LocalEngineOptions = {}) {}

  /**
   * wasm threads per rank: as asked (option, then SCALELM_WASM_THREADS), else the cores shared out over the
   * ranks, at most 4 (a rank's XNNPACK threads beyond that only contend) — one device gets min(4, cores).
   */
  private threads(world: number): number {
    const asked = this.options.threads ?? (process.env.SCALELM_WASM_THREADS ? Math.floor(Number(process.env.SCALELM_WASM_THREADS)) : undefined);
    if (asked !== undefined && asked >= 1) return asked;
    return Math.max(1, Math.min(4, Math.floor(availableParallelism() / world)));
  }

  /** The layout as this engine runs it (the transport may be forced). */
  private transport(layout: ParallelLayout): Transport {
    return this.options.transport ?? layout.transport;
  }

  check(config: RunConfig, layout: ParallelLayout): void {
    if (config.train.precision !== 'fp32') throw new ParallelError(`train.precision="${config.train.precision}": the local runtime trains in fp32; mixed precision is for planning GPU runs`);
    gptShape(config.model); // refuses non-GPT-2 shapes before anything starts
    const arena = arenaBytes(config, layout);
    if (this.transport(layout) === 'threads' && layout.world * arena > 4 * 2 ** 30 - 64 * 2 ** 20) {
      throw new ParallelError(
        `the ranks' communication buffers need ${((layout.world * arena) / 2 ** 30).toFixed(2)} GiB of shared memory, more than the 4 GiB a worker-thread world can map; ` +
          'use parallel.zero ≥ 2 (gradients partitioned, two staging buckets), or devices.transport "tcp" (one process per rank)',
      );
    }
  }

  /** GPT-2 shapes only (check refuses others); ranks write sharded checkpoints (parallel/checkpoint.ts). */
  describe(config: RunConfig, layout: ParallelLayout): RunDescription {
    const shape = gptShape(config.model);
    const m = config.model;
    const P = new Gpt(shape).paramSpecs().reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    const Vp = tpVocab(m.vocab, layout.tp);
    return {
      model: shape,
      hfConfig: hfConfig(shape, m.dropout),
      checkpoint: { kind: 'sharded', layout: { dp: layout.dp, tp: layout.tp, zero: layout.zero, paddedVocab: Vp } },
      modelLine: `${m.name} GPT-2 ${m.layers}L h${m.hidden} a${m.heads} vocab ${m.vocab}${layout.tp > 1 ? ` (padded to ${Vp})` : ''} seq ${m.seqLen}, ${P.toLocaleString('en-US')} parameters`,
      ranksLine: describeParallel(layout),
    };
  }

  /** A ScaleLM checkpoint folder or a HF GPT-2 folder, checked name by name and shape against the model. */
  checkInit(config: RunConfig, folder: string): void {
    const shape = gptShape(config.model);
    const specs = new Gpt(shape).paramSpecs();
    if (existsSync(join(folder, 'state.json')) && existsSync(join(folder, 'model.safetensors'))) readModelTensors(join(folder, 'model.safetensors'), specs);
    else loadHfFolder(folder, specs, shape);
  }

  async sample(config: RunConfig, from: 'initial' | string, prompt: Uint16Array<ArrayBufferLike>, count: number, step: number): Promise<string> {
    const { sampleText } = await import('./sample');
    const { readCheckpointParams } = await import('./checkpoint');
    return sampleText(config, from === 'initial' ? 'initial' : readCheckpointParams(from), prompt, count, step);
  }

  async backend(config: RunConfig): Promise<EngineBackend> {
    const requested = config.devices.backend;
    // The ranks start their own backend; probing it here (one thread) says which one they get and why — and
    // refuses a missing one before any rank starts. (A process that already runs another backend — a test
    // runner — reports the request as is.)
    const active = activeBackend();
    if (active && requested !== 'auto' && requested !== active.requested && requested !== active.name) {
      return { name: requested, label: requested, reason: `requested (devices.backend="${requested}")` };
    }
    const info = active ?? (await initBackend(requested, { threads: 1 }));
    const threads = this.threads(resolveLayout(config).world);
    const label = info.name === 'wasm' ? info.label.replace(/\d+ threads?\)/, `${threads} thread${threads === 1 ? '' : 's'})`) : info.label;
    return { name: info.name, label, reason: info.reason };
  }

  async start(launch: RankLaunch): Promise<RankSet> {
    if (!existsSync(RANK_ENTRY)) {
      throw new ParallelError(
        `${RANK_ENTRY} is missing: a bundle of ScaleLM must emit runtime/parallel/parallel-rank.ts next to the CLI (scripts/build.mjs); from the compiled sources run out/runtime/cli.js`,
      );
    }
    const { config, layout } = launch;
    const o = this.options;
    const address = launch.channel.address;
    if (!address.startsWith('unix:')) throw new ParallelError(`the local engine's ranks reach the coordinator over a Unix socket, not ${address}`);
    const args: RankArgs = {
      config,
      baseDir: launch.baseDir,
      start: launch.start,
      startStep: launch.startStep,
      channel: address.slice('unix:'.length),
      channelToken: launch.channel.token,
      ...(launch.checkpointTemplate ? { checkpointTemplate: launch.checkpointTemplate } : {}),
      threads: this.threads(layout.world),
      ...(launch.predicted ? { predicted: launch.predicted } : {}),
      ...(o.faults ? { faults: o.faults } : {}),
      ...(o.returnState ? { returnState: true } : {}),
    };
    // Registered buffers (buckets, ZeRO partitions, TP scratch) live in each rank's comm arena.
    const common = { args, arenaBytes: arenaBytes(config, layout), ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) };
    const world: RunningWorld<RankResult> =
      this.transport(layout) === 'threads'
        ? startThreadWorld<RankResult>(layout.world, RANK_ENTRY, { ...common, spin: layout.world <= availableParallelism() ? 2000 : 0 })
        : await startProcessWorld<RankResult>(layout.world, RANK_ENTRY, common);
    const exited = world.result.then((r): RankExit[] => {
      this.results = r.results;
      const exits = r.results.map((_, rank): RankExit => (r.errors[rank] ? { ok: false, error: r.errors[rank] } : { ok: true }));
      try {
        if (r.ok && o.returnState) this.finalParams = gatherFinalParams(config, layout, r.results as RankResult[]);
      } catch (e) {
        exits[0] = { ok: false, error: e as Error };
      }
      return exits;
    });
    return {
      pids: () => world.pids(),
      exited,
      kill: async (reason) => {
        world.kill(reason);
        await exited;
      },
    };
  }
}

/** A run of the local engine: the coordinator with TypeScript ranks. */
export function createLocalRun(setup: Omit<RunSetup, 'engine'> & LocalEngineOptions): Promise<Coordinator> {
  const { threads, timeoutMs, transport, faults, returnState, ...run } = setup;
  const options: LocalEngineOptions = {
    ...(threads !== undefined ? { threads } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(transport ? { transport } : {}),
    ...(faults ? { faults } : {}),
    ...(returnState ? { returnState } : {}),
  };
  return Coordinator.create({ ...run, engine: new LocalEngine(options) });
}

/** Shared memory per rank for its registered buffers (and the comm library's staging). */
export function arenaBytes(config: RunConfig, layout: ParallelLayout): number {
  return Math.ceil((registeredBytes(config, layout) * 1.25 + 48 * 2 ** 20) / 65536) * 65536;
}

/** Bytes of registered (shared) memory a rank allocates: gradient buckets or staging, ZeRO-3 partition and gathers, TP scratch. */
export function registeredBytes(config: RunConfig, layout: ParallelLayout): number {
  const shape = gptShape(config.model);
  const Vp = tpVocab(shape.vocab, layout.tp);
  const flat = new FlatLayout(localUnits(shape, layout.tp, Vp), layout.zero >= 1 ? layout.dp : 1, layout.firstBucketBytes, layout.bucketBytes);
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
  const units = localUnits(shape, layout.tp, Vp);
  const specs = units.flatMap((u) => u.specs);
  const split = new Map(fullSpecs.map((s) => [s.name, s.tp]));
  const perTp: Map<string, Float32Array>[] = Array.from({ length: layout.tp }, () => new Map());
  const flat = new FlatLayout(units, layout.zero >= 1 ? layout.dp : 1, 1, 1);
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
      if (!isSplit(split.get(k), layout.tp) && !sameBits(v, perTp[0]!.get(k)!)) throw new ParallelError(`replicated ${k} differs between tensor-parallel ranks (rank ${r.rank})`);
    }
  }
  for (const r of results) {
    const mine = perTp[r.coords.tp]!;
    if (r.owned) {
      for (const s of specs) if (!mine.has(s.name)) mine.set(s.name, new Float32Array(s.shape.reduce((a, b) => a * b, 1)));
      for (const seg of flat.segments(r.coords.dp)) mine.get(seg.slot.name)!.set(r.owned.subarray(seg.at, seg.at + seg.length), seg.from);
    }
  }
  return new Map(
    fullSpecs.map((s) => [
      s.name,
      joinShards(
        s.tp,
        s.shape,
        perTp.map((p) => p.get(s.name)!),
        layout.tp,
      ),
    ]),
  );
}
