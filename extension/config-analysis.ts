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
  /** Present when the config is valid. */
  fit?: FitCheck;
  /** Why the local runtime cannot train this config on this machine (it can still be planned and exported). */
  localProblem?: string;
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

export const CONFIG_SELECTOR: vscode.DocumentFilter = { scheme: 'file', pattern: '**/*.scalelm.json' };

const cache = new Map<string, { version: number; analysis: ConfigAnalysis }>();

export function isScaleLMConfig(doc: vscode.TextDocument): boolean {
  return doc.uri.path.endsWith('.scalelm.json');
}

export function analyseConfig(doc: vscode.TextDocument): ConfigAnalysis {
  const key = doc.uri.toString();
  const hit = cache.get(key);
  if (hit && hit.version === doc.version) return hit.analysis;
  const parsed = parseConfig(parseJsonc(doc.getText()) as unknown);
  const problem = parsed.ok ? localProblem(parsed.config) : undefined;
  const analysis: ConfigAnalysis = parsed.ok ? { parsed, fit: checkFit(parsed.config), ...(problem ? { localProblem: problem } : {}) } : { parsed };
  cache.set(key, { version: doc.version, analysis });
  return analysis;
}

export function forgetConfig(uri: vscode.Uri): void {
  cache.delete(uri.toString());
}
