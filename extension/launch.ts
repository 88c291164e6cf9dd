// "ScaleLM: Launch Training": refuse in an untrusted workspace; validate and plan first; a layout that does
// not fit is not started — the breakdown is shown with the planner's best fitting layout to apply instead;
// otherwise spawn the runtime with progress, connect, and open the dashboard.
import * as vscode from 'vscode';
import { existsSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { CATEGORIES } from '../runtime/planner/types';
import { CommandLineError, joinCommandLine, splitCommandLine } from '../runtime/launch/command-line';
import { describeSuggestion, suggestionEdits } from '../runtime/planner/target';
import { formatBytes } from '../common/units';
import { analyseConfig } from './config-analysis';
import { LiveRun } from './live-run';
import { selectedPython } from './python';
import { configFieldsEdit } from './quick-fixes';
import type { RunRegistry } from './runs';

export interface LaunchContext {
  extensionPath: string;
  registry: RunRegistry;
  log: vscode.LogOutputChannel;
  openDashboard: (run: LiveRun) => Promise<void>;
  /** Where Launch with Monitor remembers each file's command line (the workspace's state). */
  state: vscode.Memento;
}

export type LaunchOutcome = { started: LiveRun } | { refused: 'untrusted' | 'invalid' | 'does-not-fit' | 'cannot-run-here' | 'cancelled' | 'failed'; reason: string };

function runStamp(now = new Date()): string {
  return now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

function refuseUntrusted(): LaunchOutcome {
  const reason = 'Launching training runs code from this workspace, which is not trusted.';
  void vscode.window.showWarningMessage(`ScaleLM: ${reason} Trust the workspace to launch runs.`, 'Manage Workspace Trust').then((a) => {
    if (a) void vscode.commands.executeCommand('workbench.trust.manage');
  });
  return { refused: 'untrusted', reason };
}

// Window-scoped, like Stop's own (extension.ts).
const stopTimeoutMs = (): number => vscode.workspace.getConfiguration('scalelm').get<number>('stopTimeoutMs', 15000);

export async function launchTraining(ctx: LaunchContext, uri?: vscode.Uri, extraArgs: string[] = []): Promise<LaunchOutcome> {
  // The menu's when-clause only greys the entry out; executeCommand still arrives here.
  if (!vscode.workspace.isTrusted) return refuseUntrusted();
  const target = uri instanceof vscode.Uri ? uri : vscode.window.activeTextEditor?.document.uri;
  if (!target || !target.path.endsWith('.scalelm.json')) {
    void vscode.window.showErrorMessage('ScaleLM: choose a *.scalelm.json to launch (right-click it in the Explorer).');
    return { refused: 'invalid', reason: 'no *.scalelm.json given' };
  }
  const doc = await vscode.workspace.openTextDocument(target);
  if (doc.isDirty) await doc.save();
  const { parsed, fit, localProblem } = await analyseConfig(doc);
  if (!parsed.ok) {
    const reason = parsed.errors.map((e) => e.message).join('\n');
    void vscode.window.showErrorMessage(`ScaleLM: ${basename(target.fsPath)} has ${parsed.errors.length} problem(s); nothing was started.`, { modal: true, detail: reason });
    return { refused: 'invalid', reason };
  }
  if (parsed.config.launch) return launchConfigCommand(ctx, target, parsed.config.name, parsed.config.launch.cwd);
  if (fit && fit.result.ok && !fit.result.fits) {
    const per = fit.result.memory.perDevice;
    const detail = [
      `Planned peak per device: ${formatBytes(per.total)} — usable: ${formatBytes(fit.target.capacity)} on ${fit.target.label}.`,
      ...CATEGORIES.filter((c) => per[c] > 0).map((c) => `  ${c}: ${formatBytes(per[c])}`),
      fit.suggestion ? `\nThe planner's best fitting layout: ${describeSuggestion(parsed.config, fit.suggestion)}.` : '\nNo layout of these devices fits: add devices or memory per device.',
    ].join('\n');
    ctx.log.warn(`not started, does not fit:\n${detail}`);
    const apply = fit.suggestion ? 'Use the Suggested Layout' : undefined;
    const answer = await vscode.window.showWarningMessage(`ScaleLM: this layout does not fit its devices; nothing was started.`, { modal: true, detail }, ...(apply ? [apply] : []));
    if (answer && apply && fit.suggestion) {
      await vscode.workspace.applyEdit(configFieldsEdit(doc, suggestionEdits(parsed.config, fit.suggestion)));
      await doc.save();
    }
    return { refused: 'does-not-fit', reason: detail };
  }

  if (localProblem) {
    // Refused before anything is spawned or created: the reason is the runtime's own.
    ctx.log.warn(`not started, the local runtime cannot train ${basename(target.fsPath)}: ${localProblem}`);
    // Not awaited: the refusal is the outcome; the dialog only tells the user (a test host refuses dialogs).
    vscode.window
      .showWarningMessage(`ScaleLM: ${basename(target.fsPath)} cannot train on this machine; nothing was started.`, {
        modal: true,
        detail: `${localProblem}\n\nPlan it (CodeLens, Planner tab) or export it for torchrun / DeepSpeed / Megatron instead.`,
      })
      .then(undefined, () => undefined);
    return { refused: 'cannot-run-here', reason: localProblem };
  }
  const settings = vscode.workspace.getConfiguration('scalelm', target);
  const folder = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? dirname(target.fsPath);
  const runDir = join(folder, settings.get<string>('runsDirectory', 'runs'), `${parsed.config.name.replace(/[^A-Za-z0-9._-]+/g, '-')}-${runStamp()}`);
  const backend = settings.get<string>('defaultBackend', 'auto');
  const args = [...extraArgs];
  if (backend !== 'auto' && !/"backend"\s*:/.test(doc.getText())) args.push('--set', `devices.backend=${backend}`);
  // The torch engine's interpreter (devices.engine torch/auto); the CLI names it in any refusal.
  const python = selectedPython(target);
  if (python && !args.includes('--python')) args.push('--python', python.python);
  const run = new LiveRun(`${Date.now().toString(36)}`, {
    nodePath: settings.get<string>('nodePath') || process.execPath,
    cliPath: join(ctx.extensionPath, 'dist', 'cli.js'),
    configPath: target.fsPath,
    runDir,
    cwd: dirname(target.fsPath),
    extraArgs: args,
    log: (line, level) => ctx.log[level](line),
  });
  return startRun(ctx, run, `starting ${parsed.config.name}`);
}

/**
 * A config with a `launch` section: its command runs under `scalelm launch --config` (no fit check — the
 * command, not the local runtime, trains). Its cwd must stay inside the workspace.
 */
async function launchConfigCommand(ctx: LaunchContext, target: vscode.Uri, name: string, cwd: string | undefined): Promise<LaunchOutcome> {
  const base = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? dirname(target.fsPath);
  const dir = resolve(dirname(target.fsPath), cwd ?? '.');
  const rel = relative(base, dir);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    const reason = `launch.cwd "${cwd}" is ${dir}, outside the workspace folder ${base}; a config may only run its command inside the workspace.`;
    void vscode.window.showErrorMessage(`ScaleLM: ${basename(target.fsPath)}: ${reason} Nothing was started.`);
    return { refused: 'invalid', reason };
  }
  const settings = vscode.workspace.getConfiguration('scalelm', target);
  const run = new LiveRun(`${Date.now().toString(36)}`, {
    nodePath: settings.get<string>('nodePath') || process.execPath,
    cliPath: join(ctx.extensionPath, 'dist', 'cli.js'),
    configPath: target.fsPath,
    runDir: join(base, settings.get<string>('runsDirectory', 'runs'), `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}-${runStamp()}`),
    cwd: dirname(target.fsPath),
    launch: { name, stopTimeoutMs: stopTimeoutMs() },
    log: (line, level) => ctx.log[level](line),
  });
  return startRun(ctx, run, `launching ${name}`);
}

/** The command line Launch with Monitor offers a script the first time: torchrun of the configured Python. */
export function defaultLaunchLine(script: string, resource: vscode.Uri): string {
  const python = selectedPython(resource)?.python;
  // The interpreter's own torchrun (a venv's bin/), else the same module through that interpreter.
  const torchrun = python ? join(dirname(python), 'torchrun') : undefined;
  const launcher = !python ? ['torchrun'] : torchrun && existsSync(torchrun) ? [torchrun] : [python, '-m', 'torch.distributed.run'];
  return joinCommandLine([...launcher, '--nproc-per-node', '1', script]);
}

const rememberedKey = (file: string): string => `scalelm.launchWithMonitor:${file}`;

/** Asks for the command line in an input box; undefined = cancelled. The e2e tests answer the real box. */
export type AskCommandLine = (offered: string, file: string) => Thenable<string | undefined>;

const askInInputBox: AskCommandLine = (offered, file) =>
  vscode.window.showInputBox({
    title: `ScaleLM: Launch ${basename(file)} with Monitor`,
    prompt: 'The command line to run (no shell). Ranks that use scalelm.Monitor report to the dashboard.',
    value: offered,
    ignoreFocusOut: true,
    validateInput: (line) => {
      try {
        return splitCommandLine(line).length ? undefined : 'Type the command to run, e.g. torchrun --nproc-per-node 2 train.py';
      } catch (e) {
        return (e as Error).message;
      }
    },
  });

/**
 * "ScaleLM: Launch with Monitor" on a .py: asks for the command line (the one last used for this file,
 * else torchrun of the configured Python), remembers it, and runs it under `scalelm launch` — the same
 * LiveRun, Runs view, status bar and dashboard as Launch Training.
 */
export async function launchWithMonitor(ctx: LaunchContext, uri?: vscode.Uri, ask: AskCommandLine = askInInputBox): Promise<LaunchOutcome> {
  if (!vscode.workspace.isTrusted) return refuseUntrusted();
  const target = uri instanceof vscode.Uri ? uri : vscode.window.activeTextEditor?.document.uri;
  if (!target || target.scheme !== 'file' || !target.path.endsWith('.py')) {
    void vscode.window.showErrorMessage('ScaleLM: choose a Python script (*.py) to launch with the monitor.');
    return { refused: 'invalid', reason: 'no *.py given' };
  }
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === target.toString());
  if (open?.isDirty) await open.save();
  const folder = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? dirname(target.fsPath);
  const script = relative(folder, target.fsPath);
  const offered = ctx.state.get<string>(rememberedKey(target.fsPath)) ?? defaultLaunchLine(script.startsWith('..') ? target.fsPath : script, target);
  const line = await ask(offered, target.fsPath);
  if (line === undefined) return { refused: 'cancelled', reason: 'no command line given' };
  let command: string[];
  try {
    command = splitCommandLine(line);
  } catch (e) {
    if (!(e instanceof CommandLineError)) throw e;
    void vscode.window.showErrorMessage(`ScaleLM: the command line cannot be read: ${e.message}; nothing was started.`);
    return { refused: 'invalid', reason: e.message };
  }
  if (!command.length) {
    void vscode.window.showErrorMessage('ScaleLM: the command line is empty; nothing was started.');
    return { refused: 'invalid', reason: 'empty command line' };
  }
  await ctx.state.update(rememberedKey(target.fsPath), line);
  const name = basename(target.fsPath).replace(/\.py$/, '');
  const settings = vscode.workspace.getConfiguration('scalelm', target);
  const run = new LiveRun(`${Date.now().toString(36)}`, {
    nodePath: settings.get<string>('nodePath') || process.execPath,
    cliPath: join(ctx.extensionPath, 'dist', 'cli.js'),
    configPath: target.fsPath,
    runDir: join(folder, settings.get<string>('runsDirectory', 'runs'), `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}-${runStamp()}`),
    cwd: folder,
    launch: { name, command, stopTimeoutMs: stopTimeoutMs() },
    log: (line, level) => ctx.log[level](line),
  });
  return startRun(ctx, run, `launching ${name}`);
}

