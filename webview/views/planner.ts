// The Planner tab: the model (a preset, a pasted HuggingFace config.json, or the open config), the cluster
// and the batch; the planner's ranked layouts with a stacked memory bar per device, step time, throughput
// and its one-line explanation. Choosing a layout sends it to the host (which edits the config); the
// patch is shown as JSON to copy as well (the only way in a browser). The planner runs here: it is pure.
import { fill, h, setText } from '../dom';
import { formatBytes, formatDuration, formatPercent, formatTokensPerSec } from '../format';
import { configPatch, currentLine, DEFAULT_FORM, formFromConfig, GPU_PRESET_LIST, layoutSummary, MODEL_PRESET_LIST, resolvePlan, search, type ModelSource, type PlanForm } from '../plan-form';
import { describeLayout, type Candidate, type SearchResult } from '../../runtime/planner';
import { CATEGORIES } from '../../runtime/planner/types';
import type { RunConfig } from '../../runtime/config/types';
import type { JsonObject } from '../../common/protocol';
import type { ChooseLayoutMessage } from '../messages';

/** The planner's own categories, in its order (runtime/planner/types.ts). */
const PLAN_CATEGORIES = CATEGORIES;

type Field = HTMLElement & { value: string; checked?: boolean };

export interface PlannerHost {
  kind: 'vscode' | 'browser' | 'detached';
  choose(message: ChooseLayoutMessage): void;
  saveForm(form: PlanForm): void;
  requestInput(): void;
}

export class PlannerView {
  readonly root: HTMLElement;
  private form: PlanForm;
  private openConfig: { source: string; config: Record<string, unknown> } | null = null;
  private readonly fields: Record<string, Field> = {};
  private readonly sourceNote: HTMLElement;
  private readonly summary: HTMLElement;
  private readonly issues: HTMLElement;
  private readonly list: HTMLElement;
  private readonly chosenBox: HTMLElement;
  private readonly chosenJson: HTMLElement;
  private readonly chosenStatus: HTMLElement;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private result: SearchResult | null = null;
  private config: RunConfig | null = null;
  private error: string | null = null;
  private chosen: string | null = null;
  private requested = false;
  private dirty = true;

