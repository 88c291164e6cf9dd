// The planner in the editor, in a real VS Code: the CodeLens, the "does not fit" diagnostic and its quick
// fix, the Explorer menu on a config, exports written next to the config, and the HF config estimate.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { bridgeAvailable, waitFor, workbench } from '../workbench';

function workspaceFile(name: string): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the e2e workspace folder is open');
  return vscode.Uri.joinPath(folder.uri, name);
}

async function api(): Promise<ScaleLMApi> {
  const extension = vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm');
  assert.ok(extension);
  return extension.activate();
}

describe('ScaleLM planner in the editor', function () {
  it('shows the estimate CodeLens above a config', async function () {
    await api();
    const uri = workspaceFile('a.scalelm.json');
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(uri));
    const lenses = await waitFor('CodeLenses on a.scalelm.json', async () => {
      const found = await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri, 10);
      return found && found.some((l) => l.command?.title.includes('GiB')) ? found : undefined;
    });
    const titles = lenses.map((l) => l.command?.title ?? '');
    console.log(`CodeLens on a.scalelm.json: ${JSON.stringify(titles)}`);
    assert.ok(titles.some((t) => /^≈ \d+\.\d (MiB|GiB) \/ device peak · fits 1 × CPU device \(1\.00 GiB\)$/.test(t)), JSON.stringify(titles));
    assert.ok(titles.some((t) => /Launch Training/.test(t)));
  });

  it('a non-fitting layout gets an error with the breakdown and a quick fix that makes it fit', async function () {
    const { codeLensTitle } = await api();
    const uri = workspaceFile('too-big.scalelm.json');
    const original = (await vscode.workspace.fs.readFile(uri)).slice();
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc);
    try {
      assert.match(await codeLensTitle(uri), /does not fit 64 × H100-SXM/);
      const diag = await waitFor('the does-not-fit diagnostic', () => vscode.languages.getDiagnostics(uri).find((d) => d.source === 'ScaleLM planner'), 30_000);
      console.log(`diagnostic: ${diag.message}`);
      assert.equal(diag.severity, vscode.DiagnosticSeverity.Error);
      assert.match(diag.message, /^does not fit: [\d.]+ [GT]iB per device > [\d.]+ GiB usable on 64 × H100-SXM \(params .*optimizer .*activations/);
      assert.equal(doc.getText(diag.range), '"parallel"');
      const actions = await vscode.commands.executeCommand<vscode.CodeAction[]>('vscode.executeCodeActionProvider', uri, diag.range, vscode.CodeActionKind.QuickFix.value);
      const fix = actions.find((a) => /^use .* — fits at [\d.]+ GiB$/.test(a.title));
      assert.ok(fix?.edit, `a quick fix with an edit: ${JSON.stringify(actions.map((a) => a.title))}`);
      console.log(`quick fix: ${fix.title}`);
      assert.ok(await vscode.workspace.applyEdit(fix.edit));
      await waitFor('the diagnostic to clear after the fix', () => !vscode.languages.getDiagnostics(uri).some((d) => d.source === 'ScaleLM planner'), 15_000);
      assert.match(await codeLensTitle(uri), / · fits 64 × H100-SXM · [\d.]+[kM]? tokens\/s$/);
    } finally {
      await vscode.commands.executeCommand('workbench.action.files.revert');
      await vscode.workspace.fs.writeFile(uri, original);
    }
  });

  it('offers Launch Training and Suggest Parallel Layouts in the Explorer menu of a *.scalelm.json', async function () {
    if (!bridgeAvailable()) this.skip();
    await api();
    const entries = await workbench.explorerContextMenu('a.scalelm.json');
    console.log(`Explorer menu of a.scalelm.json: ${JSON.stringify(entries)}`);
    // Menus show a command's title without its category.
    assert.ok(entries.includes('Launch Training'), JSON.stringify(entries));
    assert.ok(entries.includes('Suggest Parallel Layouts'), JSON.stringify(entries));
  });

  it('exports DeepSpeed, Megatron-LM and torchrun files next to the config', async function () {
    await api();
    const uri = workspaceFile('too-big.scalelm.json');
    const expected: [string, string, RegExp][] = [
      ['scalelm.exportDeepSpeed', 'too-big.ds_config.json', /"train_batch_size": 512/],
      ['scalelm.exportMegatron', 'too-big.megatron.sh', /--global-batch-size 512/],
      ['scalelm.exportTorchrun', 'too-big.torchrun.sh', /torchrun .*--nnodes/],
    ];
    for (const [command, file, content] of expected) {
      const written = await vscode.commands.executeCommand<vscode.Uri>(command, uri, { overwrite: true });
      assert.ok(written, `${command} wrote a file`);
      assert.equal(written.path.split('/').pop(), file);
      const text = new TextDecoder().decode(await vscode.workspace.fs.readFile(written));
      assert.match(text, content, `${file}:\n${text.slice(0, 400)}`);
      assert.ok(vscode.window.visibleTextEditors.some((e) => e.document.uri.toString() === written.toString()), `${file} is opened beside the config`);
      await vscode.workspace.fs.delete(written);
    }
  });

  it('Suggest Parallel Layouts opens the dashboard Planner tab on the config, with ranked layouts', async function () {
    const { dashboardRequest } = await api();
    const uri = workspaceFile('too-big.scalelm.json');
    await vscode.commands.executeCommand('scalelm.suggestLayouts', uri);
    const seen = await waitFor('the Planner tab with layouts', async () => {
      const r = (await dashboardRequest({ type: 'inspect' })) as { tab: string; planner: { source: string | null; candidates: number; error: string | null } };
      return r.tab === 'planner' && r.planner.candidates > 0 ? r : undefined;
    }, 30_000);
    console.log(`planner tab: ${JSON.stringify(seen.planner)}`);
    assert.equal(seen.planner.source, 'too-big.scalelm.json');
    assert.equal(seen.planner.error, null);
  });

  it('estimates a HuggingFace config.json for a chosen GPU and count', async function () {
    const { estimate } = await api();
    const result = await estimate(workspaceFile('hf-gpt2/config.json'), { gpu: 'A100-80GB', gpus: 8, noPicker: true });
    assert.ok(result?.candidates.length, 'layouts that fit were found');
    const best = result.candidates[0]!;
    console.log(`gpt2 on 8 × A100-80GB: best ${JSON.stringify(best.layout)} at ${(best.memory.total / 2 ** 30).toFixed(1)} GiB`);
    assert.equal(best.layout.dp * best.layout.tp * best.layout.pp, 8);
    assert.ok(best.memory.total < 80 * 2 ** 30);
  });
});
