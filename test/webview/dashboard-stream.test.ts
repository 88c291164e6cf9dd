// The dashboard as VS Code hosts it (same HTML and CSP, acquireVsCodeApi stand-in), fed recorded message
// streams the way the extension host forwards them: batches of live messages, snapshots, runs lists,
// other runs' history, the open config. Checks the numbers and chart data it shows (through the
// 'inspect' message and the DOM), not just that canvases exist; saves screenshots of the main views.
import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type { MemoryMessage, Message, StepMessage } from '../../common/protocol';
import type { Inspection } from '../../webview/messages';
import { openDashboard, ROOT, type DashboardPage } from './harness';
import { readStream, shiftedTo, snapshotOf, syntheticVariant, SYNTHETIC_RUN_ID, wire } from './streams';

const ARTIFACTS = join(ROOT, 'test-artifacts');

let nextId = 1000;
async function inspect(d: DashboardPage): Promise<Inspection> {
  const id = nextId++;
  await d.send({ type: 'inspect', id });
  return (await d.waitForPosted(`inspectResult ${id}`, (m) => m.type === 'inspectResult' && m.id === id)) as unknown as Inspection;
}

async function sendBatches(d: DashboardPage, runId: string, messages: Message[], size = 400): Promise<void> {
  for (let i = 0; i < messages.length; i += size) await d.send({ type: 'batch', runId, messages: messages.slice(i, i + size).map(wire) });
}

async function showTab(d: DashboardPage, tab: string): Promise<void> {
  await d.page.click(`vscode-tab-header[data-tab=${tab}]`);
  await d.page.waitForTimeout(150);
}

async function screenshot(d: DashboardPage, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await d.page.waitForTimeout(100);
  await d.page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
}

const chart = (i: Inspection, id: string) => {
  const c = i.charts.find((x) => x.id === id);
  assert.ok(c, `chart ${id} exists`);
  return c;
};
const dataset = (i: Inspection, id: string, label: string | RegExp) => {
  const ds = chart(i, id).datasets.find((d) => (typeof label === 'string' ? d.label === label : label.test(d.label)));
  assert.ok(ds, `chart ${id} has a dataset ${label}: ${JSON.stringify(chart(i, id).datasets.map((d) => d.label))}`);
  return ds;
};

