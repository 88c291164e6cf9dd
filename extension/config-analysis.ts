// One analysis per config document version, shared by the CodeLens, the diagnostics and the quick fixes,
// so the layout search runs once per edit, not once per feature.
import * as vscode from 'vscode';
import { parseConfig, type ParseResult } from '../runtime/config/parse';
import { checkFit, type FitCheck } from '../runtime/planner/target';
import { resolveLayout } from '../runtime/parallel/layout';
import type { RunConfig } from '../runtime/config/types';
import { parseJsonc } from './json-paths';

export interface ConfigAnalysis {
  parsed: ParseResult;
  /** Present when the config is valid and the planner ran (trusted workspace, within the time budget). */
  fit?: FitCheck;
  /** Why the local runtime cannot train this config on this machine (it can still be planned and exported). */
  localProblem?: string;
  /** Why the planner did not run on a valid config, for the CodeLens to say. */
  skipped?: string;
}

/** The local runtime's own refusal (pipelines, sequence parallelism, offload, …), asked before anything is spawned. */
function localProblem(config: RunConfig): string | undefined {
  try {
    resolveLayout(config);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Limits that keep the extension host responsive on a hostile or huge file (issue 12): a config larger
 * than this is not analysed at all, and a document whose planner run took longer than the budget is not
 * planned again on every edit (its lens says so; Suggest Layouts still runs it on demand).
 */
export const MAX_ANALYSED_CHARS = 1024 * 1024;
export const PLAN_BUDGET_MS = 250;
const slow = new Map<string, number>();

export const CONFIG_SELECTOR: vscode.DocumentFilter = { scheme: 'file', pattern: '**/*.scalelm.json' };

const cache = new Map<string, { version: number; analysis: ConfigAnalysis }>();

export function isScaleLMConfig(doc: vscode.TextDocument): boolean {
  return doc.uri.path.endsWith('.scalelm.json');
}

export function analyseConfig(doc: vscode.TextDocument): ConfigAnalysis {
  const key = doc.uri.toString();
  const hit = cache.get(key);
  if (hit && hit.version === doc.version) return hit.analysis;
  const text = doc.getText();
  let analysis: ConfigAnalysis;
  if (text.length > MAX_ANALYSED_CHARS) {
    analysis = { parsed: { ok: false, stage: 'json', errors: [{ path: '', message: `this file is ${text.length} characters; ScaleLM analyses configs up to ${MAX_ANALYSED_CHARS}` }] } };
  } else {
    // Parsing is linear in the text and every number is bounded (runtime/config/schema.ts).
    const parsed = parseConfig(parseJsonc(text) as unknown);
    if (!parsed.ok) analysis = { parsed };
    else if (!vscode.workspace.isTrusted) analysis = { parsed, skipped: 'estimates run in trusted workspaces only' };
    else if (slow.has(key)) analysis = { parsed, skipped: `the estimate took ${slow.get(key)} ms last time; run Suggest Layouts for it` };
    else {
      const started = Date.now();
      const problem = localProblem(parsed.config);
      analysis = { parsed, fit: checkFit(parsed.config), ...(problem ? { localProblem: problem } : {}) };
      const took = Date.now() - started;
      if (took > PLAN_BUDGET_MS) slow.set(key, took);
    }
  }
  cache.set(key, { version: doc.version, analysis });
  return analysis;
}

export function forgetConfig(uri: vscode.Uri): void {
  cache.delete(uri.toString());
  slow.delete(uri.toString());
}
