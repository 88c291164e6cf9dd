// In an untrusted workspace the extension still plans (limited support) but refuses to launch training,
// in the command handler itself (menus only grey out; executeCommand still arrives).
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';

describe('ScaleLM in an untrusted workspace', function () {
  it('activates with limited support and refuses to launch, starting nothing', async function () {
    assert.equal(vscode.workspace.isTrusted, false, 'the suite runs in an untrusted folder');
    const extension = vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm');
    assert.ok(extension);
    const api = await extension.activate();
    const uri = vscode.Uri.joinPath(vscode.workspace.workspaceFolders![0]!.uri, 'a.scalelm.json');
    const outcome = await api.launch(uri);
    assert.ok('refused' in outcome && outcome.refused === 'untrusted', JSON.stringify(outcome));
    assert.deepEqual(api.runs(), [], 'no run was started');
    const viaCommand = await vscode.commands.executeCommand<{ refused?: string }>('scalelm.launchTraining', uri);
    assert.equal(viaCommand?.refused, 'untrusted');
    assert.deepEqual(api.runs(), []);
    // Launch with Monitor runs the workspace's script: refused before it even asks for the command line.
    const script = vscode.Uri.joinPath(vscode.workspace.workspaceFolders![0]!.uri, 'monitored.py');
    let asked = false;
    const monitored = await api.launchWithMonitor(script, async () => ((asked = true), 'python monitored.py'));
    assert.ok('refused' in monitored && monitored.refused === 'untrusted', JSON.stringify(monitored));
    assert.equal(asked, false, 'no command line was asked for');
    assert.equal((await vscode.commands.executeCommand<{ refused?: string }>('scalelm.launchWithMonitor', script))?.refused, 'untrusted');
    assert.deepEqual(api.runs(), []);
  });

  it('only parses configs: the CodeLens says estimates wait for trust (a hostile config cannot make the host plan)', async function () {
    const api = await vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
    const uri = vscode.Uri.joinPath(vscode.workspace.workspaceFolders![0]!.uri, 'a.scalelm.json');
    const title = await api.codeLensTitle(uri);
    assert.match(title, /no estimate — estimates run in trusted workspaces only/);
    assert.doesNotMatch(title, /device peak/);
  });
});
