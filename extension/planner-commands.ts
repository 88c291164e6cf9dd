// Planner commands: "Estimate Training Memory" for a HuggingFace config.json (GPU and count chosen in quick
// picks, the ranked layouts in a quick pick) and the three exports written next to the config.
// ("Suggest Parallel Layouts" opens the dashboard's Planner tab: see extension.ts.)
import * as vscode from 'vscode';
import { modelFromHuggingFace } from '../runtime/config/huggingface';
import { loadConfig } from '../runtime/config/parse';
import { GPU_PRESETS, GPU_PRESET_NAMES, type GpuPresetName } from '../runtime/config/presets';
import type { RunConfig } from '../runtime/config/types';
import { describeLayout } from '../runtime/planner/estimate';
import { exportFileName, exportLayout, type ExportTarget } from '../runtime/planner/export';
import { layoutOf } from '../runtime/planner/memory';
import { searchLayouts, type Candidate } from '../runtime/planner/search';
import { suggestionEdits } from '../runtime/planner/target';
import type { ConventionName, PlanInput } from '../runtime/planner/types';
import { formatBytes } from '../common/units';
import { analyseConfig } from './config-analysis';
import { parseJsonc } from './json-paths';
import { formatRate } from './plan-lens';
import { configFieldsEdit } from './quick-fixes';

export interface EstimateArgs {
  gpu?: GpuPresetName;
  gpus?: number;
  precision?: RunConfig['train']['precision'];
  /** Skip the result picker and return the search (tests, scripting). */
  noPicker?: boolean;
}

async function configUri(uri?: vscode.Uri): Promise<vscode.Uri | undefined> {
  if (uri instanceof vscode.Uri) return uri;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active) return active;
  void vscode.window.showErrorMessage('ScaleLM: open a *.scalelm.json or a HuggingFace config.json first.');
  return undefined;
}

async function readJson(uri: vscode.Uri): Promise<unknown> {
  const doc = await vscode.workspace.openTextDocument(uri);
  return parseJsonc(doc.getText()) as unknown;
}

function candidateItem(c: Candidate): vscode.QuickPickItem & { candidate: Candidate } {
  return {
    label: `#${c.rank} ${describeLayout(c.layout)}`,
    description: `${formatBytes(c.memory.total, 1)} / GPU · ${formatRate(c.time.tokensPerSec)} tokens/s · MFU ${(c.time.mfu * 100).toFixed(0)}%`,
    detail: c.explanation,
    candidate: c,
  };
}

/** "ScaleLM: Estimate Training Memory" on a HuggingFace config.json. */
export async function estimateMemoryCommand(uri?: vscode.Uri, args: EstimateArgs = {}): Promise<ReturnType<typeof searchLayouts> | undefined> {
  const target = await configUri(uri);
  if (!target) return undefined;
  const hf = modelFromHuggingFace(await readJson(target));
  if (!hf.ok) {
    void vscode.window.showErrorMessage(`ScaleLM: ${target.path.split('/').pop()} is not a supported HuggingFace config: ${hf.errors.map((e) => e.message).join('; ')}`);
    return undefined;
  }
  const gpu = args.gpu ?? ((await vscode.window.showQuickPick(GPU_PRESET_NAMES.map((name) => ({ label: name, description: formatBytes(GPU_PRESETS[name].memory, 0) })), { title: 'ScaleLM: which GPU?' }))?.label as GpuPresetName | undefined);
  if (!gpu) return undefined;
  const gpus = args.gpus ?? Number((await vscode.window.showQuickPick(['1', '2', '4', '8', '16', '32', '64', '128', '256', '512', '1024'], { title: `ScaleLM: how many ${gpu}?` })) ?? NaN);
  if (!Number.isInteger(gpus) || gpus < 1) return undefined;
  const precision = args.precision ?? 'bf16-mixed';
  const gpusPerNode = Math.min(8, gpus);
  const config = loadConfig({
    model: hf.model,
    train: { precision, microBatch: 1, globalBatch: Math.max(gpus, Math.ceil(2 ** 20 / hf.model.seqLen! / gpus) * gpus) },
    parallel: { dp: gpus },
    cluster: { gpu, gpusPerNode, nodes: Math.ceil(gpus / gpusPerNode) },
  });
  return showSearch(config, `${hf.model.name} on ${gpus} × ${gpu}`, args.noPicker, target);
}

