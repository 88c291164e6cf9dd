// Problems-panel diagnostics for *.scalelm.json: the cross-field rules that a JSON Schema cannot express
// (tp divides heads, dp·tp·pp = devices, batch divisibility...). Type, enum and unknown-key errors are left
// to VS Code's JSON language service (contributes.jsonValidation), so nothing is reported twice.
import * as vscode from 'vscode';
import { parseConfig } from '../runtime/config/parse';
import { parseJsonc, spanOfPath } from './json-paths';

export const CONFIG_SELECTOR: vscode.DocumentFilter = { pattern: '**/*.scalelm.json' };

export function isScaleLMConfig(doc: vscode.TextDocument): boolean {
  return doc.uri.path.endsWith('.scalelm.json');
}

export function configDiagnostics(doc: vscode.TextDocument): vscode.Diagnostic[] {
  const text = doc.getText();
  const result = parseConfig(parseJsonc(text) as unknown);
  if (result.ok || result.stage !== 'rules') return [];
  return result.errors.map((issue) => {
    const span = spanOfPath(text, issue.path);
    const range = new vscode.Range(doc.positionAt(span.offset), doc.positionAt(span.offset + span.length));
    const d = new vscode.Diagnostic(range, issue.message, vscode.DiagnosticSeverity.Error);
    d.source = 'ScaleLM';
    d.code = issue.path;
    return d;
  });
}

export function registerConfigDiagnostics(context: vscode.ExtensionContext): vscode.DiagnosticCollection {
  const collection = vscode.languages.createDiagnosticCollection('scalelm');
  const timers = new Map<string, NodeJS.Timeout>();
  const refresh = (doc: vscode.TextDocument, delayMs = 0) => {
    if (!isScaleLMConfig(doc)) return;
    const key = doc.uri.toString();
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => {
      timers.delete(key);
      collection.set(doc.uri, configDiagnostics(doc));
    }, delayMs));
  };
  context.subscriptions.push(
    collection,
    vscode.workspace.onDidOpenTextDocument((d) => refresh(d)),
    vscode.workspace.onDidChangeTextDocument((e) => refresh(e.document, 300)),
    vscode.workspace.onDidCloseTextDocument((d) => collection.delete(d.uri)),
    { dispose: () => timers.forEach((t) => clearTimeout(t)) },
  );
  vscode.workspace.textDocuments.forEach((d) => refresh(d));
  return collection;
}
