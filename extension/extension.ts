// Extension entry: wires the runtime (config, planner, runs) into VS Code. Thin by design: everything that
// is not UI lives in runtime/, which never imports vscode.
import * as vscode from 'vscode';
import { join } from 'node:path';
import { EXPORT_TARGETS, type ExportTarget } from '../runtime/planner/export';
import { registerConfigDiagnostics } from './config-diagnostics';
import { CONFIG_SELECTOR, configWorker } from './config-analysis';
import { DashboardFeed } from './dashboard-feed';
import { DASHBOARD_VIEW_TYPE, DashboardPanel } from './dashboard-panel';
import { launchTraining, launchWithMonitor, resumeTraining, type AskCommandLine, type LaunchOutcome } from './launch';
import type { LiveRun } from './live-run';
import { PlanLensProvider, planLensTitle } from './plan-lens';
import { calibrateFromRunCommand, estimateMemoryCommand, exportCommand, type EstimateArgs } from './planner-commands';
import { parseJsonc } from './json-paths';
import { FitQuickFixes } from './quick-fixes';
import { RunRegistry } from './runs';
import { RunsTree, type RunNode } from './runs-tree';
import { createStatusBar } from './status-bar';
import { ScaleLMTaskProvider } from './tasks';
import type { ShowTabMessage } from '../webview/messages';

/** What the extension exports: used by the e2e tests and by other extensions. */
export interface ScaleLMApi {
  statusBarText(): string;
  openDashboard(): Promise<void>;
  /** Whether a dashboard panel is open in this window (made here, or revived after a reload); opens nothing. */
  dashboardShown(): boolean;
  dashboardRequest(message: { type: string; [k: string]: unknown }): Promise<unknown>;
  launch(uri: vscode.Uri, extraArgs?: string[]): Promise<LaunchOutcome>;
  /** Launch with Monitor on a .py; `ask` answers in place of the input box. */
  launchWithMonitor(uri: vscode.Uri, ask?: AskCommandLine): Promise<LaunchOutcome>;
  /** Resume from step N: continue the stopped or crashed run in runDir. */
  resume(runDir: string): Promise<LaunchOutcome>;
  runs(): LiveRun[];
  stopAll(): Promise<void>;
  codeLensTitle(uri: vscode.Uri): Promise<string>;
  estimate(uri: vscode.Uri, args: EstimateArgs): ReturnType<typeof estimateMemoryCommand>;
  pastRuns(): RunNode[];
}

let registry: RunRegistry | undefined;