/** Light Modern values, as VS Code puts them on <html> when the theme changes. */
const FONT: Record<string, string> = {
  '--vscode-font-family': 'system-ui, "Ubuntu", "Droid Sans", sans-serif',
  '--vscode-font-size': '13px',
  '--vscode-font-weight': 'normal',
  '--vscode-editor-font-family': '"Droid Sans Mono", "monospace", monospace',
  '--vscode-editor-font-size': '13px',
};
const LIGHT: Record<string, string> = {
  ...FONT,
  '--vscode-editor-foreground': '#3b3b3b',
  '--vscode-panel-border': '#e5e5e5',
  '--vscode-settings-textInputBackground': '#ffffff',
  '--vscode-settings-textInputBorder': '#cecece',
  '--vscode-settings-textInputForeground': '#3b3b3b',
  '--vscode-settings-dropdownBackground': '#ffffff',
  '--vscode-settings-dropdownBorder': '#cecece',
  '--vscode-settings-dropdownForeground': '#3b3b3b',
  '--vscode-settings-checkboxBackground': '#f8f8f8',
  '--vscode-settings-checkboxBorder': '#cecece',
  '--vscode-inputValidation-errorBackground': '#f2dede',
  '--vscode-inputValidation-errorBorder': '#be1100',
  '--vscode-progressBar-background': '#005fb8',
  '--vscode-list-activeSelectionBackground': '#e8e8e8',
  '--vscode-foreground': '#3b3b3b',
  '--vscode-editor-background': '#ffffff',
  '--vscode-descriptionForeground': '#717171',
  '--vscode-charts-foreground': '#616161',
  '--vscode-charts-lines': 'rgba(97, 97, 97, 0.5)',
  '--vscode-charts-blue': '#1a85ff',
  '--vscode-charts-orange': '#d18616',
  '--vscode-charts-green': '#388a34',
  '--vscode-charts-purple': '#652d90',
  '--vscode-charts-red': '#e51400',
  '--vscode-charts-yellow': '#bf8803',
  '--vscode-editorWidget-border': '#c8c8c8',
  '--vscode-errorForeground': '#f85149',
  '--vscode-editorWarning-foreground': '#bf8803',
  '--vscode-focusBorder': '#005fb8',
  '--vscode-badge-background': '#cccccc',
  '--vscode-badge-foreground': '#3b3b3b',
  '--vscode-input-background': '#ffffff',
  '--vscode-panelTitle-activeBorder': '#005fb8',
  '--vscode-panelTitle-activeForeground': '#3b3b3b',
  '--vscode-panelTitle-inactiveForeground': '#3b3b3b',
  '--vscode-button-background': '#005fb8',
  '--vscode-button-foreground': '#ffffff',
  '--vscode-button-secondaryBackground': '#e5e5e5',
  '--vscode-button-secondaryForeground': '#3b3b3b',
};
const HIGH_CONTRAST: Record<string, string> = {
  ...FONT,
  '--vscode-editor-foreground': '#ffffff',
  '--vscode-editorWidget-border': '#6fc3df',
  '--vscode-panel-border': '#6fc3df',
  '--vscode-input-background': '#000000',
  '--vscode-errorForeground': '#f48771',
  '--vscode-editorWarning-foreground': '#ffd370',
  '--vscode-inputValidation-errorBackground': '#000000',
  '--vscode-inputValidation-errorBorder': '#6fc3df',
  '--vscode-button-background': '#000000',
  '--vscode-button-foreground': '#ffffff',
  '--vscode-button-border': '#6fc3df',
  '--vscode-button-secondaryBackground': '#000000',
  '--vscode-button-secondaryForeground': '#ffffff',
  '--vscode-panelTitle-activeBorder': '#6fc3df',
  '--vscode-panelTitle-activeForeground': '#ffffff',
  '--vscode-panelTitle-inactiveForeground': '#ffffff',
  '--vscode-settings-textInputBackground': '#000000',
  '--vscode-settings-textInputBorder': '#6fc3df',
  '--vscode-settings-textInputForeground': '#ffffff',
  '--vscode-settings-checkboxBackground': '#000000',
  '--vscode-settings-checkboxBorder': '#6fc3df',
  '--vscode-progressBar-background': '#6fc3df',
  '--vscode-list-activeSelectionBackground': '#000000',
  '--vscode-foreground': '#ffffff',
  '--vscode-editor-background': '#000000',
  '--vscode-descriptionForeground': '#ffffff',
  '--vscode-contrastBorder': '#6fc3df',
  '--vscode-focusBorder': '#f38518',
  '--vscode-charts-foreground': '#ffffff',
  '--vscode-charts-lines': 'rgba(255, 255, 255, 0.5)',
  '--vscode-charts-blue': '#3794ff',
  '--vscode-charts-orange': '#d18616',
  '--vscode-charts-green': '#89d185',
  '--vscode-charts-purple': '#b180d7',
  '--vscode-charts-red': '#f14c4c',
  '--vscode-charts-yellow': '#cca700',
  '--vscode-badge-background': '#000000',
  '--vscode-badge-foreground': '#ffffff',
};

/**
 * Switches the theme as VS Code does: every variable on <html> replaced through the CSSOM (a style
 * attribute would be inline style, which the CSP refuses), the body's class swapped. null: back to the start.
 */
async function setTheme(d: DashboardPage, bodyClass: string, vars: Record<string, string> | null): Promise<void> {
  await d.page.evaluate(
    ({ bodyClass, vars }) => {
      const w = window as unknown as { __originalTheme?: [string, string][] };
      const style = document.documentElement.style;
      const current = Array.from({ length: style.length }, (_, i) => style.item(i)).filter((p) => p.startsWith('--vscode-'));
      w.__originalTheme ??= current.map((p) => [p, style.getPropertyValue(p)]);
      for (const p of current) style.removeProperty(p);
      for (const [k, v] of vars ? Object.entries(vars) : w.__originalTheme) style.setProperty(k, v);
      document.body.classList.remove('vscode-dark', 'vscode-light', 'vscode-high-contrast');
      document.body.classList.add(bodyClass);
      document.body.setAttribute('data-vscode-theme-kind', bodyClass);
    },
    { bodyClass, vars },
  );
  await d.page.waitForTimeout(200);
}

