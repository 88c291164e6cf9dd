// The dashboard webview page in headless Chromium, as VS Code would show it (same HTML, same strict CSP),
// with a stand-in for acquireVsCodeApi. Checks what is actually drawn, not just what is in the DOM.
import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION, validateMessage, type HelloMessage, type Message, type StepMessage } from '../../common/protocol';
import { openDashboard, ROOT, type DashboardPage } from './harness';

interface CanvasInk {
  width: number;
  height: number;
  /** Pixels that are not transparent (a chart canvas's background is transparent). */
  ink: number;
  /** Clearly saturated, mostly opaque pixels: data series (axes, grid and labels are greys). */
  colour: number;
}

/** Ink of every visible canvas on the page, read back with getImageData. */
function canvasInk(d: DashboardPage): Promise<CanvasInk[]> {
  return d.page.evaluate(() =>
    Array.from(document.querySelectorAll('canvas'))
      .filter((c) => c.width > 0 && c.height > 0 && c.getBoundingClientRect().height > 0)
      .map((canvas) => {
        const ctx = canvas.getContext('2d');
        const result = { width: canvas.width, height: canvas.height, ink: 0, colour: 0 };
        if (!ctx) return result;
        const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < px.length; i += 4) {
          if (px[i + 3]! > 0) result.ink++;
          if (px[i + 3]! > 128 && Math.max(px[i]!, px[i + 1]!, px[i + 2]!) - Math.min(px[i]!, px[i + 1]!, px[i + 2]!) > 80) result.colour++;
        }
        return result;
      }),
  );
}

const total = (canvases: CanvasInk[], key: 'ink' | 'colour'): number => canvases.reduce((sum, c) => sum + c[key], 0);

/** A short run in protocol v1 messages, as the extension host forwards them from the runtime. */
function runMessages(steps: number): Message[] {
  const startedAt = Date.now() - steps * 100;
  const hello: HelloMessage = {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    runId: 'webview-test',
    name: 'webview test run',
    startedAt,
    world: 1,
    config: { model: { preset: 'tiny' } },
    engine: { name: 'torch', reason: 'devices.engine is "torch"' },
    backend: { name: 'cpu', label: 'cpu gloo' },
    t: startedAt,
  };
  const messages: Message[] = [hello, { type: 'status', state: 'running', t: startedAt, step: 0 }];
  for (let step = 1; step <= steps; step++) {
    const memory = { params: 4e6, grads: 4e6, optimizer: 8e6, activations: 2e7, peak: 3.6e7 };
    const message: StepMessage = {
      type: 'step',
      step,
      loss: 4 * Math.exp(-step / 20) + 0.5,
      lr: 3e-3,
      gradNorm: 1,
      tokensPerSec: 5000 + step,
      stepMs: 100,
      memory,
      tokens: step * 512,
      t: startedAt + step * 100,
    };
    messages.push(message);
  }
  for (const m of messages) {
    const checked = validateMessage(m);
    if (!checked.ok) throw new Error(`test fixture is not a valid protocol message (${m.type}): ${checked.reason}`);
  }
  return messages;
}

