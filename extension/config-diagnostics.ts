// Problems-panel diagnostics for *.scalelm.json: the cross-field rules that a JSON Schema cannot express
// (tp divides heads, dp·tp·pp = devices, batch divisibility...) and whether the layout fits its devices.
// Type, enum and unknown-key errors are left to VS Code's JSON language service (contributes.jsonValidation),
// so nothing is reported twice.
import * as vscode from 'vscode';
import { formatBytes } from '../common/units';
import { CATEGORIES } from '../runtime/planner/types';
import { describeSuggestion } from '../runtime/planner/target';
import { analyseConfig, forgetConfig, isScaleLMConfig, type ConfigAnalysis } from './config-analysis';
import { spanOfPath } from './json-paths';

/** Diagnostic code of "this layout does not fit"; the quick-fix provider looks for it. */
export const DOES_NOT_FIT = 'scalelm.doesNotFit';
/** Diagnostic code of "the local runtime cannot train this"; Launch Training is disabled for the file. */
export const CANNOT_RUN_HERE = 'scalelm.cannotRunHere';
/** Context key: the paths of open configs that cannot train here (package.json's enablement reads it). */
export const CANNOT_LAUNCH_KEY = 'scalelm.cannotLaunch';

function rangeOf(doc: vscode.TextDocument, path: string): vscode.Range {
  const span = spanOfPath(doc.getText(), path);
  return new vscode.Range(doc.positionAt(span.offset), doc.positionAt(span.offset + span.length));
}

export async function configDiagnostics(doc: vscode.TextDocument): Promise<vscode.Diagnostic[]> {
  const analysis = await analyseConfig(doc);
  const out = planDiagnostics(doc, analysis);
  const { localProblem } = analysis;
  if (localProblem) {
    const d = new vscode.Diagnostic(
      rangeOf(doc, 'parallel'),
      `Launch Training is off for this file: the local runtime cannot train it — ${localProblem}. Planning and export still work.`,
      vscode.DiagnosticSeverity.Information,
    );
    d.source = 'ScaleLM';
    d.code = CANNOT_RUN_HERE;
    out.push(d);
  }
  return out;
}

function planDiagnostics(doc: vscode.TextDocument, { parsed, fit }: ConfigAnalysis): vscode.Diagnostic[] {
  if (!parsed.ok) {
    if (parsed.stage !== 'rules') return [];
    return parsed.errors.map((issue) => {
      const d = new vscode.Diagnostic(rangeOf(doc, issue.path), issue.message, vscode.DiagnosticSeverity.Error);
      d.source = 'ScaleLM';
      d.code = issue.path;
      return d;
    });
  }
  if (!fit) return [];
  const { result, target } = fit;
  if (!result.ok) {
    return result.issues.map((issue) => {
      const d = new vscode.Diagnostic(rangeOf(doc, issue.path), `cannot plan this layout: ${issue.message}`, vscode.DiagnosticSeverity.Warning);
      d.source = 'ScaleLM planner';
      return d;
    });
  }
  if (result.fits) return [];
  const per = result.memory.perDevice;
  const breakdown = CATEGORIES.filter((c) => per[c] > 0)
    .map((c) => `${c} ${formatBytes(per[c], 1)}`)
    .join(', ');
  const fix = fit.suggestion ? `; ${describeSuggestion(parsed.config, fit.suggestion)}` : '; no layout of these devices fits — add devices or memory';
  const d = new vscode.Diagnostic(
    rangeOf(doc, 'parallel'),
    `does not fit: ${formatBytes(per.total, 1)} per device > ${formatBytes(target.capacity, 1)} usable on ${target.label} (${breakdown})${fix}`,
    vscode.DiagnosticSeverity.Error,
  );
  d.source = 'ScaleLM planner';
  d.code = DOES_NOT_FIT;
  return [d];
}

export function registerConfigDiagnostics(context: vscode.ExtensionContext): vscode.DiagnosticCollection {
  const collection = vscode.languages.createDiagnosticCollection('scalelm');
  const timers = new Map<string, NodeJS.Timeout>();
  const blocked = new Set<string>();
  const publishBlocked = () => void vscode.commands.executeCommand('setContext', CANNOT_LAUNCH_KEY, [...blocked]);
  const refresh = (doc: vscode.TextDocument, delayMs = 0) => {
    if (!isScaleLMConfig(doc)) return;
    const key = doc.uri.toString();
    clearTimeout(timers.get(key));
    timers.set(
      key,
      setTimeout(() => {
        timers.delete(key);
        const version = doc.version;
        void (async () => {
          const diagnostics = await configDiagnostics(doc);
          const { localProblem } = await analyseConfig(doc);
          // An edit or a close while the planner worked: a newer refresh (or none) owns the result.
          if (doc.isClosed || doc.version !== version) return;
          collection.set(doc.uri, diagnostics);
          const had = blocked.has(doc.uri.fsPath);
          if (localProblem) blocked.add(doc.uri.fsPath);
          else blocked.delete(doc.uri.fsPath);
          if (had !== blocked.has(doc.uri.fsPath)) publishBlocked();
        })();
      }, delayMs),
    );
  };
  context.subscriptions.push(
    collection,
    // Off the open path: a document is analysed after a short debounce, never inside the open event.
    vscode.workspace.onDidOpenTextDocument((d) => refresh(d, 50)),
    // Trust granted: the planner may now run on the open configs.
    vscode.workspace.onDidGrantWorkspaceTrust(() =>
      vscode.workspace.textDocuments.forEach((d) => {
        forgetConfig(d.uri);
        refresh(d);
      }),
    ),
    vscode.workspace.onDidChangeTextDocument((e) => refresh(e.document, 300)),
    vscode.workspace.onDidCloseTextDocument((d) => {
      collection.delete(d.uri);
      forgetConfig(d.uri);
      if (blocked.delete(d.uri.fsPath)) publishBlocked();
    }),
    { dispose: () => timers.forEach((t) => clearTimeout(t)) },
  );
  vscode.workspace.textDocuments.forEach((d) => refresh(d, 50));
  return collection;
}
