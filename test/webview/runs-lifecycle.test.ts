// Runs a user can trust at a glance, in the real Chromium:
//   - a real `scalelm serve` of three recorded runs with the same name (one finished from an older runtime's
//     "done", one later with another lr, one cut off without a final status = crashed): distinct labels,
//     true durations (end − start, not now − start), no "live" tag, the time axis spanning the data, three
//     runs overlaid over their full step range, the config diff of two;
//   - the VS Code page: a stopped run says where and by whom with "Resume from step N" (which posts
//     resumeRun), a failed run names rank, step and cause, and Stop/Checkpoint are disabled once a run ended.
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { HelloMessage, Message, StatusMessage } from '../../common/protocol';
import { formatDuration } from '../../webview/format';
import { until } from './inspect';
import { closeChromium, launchChromium } from './chromium';
import { openDashboard, ROOT, type DashboardPage } from './harness';
import { readStream, snapshotOf, wire } from './streams';

const ARTIFACTS = join(ROOT, 'test-artifacts');

function startServe(dir: string): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.SCALELM_MONITOR_TOKEN;
    const child = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve', dir], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`scalelm serve did not start in 20 s: ${err}`)), 20_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (!line) return;
      clearTimeout(timer);
      resolve({ child, url: (JSON.parse(line) as { dashboardUrl: string }).dashboardUrl, stderr: () => err });
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.once('exit', (code) => reject(new Error(`scalelm serve exited (${code}): ${err}`)));
  });
}

const lines = (messages: object[]): string => messages.map((m) => JSON.stringify(m)).join('\n') + '\n';

