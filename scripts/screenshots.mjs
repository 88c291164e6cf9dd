#!/usr/bin/env node
// `node scripts/screenshots.mjs [RUNS_DIR]`: the README's runs-table and stopped-run screenshots
// (media/screenshots/dashboard-runs.png, dashboard-stopped.png) from real runs of the current build.
// Without RUNS_DIR it trains the tiny example three times into a temp folder first (a few minutes on two
// cores): the example as shipped (lr 1e-3) to the end, the same stopped with Ctrl-C at step 70, and lr 5e-4
// to the end. Then
//   - the runs table: `scalelm serve` of the three runs in headless Chromium, the two others overlaid;
//   - the stopped run: its recorded stream in the VS Code page (test/webview/harness), with "Resume from step N".
// Needs `npx tsc -p . && node scripts/build.mjs` first (it drives dist/cli.js and the compiled test harness).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const require = createRequire(import.meta.url);
for (const f of ['dist/cli.js', 'out/test/webview/harness.js']) {
  if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run npx tsc -p . && node scripts/build.mjs first`);
}
const { launchChromium, closeChromium } = require(join(root, 'out/test/webview/chromium.js'));
const { openDashboard } = require(join(root, 'out/test/webview/harness.js'));
const { until } = require(join(root, 'out/test/webview/inspect.js'));
const { snapshotOf, wire } = require(join(root, 'out/test/webview/streams.js'));
const { validateMessage } = require(join(root, 'out/common/protocol.js'));
const SHOTS = join(root, 'media/screenshots');
const CLI = join(root, 'dist/cli.js');

/** `scalelm train` of the tiny example into dir; with stopAfter, Ctrl-C (SIGINT) once that step printed. */
function train(dir, lr, stopAfter) {
  return new Promise((resolve, reject) => {
    const args = [CLI, 'train', 'examples/tiny.scalelm.json', '--threads', '1', '--set', `train.lr=${lr}`, '--run-dir', dir];
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = stopAfter && /step +(\d+)\//g.exec(d);
      if (m && Number(m[1]) >= stopAfter) child.kill('SIGINT');
    });
    child.once('exit', (code) => (code === 0 || (stopAfter && code !== null) ? resolve(out) : reject(new Error(`scalelm train exited ${code}:\n${out.slice(-2000)}`))));
  });
}

function serve(dir) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.SCALELM_MONITOR_TOKEN;
    const child = spawn(process.execPath, [CLI, 'serve', dir], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (line) resolve({ child, url: JSON.parse(line).dashboardUrl });
    });
    child.once('exit', (code) => reject(new Error(`scalelm serve exited (${code})`)));
  });
}

const recorded = (dir) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const r = validateMessage(JSON.parse(l));
      if (!r.ok) throw new Error(`${dir}: ${r.reason}`);
      return r.value;
    });
const finalState = (dir) =>
  recorded(dir)
    .filter((m) => m.type === 'status')
    .at(-1)?.state;

let runs = process.argv[2];
if (!runs) {
  runs = mkdtempSync(join(tmpdir(), 'scalelm-screenshots-'));
  console.log(`training three runs of the tiny example in ${runs}`);
  await train(join(runs, 'tiny-lr1e-3'), 0.001);
  await train(join(runs, 'tiny-lr1e-3-stopped'), 0.001, 70);
  await train(join(runs, 'tiny-lr5e-4'), 0.0005);
}
const dirs = readdirSync(runs).filter((d) => existsSync(join(runs, d, 'metrics.jsonl')));
const stopped = dirs.find((d) => finalState(join(runs, d)) === 'stopped');
const finished = dirs.filter((d) => finalState(join(runs, d)) === 'finished');
if (!stopped || finished.length < 2) throw new Error(`${runs} needs a stopped run and two finished ones: ${dirs.map((d) => `${d} ${finalState(join(runs, d))}`).join(', ')}`);

// The runs table: the first finished run shown, the other two ticked to overlay.
const server = await serve(runs);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  const shown = finished[0];
  await page.goto(server.url.replace('/#', `/?run=${shown}#`), { waitUntil: 'load' });
  await until(page, 'the shown run', (x) => x.runId === shown && x.stepsShown > 0, 30_000);
  await page.click('vscode-tab-header[data-tab=runs]');
  await until(page, 'three rows', (x) => x.table.length === 3, 30_000);
  for (const other of [stopped, finished[1]]) await page.click(`#runs-table tr[data-run="${other}"] input[data-action=overlay]`);
  await until(page, 'two overlays', (x) => x.overlays.length === 2, 30_000);
  await page.waitForTimeout(300);
  // Down to the overlay line: the run's checkpoints and log below it are not what this picture shows.
  const end = await page.locator('.compare-row').boundingBox();
  await page.screenshot({ path: join(SHOTS, 'dashboard-runs.png'), clip: { x: 0, y: 0, width: 1500, height: Math.ceil((end?.y ?? 600) + (end?.height ?? 40) + 16) } });
  console.log(`wrote ${join(SHOTS, 'dashboard-runs.png')}`);
} finally {
  await closeChromium(browser);
  server.child.kill('SIGTERM');
}

// The stopped run as VS Code's dashboard shows it: how it ended, and Resume.
const d = await openDashboard({ width: 1200, height: 800 });
try {
  await d.send(wire(snapshotOf(recorded(join(runs, stopped)), false)));
  const i = await until(d.page, 'the stopped run', (x) => x.header.state === 'stopped' && x.stepsShown > 0 && x, 30_000);
  console.log(`stopped run: ${i.header.end}; ${i.header.resume}`);
  await d.page.waitForTimeout(300);
  await d.page.screenshot({ path: join(SHOTS, 'dashboard-stopped.png'), fullPage: true });
  console.log(`wrote ${join(SHOTS, 'dashboard-stopped.png')}`);
} finally {
  await d.close();
}
