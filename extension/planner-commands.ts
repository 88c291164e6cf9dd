// Planner commands: "Estimate Training Memory" for a HuggingFace config.json or a *.scalelm.json (GPU, count,
// sequence length and global batch asked; the ranked layouts in a quick pick with the config's own layout,
// ties and tight-memory warnings; the choice saved as a *.scalelm.json), the exports (DeepSpeed, Megatron-LM,
// torchrun, Slurm) written next to the config, and "Calibrate Planner from this Run".
// ("Suggest Parallel Layouts" opens the dashboard's Planner tab: see extension.ts.)
import * as vscode from 'vscode';
import { isHuggingFaceConfig, modelFromHuggingFace } from '../runtime/config/huggingface';
import { parseConfig } from '../runtime/config/parse';
import { GPU_PRESETS, GPU_PRESET_NAMES, type GpuPresetName } from '../runtime/config/presets';
import type { RunConfig } from '../runtime/config/types';
import type { ParsedArgs } from '../runtime/commands/args';
import { calibrateRun } from '../runtime/commands/calibrate';
import { loadPlanInput, type LoadedPlan } from '../runtime/commands/plan-input';
import { describeLayout } from '../runtime/planner/estimate';
import { exportFileName, exportLayout, type ExportTarget } from '../runtime/planner/export';
import { bundledPythonPath } from '../runtime/launch/command';
import { layoutOf } from '../runtime/planner/memory';
import { currentLayoutText, sameLayout, searchLayouts, TIGHT_MEMORY, type SearchResult } from '../runtime/planner/search';
import type { Layout } from '../runtime/planner/types';
import { formatBytes, parseBytes } from '../common/units';
import { parseConfigDocument } from './config-analysis';
import { configFieldsEdit } from './quick-fixes';
import { applyConfigEdits, parseJsonc } from './json-paths';
import { formatRate } from './plan-lens';

export interface EstimateArgs {
  /** A GPU preset, or 'custom' (with gpuMemory): skips the GPU quick pick. */
  gpu?: GpuPresetName | 'custom';
  /** Custom capacity per GPU ("40GiB"); the compute figures stay the config's GPU's. */
  gpuMemory?: string;
  gpus?: number;
  seqLen?: number;
  globalBatch?: number;
  precision?: RunConfig['train']['precision'];
  /** Skip the result picker and return the search (tests, scripting). */
  noPicker?: boolean;
  /** Scripting and tests: choose among the result quick pick's own items (an index) instead of showing it. */
  choose?: (items: readonly LayoutPickItem[]) => number | undefined;
  /** Overwrite an existing *.scalelm.json without asking. */
  overwrite?: boolean;
}

export type LayoutPickItem = vscode.QuickPickItem & { layout?: Layout };

export type EstimateOutcome = SearchResult & { items?: LayoutPickItem[]; saved?: vscode.Uri };

async function configUri(uri?: vscode.Uri): Promise<vscode.Uri | undefined> {
  if (uri instanceof vscode.Uri) return uri;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active) return active;
  void vscode.window.showErrorMessage('ScaleLM: open a *.scalelm.json or a HuggingFace config.json first.');
  return undefined;
}

const fileName = (uri: vscode.Uri) => uri.path.split('/').pop()!;

/** The CLI's flags as `scalelm plan` gets them: the extension resolves configs exactly as the CLI does. */
function planArgs(values: Record<string, string | number | undefined>): ParsedArgs {
  const map = new Map<string, string>();
  for (const [k, v] of Object.entries(values)) if (v !== undefined) map.set(k, String(v));
  return { positional: [], values: map, repeated: new Map(), switches: new Set() };
}

function load(file: string, values: Record<string, string | number | undefined>): LoadedPlan | string {
  try {
    return loadPlanInput(file, planArgs(values), 'plan');
  } catch (e) {
    return (e as Error).message;
  }
}

const positiveInt = (max: number) => (v: string) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 && Number(v) <= max ? undefined : `a whole number from 1 to ${max.toLocaleString('en-US')}`);

