// A `scalelm` task type, so runs can be started from tasks.json:
//   { "type": "scalelm", "config": "examples/tiny.scalelm.json", "set": ["parallel.dp=2"] }
import * as vscode from 'vscode';
import { join } from 'node:path';

interface ScaleLMTaskDefinition extends vscode.TaskDefinition {
  config: string;
  set?: string[];
}

export class ScaleLMTaskProvider implements vscode.TaskProvider {
  static readonly type = 'scalelm';

  constructor(private readonly extensionPath: string) {}

  provideTasks(): vscode.Task[] {
    return [];
  }

  resolveTask(task: vscode.Task): vscode.Task | undefined {
    const def = task.definition as ScaleLMTaskDefinition;
    if (typeof def.config !== 'string' || !def.config) return undefined;
    return this.build(def, task.scope ?? vscode.TaskScope.Workspace);
  }

  build(def: ScaleLMTaskDefinition, scope: vscode.WorkspaceFolder | vscode.TaskScope.Global | vscode.TaskScope.Workspace): vscode.Task {
    const node = vscode.workspace.getConfiguration('scalelm').get<string>('nodePath') || process.execPath;
    const python = vscode.workspace.getConfiguration('scalelm').get<string>('pythonPath', '').trim();
    const args = [join(this.extensionPath, 'dist', 'cli.js'), 'train', def.config, ...(def.set ?? []).flatMap((s) => ['--set', s]), ...(python ? ['--python', python] : [])];
    const execution = new vscode.ProcessExecution(node, args, { env: { ELECTRON_RUN_AS_NODE: '1' } });
    const task = new vscode.Task(def, scope, `train ${def.config}`, 'scalelm', execution);
    task.detail = `scalelm train ${def.config}${def.set?.length ? ` ${def.set.map((s) => `--set ${s}`).join(' ')}` : ''}`;
    return task;
  }
}
