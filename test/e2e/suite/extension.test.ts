// The extension in a real VS Code 1.100 (code-server) on test/fixtures/e2e-workspace: activation,
// status bar, dashboard webview round trip, and schema diagnostics from VS Code's own JSON service.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { bridgeAvailable, waitFor, workbench } from '../workbench';

const EXTENSION_ID = 'scalelm.scalelm';

function workspaceFile(name: string): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the e2e workspace folder is open');
  return vscode.Uri.joinPath(folder.uri, name);
}

async function activeApi(): Promise<ScaleLMApi> {
  const extension = vscode.extensions.getExtension<ScaleLMApi>(EXTENSION_ID);
  assert.ok(extension, `extension ${EXTENSION_ID} is installed in the extension host`);
  // Activation must come from the manifest's activation event (workspaceContains), not from this test.
  await waitFor(`${EXTENSION_ID} to activate by itself`, () => extension.isActive, 30_000);
  // isActive is also true after a failed activation; activate() then rethrows the activation error.
  const api = await extension.activate();
  assert.ok(api, `${EXTENSION_ID} activate() returned its API`);
  return api;
}

describe('ScaleLM extension in VS Code', function () {
  before(function () {
    console.log(`VS Code ${vscode.version} (${vscode.env.appName}, ${vscode.env.appHost}, remote: ${vscode.env.remoteName ?? 'none'})`);
  });

  it('activates by itself on a workspace that contains a *.scalelm.json', async function () {
    const api = await activeApi();
    assert.equal(typeof api.statusBarText, 'function', 'activate() returns the ScaleLM API');
    const extension = vscode.extensions.getExtension(EXTENSION_ID)!;
    console.log(`${EXTENSION_ID} ${extension.packageJSON.version} active from ${extension.extensionUri.fsPath}`);
  });

  it('shows a ScaleLM status bar item (extension API)', async function () {
    const api = await activeApi();
    assert.match(api.statusBarText(), /ScaleLM/);
  });

  it('draws the ScaleLM status bar item in the workbench', async function () {
    if (!bridgeAvailable()) this.skip();
    const item = await waitFor('a status bar item that says ScaleLM', async () => (await workbench.statusBar()).find((i) => /ScaleLM/.test(i.text) || /ScaleLM/.test(i.ariaLabel)));
    assert.match(item.id, /scalelm/i, `the drawn item belongs to the extension (id "${item.id}")`);
  });

  it('registers "scalelm.openDashboard" and it opens the dashboard webview panel', async function () {
    await activeApi();
    const commands = await vscode.commands.getCommands(true);
    assert.ok(commands.includes('scalelm.openDashboard'), 'command scalelm.openDashboard is registered');
    await vscode.commands.executeCommand('scalelm.openDashboard');
    const tab = await waitFor('a scalelm.dashboard webview tab', () =>
      vscode.window.tabGroups.all.flatMap((g) => g.tabs).find((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('scalelm.dashboard')),
    );
    assert.match(tab.label, /ScaleLM/);
  });

  it('the dashboard answers ping with its rendered components and a drawn chart', async function () {
    const api = await activeApi();
    // The loss chart is on the Curves tab; an earlier test may have left the Planner in front (and a page
    // that was hidden reloads when shown, so ask until the tab is there).
    await waitFor(
      'the Curves tab in front',
      async () => {
        await vscode.commands.executeCommand('scalelm.openDashboard', { tab: 'curves' });
        return ((await api.dashboardRequest({ type: 'inspect' })) as { tab: string }).tab === 'curves';
      },
      30_000,
      500,
    );
    // A page shown again draws its charts on the next animation frame: ask until it has (or the time is up).
    type Pong = { type: string; components: string[]; chartInk: number };
    let reply = (await api.dashboardRequest({ type: 'ping' })) as Pong;
    await waitFor('the loss chart drawn', async () => (reply = (await api.dashboardRequest({ type: 'ping' })) as Pong).chartInk > 0, 15_000, 250).catch(() => undefined); // the assertion below says what was seen
    console.log(`dashboard pong: components=${JSON.stringify(reply.components)} chartInk=${reply.chartInk}`);
    assert.equal(reply.type, 'pong');
    assert.ok(Array.isArray(reply.components) && reply.components.some((c) => c.startsWith('vscode-')), `vscode-elements components rendered: ${JSON.stringify(reply.components)}`);
    assert.ok(reply.chartInk > 0, `the chart canvas has ink (${reply.chartInk} non-transparent pixels)`);
    if (bridgeAvailable()) console.log(`workbench with the dashboard: ${await workbench.screenshot('dashboard')}`);
  });

  // jsonValidation is declarative (package.json + media/scalelm.schema.json): it must work even if activation fails.
  it('bad.scalelm.json gets a schema diagnostic on parallel.zero from the JSON language service', async function () {
    const bad = workspaceFile('bad.scalelm.json');
    const doc = await vscode.workspace.openTextDocument(bad);
    await vscode.window.showTextDocument(doc, { preview: false });
    const diagnostics = await waitFor(
      'diagnostics on bad.scalelm.json',
      () => {
        const found = vscode.languages.getDiagnostics(bad);
        return found.length > 0 ? found : undefined;
      },
      45_000,
    );
    const described = JSON.stringify(diagnostics.map((d) => `${d.source ?? '?'} ${d.range.start.line + 1}:${d.range.start.character + 1} "${doc.getText(d.range)}" ${d.message}`));
    console.log(`diagnostics on bad.scalelm.json: ${described}`);
    // The JSON service's enum message ("Value is not accepted. Valid values: 0, 1, 2, 3."), on the value itself;
    // the extension may add its own diagnostics next to it.
    const onZero = diagnostics.find((d) => doc.getText(d.range).trim() === '7' && /Valid values|not accepted/i.test(d.message));
    assert.ok(onZero, `a schema diagnostic on the value 7 naming the valid values; got ${described}`);
    assert.match(onZero.message, /0, 1, 2, 3/, `the message names the allowed values: "${onZero.message}"`);
    assert.ok(onZero.severity <= vscode.DiagnosticSeverity.Warning, `an error or warning, not a hint (severity ${onZero.severity})`);
  });

  it('a.scalelm.json (valid) and other.json (not a ScaleLM file) get no problems', async function () {
    const bad = workspaceFile('bad.scalelm.json');
    for (const name of ['a.scalelm.json', 'other.json']) {
      await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(workspaceFile(name)), { preview: false });
    }
    // The JSON service has validated bad.scalelm.json (previous test); give it time for these two as well.
    await waitFor('diagnostics on bad.scalelm.json', () => vscode.languages.getDiagnostics(bad).length > 0, 45_000);
    await new Promise((r) => setTimeout(r, 1500));
    // A valid config may carry hints (information), never errors or warnings; other.json carries nothing.
    const problems = (name: string, worst: vscode.DiagnosticSeverity): string[] =>
      vscode.languages
        .getDiagnostics(workspaceFile(name))
        .filter((d) => d.severity <= worst)
        .map((d) => `${d.range.start.line + 1}: ${d.message}`);
    assert.deepEqual(problems('a.scalelm.json', vscode.DiagnosticSeverity.Warning), [], 'a.scalelm.json has no errors or warnings');
    assert.deepEqual(problems('other.json', vscode.DiagnosticSeverity.Hint), [], 'other.json has no diagnostics at all');
  });
});

describe('ScaleLM in the workbench UI', function () {
  it('adds no "ScaleLM:" entries to the Explorer context menu of an ordinary JSON file', async function () {
    if (!bridgeAvailable()) this.skip();
    await activeApi();
    const entries = await workbench.explorerContextMenu('other.json');
    console.log(`Explorer menu of other.json: ${JSON.stringify(entries)}`);
    assert.ok(
      entries.some((e) => /Copy Path/i.test(e)),
      `the menu was read (it has "Copy Path"): ${JSON.stringify(entries)}`,
    );
    // Menus show titles without the "ScaleLM:" category, so look for the titles themselves.
    assert.deepEqual(
      entries.filter((e) => /ScaleLM|Launch Training|Suggest Parallel Layouts|Estimate Training Memory/i.test(e)),
      [],
    );
  });
});
