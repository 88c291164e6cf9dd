// Where the dashboard opens, in the real workbench at two window sizes: with room, in an editor group of its
// own beside the open config (which stays in view); in a narrow window, where half the editor area would be
// too small to read, maximised (its group takes the editor area and the side bar is hidden).
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { READABLE } from '../../../extension/dashboard-panel';
import { bridgeAvailable, waitFor, workbench } from '../workbench';

const file = (name: string): vscode.Uri => vscode.Uri.joinPath(vscode.workspace.workspaceFolders![0]!.uri, name);
const isDashboard = (t: vscode.Tab): boolean => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('scalelm.dashboard');
const dashboardGroup = (): vscode.TabGroup | undefined => vscode.window.tabGroups.all.find((g) => g.tabs.some(isDashboard));

async function api(): Promise<ScaleLMApi> {
  return vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
}

/** The dashboard's own measure of its page, once it is at least `minWidth` wide (it may still be resizing). */
async function dashboardViewport(a: ScaleLMApi, minWidth = 0): Promise<{ width: number; height: number }> {
  return waitFor(
    `the dashboard to be ${minWidth} px wide or more`,
    async () => {
      const i = (await a.dashboardRequest({ type: 'inspect' })) as { viewport: { width: number; height: number } };
      return i.viewport.width >= minWidth ? i.viewport : undefined;
    },
    30_000,
    500,
  );
}

async function freshStart(width: number, height: number): Promise<void> {
  await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  await workbench.viewport(width, height);
  // The side bar as a user has it (an earlier maximise hides it).
  if (!(await workbench.layout()).sidebarVisible) await vscode.commands.executeCommand('workbench.action.toggleSidebarVisibility');
  await vscode.window.showTextDocument(file('a.scalelm.json'), { viewColumn: vscode.ViewColumn.One, preview: false });
}

describe('where the dashboard opens', function () {
  this.timeout(120_000);

  before(function () {
    if (!bridgeAvailable()) this.skip();
  });

  after(async function () {
    if (!bridgeAvailable()) return;
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await workbench.viewport(1400, 900);
  });

  it('with room: an editor group of its own beside the config, which stays in view', async function () {
    const a = await api();
    await freshStart(2400, 1200);
    await vscode.commands.executeCommand('scalelm.openDashboard');
    const viewport = await dashboardViewport(a);
    const group = dashboardGroup()!;
    console.log(`wide window: dashboard ${viewport.width}×${viewport.height} px in group ${group.viewColumn} of ${vscode.window.tabGroups.all.length}`);
    assert.ok(viewport.width >= READABLE.width && viewport.height >= READABLE.height, `readable: ${JSON.stringify(viewport)}`);
    assert.ok(group.tabs.every(isDashboard), 'the dashboard has its group to itself');
    assert.notEqual(group.viewColumn, vscode.ViewColumn.One);
    assert.ok(
      vscode.window.visibleTextEditors.some((e) => e.document.uri.toString() === file('a.scalelm.json').toString()),
      'the config stays in view beside it',
    );
    assert.equal((await workbench.layout()).sidebarVisible, true, 'nothing was hidden');
    console.log(`workbench: ${await workbench.screenshot('dashboard-wide')}`);
  });

  it('in a narrow window: maximised, not squeezed into half of a small editor area', async function () {
    const a = await api();
    await freshStart(1100, 800);
    await vscode.commands.executeCommand('scalelm.openDashboard');
    // Beside the config it would get about (1100 − activity bar − side bar) / 2 ≈ 370 px; maximised, the width of the window.
    const viewport = await dashboardViewport(a, READABLE.width);
    console.log(`narrow window: dashboard ${viewport.width}×${viewport.height} px`);
    assert.ok(viewport.height >= READABLE.height, `tall enough: ${JSON.stringify(viewport)}`);
    assert.equal((await workbench.layout()).sidebarVisible, false, 'the side bar made room');
    // Its group spans the window but for the activity bar (48 px): the config's group is hidden, not beside it.
    assert.ok(viewport.width >= 1100 - 60, `the whole editor area: ${viewport.width} px of a 1100 px window`);
    console.log(`workbench: ${await workbench.screenshot('dashboard-narrow')}`);
  });
});
