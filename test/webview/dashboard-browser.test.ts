// The same dashboard bundle in a plain browser against a real `scalelm serve` of the recorded runs: the
// token from the URL fragment (then removed from the address bar) as a WebSocket subprotocol entry, the
// server's snapshot, its runs list, switching and comparing runs over new sockets, the planner on the
// run's config with the JSON to copy, state kept across a reload, and the browser's own light/dark theme.
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { inspect, until } from './inspect';
import { closeChromium, launchChromium } from './chromium';
import { ROOT } from './harness';
import { startServer, type TelemetryServer } from '../../runtime/server/server';
import { MetricBus } from '../../runtime/telemetry/bus';
import { readStream, SYNTHETIC_RUN_ID, STREAMS } from './streams';
import { MULTINODE_RUN_ID } from './synthetic';

const ARTIFACTS = join(ROOT, 'test-artifacts');

interface Listening {
  port: number;
  token: string;
  dashboardUrl: string;
}

function startServe(dir: string): Promise<{ child: ChildProcess; listening: Listening }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.SCALELM_MONITOR_TOKEN;
    const child = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve', dir], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`scalelm serve did not print its listening line in 20 s; stderr: ${err}`)), 20_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (!line) return;
      clearTimeout(timer);
      resolve({ child, listening: JSON.parse(line) as Listening });
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.once('exit', (code) => reject(new Error(`scalelm serve exited (${code}): ${err}`)));
  });
}