  constructor(
    initial: PlanForm,
    private readonly host: PlannerHost,
  ) {
    this.form = { ...initial };
    const radio = (value: ModelSource, label: string) => h('vscode-radio', { name: 'model-source', value, 'aria-label': label }, label);
    const sourceGroup = h(
      'vscode-radio-group',
      { id: 'plan-model-source', 'aria-label': 'model source' },
      radio('config', 'Open config'),
      radio('preset', 'Preset'),
      radio('hf', 'HF config.json'),
    ) as unknown as Field;
    const select = (id: string, options: readonly string[], label: string) =>
      h('vscode-single-select', { id, 'aria-label': label }, ...options.map((o) => h('vscode-option', { value: o }, o))) as Field;
    const text = (id: string, label: string, placeholder = '') => h('vscode-textfield', { id, type: 'number', min: 1, 'aria-label': label, placeholder }) as Field;
    this.fields.source = sourceGroup;
    this.fields.preset = select('plan-preset', MODEL_PRESET_LIST, 'model preset');
    this.fields.hf = h('vscode-textarea', {
      id: 'plan-hf',
      rows: 6,
      'aria-label': 'HuggingFace config.json',
      placeholder: 'Paste a HuggingFace config.json (GPT-2, Llama, Mistral, Qwen2, GPT-NeoX)',
      monospace: true,
    }) as Field;
    this.fields.gpu = select('plan-gpu', GPU_PRESET_LIST, 'GPU');
    this.fields.gpusPerNode = text('plan-gpus-per-node', 'GPUs per node');
    this.fields.nodes = text('plan-nodes', 'nodes');
    this.fields.globalBatch = text('plan-global-batch', 'global batch in sequences', 'auto (~1M tokens)');
    this.fields.seqLen = text('plan-seq-len', 'sequence length', "model's");
    this.fields.precision = select('plan-precision', ['bf16-mixed', 'fp16-mixed', 'fp32'], 'precision');
    this.fields.flash = h('vscode-checkbox', { id: 'plan-flash', 'aria-label': 'FlashAttention' }, 'FlashAttention') as Field;
    this.sourceNote = h('p', { class: 'muted small', id: 'plan-source-note' });
    const row = (label: string, ...controls: HTMLElement[]) => h('div', { class: 'form-row' }, h('span', { class: 'form-label' }, label), ...controls);
    const formEl = h(
      'div',
      { class: 'plan-form', role: 'form', 'aria-label': 'planner inputs' },
      h('h2', null, 'Model'),
      sourceGroup,
      this.sourceNote,
      row('Preset', this.fields.preset),
      row('config.json', this.fields.hf),
      h('h2', null, 'Cluster'),
      row('GPU', this.fields.gpu),
      row('GPUs per node', this.fields.gpusPerNode),
      row('Nodes', this.fields.nodes),
      h('h2', null, 'Batch'),
      row('Global batch', this.fields.globalBatch),
      row('Sequence length', this.fields.seqLen),
      row('Precision', this.fields.precision),
      row('', this.fields.flash),
    );
    for (const [key, el] of Object.entries(this.fields)) {
      el.addEventListener('change', () => this.readField(key));
      if (key !== 'source' && key !== 'flash') el.addEventListener('input', () => this.readField(key));
    }
    this.summary = h('p', { id: 'plan-summary', class: 'plan-summary', role: 'status' });
    this.issues = h('ul', { id: 'plan-issues', class: 'plan-issues' });
    this.list = h('ol', { id: 'plan-results', class: 'plan-results', 'aria-label': 'layouts, best first' });
    this.chosenStatus = h('p', { id: 'plan-chosen-status', role: 'status' });
    this.chosenJson = h('pre', { id: 'plan-json', class: 'plan-json', tabindex: 0, 'aria-label': 'config patch for the chosen layout' });
    const copy = h('vscode-button', { id: 'plan-copy', secondary: true }, 'Copy JSON');
    copy.addEventListener('click', () => void this.copy());
    this.chosenBox = h('section', { class: 'plan-chosen', hidden: true, 'aria-label': 'chosen layout' }, h('h2', null, 'Chosen layout'), this.chosenStatus, this.chosenJson, copy);
    this.root = h('div', { class: 'planner-view' }, formEl, h('div', { class: 'plan-out' }, this.summary, this.issues, this.chosenBox, this.list));
    this.writeFields();
  }

  /** The open config from the host (VS Code) or the shown run's config (browser). */
  setOpenConfig(source: string, config: Record<string, unknown>, fromHost: boolean): void {
    const first = this.openConfig === null || (fromHost && this.openConfig.source !== source);
    this.openConfig = { source, config };
    if (first && (fromHost || this.form.modelSource === 'config')) {
      this.form = formFromConfig(config, this.form);
      this.writeFields();
    }
    this.dirty = true;
    this.schedule();
  }

  hasOpenConfig(): boolean {
    return this.openConfig !== null;
  }

  private writeFields(): void {
    const f = this.form;
    const radios = this.fields.source!.querySelectorAll('vscode-radio') as NodeListOf<Field>;
    radios.forEach((r) => (r.checked = r.getAttribute('value') === f.modelSource));
    this.fields.preset!.value = f.preset;
    this.fields.hf!.value = f.hfText;
    this.fields.gpu!.value = f.gpu;
    this.fields.gpusPerNode!.value = String(f.gpusPerNode);
    this.fields.nodes!.value = String(f.nodes);
    this.fields.globalBatch!.value = f.globalBatch === null ? '' : String(f.globalBatch);
    this.fields.seqLen!.value = f.seqLen === null ? '' : String(f.seqLen);
    this.fields.precision!.value = f.precision;
    this.fields.flash!.checked = f.flashAttention;
    this.showSourceRows();
  }

  private showSourceRows(): void {
    (this.fields.preset!.parentElement as HTMLElement).hidden = this.form.modelSource !== 'preset';
    (this.fields.hf!.parentElement as HTMLElement).hidden = this.form.modelSource !== 'hf';
    setText(
      this.sourceNote,
      this.form.modelSource === 'config'
        ? this.openConfig
          ? `From ${this.openConfig.source}; the fields below override it.`
          : this.host.kind === 'vscode'
            ? 'Open a *.scalelm.json (or a HuggingFace config.json) in the editor.'
            : 'No run config yet.'
        : '',
    );
  }

