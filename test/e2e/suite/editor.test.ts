// The planner in the editor, in a real VS Code: the CodeLens, the "does not fit" diagnostic and its quick
// fix, the Explorer menu on a config, exports written next to the config, and the HF config estimate.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { calibrateRun } from '../../../runtime/commands/calibrate';
import { parseConfig } from '../../../runtime/config/parse';
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
    assert.ok(
      titles.some((t) => /^≈ \d+\.\d (MiB|GiB) \/ device peak · fits 1 × CPU device \(1\.00 GiB\)$/.test(t)),
      JSON.stringify(titles),
    );
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
      // The lens says which memory figure it shows: nvidia-smi's, with PyTorch's allocated peak beside it.
      assert.match(await codeLensTitle(uri), / · fits 64 × H100-SXM · [\d.]+[kM]? tokens\/s · as nvidia-smi shows it \(PyTorch allocates [\d.]+ GiB\)$/);
    } finally {
      await vscode.commands.executeCommand('workbench.action.files.revert');
      await vscode.workspace.fs.writeFile(uri, original);
    }
  });

  it('plans in a worker with a time budget: the host answers while an estimate runs, and a slow one is stopped', async function () {
    const scalelm = await api();
    const source = await vscode.workspace.fs.readFile(workspaceFile('a.scalelm.json'));
    const slowUri = workspaceFile('slow-estimate.scalelm.json');
    const freshUri = workspaceFile('after-slow.scalelm.json');
    await vscode.workspace.fs.writeFile(slowUri, source);
    await vscode.workspace.fs.writeFile(freshUri, source);
    // The test hook (extension/config-analysis.ts TEST_SLOW_ENV): the worker sleeps 5 s before planning this file.
    process.env.SCALELM_TEST_SLOW_PLAN = slowUri.fsPath;
    try {
      await vscode.workspace.openTextDocument(slowUri);
      let settled = false;
      const pending = scalelm.codeLensTitle(slowUri).then((t) => ((settled = true), t));
      // While the worker sleeps, the host serves a file-system round trip and the API: had the planner run
      // on the host thread, the title would already have settled before either answered.
      await vscode.workspace.fs.stat(slowUri);
      assert.match(scalelm.statusBarText(), /ScaleLM/);
      assert.equal(settled, false, 'the estimate is still pending while the host answers');
      const title = await pending;
      console.log(`slow CodeLens: ${title}`);
      assert.match(title, /^ScaleLM: no estimate — the estimate took longer than 2 s/);
      // The stopped worker is replaced: the next config gets its estimate.
      assert.match(await scalelm.codeLensTitle(freshUri), /device peak · fits 1 × CPU device/);
    } finally {
      delete process.env.SCALELM_TEST_SLOW_PLAN;
      await vscode.workspace.fs.delete(slowUri);
      await vscode.workspace.fs.delete(freshUri);
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

  it('exports DeepSpeed, Megatron-LM, torchrun and Slurm files next to the config', async function () {
    await api();
    const uri = workspaceFile('too-big.scalelm.json');
    const expected: [string, string, RegExp][] = [
      ['scalelm.exportDeepSpeed', 'too-big.ds_config.json', /"train_batch_size": 512/],
      ['scalelm.exportMegatron', 'too-big.megatron.sh', /--global-batch-size 512/],
      ['scalelm.exportTorchrun', 'too-big.torchrun.sh', /torchrun .*--nnodes/],
      ['scalelm.exportSlurm', 'too-big.slurm.sh', /#SBATCH --nodes=8\n#SBATCH --ntasks-per-node=1\n#SBATCH --gpus-per-node=8\n/],
    ];
    for (const [command, file, content] of expected) {
      const written = await vscode.commands.executeCommand<vscode.Uri>(command, uri, { overwrite: true });
      assert.ok(written, `${command} wrote a file`);
      assert.equal(written.path.split('/').pop(), file);
      const text = new TextDecoder().decode(await vscode.workspace.fs.readFile(written));
      assert.match(text, content, `${file}:\n${text.slice(0, 400)}`);
      assert.ok(
        vscode.window.visibleTextEditors.some((e) => e.document.uri.toString() === written.toString()),
        `${file} is opened beside the config`,
      );
      await vscode.workspace.fs.delete(written);
    }
  });

  it('Suggest Parallel Layouts opens the dashboard Planner tab on the config, with ranked layouts', async function () {
    const { dashboardRequest } = await api();
    const uri = workspaceFile('too-big.scalelm.json');
    await vscode.commands.executeCommand('scalelm.suggestLayouts', uri);
    const seen = await waitFor(
      'the Planner tab with layouts',
      async () => {
        const r = (await dashboardRequest({ type: 'inspect' })) as { tab: string; planner: { source: string | null; candidates: number; error: string | null } };
        return r.tab === 'planner' && r.planner.candidates > 0 ? r : undefined;
      },
      30_000,
    );
    console.log(`planner tab: ${JSON.stringify(seen.planner)}`);
    assert.equal(seen.planner.source, 'too-big.scalelm.json');
    assert.equal(seen.planner.error, null);
  });

  it('estimates a HuggingFace config.json for a chosen GPU, count, sequence length and batch; a custom capacity too', async function () {
    const { estimate } = await api();
    const result = await estimate(workspaceFile('hf-gpt2/config.json'), { gpu: 'A100-80GB', gpus: 8, seqLen: 1024, globalBatch: 64, noPicker: true });
    assert.ok(result?.candidates.length, 'layouts that fit were found');
    const best = result.candidates[0]!;
    console.log(`gpt2 on 8 × A100-80GB: best ${JSON.stringify(best.layout)} at ${(best.memory.total / 2 ** 30).toFixed(1)} GiB`);
    assert.equal(best.layout.dp * best.layout.tp * best.layout.pp, 8);
    assert.ok(best.memory.total < 80 * 2 ** 30);
    const small = await estimate(workspaceFile('hf-gpt2/config.json'), { gpu: 'custom', gpuMemory: '12GiB', gpus: 8, seqLen: 1024, globalBatch: 64, noPicker: true });
    assert.ok(small && small.usable < 12 * 2 ** 30 && small.usable > 10 * 2 ** 30, `usable ${small?.usable}`);
    // On 2 GiB cards the fastest layout is tight: the quick pick marks it, and the warning names the roomier one.
    let shown: string[] = [];
    const tight = await estimate(workspaceFile('hf-gpt2/config.json'), {
      gpu: 'custom',
      gpuMemory: '2GiB',
      gpus: 8,
      seqLen: 512,
      globalBatch: 64,
      choose: (items) => void (shown = items.map((i) => `${i.label} ${i.description ?? ''}`)),
    });
    console.log(`2 GiB quick pick: ${shown.find((t) => t.startsWith('#1 '))}; ${tight?.warnings[0]}`);
    assert.match(shown.find((t) => t.startsWith('#1 ')) ?? '', /\$\(warning\) \d+% of usable memory \(above 95%\)$/);
    assert.match(tight?.warnings[0] ?? '', /^#1 uses \d+% of usable memory \(above 95%\).*the best layout under 95% is #\d+/);
    assert.equal(tight?.saved, undefined, 'nothing chosen, nothing saved');
  });

  it('Estimate Training Memory on a copied config.json saves the chosen layout as a *.scalelm.json; on that file the quick pick says where its layout ranks', async function () {
    const { estimate } = await api();
    // A HuggingFace config.json copied into the workspace under another *config.json name.
    const copy = workspaceFile('gpt2-config.json');
    await vscode.workspace.fs.copy(workspaceFile('hf-gpt2/config.json'), copy, { overwrite: true });
    if (bridgeAvailable()) {
      const entries = await workbench.explorerContextMenu('gpt2-config.json');
      assert.ok(entries.includes('Estimate Training Memory'), JSON.stringify(entries));
    }
    const cluster = { gpu: 'A100-80GB' as const, gpus: 8, seqLen: 512, globalBatch: 64, overwrite: true };
    let shown: string[] = [];
    const first = await estimate(copy, {
      ...cluster,
      // The second-ranked layout, so that the saved file is not simply #1.
      choose: (items) => {
        shown = items.map((i) => `${i.label} ${i.description ?? ''}`);
        return items.findIndex((i) => i.label.startsWith('#2 '));
      },
    });
    console.log(`quick pick on gpt2-config.json:\n${shown.slice(0, 5).join('\n')}`);
    assert.match(shown[0]!, /gpt2-config\.json has no layout/);
    const chosen = first?.candidates[1]?.layout;
    assert.ok(chosen && first?.saved, 'a layout was chosen and saved');
    assert.equal(first.saved.path.split('/').pop(), 'gpt2-config.scalelm.json');
    const parsed = parseConfig(new TextDecoder().decode(await vscode.workspace.fs.readFile(first.saved)));
    assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
    const c = parsed.config;
    assert.deepEqual(
      {
        dp: c.parallel.dp,
        tp: c.parallel.tp,
        pp: c.parallel.pp,
        vpp: c.parallel.vpp,
        zero: c.parallel.zero,
        sequenceParallel: c.parallel.sequenceParallel,
        offloadOptimizer: c.parallel.offloadOptimizer,
        offloadParams: c.parallel.offloadParams,
        microBatch: c.train.microBatch,
        recompute: c.train.recompute,
      },
      {
        dp: chosen.dp,
        tp: chosen.tp,
        pp: chosen.pp,
        vpp: chosen.vpp,
        zero: chosen.zero,
        sequenceParallel: chosen.sequenceParallel,
        offloadOptimizer: chosen.offloadOptimizer,
        offloadParams: chosen.offloadParams,
        microBatch: chosen.microBatch,
        recompute: chosen.recompute,
      },
    );
    assert.deepEqual([c.cluster.gpu, c.cluster.gpusPerNode * c.cluster.nodes, c.model.seqLen, c.train.globalBatch, c.model.layers, c.model.hidden], ['A100-80GB', 8, 512, 64, 12, 768]);
    assert.equal(vscode.window.activeTextEditor?.document.uri.toString(), first.saved.toString(), 'the saved file is opened');

    // On the saved *.scalelm.json its own layout is the current one: ranked #2 of the same search, marked in the list.
    const second = await estimate(first.saved, {
      ...cluster,
      choose: (items) => {
        shown = items.map((i) => `${i.label} ${i.description ?? ''}`);
        return items.findIndex((i) => i.label.startsWith('#1 '));
      },
    });
    console.log(`quick pick on gpt2-config.scalelm.json:\n${shown.slice(0, 5).join('\n')}`);
    assert.match(shown[0]!, /^\$\(location\) Your layout .* ranks #2 of \d+: [\d,]+ tokens\/s, [\d.]+ GiB\/GPU — (\d+% slower than #1|.*a tie within the model's \d+% error)/);
    assert.ok(
      shown.some((t) => t.startsWith('#2 ') && t.includes('your layout')),
      shown.join('\n'),
    );
    assert.equal(second?.current?.rank, 2);
    const best = second?.candidates[0]?.layout;
    assert.ok(best && second?.saved?.toString() === first.saved.toString(), 'saved in place');
    await vscode.commands.executeCommand('workbench.action.files.revert');
    const again = parseConfig(new TextDecoder().decode(await vscode.workspace.fs.readFile(first.saved)));
    assert.ok(again.ok, JSON.stringify(!again.ok && again.errors));
    assert.deepEqual(
      [again.config.parallel.dp, again.config.parallel.tp, again.config.parallel.pp, again.config.parallel.zero, again.config.train.microBatch, again.config.train.recompute],
      [best.dp, best.tp, best.pp, best.zero, best.microBatch, best.recompute],
    );
  });
  it('offers Calibrate Planner from this Run on a finished GPU run, writes the profile calibrate computes, and refuses a CPU run', async function () {
    const { pastRuns } = await api();
    const root = join(__dirname, '..', '..', '..', '..');
    // Recorded streams, marked finished (the Runs view offers calibration on finished runs only).
    const make = async (name: string, stream: string) => {
      const dir = workspaceFile(`runs/${name}`);
      const text = readFileSync(join(root, 'test', 'fixtures', 'streams', stream, 'metrics.jsonl'), 'utf8').trimEnd();
      await vscode.workspace.fs.writeFile(vscode.Uri.joinPath(dir, 'metrics.jsonl'), new TextEncoder().encode(`${text}\n${JSON.stringify({ type: 'status', state: 'finished', t: Date.now() })}\n`));
      return dir.fsPath;
    };
    const gpuDir = await make('calibrate-gpu', 'llama7b-8xh200');
    const cpuDir = await make('calibrate-cpu', 'tiny-cpu');
    await vscode.commands.executeCommand('scalelm.refreshRuns');
    const past = new Map(pastRuns().flatMap((n) => (n.kind === 'past' ? [[n.run.dir, n.run] as const] : [])));
    assert.equal(past.get(gpuDir)?.state, 'finished');
    assert.equal(past.get(gpuDir)?.calibratable, true, 'a finished run with nvidia-smi samples is offered calibration');
    assert.equal(past.get(cpuDir)?.calibratable, false, 'a CPU run is not');
    const written = await vscode.commands.executeCommand<string | undefined>('scalelm.calibrateFromRun', { runDir: gpuDir });
    assert.equal(written, join(gpuDir, 'cluster-profile.json'));
    const expected = await calibrateRun(gpuDir, join(gpuDir, 'expected-profile.json'));
    assert.deepEqual(JSON.parse(readFileSync(written, 'utf8')), JSON.parse(JSON.stringify(expected.profile)));
    console.log(`calibrated from llama7b-8xh200: efficiency ${expected.profile.efficiency.toFixed(3)}`);
    // A CPU run asked anyway (command palette, scripting) gets calibrate's own refusal and nothing is written.
    assert.equal(await vscode.commands.executeCommand('scalelm.calibrateFromRun', { runDir: cpuDir }), undefined);
    assert.ok(!existsSync(join(cpuDir, 'cluster-profile.json')));
  });
});
