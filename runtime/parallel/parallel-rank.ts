// Entry module of one rank (launchThreadWorld / launchProcessWorld load it by path and call main): builds
// the RankEngine, trains to train.steps, reports each step's messages to the coordinator over the side
// channel, writes its checkpoint shards, and returns what the launcher hands back to the coordinator.
import type { Comm } from '../comm/comm';
import type { CallRecord } from '../comm/types';
import type { RunConfig } from '../config/types';
import type { CommStat, Message } from '../../common/protocol';
import { ChannelClient, type RankHello, type RankToCoordinator } from './channel';
import { RankEngine, type Faults, type StartFrom, type StepOutcome } from './engine';
import { checkpointFolder, makeCheckpointFolder } from './checkpoint';
import { writeShard } from './shard-files';

export interface RankArgs {
  config: RunConfig;
  baseDir: string;
  start: StartFrom;
  /** Optimizer steps completed before this run (resume). */
  startStep: number;
  /** The coordinator's channel: `unix:/path`, `tcp:host:port` or a bare socket path (absent: nothing is reported, e.g. tests that call main directly). */
  channel?: string;
  /** The channel's per-run secret (SCALELM_CHANNEL_TOKEN), presented in the rank's hello. */
  channelToken?: string;
  /** Where each rank writes its shard of checkpoint `step` ("{step}" is replaced); the coordinator commits the folder. */
  checkpointTemplate?: string;
  threads?: number;
  /** The planner's per-rank bytes by category (runtime convention), sent with each memory message. */
  predicted?: Record<string, number>;
  faults?: Faults & RankFaults;
  /** Return the final parameters (tests compare them with the single-device run). */
  returnState?: boolean;
}

export interface RankFaults {
  /** A rank that fails in the middle of a step's backward: 'throw' an error, or 'exit' (the thread or process just ends). */
  die?: { rank: number; step: number; how: 'throw' | 'exit' };
  /** Every step holds its rank's thread this long more (busy, like compute): a model whose steps are slow. */
  slowStepMs?: number;
}