describe('dashboard webview page (headless Chromium)', function () {
  let d: DashboardPage;

  before(async function () {
    d = await openDashboard();
  });

  after(async function () {
    await d?.close();
  });

  it('posts "ready" to the host once loaded', async function () {
    await d.waitForPosted('{type: "ready"}', (m) => m.type === 'ready');
    const readies = (await d.posted()).filter((m) => m.type === 'ready');
    assert.equal(readies.length, 1, 'exactly one ready message');
  });

  it('defines and renders its vscode-elements components (shadow roots with content)', async function () {
    const components = await d.page.evaluate(() =>
      Array.from(document.querySelectorAll('*'))
        .filter((el) => el.tagName.toLowerCase().startsWith('vscode-'))
        .map((el) => ({
          tag: el.tagName.toLowerCase(),
          defined: customElements.get(el.tagName.toLowerCase()) !== undefined,
          shadow: el.shadowRoot !== null,
          shadowContent: el.shadowRoot ? el.shadowRoot.childNodes.length : 0,
          height: el.getBoundingClientRect().height,
        })),
    );
    assert.ok(components.length > 0, 'the page uses vscode-elements components');
    for (const c of components) {
      assert.ok(c.defined, `<${c.tag}> is a defined custom element`);
      assert.ok(c.shadow && c.shadowContent > 0, `<${c.tag}> rendered into its shadow root`);
    }
    assert.ok(
      components.some((c) => c.height > 0),
      `some components take space on the page: ${JSON.stringify(components)}`,
    );
  });

  it('draws its charts, and draws the loss curve as protocol step messages arrive', async function () {
    const before = await canvasInk(d);
    assert.ok(before.length > 0, 'the page shows at least one chart canvas');
    for (const m of runMessages(60)) await d.send(m);
    // The dashboard redraws on the next animation frame (at the latest ~250 ms later).
    let after = before;
    const deadline = Date.now() + 5000;
    while (total(after, 'colour') - total(before, 'colour') <= 200 && Date.now() < deadline) {
      await d.page.waitForTimeout(100);
      after = await canvasInk(d);
    }
    // A 1.5 px line across most of a plot: at least a few hundred pixels in a series colour.
    assert.ok(total(after, 'colour') - total(before, 'colour') > 200, `the curves add coloured ink: ${JSON.stringify({ before, after })}`);
    assert.ok(total(after, 'ink') > 0);
    // The header names the engine from the hello, its backend beside it and the reason on hover.
    const engine = await d.page.evaluate(() => ({
      value: document.querySelector('#stat-engine .value')?.textContent,
      sub: document.querySelector('#stat-engine .sub')?.textContent,
      title: (document.querySelector('#stat-engine') as HTMLElement | null)?.title,
    }));
    assert.deepEqual(engine, { value: 'torch', sub: 'cpu gloo', title: 'devices.engine is "torch"' });
  });

  it('answers ping with pong: the same id, its rendered components and the chart ink', async function () {
    await d.send({ type: 'ping', id: 41 });
    const pong = await d.waitForPosted('pong for id 41', (m) => m.type === 'pong' && m.id === 41);
    assert.ok(Array.isArray(pong.components) && pong.components.length > 0, `components is a non-empty list: ${JSON.stringify(pong.components)}`);
    const defined = await d.page.evaluate((tags) => tags.filter((t) => customElements.get(t) !== undefined && document.querySelector(t) !== null), pong.components as string[]);
    assert.deepEqual(defined, pong.components, 'every component named is defined and on the page');
    assert.equal(typeof pong.chartInk, 'number');
    const inks = (await canvasInk(d)).map((c) => c.ink);
    const chartInk = pong.chartInk as number;
    assert.ok(chartInk > 0 && inks.some((ink) => Math.abs(chartInk - ink) <= ink * 0.05), `pong.chartInk (${chartInk}) matches a canvas on the page (${JSON.stringify(inks)})`);
  });

  it('looks right (screenshot in test-artifacts/webview-dashboard.png)', async function () {
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    await d.page.screenshot({ path: join(ROOT, 'test-artifacts/webview-dashboard.png'), fullPage: true });
  });

  it('lays its charts out without overlapping one another', async function () {
    const boxes = await d.page.evaluate(() =>
      Array.from(document.querySelectorAll('canvas'))
        .map((c, i) => {
          const r = c.getBoundingClientRect();
          const title = c.getAttribute('aria-label') ?? c.id;
          return { i, title, left: r.left, top: r.top, right: r.right, bottom: r.bottom };
        })
        .filter((b) => b.right - b.left > 0 && b.bottom - b.top > 0),
    );
    const overlaps: string[] = [];
    for (const a of boxes) {
      for (const b of boxes) {
        if (b.i <= a.i) continue;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) overlaps.push(`"${a.title}" and "${b.title}" overlap by ${Math.round(w)}x${Math.round(h)} px`);
      }
    }
    assert.deepEqual(overlaps, [], 'chart canvases overlap (see test-artifacts/webview-dashboard.png)');
  });

  it('runs under its strict CSP without violations or errors', async function () {
    assert.deepEqual(await d.cspViolations(), []);
    assert.deepEqual(d.errors, []);
  });
});
