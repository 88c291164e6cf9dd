// Extension entry: wires the runtime (planner, config, runs) into VS Code. Thin by design: everything
// that is not UI lives in runtime/, which never imports vscode.
import * as vscode from 'vscode';
import { registerConfigDiagnostics } from './config-diagnostics';
import { DASHBOARD_VIEW_TYPE, DashboardPanel } from './dashboard-panel';

export interface ScaleLMApi {
  statusBarText(): string;
  openDashboard(): Promise<void>;
  dashboardRequest(message: { type: string; [k: string]: unknown }): Promise<unknown>;
}

export function activate(context: vscode.ExtensionContext): ScaleLMApi {
  const log = vscode.window.createOutputChannel('ScaleLM', { log: true });
  context.subscriptions.push(log);
  log.info(`ScaleLM ${context.extension.packageJSON.version as string} activated (workspace trusted: ${vscode.workspace.isTrusted})`);

  const status = vscode.window.createStatusBarItem('scalelm.status', vscode.StatusBarAlignment.Left, 50);
  status.name = 'ScaleLM';
  status.text = '$(pulse) ScaleLM';
  status.tooltip = 'ScaleLM: no run yet. Click to open the dashboard.';
  status.command = 'scalelm.openDashboard';
  status.show();
  context.subscriptions.push(status);

  const openDashboard = async (): Promise<void> => {
    DashboardPanel.show(context, log);
  };
  context.subscriptions.push(
    vscode.commands.registerCommand('scalelm.openDashboard', openDashboard),
    vscode.window.registerWebviewPanelSerializer(DASHBOARD_VIEW_TYPE, {
      async deserializeWebviewPanel(panel: vscode.WebviewPanel) {
        DashboardPanel.revive(panel, context, log);
      },
    }),
  );

  registerConfigDiagnostics(context);

  return {
    statusBarText: () => status.text,
    openDashboard,
    dashboardRequest: async (message) => {
      const panel = DashboardPanel.instance ?? DashboardPanel.show(context, log);
      return panel.request(message);
    },
  };
}

export function deactivate(): void {
  DashboardPanel.instance?.dispose();
}
