// A `scalelm` task type, so runs can be started from tasks.json:
//   { "type": "scalelm", "config": "examples/tiny.scalelm.json", "set": ["parallel.dp=2"] }      (scalelm train)
//   { "type": "scalelm", "command": ["torchrun", "--nproc-per-node", "2", "train.py"] }          (scalelm launch)
// A task runs the CLI in a terminal: Ctrl-C there stops it the CLI's way (SIGINT to a launched command's
// process groups, SIGKILL after the timeout).
import * as vscode from 'vscode';
import { basename, join } from 'node:path';

export interface ScaleLMTaskDefinition extends vscode.TaskDefinition {
  config?: string;
  set?: string[];
  command?: string[];
  name?: string;
}

/** Why a definition cannot run (exactly one of config and command, each well formed), or undefined. */
export function taskDefinitionProblem(def: ScaleLMTaskDefinition): string | undefined {
  const hasConfig = def.config !== undefined;
  const hasCommand = def.command !== undefined;
  if (hasConfig === hasCommand) return 'a scalelm task needs exactly one of "config" (a *.scalelm.json to train) and "command" (a command to launch)';
  if (hasConfig && (typeof def.config !== 'string' || !def.config)) return '"config" must be the path of a *.scalelm.json';
  if (hasCommand && (!Array.isArray(def.command) || !def.command.length || !def.command.every((a) => typeof a === 'string') || !def.command[0]))
    return '"command" must be a non-empty array of strings, the program first';
  if (def.set !== undefined && (!hasConfig || !Array.isArray(def.set) || !def.set.every((s) => typeof s === 'string'))) return '"set" goes with "config" and is an array of "path=value" strings';
  if (def.name !== undefined && (!hasCommand || typeof def.name !== 'string')) return '"name" goes with "command" and is a string';
  return undefined;
}

export class ScaleLMTaskProvider implements vscode.TaskProvider {
  static readonly type = 'scalelm';

  constructor(
    private readonly extensionPath: string,
    private readonly log?: vscode.LogOutputChannel,
  ) {}

  provideTasks(): vscode.Task[] {
    return [];
  }

  resolveTask(task: vscode.Task): vscode.Task | undefined {
    const def = task.definition as ScaleLMTaskDefinition;
    const problem = taskDefinitionProblem(def);
    if (problem) {
      this.log?.warn(`task ${JSON.stringify(task.name)}: ${problem}`);
      return undefined;
    }
    return this.build(def, task.scope ?? vscode.TaskScope.Workspace);
  }

  build(def: ScaleLMTaskDefinition, scope: vscode.WorkspaceFolder | vscode.TaskScope.Global | vscode.TaskScope.Workspace): vscode.Task {
    const settings = vscode.workspace.getConfiguration('scalelm');
    const node = settings.get<string>('nodePath') || process.execPath;
    const cli = join(this.extensionPath, 'dist', 'cli.js');
    let args: string[];
    let label: string;
    if (def.command) {
      const script = def.command.find((a, i) => i > 0 && /\.(py|sh)$/.test(a)) ?? def.command[0]!;
      const name = def.name ?? basename(script).replace(/\.(py|sh)$/, '');
      args = [cli, 'launch', '--name', name, '--stop-timeout-ms', String(settings.get<number>('stopTimeoutMs', 15000)), '--', ...def.command];
      label = `launch ${name}`;
    } else {
      const python = settings.get<string>('pythonPath', '').trim();
      args = [cli, 'train', def.config!, ...(def.set ?? []).flatMap((s) => ['--set', s]), ...(python ? ['--python', python] : [])];
      label = `train ${def.config}`;
    }
    const execution = new vscode.ProcessExecution(node, args, { env: { ELECTRON_RUN_AS_NODE: '1' } });
    const task = new vscode.Task(def, scope, label, 'scalelm', execution);
    task.detail = `scalelm ${args.slice(1).join(' ')}`;
    return task;
  }
}
