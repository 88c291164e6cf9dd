// Quick fix for "does not fit": rewrite the layout fields to the planner's best fitting layout, keeping the
// rest of the file (comments, order, formatting) as it is.
import * as vscode from 'vscode';
import { describeSuggestion, suggestionEdits } from '../runtime/planner/target';
import { analyseConfig } from './config-analysis';
import { DOES_NOT_FIT } from './config-diagnostics';
import { applyConfigEdits } from './json-paths';

/** A workspace edit that rewrites the given config fields in `doc`, leaving everything else as it is. */
export function configFieldsEdit(doc: vscode.TextDocument, edits: { path: string; value: unknown }[]): vscode.WorkspaceEdit {
  const text = doc.getText();
  const edit = new vscode.WorkspaceEdit();
  edit.replace(doc.uri, new vscode.Range(doc.positionAt(0), doc.positionAt(text.length)), applyConfigEdits(text, edits));
  return edit;
}

export class FitQuickFixes implements vscode.CodeActionProvider {
  static readonly kinds = [vscode.CodeActionKind.QuickFix];

  async provideCodeActions(doc: vscode.TextDocument, _range: vscode.Range, context: vscode.CodeActionContext): Promise<vscode.CodeAction[]> {
    const diagnostic = context.diagnostics.find((d) => d.code === DOES_NOT_FIT);
    if (!diagnostic) return [];
    const { parsed, fit } = await analyseConfig(doc);
    if (!parsed.ok || !fit?.suggestion) return [];
    const action = new vscode.CodeAction(describeSuggestion(parsed.config, fit.suggestion), vscode.CodeActionKind.QuickFix);
    action.diagnostics = [diagnostic];
    action.isPreferred = true;
    action.edit = configFieldsEdit(doc, suggestionEdits(parsed.config, fit.suggestion));
    return [action];
  }
}