async function showSearch(config: RunConfig, title: string, noPicker: boolean | undefined, source: vscode.Uri, input: PlanInput = config, convention: ConventionName = 'scalelm') {
  const local = convention === 'runtime';
  const search = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'ScaleLM: searching layouts' }, async () =>
    searchLayouts(input, { top: 10, convention, ...(local ? { fixed: { pp: 1, vpp: 1, offloadOptimizer: false, offloadParams: false, sequenceParallel: false } } : {}) }),
  );
  if (noPicker) return search;
  if (!search.candidates.length) {
    void vscode.window.showWarningMessage(`ScaleLM: no layout of ${title} fits (${search.stats.enumerated} tried). ${search.issues.map((i) => i.message).join('; ')}`);
    return search;
  }
  const picked = await vscode.window.showQuickPick(search.candidates.map(candidateItem), { title: `ScaleLM: best layouts for ${title} (${search.stats.fits} of ${search.stats.enumerated} fit)`, matchOnDetail: true });
  if (!picked) return search;
  if (source.path.endsWith('.scalelm.json')) {
    const doc = await vscode.workspace.openTextDocument(source);
    await vscode.workspace.applyEdit(configFieldsEdit(doc, suggestionEdits(config, picked.candidate)));
  } else {
    const l = picked.candidate.layout;
    const json = JSON.stringify({ model: { ...config.model }, train: { microBatch: l.microBatch, globalBatch: config.train.globalBatch, precision: config.train.precision, recompute: l.recompute }, parallel: { dp: l.dp, tp: l.tp, pp: l.pp, vpp: l.vpp, zero: l.zero, sequenceParallel: l.sequenceParallel, offloadOptimizer: l.offloadOptimizer, offloadParams: l.offloadParams }, cluster: { gpu: config.cluster.gpu, gpusPerNode: config.cluster.gpusPerNode, nodes: config.cluster.nodes } }, null, 2);
    const doc = await vscode.workspace.openTextDocument({ language: 'json', content: json });
    await vscode.window.showTextDocument(doc);
  }
  return search;
}


/** Writes the export next to the config (asks before overwriting); returns the file written. */
export async function exportCommand(target: ExportTarget, uri?: vscode.Uri, options: { overwrite?: boolean } = {}): Promise<vscode.Uri | undefined> {
  const source = await configUri(uri);
  if (!source) return undefined;
  const doc = await vscode.workspace.openTextDocument(source);
  const { parsed } = analyseConfig(doc);
  if (!parsed.ok) {
    void vscode.window.showErrorMessage(`ScaleLM: cannot export — ${parsed.errors[0]!.message}`);
    return undefined;
  }
  // The same names as `scalelm export --write`, and the torchrun command points at the DeepSpeed file by that name.
  const base = source.path.split('/').pop()!.replace(/\.scalelm\.json$|\.json$/, '');
  const result = exportLayout(parsed.config, layoutOf(parsed.config), target, { deepspeedConfigFile: exportFileName(base, 'deepspeed') });
  if (!result.ok) {
    void vscode.window.showErrorMessage(`ScaleLM: cannot export to ${target}: ${result.issues.map((i) => i.message).join('; ')}`);
    return undefined;
  }
  const out = vscode.Uri.joinPath(source, '..', exportFileName(base, target));
  const exists = await vscode.workspace.fs.stat(out).then(() => true, () => false);
  if (exists && !options.overwrite) {
    const answer = await vscode.window.showWarningMessage(`${out.path.split('/').pop()} exists. Overwrite it?`, { modal: true }, 'Overwrite');
    if (answer !== 'Overwrite') return undefined;
  }
  await vscode.workspace.fs.writeFile(out, new TextEncoder().encode(result.text.endsWith('\n') ? result.text : `${result.text}\n`));
  void vscode.window.showInformationMessage(`ScaleLM: wrote ${out.path.split('/').pop()}${result.notes.length ? ` — ${result.notes.join('; ')}` : ''}`);
  // Open what was written, beside the config.
  await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(out), { preview: false, viewColumn: vscode.ViewColumn.Beside });
  return out;
}
