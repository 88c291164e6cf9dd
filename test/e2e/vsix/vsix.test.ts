// The packaged extension as a user gets it: installed from scalelm.vsix into code-server, activated by the
// workspace, its commands run from the bundle alone (no node_modules), including a real training run.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { waitFor } from '../workbench';

describe('ScaleLM installed from the .vsix', function () {
  this.timeout(180_000);

  it('is the installed copy, not a development one, and activates on the workspace', async function () {
    const ext = vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm');
    assert.ok(ext, 'scalelm.scalelm is installed');
    console.log(`installed at ${ext.extensionUri.fsPath}`);
    assert.match(ext.extensionUri.fsPath, /scalelm\.scalelm-0\.1\.0/, 'loaded from the extensions folder');
    await waitFor('activation', () => ext.isActive, 30_000);
  });

  it('runs its commands: the dashboard opens and a training run completes from the packaged runtime', async function () {
    const api = await vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
    await vscode.commands.executeCommand('scalelm.openDashboard');
    const pong = (await api.dashboardRequest({ type: 'ping' })) as { type: string; components: string[] };
    assert.equal(pong.type, 'pong');
    const uri = vscode.Uri.joinPath(vscode.workspace.workspaceFolders![0]!.uri, 'a.scalelm.json');
    const outcome = await api.launch(uri, ['--set', 'train.steps=3']);
    assert.ok('started' in outcome, JSON.stringify(outcome));
    await waitFor('the run to finish', () => !outcome.started.live, 150_000);
    assert.equal(outcome.started.state, 'finished', outcome.started.detail);
    assert.equal(outcome.started.lastStep?.step, 3);
  });
});