describe('dashboard in a browser against a real `scalelm serve`', function () {
  let serve: { child: ChildProcess; listening: Listening };
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];

  before(async function () {
    serve = await startServe(STREAMS);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => m.type() === 'error' && errors.push(`console.error: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
    await page.addInitScript(() => {
      const w = window as unknown as { __csp: string[] };
      w.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => w.__csp.push(`${e.violatedDirective}: ${e.blockedURI || '(inline)'}`));
    });
    await page.goto(serve.listening.dashboardUrl, { waitUntil: 'load' });
  });

  after(async function () {
    await closeChromium(browser);
    if (serve?.child.exitCode === null) serve.child.kill('SIGTERM');
  });

  it('connects with the token from the fragment, then removes it from the address bar', async function () {
    const i = await until(page, 'the first snapshot', (x) => x.stepsShown > 0 && x);
    assert.equal(i.host, 'browser');
    assert.ok(!page.url().includes('#token') && !page.url().includes(serve.listening.token), `the token is gone from the URL: ${page.url()}`);
    // A replay is connected, but not live: the header says "recorded".
    assert.equal(i.header.connection, 'recorded');
    assert.deepEqual(i.runs.map((r) => r.runId).sort(), [MULTINODE_RUN_ID, SYNTHETIC_RUN_ID, 'tiny-cpu']);
    assert.equal(await page.locator('#btn-stop').isHidden(), true, 'a replay is read-only: no stop button');
  });

  it('switches to another run (a new socket, a new snapshot) and fills every panel', async function () {
    await page.click('vscode-tab-header[data-tab=runs]');
    const shown = (await inspect(page)).runId;
    const target = shown === SYNTHETIC_RUN_ID ? 'tiny-cpu' : SYNTHETIC_RUN_ID;
    await page.click(`#runs-table tr[data-run="${target}"] vscode-button[data-action=show]`);
    await until(page, `run ${target}`, (x) => x.runId === target && x.stepsShown > 0);
    if (target !== SYNTHETIC_RUN_ID) {
      await page.click(`#runs-table tr[data-run="${SYNTHETIC_RUN_ID}"] vscode-button[data-action=show]`);
      await until(page, `run ${SYNTHETIC_RUN_ID}`, (x) => x.runId === SYNTHETIC_RUN_ID && x.stepsShown > 0);
    }
    assert.match(page.url(), new RegExp(`\\?run=${SYNTHETIC_RUN_ID}$`));
    const i = await inspect(page);
    assert.equal(i.header.name, 'llama-2-7b · 8×H200 · ZeRO-1');
    assert.equal(i.header.state, 'stopped');
    assert.equal(i.header.step, 'step 300');
    assert.match(i.header.mfu!, /% ?of H200 peak/);
    await page.click('vscode-tab-header[data-tab=memory]');
    const memory = await until(page, 'memory panels', (x) => x.memory.length === 8 && x.memory);
    assert.ok(memory.every((p) => p.gpu?.name === 'NVIDIA H200' && p.predictionSource === 'runtime'));
    // The server downsamples memory history per rank for its snapshot: less than 300 points, more than none.
    assert.ok(
      memory.every((p) => p.historyPoints > 20 && p.historyPoints <= 300),
      JSON.stringify(memory.map((p) => p.historyPoints)),
    );
  });

  it('overlays another run fetched over its own socket', async function () {
    await page.click('vscode-tab-header[data-tab=runs]');
    await page.click('#runs-table tr[data-run="tiny-cpu"] input[data-action=overlay]');
    await until(page, 'the compared run', (x) => x.runs.some((r) => r.runId === 'tiny-cpu' && r.compared));
    await page.click('vscode-tab-header[data-tab=curves]');
    const i = await until(
      page,
      'the overlay on the loss chart',
      (x) => x.charts.find((c) => c.id === 'loss')?.datasets.some((d) => d.label.startsWith('tiny-shakespeare-bytes') && d.points > 50) && x,
    );
    assert.ok(i.charts.find((c) => c.id === 'loss')!.datasets.some((d) => d.label === 'tiny-shakespeare-bytes eval'));
    await page.click('vscode-tab-header[data-tab=runs]');
    await page.click('#compare-clear');
    await until(page, 'no overlay', (x) => !x.runs.some((r) => r.compared));
  });

  it('plans the run\u2019s own config and shows the chosen layout as JSON to copy', async function () {
    await page.click('vscode-tab-header[data-tab=planner]');
    await page.click('vscode-radio[value=config]');
    await page.waitForSelector('#plan-results .plan-card', { timeout: 10_000 });
    const i = await inspect(page);
    assert.equal(i.planner.source, 'run llama-2-7b · 8×H200 · ZeRO-1');
    assert.ok(i.planner.candidates > 0);
    await page.locator('#plan-results .plan-card vscode-button').first().click();
    const json = JSON.parse((await page.locator('#plan-json').textContent())!) as { parallel: { dp: number; tp: number; pp: number } };
    assert.equal(json.parallel.dp * json.parallel.tp * json.parallel.pp, 8);
    assert.match((await page.locator('#plan-chosen-status').textContent())!, /Merge this into your \*\.scalelm\.json/);
  });

  it('keeps tab, smoothing and zoom across a reload (the token stays in this tab\u2019s session)', async function () {
    await page.click('vscode-tab-header[data-tab=curves]');
    await page.locator('#smoothing').fill('0.85');
    await page.locator('#smoothing').dispatchEvent('input');
    await page.locator('.chart-wrap[data-chart=loss]').focus();
    await page.keyboard.press('+');
    const before = await inspect(page);
    await page.reload({ waitUntil: 'load' });
    const after = await until(page, 'the snapshot after reload', (x) => x.stepsShown > 0 && x);
    assert.equal(after.tab, 'curves');
    assert.equal(after.runId, SYNTHETIC_RUN_ID);
    assert.equal(await page.locator('#smoothing-value').textContent(), '0.85');
    const loss = after.charts.find((c) => c.id === 'loss')!;
    assert.equal(loss.xMin, before.charts.find((c) => c.id === 'loss')!.xMin);
    assert.ok(loss.xMax! - loss.xMin! < 200, 'still zoomed');
    await page.locator('.chart-wrap[data-chart=loss]').focus();
    await page.keyboard.press('0');
  });

  it('has its own neutral theme, light and dark (screenshots)', async function () {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.emulateMedia({ colorScheme: 'light' });
    await page.waitForTimeout(300);
    const light = await inspect(page);
    assert.equal(light.theme.kind, 'light');
    assert.equal(light.theme.foreground, '#1f2328');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-browser.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForTimeout(300);
    const dark = await inspect(page);
    assert.equal(dark.theme.kind, 'dark');
    assert.equal(dark.theme.foreground, '#d1d7e0');
    assert.notEqual(dark.charts.find((c) => c.id === 'loss')!.datasets[0]!.color, light.charts.find((c) => c.id === 'loss')!.datasets[0]!.color);
    await page.click('vscode-tab-header[data-tab=memory]');
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-browser-dark.png'), fullPage: true });
  });

  it('runs under the server\u2019s CSP without violations or page errors', async function () {
    assert.deepEqual(await page.evaluate(() => (window as unknown as { __csp: string[] }).__csp), []);
    assert.deepEqual(errors, []);
  });
});