export interface RankResult {
  rank: number;
  step: number;
  reason: 'completed' | 'stopped';
  losses: number[];
  /** returnState: the parameter shards (ZeRO 0–2) or the owned partition (ZeRO-3). */
  params?: Record<string, Float32Array>;
  owned?: Float32Array;
  coords: { tp: number; dp: number };
  maxGathered?: number;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Totals per collective kind ("all-reduce-tp", "reduce-scatter-dp", …) since the start. */
class CommTotals {
  private readonly totals = new Map<string, CommStat>();
  add(records: CallRecord[]): void {
    for (const r of records) {
      const group = r.group.startsWith('tp') ? 'tp' : r.group.startsWith('dp') ? 'dp' : r.group.startsWith('pp') ? 'pp' : 'world';
      const kind = `${r.op.replace(/_/g, '-')}-${group}`;
      const t = this.totals.get(kind) ?? { kind, calls: 0, bytes: 0, ms: 0 };
      t.calls++;
      t.bytes += r.bytes;
      t.ms += r.end - r.start;
      this.totals.set(kind, t);
    }
  }
  list(): CommStat[] {
    return [...this.totals.values()].map((t) => ({ ...t, ms: Math.round(t.ms * 1000) / 1000 }));
  }
}

export async function main(comm: Comm, args: RankArgs): Promise<RankResult> {
  const rank = comm.rank;
  // A rank process shares the terminal's process group: Ctrl-C is the coordinator's to handle (it stops
  // every rank after the step, with a checkpoint), not a reason for one rank to die.
  if (comm.transport === 'socket') process.on('SIGINT', () => {});
  const asked = { stop: false, checkpoint: false };
  // Rank 0 waits for the coordinator's ack of each step before computing it (the stop/checkpoint decision
  // is then exact); the others learn it inside the step's world all-reduce.
  let acked: { step: number; resolve: () => void } | undefined;
  const channel = args.channel
    ? await ChannelClient.connect(
        args.channel,
        args.channelToken ?? '',
        { rank, world: comm.size, engine: 'local' },
        (m) => {
          if (m.k === 'control') asked[m.action] = true;
          else if (m.k === 'ack' && acked?.step === m.step) acked.resolve();
        },
        () => acked?.resolve(), // the coordinator is gone: the launcher ends this rank
      )
    : undefined;
  const ack = (at: number) =>
    new Promise<void>((resolve) => {
      // The channel's socket does not hold the event loop open (unref): this timer does while we wait.
      const hold = setInterval(() => {}, 2 ** 30);
      acked = { step: at, resolve: () => (clearInterval(hold), resolve()) };
    });
  const send = (m: Exclude<RankToCoordinator, RankHello>) => channel?.send(m);
  const publish = (m: Message) => send({ k: 'msg', rank, m });
  let step = args.startStep;
  let engine: RankEngine | undefined;
  try {
    engine = await RankEngine.create(comm, {
      config: args.config,
      baseDir: args.baseDir,
      start: args.start,
      optimizerSteps: args.startStep,
      ...(args.threads !== undefined ? { threads: args.threads } : {}),
    });
    engine.faults = args.faults ?? {};
    const die = args.faults?.die?.rank === rank ? args.faults.die : undefined;
    if (die) {
      const sink = engine.reducer.sink;
      (engine.reducer as { sink: typeof sink }).sink = (name, g) => {
        if (step + 1 === die.step) {
          if (die.how === 'exit') process.exit(7);
          throw new Error(`injected failure in backward of ${name}`);
        }
        sink(name, g);
      };
    }
    const t = args.config.train;
    const tokensPerStep = t.globalBatch * args.config.model.seqLen;
    const totals = new CommTotals();
    comm.takeRecords();
    const losses: number[] = [];
    let reason: RankResult['reason'] = 'completed';
    let lastSaved = -1;
    const save = async (at: number) => {
      const folder = checkpointFolder(args.checkpointTemplate!, at);
      makeCheckpointFolder(folder);
      const contents = await engine!.shardContents();
      const shapes = new Map(engine!.model.paramSpecs().map((s) => [s.name, s.shape]));
      const bytes = contents.writes
        ? writeShard(folder, engine!.coords, { dp: engine!.layout.dp, tp: engine!.layout.tp, zero: engine!.layout.zero, paddedVocab: engine!.paddedVocab }, engine!.optimizerSteps, contents, shapes)
        : 0;
      send({ k: 'saved', rank, step: at, bytes });
      lastSaved = at;
    };
    while (step < t.steps) {
      // Let the side channel deliver control requests (and flush what was sent).
      await yieldToLoop();
      // Rank 0 asks for the coordinator's ack and computes meanwhile; the requests it gets before the ack
      // go into this step's all-reduce (a stop then discards the step: the run ends on the one before).
      const sync = rank === 0 && channel !== undefined;
      const acknowledged = sync ? ack(step + 1) : undefined;
      send({ k: 'progress', rank, step: step + 1, ...(sync ? { sync } : {}) });
      let out: StepOutcome;
      if (engine.onDevice) {
        await acknowledged;
        out = await engine.stepOnDevice(step + 1, asked);
      } else {
        const computed = engine.computeStep(step + 1);
        if (args.faults?.slowStepMs) for (const end = performance.now() + args.faults.slowStepMs; performance.now() < end;);
        await acknowledged;
        out = engine.finishStep(computed, asked);
      }
      asked.checkpoint = false;
      if (out.stop) {
        reason = 'stopped';
        break;
      }
      step = out.step;
      losses.push(out.loss);
      const now = Date.now();
      totals.add(comm.takeRecords().records);
      const m = out.memory;
      const categories = { params: m.params, grads: m.grads, optimizer: m.optimizer, activations: m.activations, temporaries: m.temporaries, buffers: m.buffers, gathered: m.gathered };
      if (rank === 0) {
        publish({
          type: 'step',
          step,
          loss: out.loss,
          lr: out.lr,
          gradNorm: out.gradNorm,
          tokensPerSec: tokensPerStep / (out.stepMs / 1000),
          stepMs: out.stepMs,
          memory: { ...categories, peak: m.peak },
          tokens: step * tokensPerStep,
          t: now,
        });
      }
      send({ k: 'timing', rank, step, stepMs: out.stepMs, exposedCommMs: out.exposedCommMs });
      publish({
        type: 'memory',
        rank,
        t: now,
        step,
        categories,
        stepPeak: m.peak,
        capacity: Number.isFinite(engine.tracker.capacity) ? engine.tracker.capacity : 0,
        device: `cpu:${rank}`,
        ...(args.predicted ? { predicted: args.predicted } : {}),
      });
      publish({ type: 'comm', rank, t: now, step, collectives: totals.list() });
      if (engine.evalSampler && t.evalEvery > 0 && step % t.evalEvery === 0) {
        const loss = engine.evaluate(step);
        totals.add(comm.takeRecords().records);
        if (rank === 0) publish({ type: 'eval', step, loss, t: Date.now() });
      }
      if (args.checkpointTemplate && ((t.checkpointEvery > 0 && step % t.checkpointEvery === 0) || out.checkpoint)) await save(step);
    }
    if (args.checkpointTemplate && lastSaved !== step) await save(step);
    const result: RankResult = { rank, step, reason, losses, coords: engine.coords, ...(engine.zero3 ? { maxGathered: engine.zero3.maxLive } : {}) };
    if (args.returnState) {
      if (engine.zero3) result.owned = engine.zero3.owned.slice();
      else result.params = Object.fromEntries(await engine.localParams());
    }
    send({ k: 'done', rank, step, reason });
    await channel?.flush();
    return result;
  } catch (e) {
    if (e instanceof Error) e.message = `rank ${rank}, step ${step + 1}: ${e.message}`;
    throw e;
  } finally {
    acked?.resolve(); // a failure mid-step: let the event loop end
    engine?.dispose();
    await channel?.close();
  }
}