  private readField(key: string): void {
    const f = this.form;
    const el = this.fields[key]!;
    const num = (v: string): number | null => (v.trim() === '' ? null : Number(v));
    switch (key) {
      case 'source': {
        const checked = [...(el.querySelectorAll('vscode-radio') as NodeListOf<Field>)].find((r) => r.checked);
        if (checked) f.modelSource = checked.getAttribute('value') as ModelSource;
        if (f.modelSource === 'config' && !this.openConfig && !this.requested) {
          this.requested = true;
          this.host.requestInput();
        }
        break;
      }
      case 'preset':
        f.preset = el.value as PlanForm['preset'];
        break;
      case 'hf':
        f.hfText = el.value;
        break;
      case 'gpu':
        f.gpu = el.value as PlanForm['gpu'];
        break;
      case 'gpusPerNode':
        f.gpusPerNode = num(el.value) ?? DEFAULT_FORM.gpusPerNode;
        break;
      case 'nodes':
        f.nodes = num(el.value) ?? 1;
        break;
      case 'globalBatch':
        f.globalBatch = num(el.value);
        break;
      case 'seqLen':
        f.seqLen = num(el.value);
        break;
      case 'precision':
        f.precision = el.value as PlanForm['precision'];
        break;
      case 'flash':
        f.flashAttention = Boolean(el.checked);
        break;
    }
    this.showSourceRows();
    this.host.saveForm(f);
    this.dirty = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, 200);
  }

  /** Called when the tab is shown: plan now if anything changed. */
  activate(): void {
    if (this.form.modelSource === 'config' && !this.openConfig && !this.requested) {
      this.requested = true;
      this.host.requestInput();
    }
    if (this.dirty) this.run();
  }

  run(): void {
    if (!this.root.isConnected) return;
    this.dirty = false;
    const resolved = resolvePlan(this.form, this.openConfig?.config ?? null);
    this.result = null;
    this.config = null;
    if (!resolved.ok) {
      this.error = resolved.errors.map((e) => `${e.path ? `${e.path}: ` : ''}${e.message}`).join('; ');
      setText(this.summary, 'Cannot plan this input:');
      fill(this.issues, ...resolved.errors.map((e) => h('li', null, `${e.path ? `${e.path}: ` : ''}${e.message}`)));
      this.list.replaceChildren();
      return;
    }
    this.config = resolved.config;
    const t0 = performance.now();
    const result = search(resolved.config, 8, resolved.current);
    const ms = performance.now() - t0;
    this.result = result;
    this.error = result.ok ? null : result.issues.map((i) => i.message).join('; ');
    const c = resolved.config;
    const N = c.cluster.gpusPerNode * c.cluster.nodes;
    setText(
      this.summary,
      `${c.model.name || 'model'} on ${N} × ${c.cluster.gpu} (${c.cluster.nodes} node${c.cluster.nodes === 1 ? '' : 's'}), global batch ${c.train.globalBatch} × ${c.model.seqLen} tokens, ${c.train.precision}: ${result.stats.fits} of ${result.stats.enumerated} layouts fit in ${formatBytes(result.usable, 1)} per GPU (searched in ${Math.round(ms)} ms).`,
    );
    const mine = currentLine(result);
    fill(
      this.issues,
      ...(mine ? [h('li', { class: 'plan-current' }, mine)] : []),
      ...result.warnings.map((w) => h('li', { class: 'bad' }, w)),
      ...resolved.notes.map((n) => h('li', { class: 'muted' }, n)),
      ...result.issues.map((i) => h('li', { class: 'bad' }, i.message)),
    );
    fill(this.list, ...result.candidates.map((cand) => this.card(cand, result.usable)));
  }

  private card(c: Candidate, usable: number): HTMLElement {
    const bar = h('div', {
      class: 'stack plan-stack',
      role: 'img',
      'aria-label': `memory per GPU ${formatBytes(c.memory.total)} of ${formatBytes(usable)}: ${PLAN_CATEGORIES.map((k) => `${k} ${formatBytes(c.memory[k])}`).join(', ')}`,
    });
    let left = 0;
    PLAN_CATEGORIES.forEach((k, i) => {
      const seg = h('div', { class: `seg cat-${i}`, title: `${k}: ${formatBytes(c.memory[k])}` });
      seg.style.left = `${(100 * left) / usable}%`;
      seg.style.width = `${Math.min(100, (100 * c.memory[k]) / usable)}%`;
      left += c.memory[k];
      bar.append(seg);
    });
    const legend = h(
      'div',
      { class: 'plan-legend small' },
      ...PLAN_CATEGORIES.filter((k) => c.memory[k] > 0).map((k) => h('span', null, h('span', { class: `swatch cat-${PLAN_CATEGORIES.indexOf(k)}` }), `${k} ${formatBytes(c.memory[k], 1)}`)),
    );
    const button = h('vscode-button', { 'data-rank': c.rank, 'aria-label': `use layout ${c.rank}: ${describeLayout(c.layout)}` }, 'Use this layout');
    button.addEventListener('click', () => this.choose(c));
    const t = c.time;
    return h(
      'li',
      { class: 'plan-card', 'data-rank': c.rank },
      h(
        'div',
        { class: 'plan-title' },
        h('span', { class: 'plan-rank' }, `#${c.rank}`),
        h('strong', null, describeLayout(c.layout)),
        ...(c.rank > 1 && c.tiesFirst ? [h('span', { class: 'muted small' }, " tie with #1 (within the model's error; more headroom ranks first)")] : []),
      ),
      h(
        'div',
        { class: 'plan-numbers' },
        `${formatDuration(t.stepMs)} per step · ${formatTokensPerSec(t.tokensPerSec)} · MFU ${formatPercent(t.mfu)} · ${formatBytes(c.memory.total, 1)} of ${formatBytes(usable, 1)} per GPU`,
      ),
      bar,
      legend,
      h('p', { class: 'explanation muted small' }, c.explanation),
      button,
    );
  }

  private choose(c: Candidate): void {
    if (!this.config) return;
    const patch = configPatch(c.layout, this.config);
    const summary = layoutSummary(c.layout, c.memory.total, c.time.tokensPerSec);
    const source = this.form.modelSource === 'config' && this.openConfig ? this.openConfig.source : null;
    this.chosen = summary;
    this.chosenBox.hidden = false;
    setText(this.chosenJson, JSON.stringify(patch, null, 2));
    if (this.host.kind === 'vscode' && source) {
      this.host.choose({ type: 'chooseLayout', layout: { ...c.layout }, source, configPatch: patch as JsonObject, summary });
      setText(this.chosenStatus, `Sent to VS Code: ${summary}. It updates ${source}.`);
    } else if (this.host.kind === 'vscode') {
      this.host.choose({ type: 'chooseLayout', layout: { ...c.layout }, source: null, configPatch: patch as JsonObject, summary });
      setText(this.chosenStatus, `Sent to VS Code: ${summary}. No config file is open: copy the JSON into one.`);
    } else {
      setText(this.chosenStatus, `${summary}. Merge this into your *.scalelm.json:`);
    }
    this.chosenBox.scrollIntoView?.({ block: 'nearest' });
  }

  private async copy(): Promise<void> {
    try {
      await navigator.clipboard.writeText(this.chosenJson.textContent ?? '');
      setText(this.chosenStatus, 'Copied to the clipboard.');
    } catch {
      const range = document.createRange();
      range.selectNodeContents(this.chosenJson);
      const sel = window.getSelection();
      sel?.removeAllRanges();
      sel?.addRange(range);
      setText(this.chosenStatus, 'Selected: press Ctrl+C (Cmd+C) to copy.');
    }
  }

  inspect(): { source: string | null; candidates: number; chosen: string | null; error: string | null } {
    return { source: this.openConfig?.source ?? null, candidates: this.result?.candidates.length ?? 0, chosen: this.chosen, error: this.error };
  }
}