describe('runs a user can trust: a real `scalelm serve` of three runs with one name', function () {
  this.timeout(60_000);
  let root: string;
  let serve: Awaited<ReturnType<typeof startServe>>;
  let browser: Browser;
  let page: Page;
  const original = readFileSync(join(ROOT, 'test/fixtures/streams/tiny-cpu/metrics.jsonl'), 'utf8');
  const messages = original
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Message & { t?: number });
  const hello = messages[0] as HelloMessage;
  const final = messages[messages.length - 1] as StatusMessage;
  const stepsOf = (ms: Message[]) => ms.filter((m) => m.type === 'step') as { step: number; t: number }[];
  const cutAt = 60;
  const cut = messages.filter((m) => m.type !== 'status' || (m as { state?: string }).state !== 'done').filter((m) => m.type !== 'step' || (m as { step: number }).step <= cutAt);
  const cutSteps = stepsOf(cut);
  const cutLastT = Math.max(...cut.map((m) => m.t ?? 0));

  before(async function () {
    root = mkdtempSync(join(tmpdir(), 'scalelm-runs-'));
    // A: the recorded run as an older runtime wrote it (final status "done").
    mkdirSync(join(root, 'tiny-a'));
    writeFileSync(join(root, 'tiny-a', 'metrics.jsonl'), original.replace(/"runId":"tiny-cpu"/, '"runId":"tiny-a"'));
    // B: the same run an hour later with another learning rate.
    const hour = 3_600_000;
    const b = messages.map((m) => {
      const c = structuredClone(m) as Message & { t?: number; startedAt?: number; runId?: string; config?: { train: { lr: number } } };
      if (typeof c.t === 'number') c.t += hour;
      if (c.type === 'hello') {
        c.startedAt! += hour;
        c.runId = 'tiny-b';
        c.config!.train.lr = 0.001;
      }
      return c;
    });
    mkdirSync(join(root, 'tiny-b'));
    writeFileSync(join(root, 'tiny-b', 'metrics.jsonl'), lines(b));
    // C: cut off at step 60 with no final status and no process: crashed.
    mkdirSync(join(root, 'tiny-c'));
    writeFileSync(join(root, 'tiny-c', 'metrics.jsonl'), lines(cut.map((m) => (m.type === 'hello' ? { ...m, runId: 'tiny-c' } : m))));
    serve = await startServe(root);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(serve.url.replace('/#', '/?run=tiny-c#'), { waitUntil: 'load' });
  });

  after(async function () {
    await closeChromium(browser);
    if (serve?.child.exitCode === null) serve.child.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  });

  it('says the cut-off run crashed, with its true elapsed time, and no "live" anywhere', async function () {
    assert.match(serve.stderr(), /tiny-c: \d+ steps \(crashed: no final status and its process is gone; continue it with scalelm train --resume \S+tiny-c\)/);
    const i = await until(page, 'the crashed run', (x) => x.runId === 'tiny-c' && x.stepsShown > 0 && x);
    assert.equal(i.header.state, 'crashed');
    assert.equal(i.header.end, `crashed after step ${cutAt} (the process is gone without a final status)`);
    // Elapsed is the run's own (its last message − its start), not now − start.
    assert.equal(i.header.elapsed, formatDuration(cutLastT - hello.startedAt));
    assert.equal(i.header.eta, 'crashed');
    assert.equal(i.header.connection, 'recorded');
    assert.equal(i.header.stopDisabled, 'hidden', 'a replay has no Stop');
    assert.equal(i.header.resume, '', 'the browser cannot resume; it says the command instead');
    assert.match((await page.locator('#run-end-hint').textContent())!, /continue with: scalelm train --resume …\/tiny-c/);
  });

  it('lists the three runs with distinct labels, states, true durations, losses and setup; sorts by a column', async function () {
    await page.click('vscode-tab-header[data-tab=runs]');
    const i = await until(page, 'three rows', (x) => x.table.length === 3 && x);
    const row = (id: string) => i.table.find((r) => r.runId === id)!.cells;
    const labels = i.table.map((r) => r.cells[1]);
    assert.equal(new Set(labels).size, 3, `distinct labels: ${labels.join(' | ')}`);
    assert.ok(
      labels.every((l) => l!.startsWith('tiny-shakespeare-bytes · ')),
      labels.join(' | '),
    );
    assert.equal(row('tiny-a')[2], 'finished');
    assert.equal(row('tiny-b')[2], 'finished');
    assert.equal(row('tiny-c')[2], 'crashed');
    assert.ok(!i.table.some((r) => /live/.test(r.cells[2]!)), 'no live tag on recorded runs');
    assert.equal(row('tiny-a')[4], formatDuration(final.t - hello.startedAt), 'duration = end − start');
    assert.equal(row('tiny-b')[4], formatDuration(final.t - hello.startedAt), 'the later run took as long');
    assert.equal(row('tiny-a')[5], '120');
    const steps = stepsOf(messages) as unknown as { step: number; loss: number }[];
    const best = Math.min(...steps.map((s) => s.loss));
    assert.ok(Math.abs(Number(row('tiny-a')[7]) - best) < 1e-3 * best, `best loss ${row('tiny-a')[7]} ≈ ${best}`);
    assert.match(row('tiny-a')[10]!, /^dp1 × tp1/);
    assert.equal(row('tiny-a')[11], 'wasm');
    assert.equal(row('tiny-a')[12], '1 × cpu');
    // Sorting by steps (descending first for numbers), then ascending.
    await page.click('#runs-table th button[data-sort=steps]');
    const sorted = await until(page, 'sorted by steps', (x) => x.table[x.table.length - 1]?.runId === 'tiny-c' && x);
    assert.equal(sorted.table[sorted.table.length - 1]!.cells[5], String(cutSteps.length));
    await page.click('#runs-table th button[data-sort=steps]');
    await until(page, 'sorted by steps, ascending', (x) => x.table[0]?.runId === 'tiny-c' && x);
  });

  it('overlays the two other runs over their full step range, with their labels, and diffs two configs', async function () {
    // One ticked run: how its config differs from the shown one's (B trained with another lr).
    await page.click('#runs-table tr[data-run="tiny-b"] input[data-action=overlay]');
    await until(page, 'one overlay', (x) => x.overlays.length === 1);
    const diff = page.locator('#config-diff-table');
    await diff.waitFor({ state: 'visible' });
    assert.deepEqual(await diff.locator('tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.path)), ['train.lr']);
    assert.match((await diff.locator('tbody tr').textContent())!, /train\.lr0\.0030\.001/);
    await page.click('#runs-table tr[data-run="tiny-a"] input[data-action=overlay]');
    const i = await until(page, 'two overlays', (x) => x.overlays.length === 2 && x);
    assert.equal(new Set([...i.overlays, i.table.find((r) => r.runId === 'tiny-c')!.cells[1]]).size, 3, 'three distinct labels on the curves');
    await page.click('vscode-tab-header[data-tab=curves]');
    const c = await until(page, 'three loss curves', (x) => {
      const loss = x.charts.find((ch) => ch.id === 'loss')!;
      const drawn = loss.datasets.filter((d) => d.points > 0 && !/eval|raw/.test(d.label));
      return drawn.length === 3 && x;
    });
    const loss = c.charts.find((ch) => ch.id === 'loss')!;
    // The shown run has 60 steps; the overlays are drawn to their own end (120), not clipped to 60.
    assert.ok(loss.xMax! >= 120, `x axis reaches the overlays' last step: ${loss.xMax}`);
    for (const label of i.overlays) {
      const ds = loss.datasets.find((d) => d.label.startsWith(label) && !/eval|raw/.test(d.label));
      assert.ok(ds && ds.last!.x === 120, `${label} drawn to step 120: ${JSON.stringify(ds)}`);
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-overlay.png'), fullPage: true });
  });

  it('the time axis spans the data: seconds since each run\u2019s start, the last point at the right edge', async function () {
    await page.click('vscode-radio[value=time]');
    const i = await until(page, 'the time axis', (x) => x.charts.find((ch) => ch.id === 'loss')!.xMax! < 10_000 && x);
    const loss = i.charts.find((ch) => ch.id === 'loss')!;
    const own = loss.datasets.find((d) => d.label.startsWith('loss') && d.points > 0)!;
    // This recording's steps carry no time (an older runtime's file): each is placed by its own step time.
    assert.equal(cutSteps[0]!.t, undefined);
    const cumulative = (ms: Message[]) => (ms.filter((m) => m.type === 'step') as { stepMs: number }[]).reduce((a, s) => a + s.stepMs, 0) / 1000;
    const expectLast = cumulative(cut);
    assert.ok(Math.abs(own.last!.x - expectLast) < 1e-6, `last point at ${own.last!.x} s, expected ${expectLast}`);
    const fullLast = cumulative(messages);
    assert.ok(loss.xMax! >= fullLast && loss.xMax! < fullLast * 1.1, `axis ends just after the longest run (${fullLast} s): ${loss.xMax}`);
    assert.ok(loss.xMin! >= 0 && loss.xMin! <= own.first!.x, `axis starts at the first point: ${loss.xMin}`);
    await page.click('vscode-radio[value=step]');
  });

  it('says where the TensorBoard files, CSV and Prometheus are, with a button that copies the TensorBoard command', async function () {
    await page.click('vscode-tab-header[data-tab=runs]');
    assert.equal(await page.locator('#tensorboard-command').textContent(), 'tensorboard --logdir runs/tiny-c/tensorboard');
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
    await page.click('#copy-tensorboard');
    await page.waitForFunction(() => document.querySelector('#copy-tensorboard')?.textContent === 'Copied');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'tensorboard --logdir runs/tiny-c/tensorboard');
    assert.match((await page.locator('#exports').textContent())!, /scalelm export-csv runs\/tiny-c/);
  });

  it('the runs table for the README (screenshot)', async function () {
    await page.click('vscode-tab-header[data-tab=runs]');
    await page.waitForTimeout(200);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-runs.png'), fullPage: true });
  });
});

describe('the VS Code page: how a run ended, and only the controls that can act', function () {
  this.timeout(60_000);
  let d: DashboardPage;
  const stream = readStream('tiny-cpu');
  /** The recording up to `step` (steps, memory, checkpoints, evals), as a run still going would have it. */
  const upTo = (step: number): Message[] =>
    stream.filter((m) => !(m.type === 'status' && m.state === 'finished') && !((m.type === 'step' || m.type === 'memory' || m.type === 'checkpoint' || m.type === 'eval') && (m.step ?? 0) > step));
  const lastT = (ms: Message[]) => Math.max(...ms.map((m) => (m as { t?: number }).t ?? 0));

  before(async function () {
    d = await openDashboard({ width: 1200, height: 800 });
  });

  after(async function () {
    await d?.close();
  });

  it('a live run has Stop and Checkpoint enabled; once stopped they are disabled, and Resume from step N appears', async function () {
    const running = upTo(40);
    const t = lastT(running);
    await d.send(wire(snapshotOf(running, false)));
    let i = await until(d.page, 'the running run', (x) => x.stepsShown > 0 && x);
    assert.equal(i.header.stopDisabled, 'false');
    assert.equal(i.header.end, '');
    await d.send(wire({ type: 'status', state: 'stopping', t: t + 100, step: 40, reason: 'stop requested', by: 'VS Code' }));
    await d.send(wire({ type: 'checkpoint', step: 40, path: 'checkpoints/step-000040', t: t + 900 }));
    await d.send(wire({ type: 'status', state: 'stopped', t: t + 1000, step: 40, reason: 'stopped at step 40', by: 'VS Code' }));
    i = await until(d.page, 'the stopped state', (x) => x.header.state === 'stopped' && x);
    assert.equal(i.header.end, 'stopped at step 40 by VS Code');
    assert.equal(i.header.stopDisabled, 'true', 'Stop is disabled on an ended run');
    assert.equal(await d.page.locator('#btn-checkpoint').getAttribute('disabled'), '');
    assert.match((await d.page.locator('#btn-stop').getAttribute('title'))!, /Not available: the run has stopped/);
    assert.equal(i.header.resume, 'Resume from step 40', 'from the latest checkpoint');
    assert.equal(i.header.elapsed, formatDuration(t + 1000 - (stream[0] as HelloMessage).startedAt), 'elapsed ends with the run');
    await d.page.click('#btn-resume');
    const posted = await d.waitForPosted('resumeRun', (m) => m.type === 'resumeRun');
    assert.equal(posted.runId, i.runId);
    mkdirSync(ARTIFACTS, { recursive: true });
    await d.page.screenshot({ path: join(ARTIFACTS, 'dashboard-stopped.png'), fullPage: true });
  });

  it('a failed run names the rank, the step and the cause; no Resume (nothing to continue safely)', async function () {
    const running = upTo(12);
    await d.send(wire(snapshotOf(running, false)));
    await d.send(wire({ type: 'status', state: 'failed', t: lastT(running) + 50, step: 12, error: { message: 'rank 1, step 12: loss is NaN after the all-reduce', kind: 'TrainError', rank: 1 } }));
    const i = await until(d.page, 'the failed state', (x) => x.header.state === 'failed' && x);
    assert.equal(i.header.end, 'failed on rank 1 at step 12: loss is NaN after the all-reduce');
    assert.equal(i.header.resume, '');
    assert.equal(i.header.stopDisabled, 'true');
    assert.equal(i.header.eta, 'failed');
  });
});

describe('the memory panel: errors in bytes when small, bars scaled to the data, a compact table for many ranks', function () {
  this.timeout(60_000);
  let d: DashboardPage;
  const GiB = 2 ** 30;
  const MiB = 2 ** 20;
  const memoryOf = (rank: number, peak: number, other: number) => ({
    type: 'memory',
    rank,
    t: 1_000 + rank,
    step: 1,
    categories: { params: 20 * MiB, grads: 20 * MiB, optimizer: 40 * MiB, activations: 30 * MiB, other },
    stepPeak: peak,
    capacity: GiB,
    predicted: { params: 20 * MiB, grads: 20 * MiB, optimizer: 40 * MiB, activations: 30 * MiB, other: MiB, peak: 110 * MiB },
    device: `cpu:${rank}`,
  });
  const hello = { type: 'hello', protocol: 1, runId: 'mem', name: 'mem', startedAt: 1_000, world: 1, config: {}, t: 1_000 };

  before(async function () {
    d = await openDashboard({ width: 1200, height: 900 });
  });

  after(async function () {
    await d?.close();
  });

  it('a 10 MiB "other" against 1 MiB predicted on a 1 GiB device reads +9.0 MiB, not +900% in red; the bar is scaled to the data', async function () {
    await d.send(hello);
    await d.send(memoryOf(0, 120 * MiB, 10 * MiB));
    await d.page.click('vscode-tab-header[data-tab=memory]');
    const row = d.page.locator('[data-rank="0"] tr[data-category=other]');
    await row.waitFor();
    const error = row.locator('td.error');
    assert.equal((await error.textContent())!.trim(), '+9.0 MiB');
    assert.equal(await error.evaluate((e) => e.classList.contains('bad')), false, 'not flagged');
    // 120 MiB of 1 GiB: the bar's scale is the data's (×1.25), the capacity is said to be off scale.
    assert.match((await d.page.locator('[data-rank="0"] .stack-scale .cap').textContent())!, /capacity 1(\.0)? GiB off scale/);
    const width = await d.page.locator('[data-rank="0"] .stack .seg').evaluateAll((els) => els.reduce((a, e) => a + (parseFloat((e as HTMLElement).style.width) || 0), 0));
    assert.ok(width > 60, `the segments fill most of the bar (${width}%), not a sliver of the capacity`);
  });

  it('sixteen ranks: one compact row per rank instead of sixteen cards', async function () {
    await d.send({ ...hello, runId: 'mem16', world: 16 });
    for (let r = 0; r < 16; r++) await d.send(memoryOf(r, (600 + 20 * r) * MiB, 10 * MiB));
    const table = d.page.locator('#memory-compact');
    await table.waitFor({ state: 'visible' });
    assert.equal(await table.locator('tbody tr').count(), 16);
    assert.equal(await d.page.locator('#memory-grid').isHidden(), true);
    assert.match((await table.locator('tr[data-rank="15"]').textContent())!, /^r15cpu:15900\.00 MiB87\.9% of 1\.0 GiB/);
  });
});