/** Asks (or takes from args) GPU, count, sequence length and global batch, showing the file's values as defaults. */
async function askCluster(base: LoadedPlan, args: EstimateArgs): Promise<Record<string, string | number | undefined> | undefined> {
  const { cluster, model, train } = base.config;
  const fileGpus = cluster.gpusPerNode * cluster.nodes;
  let gpu = args.gpu;
  let gpuMemory = args.gpuMemory;
  if (!gpu) {
    const items: (vscode.QuickPickItem & { gpu: GpuPresetName | 'custom' })[] = [
      ...GPU_PRESET_NAMES.map((name) => ({ label: name, description: `${formatBytes(GPU_PRESETS[name].memory, 0)}${name === cluster.gpu ? ' · this config' : ''}`, gpu: name })),
      { label: 'Custom capacity…', description: `enter the memory per GPU; compute figures of ${cluster.gpu}`, gpu: 'custom' as const },
    ];
    const picked = await vscode.window.showQuickPick(items, { title: 'ScaleLM: which GPU?', placeHolder: `this config: ${cluster.gpu}` });
    if (!picked) return undefined;
    gpu = picked.gpu;
  }
  if (gpu === 'custom' && gpuMemory === undefined) {
    gpuMemory = await vscode.window.showInputBox({
      title: 'ScaleLM: memory per GPU',
      prompt: `Capacity per GPU, e.g. 48GiB (compute figures stay ${cluster.gpu}'s)`,
      value: formatBytes(cluster.spec.memory, 0).replace(' ', ''),
      validateInput: (v) => {
        try {
          parseBytes(/^\d+$/.test(v.trim()) ? Number(v) : v.trim());
          return undefined;
        } catch (e) {
          return (e as Error).message;
        }
      },
    });
    if (gpuMemory === undefined) return undefined;
  }
  const gpuName = gpu === 'custom' ? `${cluster.gpu} with ${gpuMemory}` : gpu;
  let gpus = args.gpus;
  if (gpus === undefined) {
    const counts = [...new Set([fileGpus, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])].sort((a, b) => a - b);
    const picked = await vscode.window.showQuickPick(
      counts.map((n) => ({ label: String(n), description: n === fileGpus ? 'this config' : '' })),
      { title: `ScaleLM: how many ${gpuName}?`, placeHolder: `this config: ${fileGpus}` },
    );
    if (!picked) return undefined;
    gpus = Number(picked.label);
  }
  const seqFrom = base.source === 'huggingface' ? "the model config's max_position_embeddings" : 'this config';
  const seqLen =
    args.seqLen ??
    Number(
      await vscode.window.showInputBox({
        title: 'ScaleLM: sequence length',
        prompt: `Tokens per sequence (default ${model.seqLen}, from ${seqFrom})`,
        value: String(model.seqLen),
        validateInput: positiveInt(16_777_216),
      }),
    );
  if (!Number.isInteger(seqLen) || seqLen < 1) return undefined;
  // The file's global batch, else about a million tokens per step (what `scalelm plan` assumes).
  const defaultBatch = base.defaultGlobalBatch ? gpus * Math.max(1, Math.ceil(2 ** 20 / (gpus * seqLen))) : train.globalBatch;
  const globalBatch =
    args.globalBatch ??
    Number(
      await vscode.window.showInputBox({
        title: 'ScaleLM: global batch',
        prompt: `Sequences per optimizer step over all GPUs (default ${defaultBatch}${base.defaultGlobalBatch ? ' ≈ 1M tokens' : ', this config'})`,
        value: String(defaultBatch),
        validateInput: positiveInt(1_000_000_000),
      }),
    );
  if (!Number.isInteger(globalBatch) || globalBatch < 1) return undefined;
  return { gpu: gpu === 'custom' ? cluster.gpu : gpu, 'gpu-mem': gpu === 'custom' ? gpuMemory : undefined, gpus, 'seq-len': seqLen, 'global-batch': globalBatch, precision: args.precision };
}

