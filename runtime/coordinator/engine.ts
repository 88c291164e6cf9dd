// The engine interface: how the coordinator starts the ranks of a run without knowing what they are.
//   local  TypeScript ranks (runtime/parallel/parallel-rank.ts) in worker threads or child processes
//   torch  `torchrun` with the python/ package's ranks
// An engine starts every rank of one run and ends them; everything else — the run directory, the resume
// decision, the server, checkpoint commits, the lifecycle messages, turning a failure into one error — is the
// coordinator's (runtime/coordinator/coordinator.ts), the same for every engine. Ranks of every engine talk
// to the coordinator over the rank channel only (runtime/parallel/channel.ts; spec: docs/rank-channel.md):
// hello, progress, protocol messages, saved shards; control requests back. So an engine needs no callback
// into the coordinator: it launches, reports exits, and kills.
import type { RunConfig } from '../config/types';
import type { ParallelLayout } from '../parallel/layout';
import type { ShardLayout } from '../parallel/shard-files';
import type { ConventionName } from '../planner/types';
import type { ModelRecord } from '../train/checkpoint';

import type { EngineName, RunBackend } from '../../common/protocol';
export type { EngineName } from '../../common/protocol';

/** Where a run's initial state comes from (the coordinator decides; every engine honours it). */
export type StartFrom =
  | { kind: 'fresh' }
  /** Weights only: a HF GPT-2 folder or a (consolidated) ScaleLM checkpoint. */
  | { kind: 'init'; folder: string }
  /** A full (single-device or consolidated) checkpoint: weights and optimizer state, resharded by the ranks. */
  | { kind: 'resume-full'; folder: string }
  /** This layout's own sharded checkpoint. */
  | { kind: 'resume-sharded'; folder: string };

/** The backend an engine trains on, as the run's hello announces it (common/protocol.ts's RunBackend). */
export interface EngineBackend extends RunBackend {
  reason: string;
}

/**
 * How an engine's ranks write a checkpoint (the coordinator commits it once every rank has said `saved`):
 *   sharded  each rank writes its own shard; state.json records this layout (runtime/parallel/checkpoint.ts),
 *            and a world of one is stored as a full checkpoint. Resumes in the same layout read the shards.
 *   full     rank 0 gathers the full tensors into model.safetensors + optimizer.safetensors (HF names); the
 *            coordinator adds state.json (no layout) and config.json. Any engine and transformers read it.
 */
export type CheckpointFormat = { kind: 'sharded'; layout: ShardLayout } | { kind: 'full' };

/** What the coordinator writes and says about a run's model and ranks: declared by the engine, never guessed. */
export interface RunDescription {
  /** state.json's `model`: what a resume compares, key by key, with the checkpoint's. */
  model: ModelRecord;
  /** The HuggingFace config.json written next to the weights. */
  hfConfig: Record<string, unknown>;
  checkpoint: CheckpointFormat;
  /** The start-up report's model line, after "model: " ("tiny GPT-2 4L h128 a4 vocab 256 seq 64, 1,234 parameters"). */
  modelLine: string;
  /** The start-up report's parallel line, after "parallel: " (the layout and how its ranks run). */
  ranksLine: string;
}

/** Everything an engine needs to start the ranks of one run. */
export interface RankLaunch {
  config: RunConfig;
  layout: ParallelLayout;
  /** Folder that data.path is relative to. */
  baseDir: string;
  /** Absolute run folder (SCALELM_RUN_DIR); absent: the run writes nothing (tests, benchmarks). */
  runDir?: string;
  /** The rank channel: `unix:/abs/path` or `tcp:host:port` (SCALELM_CHANNEL), and the per-run secret (SCALELM_CHANNEL_TOKEN). */
  channel: { address: string; token: string };
  start: StartFrom;
  /** Optimizer steps completed before this run (resume: the checkpoint's step). */
  startStep: number;
  /**
   * Where ranks write the shards of checkpoint N: this template with "{step}" replaced by `step-NNNNNN`
   * (a folder under <runDir>/checkpoints named `.tmp-step-NNNNNN-<pid>-<nonce>`). The coordinator commits it
   * once every rank has reported `saved`. Absent: no checkpoints.
   */
  checkpointTemplate?: string;
  /** The planner's per-rank bytes by category (in the engine's convention), for the ranks' memory messages. */
  predicted?: Record<string, number>;
  /** The ranks' own stdout/stderr lines (process engines whose ranks print): the coordinator logs them. */
  output?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** How one rank ended. */
export interface RankExit {
  ok: boolean;
  /** Why it failed: its own error, or the exit code/signal with its stderr tail. */
  error?: Error;
}

/** The ranks of one run, once started. */
export interface RankSet {
  /** The operating-system process of each rank as far as the engine knows it (threads: this process). */
  pids(): (number | undefined)[];
  /** Resolves when every rank has ended (never rejects): one entry per rank. */
  readonly exited: Promise<RankExit[]>;
  /**
   * Ends every rank now (SIGKILL to the whole process group for process engines) and resolves once none is
   * left running. Safe to call more than once and after the ranks ended.
   */
  kill(reason: string): Promise<void>;
  /** A rank said (hello) which process it is: end it with the others even if it left the launcher's tree. */
  track?(pid: number): void;
  /**
   * What the launcher saw that the ranks could not say (process engines under a launcher, like torchrun):
   * how it ended ("exit 1") and the cause lines of the ranks' stderr. A failure's message includes them.
   */
  launcherReport?(): { launcher: string; ended: string; cause: string } | undefined;
}

export interface Engine {
  readonly name: EngineName;
  /** The planner convention of the per-rank memory prediction the ranks report next to their measurements. */
  readonly convention: ConventionName;
  /**
   * How long a requested stop may take before the ranks are ended (ms); absent: the ranks always come to
   * a stop themselves (the local ranks read the request between steps).
   */
  readonly stopTimeoutMs?: number;
  /**
   * After the first rank reports a failure, how long the others may take to end on their own before they
   * are ended (ms); absent: the engine's ranks abort each other (the local comm library does).
   */
  readonly failureGraceMs?: number;
  /**
   * Its ranks read and check the data themselves, so the coordinator does not load it up front (the torch
   * engine: a GPU run's token file may be gigabytes; its ranks refuse bad data with the same messages).
   */
  readonly ranksReadData?: boolean;
  /**
   * Refuses a layout this engine cannot run, before anything starts (a clear, typed error naming the
   * setting to change). The coordinator calls it once, after the config is parsed.
   */
  check(config: RunConfig, layout: ParallelLayout): void;
  /** The backend the ranks will train on (probed on this machine; the hello announces it). */
  backend(config: RunConfig): Promise<EngineBackend>;
  /** The model and ranks of this config and layout, as checkpoints and the start-up report record them. */
  describe(config: RunConfig, layout: ParallelLayout): RunDescription;
  /** Refuses an --init-from folder these ranks could not load (names, shapes), before anything starts. */
  checkInit?(config: RunConfig, folder: string): void;
  /**
   * `count` bytes of text the model continues the prompt with: before training ('initial') or from a
   * committed checkpoint folder (text data, `scalelm train`). Engines without it print no samples.
   */
  sample?(config: RunConfig, from: 'initial' | string, prompt: Uint16Array<ArrayBufferLike>, count: number, step: number): Promise<string>;
  /**
   * Starts every rank of the layout. Resolves once they are launched (not finished); rejects, with nothing
   * left running, if they could not be launched at all.
   */
  start(launch: RankLaunch): Promise<RankSet>;
}