describe('dashboard fed a recorded 8-GPU stream, as VS Code hosts it', function () {
  let d: DashboardPage;
  // Replayed as if it were happening now, so the header's clock (elapsed, ETA) is live.
  const stream = shiftedTo(readStream(SYNTHETIC_RUN_ID), Date.now() - 1500);
  // Everything but the final status: the run is live.
  const live = stream.slice(0, stream.length - 1);
  const steps = stream.filter((m): m is StepMessage => m.type === 'step');
  const lastMemory = (rank: number) => stream.filter((m): m is MemoryMessage => m.type === 'memory' && m.rank === rank).at(-1)!;

  before(async function () {
    d = await openDashboard({ width: 1280, height: 900 });
    await d.waitForPosted('ready', (m) => m.type === 'ready');
    await sendBatches(d, SYNTHETIC_RUN_ID, live);
  });

  after(async function () {
    await d?.close();
  });

  it('fills the run header from the stream: name, state, step / total, throughput, TFLOP/s, MFU, layout, alerts', async function () {
    const i = await inspect(d);
    assert.equal(i.host, 'vscode');
    assert.equal(i.runId, SYNTHETIC_RUN_ID);
    assert.equal(i.header.name, 'llama-2-7b · 8×H200 · ZeRO-1');
    assert.equal(i.header.state, 'running');
    assert.equal(i.header.step, 'step 300');
    assert.equal(i.header.total, ' / 2,000');
    assert.match(i.header.elapsed!, /^2[78]m \d\ds$/);
    // ETA: 1700 steps left at the mean step time of the last 20 steps.
    const stepMs = steps.slice(-20).reduce((s, m) => s + m.stepMs, 0) / 20;
    assert.match(i.header.eta!, new RegExp(`^${Math.floor((1700 * stepMs) / 3_600_000)}h \\d\\dm`));
    const last20 = steps.slice(-20);
    const tps = last20.reduce((s, m) => s + m.tokensPerSec, 0) / last20.length;
    assert.ok(i.header.throughput!.startsWith(`${Math.round(tps).toLocaleString('en-US')} tokens/s`), `throughput ${i.header.throughput} is the mean of the last 20 steps (${tps})`);
    assert.match(i.header.tflops!, /^\d+ TFLOP\/s8 devices$/);
    assert.match(i.header.mfu!, /^\d+\.\d% ?of H200 peak$/);
    assert.match(i.header.layout!, /dp8 × tp1 × pp1.*ZeRO-1 · tfjs-node-gpu/);
    assert.equal(i.header.loss, String(Number(steps.at(-1)!.loss.toPrecision(4))));
    assert.match(i.header.alerts!, /rank 7 peak memory .* is 90% of 139\.80 GiB/);
    assert.match(i.header.alerts!, /grew by .* something is kept alive/);
    assert.equal(i.rejected.count, 0, `nothing refused: ${i.rejected.last}`);
    // The per-rank strip: 8 bars, rank 7 in the warning colour.
    assert.equal(await d.page.locator('#mem-strip .mini').count(), 8);
    assert.equal(await d.page.locator('#mem-strip .mini[data-rank="7"].level-warn').count(), 1);
  });

  it('draws the curves from the data: raw + EMA loss, eval points, lr, grad norm, tokens/s, comm by kind', async function () {
    const i = await inspect(d);
    assert.equal(i.tab, 'curves');
    const loss = chart(i, 'loss');
    assert.ok(loss.visible);
    const raw = dataset(i, 'loss', 'loss (raw)');
    const ema = dataset(i, 'loss', /^loss \(EMA 0\.60\)$/);
    assert.equal(raw.first!.x, 1);
    assert.equal(raw.last!.x, 300);
    assert.equal(raw.points, 300, 'under one point per pixel nothing is dropped');
    const maxLoss = Math.max(...steps.map((s) => s.loss));
    assert.equal(raw.maxY, maxLoss, 'the raw series keeps the highest loss');
    assert.ok(ema.points > 100 && ema.maxY! <= maxLoss);
    const evals = stream.filter((m) => m.type === 'eval');
    assert.equal(dataset(i, 'loss', 'eval loss').points, evals.length);
    assert.equal(dataset(i, 'lr', 'learning rate').last!.y, steps.at(-1)!.lr);
    assert.equal(dataset(i, 'gradnorm', 'grad norm').maxY, Math.max(...steps.map((s) => s.gradNorm)), 'grad norm spikes are kept (min/max per pixel)');
    assert.equal(dataset(i, 'throughput', 'tokens/s').points, 300);
    assert.deepEqual(
      chart(i, 'comm-time')
        .datasets.map((x) => x.label)
        .sort(),
      ['all-gather', 'all-reduce', 'reduce-scatter'],
    );
    const rs = dataset(i, 'comm-bytes', 'reduce-scatter');
    // 2·Ψ·(n−1)/n bytes of bf16 gradients per step per rank.
    assert.ok(Math.abs(rs.last!.y - 2 * 6.74e9 * (7 / 8)) / (2 * 6.74e9 * (7 / 8)) < 0.01, `reduce-scatter bytes per step: ${rs.last!.y}`);
    for (const c of i.charts) for (const ds of c.datasets) assert.ok(ds.points <= 2400, `${c.id}/${ds.label}: ${ds.points} points on screen`);
    await screenshot(d, 'dashboard-curves.png');
  });

  it('memory panels: one per rank, stacked categories against capacity, predictions with errors, history, GPU reading', async function () {
    await showTab(d, 'memory');
    const i = await inspect(d);
    assert.equal(i.memory.length, 8);
    assert.equal(await d.page.locator('.mem-card').count(), 8);
    for (const p of i.memory) {
      const m = lastMemory(p.rank);
      assert.equal(p.stepPeak, m.stepPeak);
      assert.equal(p.capacity, m.capacity);
      assert.equal(p.measured.params, m.categories.params);
      assert.equal(p.measured.other, m.categories.temporaries, 'temporaries are shown under "other"');
      assert.equal(p.measured.buffers, m.categories.comm, 'comm buffers are shown under "buffers"');
      assert.equal(p.predictionSource, 'runtime');
      assert.equal(p.predicted!.params, m.predicted!.params);
      assert.equal(p.predicted!.other, m.predicted!.overhead);
      assert.equal(p.historyPoints, 300);
      assert.equal(p.gpu?.name, 'NVIDIA H200');
    }
    const r7 = i.memory.find((p) => p.rank === 7)!;
    assert.equal(r7.level, 'warn');
    assert.equal(r7.maxPeak, Math.max(...stream.filter((m): m is MemoryMessage => m.type === 'memory' && m.rank === 7).map((m) => m.stepPeak)));
    assert.equal(i.memory.find((p) => p.rank === 3)!.level, 'ok');
    // The DOM says the same: usage text, a warning border, the error column, the sparkline drawn.
    const card7 = d.page.locator('.mem-card[data-rank="7"]');
    assert.match((await card7.getAttribute('class'))!, /level-warn/);
    assert.match((await card7.locator('.usage').textContent())!, /GiB peak of 139\.80 GiB \(91\.\d%\)/);
    assert.equal(await card7.locator('tr[data-category="params"] td.error').textContent(), '±0 B', 'an exact prediction: no difference, in bytes (small errors are shown in bytes)');
    const sparkInk = await card7.locator('canvas.spark').evaluate((c: HTMLCanvasElement) => {
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let k = 3; k < px.length; k += 4) if (px[k]! > 0) n++;
      return n;
    });
    assert.ok(sparkInk > 100, `the history sparkline is drawn (${sparkInk} px)`);
    assert.match(
      (await card7.locator('.gpu-reading').textContent())!,
      /GPU 7 · NVIDIA H200.*used .* of 140\.40 GiB \(reserved 614\.00 MiB\) · util \d+% · \d+ °C · \d+ W \/ 700 W.*pid 48217 · rank 7/s,
    );
    await screenshot(d, 'dashboard-memory.png');
  });

  it('re-reads the theme when VS Code switches it (light, high contrast) and recolours the charts', async function () {
    await showTab(d, 'curves');
    const dark = await inspect(d);
    await setTheme(d, 'vscode-light', LIGHT);
    const light = await inspect(d);
    assert.equal(light.theme.kind, 'light');
    assert.equal(light.theme.foreground, '#616161');
    assert.notDeepEqual(light.theme.series, dark.theme.series);
    assert.equal(dataset(light, 'loss', /^loss \(EMA/).color, '#1a85ff', 'the EMA line takes the new --vscode-charts-blue');
    await screenshot(d, 'dashboard-light.png');
    await setTheme(d, 'vscode-high-contrast', HIGH_CONTRAST);
    const hc = await inspect(d);
    assert.equal(hc.theme.kind, 'high-contrast');
    assert.equal(dataset(hc, 'loss', 'loss (raw)').color, '#3794ff', 'no faint series in high contrast');
    await showTab(d, 'memory');
    await screenshot(d, 'dashboard-high-contrast.png');
    await setTheme(d, 'vscode-dark', null);
    assert.equal((await inspect(d)).theme.kind, 'dark');
    await showTab(d, 'curves');
  });

  it('smoothing slider, log scale and a time axis change what is drawn', async function () {
    await d.page.locator('#smoothing').fill('0.9');
    await d.page.locator('#smoothing').dispatchEvent('input');
    await d.page.click('#log-scale');
    await d.page.click('vscode-radio[value=time]');
    await d.page.waitForTimeout(200);
    const i = await inspect(d);
    const loss = chart(i, 'loss');
    assert.equal(loss.yScale, 'logarithmic');
    dataset(i, 'loss', 'loss (EMA 0.90)');
    const raw = dataset(i, 'loss', 'loss (raw)');
    const hello = stream[0] as { startedAt: number };
    assert.equal(raw.last!.x, (steps.at(-1)!.t! - hello.startedAt) / 1000, 'x is seconds since the run started');
    assert.equal(await d.page.locator('#smoothing-value').textContent(), '0.90');
    // back to steps, linear
    await d.page.click('#log-scale');
    await d.page.click('vscode-radio[value=step]');
  });

  it('zooms by dragging on a chart and with the keyboard; every curve shares the range', async function () {
    const wrap = d.page.locator('.chart-wrap[data-chart=loss]');
    const box = (await wrap.boundingBox())!;
    await d.page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2);
    await d.page.mouse.down();
    await d.page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 4 });
    await d.page.mouse.up();
    await d.page.waitForTimeout(200);
    let i = await inspect(d);
    const loss = chart(i, 'loss');
    assert.ok(loss.xMin! > 80 && loss.xMax! < 220 && loss.xMax! > loss.xMin!, `zoomed to ${loss.xMin}–${loss.xMax}`);
    assert.equal(chart(i, 'lr').xMin, loss.xMin, 'the learning-rate chart follows');
    const raw = dataset(i, 'loss', 'loss (raw)');
    assert.ok(raw.first!.x >= loss.xMin! && raw.last!.x <= loss.xMax!);
    // The loss spike at step 165 is inside the range: min/max per pixel keeps it, the EMA smooths it.
    const spike = Math.max(...steps.filter((s) => s.step >= loss.xMin! && s.step <= loss.xMax!).map((s) => s.loss));
    assert.equal(raw.maxY, spike);
    assert.ok(dataset(i, 'loss', /^loss \(EMA/).maxY! < spike - 1, 'the EMA smooths the spike');
    assert.match((await d.page.locator('#zoom-info').textContent())!, /^steps \d+–\d+$/);
    await wrap.focus();
    await d.page.keyboard.press('0');
    await d.page.waitForTimeout(150);
    i = await inspect(d);
    assert.equal(chart(i, 'loss').xMin, 1);
    assert.equal(chart(i, 'loss').xMax, 300);
  });

  it('runs: lists the host\u2019s runs and overlays a second run\u2019s curves, dashed', async function () {
    const other = syntheticVariant('llama7b-8xh200-lr6e-4', 300, 0.18);
    await d.send(
      wire({
        type: 'runs',
        runs: [
          { runId: SYNTHETIC_RUN_ID, name: 'llama-2-7b · 8×H200 · ZeRO-1', startedAt: (stream[0] as { startedAt: number }).startedAt, state: 'running', steps: 300 },
          { runId: 'llama7b-8xh200-lr6e-4', name: 'llama-2-7b (lr 6e-4)', startedAt: Date.UTC(2025, 5, 1, 8), state: 'done', steps: 300 },
        ],
        live: [SYNTHETIC_RUN_ID],
      }),
    );
    await showTab(d, 'runs');
    assert.equal(await d.page.locator('#runs-table tbody tr').count(), 2);
    await d.page.click('#runs-table tr[data-run="llama7b-8xh200-lr6e-4"] input[data-action=overlay]');
    const ask = await d.waitForPosted('compareRun', (m) => m.type === 'compareRun');
    assert.equal(ask.runId, 'llama7b-8xh200-lr6e-4');
    await d.send({ type: 'runHistory', runId: 'llama7b-8xh200-lr6e-4', snapshot: wire(snapshotOf(other)) });
    await d.page.waitForTimeout(150);
    assert.match((await d.page.locator('#compare-status').textContent())!, /Overlaid: llama-2-7b \(lr 6e-4\)/);
    await showTab(d, 'curves');
    const i = await inspect(d);
    const cmp = dataset(i, 'loss', /\(lr 6e-4\) \(EMA\)$/);
    const own = dataset(i, 'loss', /^loss \(EMA/);
    assert.ok(cmp.points > 100 && cmp.last!.y > own.last!.y, `the compared run is drawn, higher: ${JSON.stringify({ cmp, own })}`);
    dataset(i, 'throughput', /lr 6e-4/);
    assert.ok(i.runs.some((r) => r.runId === 'llama7b-8xh200-lr6e-4' && r.compared));
    await screenshot(d, 'dashboard-compare.png');
  });

  it('planner tab: plans the open config, ranks layouts with memory bars, and sends the chosen one to the host', async function () {
    const config = JSON.parse(readFileSync(join(ROOT, 'examples/llama-2-70b-h100.scalelm.json'), 'utf8')) as Record<string, unknown>;
    await d.send({ type: 'plannerInput', source: 'examples/llama-2-70b-h100.scalelm.json', config });
    await showTab(d, 'planner');
    await d.page.waitForSelector('#plan-results .plan-card', { timeout: 10_000 });
    const i = await inspect(d);
    assert.equal(i.planner.source, 'examples/llama-2-70b-h100.scalelm.json');
    assert.equal(i.planner.candidates, 8);
    assert.match((await d.page.locator('#plan-summary').textContent())!, /llama-2-70b on 128 × H100-SXM \(16 nodes\), global batch 512 × 4096 tokens/);
    const first = d.page.locator('#plan-results .plan-card').first();
    assert.match((await first.textContent())!, /#1.*dp\d+·tp\d+·pp\d+.*per step.*tokens\/s.*MFU \d+%.*GiB of 75\.7 GiB per GPU/s);
    assert.equal(await first.locator('.stack .seg').count(), 6);
    await first.locator('vscode-button').click();
    const chosen = await d.waitForPosted('chooseLayout', (m) => m.type === 'chooseLayout');
    assert.equal(chosen.source, 'examples/llama-2-70b-h100.scalelm.json');
    const layout = chosen.layout as { dp: number; tp: number; pp: number };
    assert.equal(layout.dp * layout.tp * layout.pp, 128);
    const patch = chosen.configPatch as { parallel: { dp: number }; train: { globalBatch: number }; cluster: { nodes: number } };
    assert.equal(patch.parallel.dp, layout.dp);
    assert.equal(patch.train.globalBatch, 512);
    assert.equal(patch.cluster.nodes, 16);
    assert.deepEqual(JSON.parse((await d.page.locator('#plan-json').textContent())!), patch);
    await screenshot(d, 'dashboard-planner.png');

    // A preset instead of the open config: H200s, fewer GPUs.
    await d.page.click('vscode-radio[value=preset]');
    await d.page.waitForTimeout(600);
    const j = await inspect(d);
    assert.equal(j.planner.error, null);
    assert.match((await d.page.locator('#plan-summary').textContent())!, /^llama-2-7b on 128 × H100-SXM/);
    await showTab(d, 'curves');
  });

  it('finishes when the final status arrives; refuses malformed messages without breaking', async function () {
    await d.send(wire(stream.at(-1)));
    await d.send({ type: 'step', step: 301, loss: 'lots', lr: 1, gradNorm: 1, tokensPerSec: 1, stepMs: 1, memory: {} });
    await d.send({ type: 'batch', runId: SYNTHETIC_RUN_ID, messages: [{ type: 'eval', step: 'x' }] });
    const i = await inspect(d);
    assert.equal(i.header.state, 'stopped');
    assert.equal(i.header.eta, 'stopped');
    assert.equal(i.header.step, 'step 300');
    assert.equal(i.rejected.count, 2);
    assert.match(i.rejected.last!, /eval|step/);
  });

  it('shows a clear out-of-memory warning when a rank runs out', async function () {
    await d.send({
      type: 'status',
      state: 'failed',
      t: Date.now(),
      step: 300,
      error: { kind: 'DeviceOutOfMemoryError', message: 'rank 7 (GPU 7) could not allocate 2.00 GiB: 138.91 GiB of 139.80 GiB in use (activations 58.2 GiB, temporaries 28.4 GiB)' },
    });
    const warning = d.page.locator('#oom-warning');
    await warning.waitFor({ state: 'visible' });
    assert.match((await warning.textContent())!, /^Out of memory — the run stopped: rank 7 \(GPU 7\) could not allocate/);
    assert.equal(await warning.getAttribute('role'), 'alert');
  });

  it('runs under its strict CSP without violations or page errors', async function () {
    assert.deepEqual(await d.cspViolations(), []);
    // The two refusals above are logged as warnings, not errors.
    assert.deepEqual(d.errors, []);
  });
});

