// The dashboard with many ranks on many machines, in headless Chromium as VS Code hosts it: the recorded
// 64-rank stream (8 nodes × 8 H200s, test/fixtures/streams/llama7b-64xh200, recorded by
// `node out/test/webview/record-streams.js multinode`) replayed as live batches. Checks what the page drew:
// every rank in the heatmap and the table, each under its own node, the fullest rank found, sorting, a
// rank's detailed card with its own node's GPU; then 128 ranks on 16 nodes, a small multi-node run (cards
// grouped by node) and a one-machine run (no node headers, as before).
import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION, type GpuMessage, type HelloMessage, type MemoryMessage, type Message } from '../../common/protocol';
import type { Inspection } from '../../webview/messages';
import { openDashboard, ROOT, type DashboardPage } from './harness';
import { inspect, until } from './inspect';
import { readStream, snapshotOf, wire } from './streams';
import { MULTINODE_RUN_ID, syntheticConfig, syntheticHost, syntheticMessages } from './synthetic';

const ARTIFACTS = join(ROOT, 'test-artifacts');

/** Shows a new run as a host does (its snapshot, here of hello and status), then its messages as live batches. */
async function showRun(d: DashboardPage, runId: string, messages: Message[]): Promise<void> {
  await d.send(wire(snapshotOf(messages.slice(0, 2), false)));
  await sendBatches(d, runId, messages.slice(2));
}

async function sendBatches(d: DashboardPage, runId: string, messages: Message[], size = 400): Promise<void> {
  for (let i = 0; i < messages.length; i += size) await d.send({ type: 'batch', runId, messages: messages.slice(i, i + size).map(wire) });
}

async function showMemory(d: DashboardPage): Promise<void> {
  await d.page.click('vscode-tab-header[data-tab=memory]');
  await until(d.page, 'the memory tab', (i) => i.tab === 'memory' && i.memoryLayout.mode !== 'empty');
}

async function screenshot(d: DashboardPage, name: string, fullPage = true): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await d.page.screenshot({ path: join(ARTIFACTS, name), fullPage });
}

/** Each rank's last memory message in a stream. */
function lastMemory(stream: Message[]): Map<number, MemoryMessage> {
  const last = new Map<number, MemoryMessage>();
  for (const m of stream) if (m.type === 'memory') last.set(m.rank, m);
  return last;
}

const fraction = (m: MemoryMessage) => m.stepPeak / m.capacity;

/** A generated run (synthetic.ts) with its hello, as live messages. */
function generated(runId: string, world: number, nodes: number, steps: number): Message[] {
  const startedAt = Date.now() - 60_000;
  const config = syntheticConfig(2000, world);
  const hello: HelloMessage = { type: 'hello', protocol: PROTOCOL_VERSION, runId, name: config.name, startedAt, world, config: config as unknown as HelloMessage['config'], t: startedAt };
  return [hello, { type: 'status', state: 'running', t: startedAt, step: 0 }, ...syntheticMessages({ steps, totalSteps: 2000, startedAt, world, nodes, gpuEvery: 1, commEvery: 5 })];
}