describe('dashboard in a browser following a live run (in-process runtime server)', function () {
  let server: TelemetryServer;
  let bus: MetricBus;
  let browser: Browser;
  let page: Page;
  const controls: string[] = [];
  const errors: string[] = [];
  const stream = readStream(SYNTHETIC_RUN_ID);
  const firstStatus = stream.findIndex((m) => m.type === 'status' && m.state === 'running');
  // The run so far (snapshot) and what it publishes while the page watches (live).
  const cut = stream.findIndex((m) => m.type === 'step' && m.step === 201);
  const soFar = stream.slice(0, cut);
  const later = stream.slice(cut, stream.length - 1);

  before(async function () {
    assert.ok(firstStatus > 0 && cut > firstStatus);
    bus = new MetricBus();
    for (const m of soFar) bus.publish(m);
    bus.onControl(async (action) => {
      controls.push(action);
    });
    server = await startServer({ runs: [bus], heartbeatMs: 0, warn: () => undefined });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => m.type() === 'error' && errors.push(`console.error: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
    await page.goto(server.dashboardUrl, { waitUntil: 'load' });
    await until(page, 'the snapshot', (x) => x.stepsShown > 0);
  });

  after(async function () {
    await closeChromium(browser);
    await server?.close();
  });

  it('draws what the run publishes after the snapshot, live', async function () {
    const first = await inspect(page);
    assert.equal(first.header.step, 'step 200');
    assert.equal(first.header.state, 'running');
    // The snapshot carries every rank's comm totals over the steps: the per-step charts are drawn from it.
    const commAtSnapshot = first.charts.find((c) => c.id === 'comm-time')!;
    assert.equal(commAtSnapshot.datasets.length, 3, 'the snapshot draws the per-step comm series');
    const snapshotLast = Math.max(...commAtSnapshot.datasets.map((d) => d.last!.x));
    assert.ok(snapshotLast > 100 && snapshotLast <= 200, `the snapshot's comm series reach step ${snapshotLast}`);
    assert.doesNotMatch((await page.locator('#comm-time-caption').textContent())!, /No per-step reports yet/);
    for (const m of later) bus.publish(m);
    const i = await until(page, 'step 300', (x) => x.header.step === 'step 300' && x);
    const loss = i.charts.find((c) => c.id === 'loss')!.datasets.find((d) => d.label === 'loss (raw)')!;
    assert.equal(loss.last!.x, 300);
    const commLive = i.charts.find((c) => c.id === 'comm-time')!;
    assert.ok(commLive.datasets.length === 3 && Math.max(...commLive.datasets.map((d) => d.last!.x)) > snapshotLast, 'live comm reports extend the per-step series');
    await page.click('vscode-tab-header[data-tab=memory]');
    const m = await until(page, 'rank 7 in the warning colour', (x) => x.memory.find((p) => p.rank === 7 && p.level === 'warn') && x);
    assert.equal(m.memory.length, 8);
    await page.click('vscode-tab-header[data-tab=curves]');
  });

  it('sends stop (after a confirming second click) and checkpoint to the runtime, and shows the answer', async function () {
    const stop = page.locator('#btn-stop');
    await stop.waitFor({ state: 'visible' });
    await page.click('#btn-checkpoint');
    await until(page, 'the checkpoint answer', (x) => /request checkpoint-\w+ done/.test(x.header.connection!));
    await stop.click();
    assert.equal(await stop.textContent(), 'Confirm stop');
    assert.deepEqual(controls, ['checkpoint'], 'one click does not stop the run');
    await stop.click();
    await until(page, 'the stop answer', (x) => /request stop-\w+ done/.test(x.header.connection!));
    assert.deepEqual(controls, ['checkpoint', 'stop']);
  });

  it('reconnects after the server drops it, and starts again from a fresh snapshot', async function () {
    server.dropClients('test');
    await until(page, 'the reconnect', (x) => x.header.connection === 'live' && x.stepsShown > 0, 15_000);
    bus.publish({ type: 'status', state: 'finished', t: Date.now(), step: 300 });
    await until(page, 'the final status', (x) => x.header.state === 'finished');
    assert.deepEqual(errors, []);
  });

  it('when the run has finished and its server goes away (the CLI exits), the page says the run ended, not "refused"', async function () {
    const i0 = await inspect(page);
    assert.equal(i0.header.stopDisabled, 'true', 'Stop is disabled on the finished run');
    await server.close();
    const i = await until(page, 'the end of the run', (x) => /the run has ended/.test(x.header.connection!) && x, 15_000);
    assert.match(i.header.connection!, /browse it again with `scalelm serve <its run folder>`/);
    assert.doesNotMatch(i.header.connection!, /refused/);
    assert.equal(await page.locator('#connection').evaluate((e) => e.classList.contains('bad')), false, 'not shown as an error');
    assert.equal(i.header.state, 'finished');
  });
});