describe('dashboard fed a real run (scalelm train, one CPU device) as a snapshot', function () {
  let d: DashboardPage;
  const stream = readStream('tiny-cpu');

  before(async function () {
    d = await openDashboard({ width: 1100, height: 800 });
    await d.send(wire(snapshotOf(stream)));
  });

  after(async function () {
    await d?.close();
  });

  it('fills every panel from the recorded run, with the planner\u2019s runtime-convention prediction', async function () {
    const i = await inspect(d);
    assert.equal(i.header.name, 'tiny-shakespeare-bytes');
    assert.equal(i.header.state, 'finished');
    assert.equal(i.header.step, 'step 120');
    assert.equal(i.header.mfu, 'n/ano GPU peak (CPU device)');
    assert.match(i.header.layout!, /dp1 × tp1 × pp1.*ZeRO-0 · wasm/);
    assert.match(i.header.tflops!, /GFLOP\/s1 device$/);
    assert.equal(dataset(i, 'loss', 'eval loss').points, stream.filter((m) => m.type === 'eval').length);
    assert.ok(await d.page.locator('#box-comm-time').isHidden(), 'one device, no collectives: no empty communication charts');
    await screenshot(d, 'dashboard-tiny-cpu.png');
    await showTab(d, 'memory');
    const m = (await inspect(d)).memory;
    assert.equal(m.length, 1);
    assert.equal(m[0]!.device, 'cpu:0');
    assert.equal(m[0]!.predictionSource, 'planner, runtime convention');
    assert.equal(m[0]!.gpu, null);
    assert.ok(m[0]!.predicted!.activations > 0);
    // The runtime convention's overhead term (transient logits: micro-batch × seq × vocab × 4 bytes), not its total.
    const cfg = (stream.find((x) => x.type === 'hello') as unknown as { config: { train: { microBatch: number }; model: { seqLen: number; vocab: number } } }).config;
    assert.equal(m[0]!.predicted!.other, 4 * cfg.train.microBatch * cfg.model.seqLen * cfg.model.vocab);
    await showTab(d, 'runs');
    assert.ok((await d.page.locator('#events .checkpoints li').count()) >= 1);
  });

  it('is keyboard accessible: tabs switch with the arrow keys, charts take focus, every control has a name', async function () {
    await showTab(d, 'curves');
    await d.page.locator('vscode-tab-header[data-tab=curves]').focus();
    await d.page.keyboard.press('ArrowRight');
    await d.page.keyboard.press('Enter');
    await d.page.waitForTimeout(150);
    assert.equal((await inspect(d)).tab, 'memory', 'ArrowRight + Enter on the tab headers opens the next tab');
    await showTab(d, 'curves');
    const unnamed = await d.page.evaluate(() =>
      Array.from(document.querySelectorAll('vscode-button, vscode-checkbox, vscode-radio, vscode-single-select, vscode-textfield, vscode-textarea, input, .chart-wrap, .mem-card'))
        .filter((el) => !(el.getAttribute('aria-label') || el.textContent?.trim() || (el.id && document.querySelector(`label[for="${el.id}"]`))))
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unnamed, []);
    const focusable = await d.page.evaluate(() => Array.from(document.querySelectorAll('.chart-wrap')).every((el) => (el as HTMLElement).tabIndex === 0));
    assert.ok(focusable, 'every chart can take keyboard focus (and zooms with + / − / arrows / 0)');
  });

  it('stays readable at a narrow width (no sideways scrolling)', async function () {
    await d.page.setViewportSize({ width: 400, height: 800 });
    for (const tab of ['curves', 'memory', 'runs', 'planner']) {
      await showTab(d, tab);
      await d.page.waitForTimeout(250);
      const overflow = await d.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 1, `${tab}: the page is ${overflow} px wider than the window`);
    }
    await showTab(d, 'memory');
    await screenshot(d, 'dashboard-narrow.png');
    assert.deepEqual(await d.cspViolations(), []);
    assert.deepEqual(d.errors, []);
  });
});