describe('dashboard at 64 ranks on 8 nodes (recorded stream)', function () {
  let d: DashboardPage;
  const stream = readStream(MULTINODE_RUN_ID);
  const last = lastMemory(stream);
  const worst = [...last.values()].sort((a, b) => fraction(b) - fraction(a) || a.rank - b.rank)[0]!;

  before(async function () {
    d = await openDashboard({ width: 1280, height: 900 });
    await d.waitForPosted('ready', (m) => m.type === 'ready');
    await sendBatches(d, MULTINODE_RUN_ID, stream);
    await showMemory(d);
  });

  after(async function () {
    await d?.close();
  });

  it('the fixture is what it says: 64 ranks, 8 per node, every memory and GPU message naming its node', function () {
    assert.equal(last.size, 64);
    for (const [rank, m] of last) assert.deepEqual(m.node, { rank: Math.floor(rank / 8), host: syntheticHost(Math.floor(rank / 8)) });
    const gpuNodes = new Set(stream.flatMap((m) => (m.type === 'gpu' ? [m.node?.rank] : [])));
    assert.deepEqual([...gpuNodes].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(worst.rank, 45, 'the leaking rank is the fullest');
  });

  it('shows every rank in the heatmap (64 cells) and the table, each under its own node', async function () {
    const i = await inspect(d.page);
    const l = i.memoryLayout;
    assert.equal(l.mode, 'compact');
    assert.equal(i.memory.length, 64);
    for (const p of i.memory) assert.deepEqual(p.node, last.get(p.rank)!.node, `rank ${p.rank}'s node`);
    // The heatmap, counted in the DOM: 64 cells, one row per node, each cell in its rank's node row.
    assert.equal(await d.page.locator('#memory-heatmap .hm-cell').count(), 64);
    assert.equal(await d.page.locator('#memory-heatmap .hm-node').count(), 8);
    for (let n = 0; n < 8; n++) {
      const row = d.page.locator(`#memory-heatmap .hm-node[data-node="node-${n}"]`);
      assert.deepEqual(
        await row.locator('.hm-cell').evaluateAll((cells) => cells.map((c) => Number((c as HTMLElement).dataset.rank))),
        [0, 1, 2, 3, 4, 5, 6, 7].map((k) => 8 * n + k),
      );
      assert.equal(await row.locator('.hm-label').textContent(), `${syntheticHost(n)} · node ${n}`);
    }
    // Each cell says its rank's share of the device, as the stream has it.
    const cellTexts = await d.page.locator('#memory-heatmap .hm-cell').evaluateAll((cells) => cells.map((c) => [Number((c as HTMLElement).dataset.rank), c.textContent] as const));
    for (const [rank, text] of cellTexts) assert.equal(text, String(Math.round(fraction(last.get(rank)!) * 100)), `cell of rank ${rank}`);
    // The table: a node row, then that node's ranks.
    assert.deepEqual(
      l.groups.map((g) => [g.key, g.ranks]),
      [0, 1, 2, 3, 4, 5, 6, 7].map((n) => [`node-${n}`, [0, 1, 2, 3, 4, 5, 6, 7].map((k) => 8 * n + k)]),
    );
    assert.deepEqual(l.rows, [...Array(64).keys()]);
    assert.equal(await d.page.locator('#memory-compact tbody tr[data-rank]').count(), 64);
    const node5 = l.groups[5]!.header;
    assert.match(
      node5,
      new RegExp(`^${syntheticHost(5).replace(/\./g, '\\.')} · node 5 · ranks 40–47 \\(8\\) · fullest r45 9\\d\\.\\d% · peaks \\d+\\.\\d GiB of 1\\.1 TiB · 8 × NVIDIA H200, util \\d+%$`),
    );
    // Each row's GPU column is the rank's GPU on its own node (node 5 numbers its GPUs from 0).
    const gpu5 = stream.filter((m): m is GpuMessage => m.type === 'gpu' && m.node?.rank === 5).at(-1)!.devices[5]!;
    assert.equal(await d.page.locator('#memory-compact tr[data-rank="45"] td.gpu').textContent(), `GPU 5 · ${gpu5.utilPercent}% · ${gpu5.temperatureC} °C`);
    // The fullest rank is outlined in both, and it is the stream's.
    assert.equal(l.worst, worst.rank);
    assert.equal(await d.page.locator('#memory-heatmap .hm-cell.worst').getAttribute('data-rank'), '45');
    assert.equal(await d.page.locator('#memory-compact tr.worst').getAttribute('data-rank'), '45');
    assert.match((await d.page.locator('.hm-cell[data-rank="45"]').getAttribute('class'))!, /level-warn/);
    // The header's strip: one bar per node (its fullest rank), not 64.
    assert.equal(await d.page.locator('#mem-strip .mini').count(), 8);
    assert.match((await d.page.locator('#mem-strip .mini[data-node="node-5"]').getAttribute('title'))!, /node 5\), fullest of 8 ranks: rank 45: /);
    assert.equal(i.rejected.count, 0, `nothing refused: ${i.rejected.last}`);
  });

  it('shows every rank at once: the whole heatmap fits the page without scrolling, cells big enough to read', async function () {
    const boxes = await d.page.locator('#memory-heatmap .hm-cell').evaluateAll((cells) => cells.map((c) => c.getBoundingClientRect().toJSON() as DOMRect));
    for (const b of boxes) {
      assert.ok(b.width >= 24 && b.height >= 18, `a cell is ${b.width}×${b.height} px`);
      assert.ok(b.right <= 1280 && b.bottom <= 900, `a cell at ${b.right},${b.bottom} is off screen`);
    }
    const fontPx = await d.page
      .locator('.hm-cell')
      .first()
      .evaluate((c) => parseFloat(getComputedStyle(c).fontSize));
    assert.ok(fontPx >= 9, `cell text is ${fontPx} px`);
    assert.equal(await d.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true, 'no sideways scrolling');
    await screenshot(d, 'dashboard-64-ranks.png');
  });

  it('stays usable at a narrow width: the page never scrolls sideways (the table scrolls in its box)', async function () {
    await d.page.setViewportSize({ width: 420, height: 800 });
    try {
      await d.page.waitForTimeout(300);
      assert.equal(await d.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true, 'no sideways scrolling at 420 px');
      const right = await d.page.locator('#memory-heatmap .hm-cell').evaluateAll((cells) => Math.max(...cells.map((c) => c.getBoundingClientRect().right)));
      assert.ok(right <= 420, `every heatmap cell within the width (rightmost at ${right} px)`);
    } finally {
      await d.page.setViewportSize({ width: 1280, height: 900 });
      await d.page.waitForTimeout(200);
    }
  });

  it('sorts the table by step peak (fullest node, then fullest rank, first) and back by rank', async function () {
    await d.page.click('#memory-compact button.sort[data-sort=peak]');
    const l = await until(d.page, 'the table sorted by peak', (i) => i.memoryLayout.sort === 'peak' && i.memoryLayout.rows[0] === worst.rank && i.memoryLayout);
    assert.equal(l.groups[0]!.key, 'node-5', 'the node of the fullest rank comes first');
    for (const g of l.groups) {
      const fr = g.ranks.map((r) => fraction(last.get(r)!));
      for (let k = 1; k < fr.length; k++) assert.ok(fr[k - 1]! >= fr[k]!, `${g.key}: rows in descending peak share (${fr.join(', ')})`);
      assert.deepEqual(
        [...g.ranks].sort((a, b) => a - b),
        [...Array(8).keys()].map((k) => 8 * Number(g.key.slice(5)) + k),
        `${g.key} keeps its own ranks`,
      );
    }
    const nodeWorst = l.groups.map((g) => Math.max(...g.ranks.map((r) => fraction(last.get(r)!))));
    for (let k = 1; k < nodeWorst.length; k++) assert.ok(nodeWorst[k - 1]! >= nodeWorst[k]!, 'nodes in descending order of their fullest rank');
    assert.equal(await d.page.locator('#memory-compact th[data-col=peak]').getAttribute('aria-sort'), 'descending');
    await d.page.click('#memory-compact button.sort[data-sort=rank]');
    await until(d.page, 'the table sorted by rank', (i) => i.memoryLayout.sort === 'rank' && i.memoryLayout.rows.every((r, k) => r === k));
  });

  it('picking a rank (heatmap cell or table row) shows its detailed card, with its own node\u2019s GPU', async function () {
    await d.page.click('#memory-heatmap .hm-cell[data-rank="45"]');
    let l = await until(d.page, 'rank 45\u2019s card', (i) => i.memoryLayout.selected === 45 && i.memoryLayout);
    assert.equal(l.detail, `Rank 45 on ${syntheticHost(5)} (node 5)`);
    const card = d.page.locator('#memory-detail .mem-card[data-rank="45"]');
    await card.waitFor({ state: 'visible' });
    const m45 = last.get(45)!;
    assert.match((await card.locator('.usage').textContent())!, new RegExp(`peak of 139\\.80 GiB \\(${(fraction(m45) * 100).toFixed(1)}%\\)`));
    // Node 5's sampler numbers its GPUs from 0: rank 45 is its GPU 5, and its process is rank 45's.
    assert.match((await card.locator('.gpu-reading').textContent())!, /^GPU 5 · NVIDIA H200.*pid 48215 · rank 45/s);
    assert.equal(await d.page.locator('.hm-cell[data-rank="45"]').getAttribute('aria-pressed'), 'true');
    await screenshot(d, 'dashboard-64-ranks-detail.png');
    // What one screen shows (the docs' picture, media/screenshots/dashboard-many-ranks.png).
    await screenshot(d, 'dashboard-many-ranks.png', false);

    // A row of the table (node 1's fourth GPU), then the keyboard on another row.
    await d.page.click('#memory-compact tr[data-rank="12"]');
    l = await until(d.page, 'rank 12\u2019s card', (i) => i.memoryLayout.selected === 12 && i.memoryLayout);
    assert.equal(l.detail, `Rank 12 on ${syntheticHost(1)} (node 1)`);
    assert.match((await d.page.locator('#memory-detail .mem-card[data-rank="12"] .gpu-reading').textContent())!, /^GPU 4 · NVIDIA H200.*rank 12/s);
    assert.equal(await d.page.locator('#memory-detail .mem-card').count(), 1, 'one detailed card at a time');
    await d.page.locator('#memory-compact tr[data-rank="63"]').focus();
    await d.page.keyboard.press('Enter');
    await until(d.page, 'rank 63 by keyboard', (i) => i.memoryLayout.selected === 63);
    await d.page.click('#memory-detail .detail-close');
    await until(d.page, 'the card closed', (i) => i.memoryLayout.selected === null);
    assert.equal(await d.page.locator('#memory-detail').isHidden(), true);
  });

  it('runs under its strict CSP without violations or page errors', async function () {
    assert.deepEqual(await d.cspViolations(), []);
    assert.deepEqual(d.errors, []);
  });
});