/** "Resume from step N": continues a stopped or crashed run in its folder (`scalelm train --resume DIR`). */
export async function resumeTraining(ctx: LaunchContext, runDir: string): Promise<LaunchOutcome> {
  if (!vscode.workspace.isTrusted) {
    const reason = 'Resuming a run executes code from this workspace, which is not trusted.';
    void vscode.window.showWarningMessage(`ScaleLM: ${reason}`);
    return { refused: 'untrusted', reason };
  }
  const settings = vscode.workspace.getConfiguration('scalelm', vscode.Uri.file(runDir));
  const run = new LiveRun(`${Date.now().toString(36)}`, {
    nodePath: settings.get<string>('nodePath') || process.execPath,
    cliPath: join(ctx.extensionPath, 'dist', 'cli.js'),
    configPath: runDir,
    runDir,
    cwd: dirname(runDir),
    resume: true,
    log: (line, level) => ctx.log[level](line),
  });
  return startRun(ctx, run, `resuming ${basename(runDir)}`);
}

async function startRun(ctx: LaunchContext, run: LiveRun, title: string): Promise<LaunchOutcome> {
  const runDir = run.options.runDir;
  ctx.registry.add(run);
  // The runtime's own last words (stderr) are the reason a start failed: keep them for the notification.
  const stderr: string[] = [];
  const log = run.options.log;
  run.options.log = (line, level) => {
    if (level !== 'info' && line.trim()) stderr.push(line.replace(/^scalelm: /, ''));
    if (stderr.length > 20) stderr.shift();
    log(line, level);
  };
  try {
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `ScaleLM: ${title}`, cancellable: true }, async (progress, token) => {
      progress.report({ message: 'planning, spawning the runtime…' });
      token.onCancellationRequested(() => void run.stop(0));
      const listening = await run.start();
      progress.report({ message: `listening on ${listening.url}` });
    });
  } catch (e) {
    const reason = stderr.length ? stderr[stderr.length - 1]! : (e as Error).message;
    ctx.log.error(`launch failed: ${(e as Error).message}`);
    void vscode.window.showErrorMessage(`ScaleLM: the run did not start — ${reason}`, 'Show Log').then((a) => a && ctx.log.show());
    return { refused: 'failed', reason };
  }
  ctx.log.info(`run ${run.id} started in ${runDir}`);
  await ctx.openDashboard(run);
  return { started: run };
}