/** "ScaleLM: Estimate Training Memory" on a HuggingFace config.json or a *.scalelm.json. */
export async function estimateMemoryCommand(uri?: vscode.Uri, args: EstimateArgs = {}): Promise<EstimateOutcome | undefined> {
  const target = await configUri(uri);
  if (!target) return undefined;
  const doc = await vscode.workspace.openTextDocument(target);
  // The planner reads the file as the CLI does (from disk): unsaved edits would be silently ignored.
  if (doc.isDirty) {
    void vscode.window.showErrorMessage(`ScaleLM: save ${fileName(target)} first: the estimate reads the file as saved.`);
    return undefined;
  }
  const raw = parseJsonc(doc.getText()) as unknown;
  const isScaleLM = typeof raw === 'object' && raw !== null && !Array.isArray(raw) && 'model' in raw;
  if (!isScaleLM && !isHuggingFaceConfig(raw)) {
    void vscode.window.showErrorMessage(`ScaleLM: ${fileName(target)} is neither a ScaleLM config (no "model") nor a HuggingFace config.json (no model_type).`);
    return undefined;
  }
  const base = load(target.fsPath, {});
  if (typeof base === 'string') {
    void vscode.window.showErrorMessage(`ScaleLM: ${base}`);
    return undefined;
  }
  const values = await askCluster(base, args);
  if (!values) return undefined;
  const loaded = load(target.fsPath, values);
  if (typeof loaded === 'string') {
    void vscode.window.showErrorMessage(`ScaleLM: ${loaded}`);
    return undefined;
  }
  const { config } = loaded;
  const gpus = config.cluster.gpusPerNode * config.cluster.nodes;
  const title = `${config.model.name} on ${gpus} × ${config.cluster.gpu}${values['gpu-mem'] ? ` (${values['gpu-mem']})` : ''} · seq ${config.model.seqLen} · batch ${config.train.globalBatch}`;
  const search = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'ScaleLM: searching layouts' }, async () =>
    searchLayouts(config, { ...loaded.options, top: 10, ...(loaded.current ? { current: loaded.current } : {}) }),
  );
  if (args.noPicker) return search;
  if (!search.candidates.length) {
    void vscode.window.showWarningMessage(`ScaleLM: no layout of ${title} fits (${search.stats.enumerated} tried). ${search.issues.map((i) => i.message).join('; ')}`);
    return search;
  }
  const items = layoutItems(search, loaded.source === 'huggingface' ? `${fileName(target)} has no layout: choose one to save it as a *.scalelm.json` : undefined);
  const chosen = args.choose
    ? items[args.choose(items) ?? -1]
    : await vscode.window.showQuickPick(items, {
        title: `ScaleLM: ${title} — ${search.stats.fits} of ${search.stats.enumerated} layouts fit${loaded.profile ? ' (calibrated profile)' : ''}`,
        placeHolder: search.warnings[0] ?? 'choose a layout to save',
        matchOnDetail: true,
      });
  const outcome: EstimateOutcome = { ...search, items };
  if (!chosen?.layout) return outcome;
  const saved = await saveLayout(target, loaded, raw as Record<string, unknown>, values, chosen.layout, args.overwrite ?? false);
  if (saved) outcome.saved = saved;
  return outcome;
}

/**
 * The quick pick: where the config's own layout stands (first), then the ranked layouts with their ties and a
 * warning on any above 95% of usable memory.
 */
export function layoutItems(search: SearchResult, noCurrent?: string): LayoutPickItem[] {
  const items: LayoutPickItem[] = [];
  const where = currentLayoutText(search);
  const cur = search.current;
  if (cur && where) items.push({ label: `$(location) ${where.replace(/^your layout/, 'Your layout')}`, description: cur.rank === null ? 'keep it anyway' : 'keep it', layout: cur.layout });
  else if (noCurrent) items.push({ label: `$(info) ${noCurrent}`, description: '' });
  items.push({ label: 'ranked by estimated throughput', kind: vscode.QuickPickItemKind.Separator });
  const tol = Math.round(search.tieTolerance * 100);
  for (const c of search.candidates) {
    const share = c.memory.total / search.usable;
    const marks = [
      cur && sameLayout(cur.layout, c.layout) ? 'your layout' : '',
      c.rank > 1 && c.tiesFirst ? `tie with #1 (within the model's ${tol}% error; more headroom ranks first)` : '',
      share > TIGHT_MEMORY ? `$(warning) ${Math.round(share * 100)}% of usable memory (above ${TIGHT_MEMORY * 100}%)` : '',
    ].filter(Boolean);
    items.push({
      label: `#${c.rank} ${describeLayout(c.layout)}`,
      description: `${formatBytes(c.memory.total, 1)} / GPU · ${formatRate(c.time.tokensPerSec)} tokens/s · MFU ${(c.time.mfu * 100).toFixed(0)}%${marks.length ? ` · ${marks.join(' · ')}` : ''}`,
      detail: c.explanation,
      layout: c.layout,
    });
  }
  return items;
}

