// One analysis per config document version, shared by the CodeLens, the diagnostics and the quick fixes,
// so the layout search runs once per edit, not once per feature. Parsing runs here (it is linear and
// bounded); the planner runs in a worker thread (extension/config-worker.ts) under a time budget, so the
// extension host never waits on it (issue 12).
import * as vscode from 'vscode';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseConfig, type ParseResult } from '../runtime/config/parse';
import type { FitCheck } from '../runtime/planner/target';
import type { RunConfig } from '../runtime/config/types';
import { parseJsonc } from './json-paths';
import type { PlanReply, PlanRequest } from './config-worker';

export interface ConfigAnalysis {
  parsed: ParseResult;
  /** Present when the config is valid and the planner ran (trusted workspace, within the time budget). */
  fit?: FitCheck;
  /** Why the local runtime cannot train this config on this machine (it can still be planned and exported). */
  localProblem?: string;
  /** Why the planner did not run on a valid config, for the CodeLens to say. */
  skipped?: string;
}

/**
 * Limits that keep the extension host responsive on a hostile or huge file (issue 12): a config larger
 * than this is not analysed at all, and a planner run longer than the budget is stopped (the worker is
 * terminated and respawned); that document is then not planned again on every edit (its lens says so;
 * Suggest Layouts still runs it on demand).
 */
export const MAX_ANALYSED_CHARS = 1024 * 1024;
export const PLAN_BUDGET_MS = 2000;
/**
 * Test hook (e2e): the worker sleeps 5 s before planning the config at this path, to show the budget and a
 * responsive host; other documents are untouched.
 */
export const TEST_SLOW_ENV = 'SCALELM_TEST_SLOW_PLAN';
const TEST_DELAY_MS = 5000;
const TOO_SLOW = `the estimate took longer than ${PLAN_BUDGET_MS / 1000} s; run Suggest Layouts for it`;
const slow = new Set<string>();

export const CONFIG_SELECTOR: vscode.DocumentFilter = { scheme: 'file', pattern: '**/*.scalelm.json' };

const parses = new Map<string, { version: number; parsed: ParseResult }>();
const cache = new Map<string, { version: number; analysis: Promise<ConfigAnalysis> }>();

export function isScaleLMConfig(doc: vscode.TextDocument): boolean {
  return doc.uri.path.endsWith('.scalelm.json');
}

/** The parse alone (synchronous): for commands that need the config, not the estimate. */
export function parseConfigDocument(doc: vscode.TextDocument): ParseResult {
  const key = doc.uri.toString();
  const hit = parses.get(key);
  if (hit && hit.version === doc.version) return hit.parsed;
  const text = doc.getText();
  // Parsing is linear in the text and every number is bounded (runtime/config/schema.ts).
  const parsed: ParseResult =
    text.length > MAX_ANALYSED_CHARS
      ? { ok: false, stage: 'json', errors: [{ path: '', message: `this file is ${text.length} characters; ScaleLM analyses configs up to ${MAX_ANALYSED_CHARS}` }] }
      : parseConfig(parseJsonc(text) as unknown);
  parses.set(key, { version: doc.version, parsed });
  return parsed;
}

export function analyseConfig(doc: vscode.TextDocument): Promise<ConfigAnalysis> {
  const key = doc.uri.toString();
  const hit = cache.get(key);
  if (hit && hit.version === doc.version) return hit.analysis;
  const analysis = analyse(key, parseConfigDocument(doc));
  cache.set(key, { version: doc.version, analysis });
  return analysis;
}

async function analyse(key: string, parsed: ParseResult): Promise<ConfigAnalysis> {
  if (!parsed.ok) return { parsed };
  // An untrusted workspace gets no more than the parse: no worker is even started.
  if (!vscode.workspace.isTrusted) return { parsed, skipped: 'estimates run in trusted workspaces only' };
  if (slow.has(key)) return { parsed, skipped: TOO_SLOW };
  const answer = await planner.plan(parsed.config, process.env[TEST_SLOW_ENV] === vscode.Uri.parse(key).fsPath ? TEST_DELAY_MS : 0);
  if (answer === 'timeout') {
    slow.add(key);
    return { parsed, skipped: TOO_SLOW };
  }
  if ('error' in answer) return { parsed, skipped: `the planner failed: ${answer.error}` };
  return { parsed, fit: answer.fit, ...(answer.localProblem ? { localProblem: answer.localProblem } : {}) };
}

/**
 * One worker, one request at a time (a request's budget starts when the worker gets it, so a queue
 * behind a slow config is not charged for it). A request over budget terminates the worker; the next
 * request starts a fresh one.
 */
class PlannerWorker {
  private worker: Worker | undefined;
  private nextId = 1;
  private queue: Promise<unknown> = Promise.resolve();

  plan(config: RunConfig, delayMs: number): Promise<PlanReply | 'timeout'> {
    const run = this.queue.then(() => this.send(config, delayMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private send(config: RunConfig, delay: number): Promise<PlanReply | 'timeout'> {
    const worker = (this.worker ??= this.spawn());
    const req: PlanRequest = { id: this.nextId++, config, ...(delay > 0 ? { delayMs: delay } : {}) };
    return new Promise((resolve) => {
      const done = (answer: PlanReply | 'timeout') => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        resolve(answer);
      };
      const stop = () => {
        if (this.worker === worker) this.worker = undefined;
        void worker.terminate();
      };
      const onMessage = (reply: PlanReply) => {
        if (reply.id === req.id) done(reply);
      };
      const onError = (e: Error) => {
        stop();
        done({ id: req.id, error: e.message });
      };
      const onExit = (code: number) => {
        if (this.worker === worker) this.worker = undefined;
        done({ id: req.id, error: `the planner worker exited (code ${code})` });
      };
      const timer = setTimeout(() => {
        stop();
        done('timeout');
      }, PLAN_BUDGET_MS);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(req);
    });
  }

  private spawn(): Worker {
    const worker = new Worker(join(__dirname, 'config-worker.js'));
    // Between requests nobody else listens: an 'error' without a listener would throw on the host.
    const forget = () => {
      if (this.worker === worker) this.worker = undefined;
    };
    worker.on('error', forget).on('exit', forget);
    return worker;
  }

  dispose(): void {
    void this.worker?.terminate();
    this.worker = undefined;
  }
}

const planner = new PlannerWorker();

/** Stops the planner worker (extension deactivation). */
export const configWorker: vscode.Disposable = { dispose: () => planner.dispose() };

export function forgetConfig(uri: vscode.Uri): void {
  cache.delete(uri.toString());
  parses.delete(uri.toString());
  slow.delete(uri.toString());
}