describe('dashboard at 128 ranks on 16 nodes, a small multi-node run, and one machine', function () {
  let d: DashboardPage;

  before(async function () {
    d = await openDashboard({ width: 1280, height: 900 });
    await d.waitForPosted('ready', (m) => m.type === 'ready');
  });

  after(async function () {
    await d?.close();
  });

  it('128 ranks: every rank in the heatmap, 16 node rows, all on one screen', async function () {
    await showRun(d, 'r128', generated('r128', 128, 16, 4));
    await showMemory(d);
    const l = await until(d.page, '128 cells', (i) => i.memory.length === 128 && i.memoryLayout.heatmap.length === 16 && i.memoryLayout);
    assert.equal(await d.page.locator('#memory-heatmap .hm-cell').count(), 128);
    assert.deepEqual(
      l.heatmap.map((n) => n.ranks),
      [...Array(16).keys()].map((n) => [...Array(8).keys()].map((k) => 8 * n + k)),
    );
    assert.equal(l.groups.length, 16);
    assert.equal(l.rows.length, 128);
    const bottom = await d.page.locator('#memory-heatmap').evaluate((e) => e.getBoundingClientRect().bottom);
    assert.ok(bottom <= 900, `the heatmap ends at ${bottom} px: every rank on the first screen`);
    await screenshot(d, 'dashboard-128-ranks.png');
  });

  it('the 64-rank run reopened from its history (the snapshot a host sends): every node keeps its GPUs', async function () {
    // RunHistory decimates GPU samples per node: one node's samples never crowd out another's.
    await d.send(wire(snapshotOf(readStream(MULTINODE_RUN_ID))));
    const l = await until(d.page, 'the reopened run', (i) => i.runId === MULTINODE_RUN_ID && i.memoryLayout.groups.length === 8 && i.memoryLayout);
    for (const g of l.groups) assert.match(g.header, / · 8 × NVIDIA H200, util \d+%$/, `${g.key}: ${g.header}`);
    const i = await inspect(d.page);
    for (const p of i.memory) assert.equal(p.gpu?.name, 'NVIDIA H200', `rank ${p.rank} has its GPU reading`);
  });

  it('a 2-node run of 8 ranks: one card per rank, under a header per node; each card reads its own node\u2019s GPU', async function () {
    await showRun(d, 'r8n2', generated('r8n2', 8, 2, 3));
    const l = await until(d.page, 'cards by node', (i) => i.runId === 'r8n2' && i.memoryLayout.mode === 'cards' && i.memoryLayout.groups.length === 2 && i.memoryLayout);
    assert.deepEqual(
      l.groups.map((g) => [g.key, g.ranks]),
      [
        ['node-0', [0, 1, 2, 3]],
        ['node-1', [4, 5, 6, 7]],
      ],
    );
    assert.match(l.groups[1]!.header, new RegExp(`^${syntheticHost(1).replace(/\./g, '\\.')} · node 1 · ranks 4–7 \\(4\\) · fullest r7 .* · 4 × NVIDIA H200`));
    assert.equal(await d.page.locator('#memory-grid .node-group[data-node="node-1"] .mem-card').count(), 4);
    assert.match((await d.page.locator('.mem-card[data-rank="5"] .gpu-reading').textContent())!, /^GPU 1 · NVIDIA H200.*pid 48211 · rank 5/s);
    assert.equal(await d.page.locator('#memory-heatmap').isVisible(), false);
    assert.equal(await d.page.locator('#mem-strip .mini').count(), 8, 'few ranks: one bar per rank');
  });

  it('one machine (no node info): cards as before, no node headers', async function () {
    await showRun(d, 'r8', generated('r8', 8, 1, 3));
    const l = await until(d.page, 'one machine', (i: Inspection) => i.runId === 'r8' && i.memory.length === 8 && i.memoryLayout);
    assert.equal(l.mode, 'cards');
    assert.deepEqual(l.groups, []);
    assert.deepEqual(l.cards, [...Array(8).keys()]);
    assert.equal(await d.page.locator('.node-head, .node-group, .node-row').count(), 0);
    assert.equal(await d.page.locator('#memory-grid > .mem-card').count(), 8, 'the cards sit directly in the grid');
    assert.match((await d.page.locator('.mem-card[data-rank="5"] .gpu-reading').textContent())!, /^GPU 5 · NVIDIA H200/);
    assert.deepEqual(d.errors, []);
  });
});
