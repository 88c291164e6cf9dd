// The planner half of the config analysis, run in a worker thread owned by the extension
// (extension/config-analysis.ts), so a slow or hostile config never blocks the extension host.
// Bundled to dist/config-worker.js by scripts/build.mjs; it never imports vscode.
import { parentPort } from 'node:worker_threads';
import { checkFit, type FitCheck } from '../runtime/planner/target';
import { resolveLayout } from '../runtime/parallel/layout';
import type { RunConfig } from '../runtime/config/types';

export interface PlanRequest {
  id: number;
  config: RunConfig;
  /** Test hook: block this thread for so long before planning (the e2e test of the time budget). */
  delayMs?: number;
}
export type PlanReply = { id: number; fit: FitCheck; localProblem?: string } | { id: number; error: string };

/** The local runtime's own refusal (pipelines, sequence parallelism, offload, …), asked before anything is spawned. */
function localProblem(config: RunConfig): string | undefined {
  try {
    resolveLayout(config);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

parentPort?.on('message', (req: PlanRequest) => {
  let reply: PlanReply;
  try {
    if (req.delayMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, req.delayMs);
    // A config with a launch section runs its own command: the local runtime's limits do not apply to it.
    const problem = req.config.launch ? undefined : localProblem(req.config);
    reply = { id: req.id, fit: checkFit(req.config), ...(problem ? { localProblem: problem } : {}) };
  } catch (e) {
    reply = { id: req.id, error: (e as Error).message };
  }
  parentPort!.postMessage(reply);
});
