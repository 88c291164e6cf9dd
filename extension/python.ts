// The Python the torch engine runs (passed to the CLI as --python): the `scalelm.pythonPath` setting, else
// the interpreter selected in the VS Code Python extension when that extension is active, else nothing (the
// CLI then takes SCALELM_PYTHON, else python3 on PATH). The Python extension's exported API is read
// defensively: no npm dependency on its types, and any shape we do not recognise counts as absent.
import * as vscode from 'vscode';

interface PythonExtensionApi {
  environments?: { getActiveEnvironmentPath?(resource?: vscode.Uri): { path?: string } | undefined };
  settings?: { getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } | undefined };
}

export function selectedPython(resource?: vscode.Uri): { python: string; source: string } | undefined {
  const setting = vscode.workspace.getConfiguration('scalelm', resource).get<string>('pythonPath', '').trim();
  if (setting) return { python: setting, source: 'scalelm.pythonPath' };
  const ext = vscode.extensions.getExtension<PythonExtensionApi>('ms-python.python');
  if (!ext?.isActive) return undefined;
  try {
    const api = ext.exports;
    const active = api?.environments?.getActiveEnvironmentPath?.(resource)?.path;
    if (typeof active === 'string' && active) return { python: active, source: "the Python extension's selected interpreter" };
    const exec = api?.settings?.getExecutionDetails?.(resource)?.execCommand;
    if (Array.isArray(exec) && typeof exec[0] === 'string' && exec[0]) return { python: exec[0], source: "the Python extension's selected interpreter" };
  } catch {
    // an API we do not understand: fall back to the CLI's own choice
  }
  return undefined;
}
