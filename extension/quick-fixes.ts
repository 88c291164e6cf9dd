// Quick fix for "does not fit": rewrite the layout fields to the planner's best fitting layout, keeping the
// rest of the file (comments, order, formatting) as it is.
import * as vscode from 'vscode';
import { applyEdits, modify } from 'jsonc-parser';
import { describeSuggestion, suggestionEdits } from '../runtime/planner/target';
import { analyseConfig } from './config-analysis';
import { DOES_NOT_FIT } from './config-diagnostics';

/** The document text with each `path = value` written in place (sections created where missing). */
export function applyConfigEdits(text: string, edits: { path: string; value: unknown }[]): string {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  for (const e of edits) {
    text = applyEdits(text, modify(text, e.path.split('.'), e.value, { formattingOptions: { insertSpaces: true, tabSize: 2, eol } }));
  }
  return text;
}

export class FitQuickFixes implements vscode.CodeActionProvider {
  static readonly kinds = [vscode.CodeActionKind.QuickFix];

  provideCodeActions(doc: vscode.TextDocument, _range: vscode.Range, context: vscode.CodeActionContext): vscode.CodeAction[] {
    const diagnostic = context.diagnostics.find((d) => d.code === DOES_NOT_FIT);
    if (!diagnostic) return [];
    const { parsed, fit } = analyseConfig(doc);
    if (!parsed.ok || !fit?.suggestion) return [];
    const action = new vscode.CodeAction(describeSuggestion(parsed.config, fit.suggestion), vscode.CodeActionKind.QuickFix);
    action.diagnostics = [diagnostic];
    action.isPreferred = true;
    const text = doc.getText();
    const edit = new vscode.WorkspaceEdit();
    edit.replace(doc.uri, new vscode.Range(doc.positionAt(0), doc.positionAt(text.length)), applyConfigEdits(text, suggestionEdits(parsed.config, fit.suggestion)));
    action.edit = edit;
    return [action];
  }
}
