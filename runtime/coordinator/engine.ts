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
  /** The planner's per-rank bytes by category (runtime convention), for the ranks' memory messages. */
  predicted?: Record<string, number>;
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
}

export interface Engine {
  readonly name: EngineName;
  /**
   * Refuses a layout this engine cannot run, before anything starts (a clear, typed error naming the
   * setting to change). The coordinator calls it once, after the config is parsed.
   */
  check(config: RunConfig, layout: ParallelLayout): void;
  /** The backend the ranks will train on (probed on this machine; the hello announces it). */
  backend(config: RunConfig): Promise<EngineBackend>;
  /**
   * Starts every rank of the layout. Resolves once they are launched (not finished); rejects, with nothing
   * left running, if they could not be launched at all.
   */
  start(launch: RankLaunch): Promise<RankSet>;
}