/**
 * Whether `out` is a symbolic link (refused, with a message): a cloned repository could hold the output's
 * name as a link to any file of the user's, and workspace.fs.writeFile would write through it.
 */
async function refuseLink(out: vscode.Uri): Promise<boolean> {
  const type = await vscode.workspace.fs.stat(out).then(
    (s) => s.type,
    () => undefined,
  );
  if (type === undefined || !(type & vscode.FileType.SymbolicLink)) return false;
  void vscode.window.showErrorMessage(`ScaleLM: ${vscode.workspace.asRelativePath(out)} is a symbolic link; not writing through it (it could point at any file). Remove it first.`);
  return true;
}

/**
 * Saves the chosen layout as a *.scalelm.json: a *.scalelm.json source is edited in place (comments and other
 * fields kept), a config.json gets <name>.scalelm.json beside it. What is written is parsed back with the
 * config parser first; if that fails nothing is written.
 */
async function saveLayout(
  source: vscode.Uri,
  loaded: LoadedPlan,
  raw: Record<string, unknown>,
  values: Record<string, string | number | undefined>,
  l: Layout,
  overwrite: boolean,
): Promise<vscode.Uri | undefined> {
  const { config } = loaded;
  const cluster: Record<string, unknown> = { gpu: config.cluster.gpu, gpusPerNode: config.cluster.gpusPerNode, nodes: config.cluster.nodes };
  if (values['gpu-mem'] !== undefined) cluster.gpuMemory = String(values['gpu-mem']);
  const parallel = { dp: l.dp, tp: l.tp, pp: l.pp, vpp: l.vpp, zero: l.zero, sequenceParallel: l.sequenceParallel, offloadOptimizer: l.offloadOptimizer, offloadParams: l.offloadParams };
  const train = { microBatch: l.microBatch, globalBatch: config.train.globalBatch, recompute: l.recompute };
  let out: vscode.Uri;
  let text: string;
  let edits: { path: string; value: unknown }[] = [];
  if (loaded.source === 'scalelm') {
    out = source;
    edits = [
      ...Object.entries(parallel).map(([k, value]) => ({ path: `parallel.${k}`, value })),
      ...Object.entries(train).map(([k, value]) => ({ path: `train.${k}`, value })),
      ...Object.entries(cluster).map(([k, value]) => ({ path: `cluster.${k}`, value })),
    ];
    if (config.model.seqLen !== (raw.model as { seqLen?: number }).seqLen) edits.push({ path: 'model.seqLen', value: config.model.seqLen });
    const devices = raw.devices as Record<string, unknown> | undefined;
    if (devices && devices.count !== undefined) edits.push({ path: 'devices.count', value: l.dp * l.tp * l.pp });
    text = applyConfigEdits((await vscode.workspace.openTextDocument(source)).getText(), edits);
  } else {
    const hf = modelFromHuggingFace(raw);
    if (!hf.ok) return undefined;
    out = vscode.Uri.joinPath(source, '..', fileName(source).replace(/\.json$/, '.scalelm.json'));
    const file = { name: config.name, model: { ...hf.model, seqLen: config.model.seqLen }, train: { ...train, precision: config.train.precision }, parallel, cluster };
    text = `${JSON.stringify(file, null, 2)}\n`;
  }
  const check = parseConfig(parseJsonc(text));
  if (!check.ok) {
    void vscode.window.showErrorMessage(`ScaleLM: the chosen layout does not make a valid config, nothing saved: ${check.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
    return undefined;
  }
  if (out.toString() !== source.toString() && (await refuseLink(out))) return undefined;
  if (
    out.toString() !== source.toString() &&
    !overwrite &&
    (await vscode.workspace.fs.stat(out).then(
      () => true,
      () => false,
    ))
  ) {
    const answer = await vscode.window.showWarningMessage(`${fileName(out)} exists. Overwrite it?`, { modal: true }, 'Overwrite');
    if (answer !== 'Overwrite') return undefined;
  }
  if (out.toString() === source.toString()) {
    const doc = await vscode.workspace.openTextDocument(out);
    await vscode.workspace.applyEdit(configFieldsEdit(doc, edits));
    await doc.save();
  } else {
    await vscode.workspace.fs.writeFile(out, new TextEncoder().encode(text));
  }
  await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(out), { preview: false });
  void vscode.window.showInformationMessage(
    `ScaleLM: saved ${describeLayout(l)} on ${config.cluster.nodes * config.cluster.gpusPerNode} × ${config.cluster.gpu} to ${vscode.workspace.asRelativePath(out)}`,
  );
  return out;
}

/** "Calibrate Planner from this Run": `scalelm calibrate`'s own function; a run it cannot use gets its refusal. */
export async function calibrateFromRunCommand(target?: { runDir: string }): Promise<string | undefined> {
  const dir = target?.runDir;
  if (!dir) {
    void vscode.window.showErrorMessage('ScaleLM: choose a finished run in the Runs view to calibrate from.');
    return undefined;
  }
  try {
    const c = await calibrateRun(dir);
    const rel = vscode.workspace.asRelativePath(c.out);
    void vscode.window.showInformationMessage(
      `ScaleLM: calibrated from ${c.hello.runId} (${c.steps} steps): efficiency ${c.profile.efficiency.toFixed(3)}${c.profile.overheads.cudaContext !== undefined ? `, CUDA context ${formatBytes(c.profile.overheads.cudaContext, 1)}` : ''}. Wrote ${rel}; use it with "cluster": { "profile": "${rel}" }.`,
    );
    return c.out;
  } catch (e) {
    void vscode.window.showErrorMessage(`ScaleLM: cannot calibrate from ${dir.split('/').pop()}: ${(e as Error).message}`);
    return undefined;
  }
}

/** Writes the export next to the config (asks before overwriting); returns the file written. */
export async function exportCommand(target: ExportTarget, uri?: vscode.Uri, options: { overwrite?: boolean } = {}): Promise<vscode.Uri | undefined> {
  const source = await configUri(uri);
  if (!source) return undefined;
  const doc = await vscode.workspace.openTextDocument(source);
  const parsed = parseConfigDocument(doc);
  if (!parsed.ok) {
    void vscode.window.showErrorMessage(`ScaleLM: cannot export — ${parsed.errors[0]!.message}`);
    return undefined;
  }
  // The same names as `scalelm export --write`, and the torchrun command points at the DeepSpeed file by that name.
  const base = source.path
    .split('/')
    .pop()!
    .replace(/\.scalelm\.json$|\.json$/, '');
  // Slurm: the built-in torch trainer on this config (relative paths from its folder), with this extension's
  // copy of the scalelm package as the script's default SCALELM_PYTHON_PACKAGE.
  const slurm = { name: parsed.config.name || base, pythonPackage: bundledPythonPath(), trainer: { config: parsed.config, baseDir: vscode.Uri.joinPath(source, '..').fsPath } };
  const result = exportLayout(parsed.config, layoutOf(parsed.config), target, { deepspeedConfigFile: exportFileName(base, 'deepspeed'), ...(target === 'slurm' ? { slurm } : {}) });
  if (!result.ok) {
    void vscode.window.showErrorMessage(`ScaleLM: cannot export to ${target}: ${result.issues.map((i) => i.message).join('; ')}`);
    return undefined;
  }
  const out = vscode.Uri.joinPath(source, '..', exportFileName(base, target));
  if (await refuseLink(out)) return undefined;
  const exists = await vscode.workspace.fs.stat(out).then(
    () => true,
    () => false,
  );
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