export function activate(context: vscode.ExtensionContext): ScaleLMApi {
  const log = vscode.window.createOutputChannel('ScaleLM', { log: true });
  context.subscriptions.push(log, configWorker);
  log.info(`ScaleLM ${context.extension.packageJSON.version as string} activated (workspace trusted: ${vscode.workspace.isTrusted})`);

  registry = new RunRegistry();
  const runs = registry;
  context.subscriptions.push(runs);
  const status = createStatusBar(runs);
  context.subscriptions.push(status);

  const settings = () => vscode.workspace.getConfiguration('scalelm');
  const runsDirs = () => (vscode.workspace.workspaceFolders ?? []).map((f) => join(f.uri.fsPath, vscode.workspace.getConfiguration('scalelm', f.uri).get<string>('runsDirectory', 'runs')));
  const tree = new RunsTree(runs, runsDirs);
  context.subscriptions.push(vscode.window.createTreeView('scalelm.runs', { treeDataProvider: tree, showCollapseAll: false }));

  let feed: DashboardFeed | undefined;
  const panelWithFeed = (panel: DashboardPanel): DashboardPanel => {
    if (!feed) {
      feed = new DashboardFeed(panel, {
        registry: runs,
        pastRuns: () => tree.getChildren().flatMap((n) => (n.kind === 'past' ? [n.run] : [])),
        intervalMs: () => settings().get<number>('refreshIntervalMs', 250),
        log,
        resume: async (dir) => void (await resumeTraining(launchCtx, dir)),
      });
      panel.panel.onDidDispose(() => {
        feed?.dispose();
        feed = undefined;
      });
    }
    return panel;
  };
  const showDashboard = (): DashboardPanel => panelWithFeed(DashboardPanel.show(context, log));

  const openDashboard = async (target?: { runId?: string; runDir?: string; tab?: ShowTabMessage['tab'] }): Promise<void> => {
    showDashboard();
    if (target?.runId) {
      const run = runs.get(target.runId);
      if (run) feed?.follow(run);
      feed?.showTab('curves');
    } else if (target?.runDir) {
      await feed?.showPast(target.runDir);
    }
    if (target?.tab) feed?.showTab(target.tab);
  };
  const launchCtx = { extensionPath: context.extensionPath, registry: runs, log, state: context.workspaceState, openDashboard: async (run: LiveRun) => openDashboard({ runId: run.id }) };

  const stopRun = async (node?: RunNode | { runId: string }) => {
    const timeout = settings().get<number>('stopTimeoutMs', 15000);
    let run: LiveRun | undefined;
    if (node && 'runId' in node) run = runs.get(node.runId);
    else if (node && 'kind' in node && node.kind === 'live') run = node.run;
    else {
      const live = runs.live();
      run =
        live.length === 1
          ? live[0]
          : (
              await vscode.window.showQuickPick(
                live.map((r) => ({ label: r.options.runDir, run: r })),
                { title: 'ScaleLM: stop which run?' },
              )
            )?.run;
    }
    if (!run) return;
    const how = run.options.launch ? 'SIGINT to the command, then SIGKILL after the timeout' : 'writing a checkpoint';
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `ScaleLM: stopping (${how})…` }, () => run.stop(timeout));
  };

  /** "Suggest Parallel Layouts": the dashboard's Planner tab on the config. */
  const suggestLayouts = async (uri?: vscode.Uri): Promise<void> => {
    const target = uri instanceof vscode.Uri ? uri : vscode.window.activeTextEditor?.document.uri;
    showDashboard();
    if (!target) return;
    const doc = await vscode.workspace.openTextDocument(target);
    feed?.showPlanner(target, parseJsonc(doc.getText()), true);
  };

  const lens = new PlanLensProvider();
  context.subscriptions.push(
    vscode.commands.registerCommand('scalelm.openDashboard', openDashboard),
    vscode.commands.registerCommand('scalelm.launchTraining', (uri?: vscode.Uri) => launchTraining(launchCtx, uri)),
    vscode.commands.registerCommand('scalelm.launchWithMonitor', (uri?: vscode.Uri) => launchWithMonitor(launchCtx, uri)),
    vscode.commands.registerCommand('scalelm.stopRun', stopRun),
    vscode.commands.registerCommand('scalelm.resumeRun', (node?: RunNode | { runDir: string }) => {
      const dir = node && 'runDir' in node ? node.runDir : node?.kind === 'past' ? node.run.dir : undefined;
      return dir ? resumeTraining(launchCtx, dir) : undefined;
    }),
    vscode.commands.registerCommand('scalelm.estimateMemory', (uri?: vscode.Uri, args?: EstimateArgs) => estimateMemoryCommand(uri, args)),
    vscode.commands.registerCommand('scalelm.suggestLayouts', suggestLayouts),
    vscode.commands.registerCommand('scalelm.calibrateFromRun', (node?: RunNode | { runDir: string }) =>
      calibrateFromRunCommand(node && 'runDir' in node ? node : node?.kind === 'past' ? { runDir: node.run.dir } : undefined),
    ),
    ...EXPORT_TARGETS.map((t: ExportTarget) =>
      vscode.commands.registerCommand(
        `scalelm.export${t === 'deepspeed' ? 'DeepSpeed' : t === 'megatron' ? 'Megatron' : t === 'slurm' ? 'Slurm' : 'Torchrun'}`,
        (uri?: vscode.Uri, o?: { overwrite?: boolean }) => exportCommand(t, uri, o),
      ),
    ),
    vscode.commands.registerCommand('scalelm.refreshRuns', () => tree.refresh()),
    vscode.commands.registerCommand('scalelm.revealRun', (node?: RunNode) => {
      const dir = node?.kind === 'live' ? node.run.options.runDir : node?.kind === 'past' ? node.run.dir : undefined;
      if (dir) void vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(dir));
    }),
    vscode.commands.registerCommand('scalelm.compareRuns', async (node?: RunNode) => {
      showDashboard();
      const dir = node?.kind === 'past' ? node.run.dir : node?.kind === 'live' ? node.run.options.runDir : undefined;
      if (dir) await feed?.compare(dir);
    }),
    vscode.languages.registerCodeLensProvider(CONFIG_SELECTOR, lens),
    vscode.languages.registerCodeActionsProvider(CONFIG_SELECTOR, new FitQuickFixes(), { providedCodeActionKinds: FitQuickFixes.kinds }),
    vscode.workspace.onDidChangeTextDocument(() => lens.refresh()),
    vscode.tasks.registerTaskProvider(ScaleLMTaskProvider.type, new ScaleLMTaskProvider(context.extensionPath, log)),
    vscode.window.registerWebviewPanelSerializer(DASHBOARD_VIEW_TYPE, {
      async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown) {
        DashboardPanel.revive(panel, context, log);
        if (DashboardPanel.instance) panelWithFeed(DashboardPanel.instance);
        // The page's own state (webview/ui-state.ts) names the run it showed before the reload.
        const shown = typeof state === 'object' && state !== null ? (state as { shownRunId?: unknown }).shownRunId : undefined;
        await feed?.restore(typeof shown === 'string' ? shown : null);
      },
    }),
  );
  registerConfigDiagnostics(context);

  return {
    statusBarText: () => status.text,
    openDashboard: () => openDashboard(),
    dashboardShown: () => DashboardPanel.instance !== undefined,
    dashboardRequest: async (message) => {
      if (message.type !== 'ping' && message.type !== 'inspect') throw new Error(`the dashboard answers "ping" and "inspect", not "${message.type}"`);
      return showDashboard().request({ type: message.type });
    },
    launch: (uri, extraArgs) => launchTraining(launchCtx, uri, extraArgs),
    launchWithMonitor: (uri, ask) => launchWithMonitor(launchCtx, uri, ask),
    resume: (runDir) => resumeTraining(launchCtx, runDir),
    runs: () => runs.all(),
    stopAll: async () => {
      await Promise.all(runs.live().map((r) => r.stop(settings().get<number>('stopTimeoutMs', 15000))));
    },
    codeLensTitle: async (uri) => planLensTitle(await vscode.workspace.openTextDocument(uri)),
    estimate: (uri, args) => estimateMemoryCommand(uri, args),
    pastRuns: () => tree.getChildren(),
  };
}

export function deactivate(): void {
  // No runtime process may outlive the window.
  registry?.dispose();
  DashboardPanel.instance?.dispose();
}
