// The dashboard webview page in headless Chromium, as VS Code would show it (same HTML, same strict CSP),
// with a stand-in for acquireVsCodeApi. Checks what is actually drawn, not just what is in the DOM.
import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openDashboard, ROOT, type DashboardPage } from './harness';

/**
 * Pixels of the first chart canvas: `ink` = not transparent (the canvas background is transparent);
 * `colour` = clearly saturated and mostly opaque, i.e. a data series (axes, grid and labels are greys).
 */
function chartInk(d: DashboardPage): Promise<{ ink: number; colour: number; width: number; height: number }> {
  return d.page.evaluate(() => {
    const canvas = document.querySelector('canvas');
    if (!canvas) return { ink: -1, colour: -1, width: 0, height: 0 };
    const ctx = canvas.getContext('2d');
    if (!ctx || canvas.width === 0 || canvas.height === 0) return { ink: 0, colour: 0, width: canvas.width, height: canvas.height };
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    let colour = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3]! > 0) ink++;
      if (px[i + 3]! > 128 && Math.max(px[i]!, px[i + 1]!, px[i + 2]!) - Math.min(px[i]!, px[i + 1]!, px[i + 2]!) > 80) colour++;
    }
    return { ink, colour, width: canvas.width, height: canvas.height };
  });
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
    const tabs = components.find((c) => c.tag === 'vscode-tabs');
    assert.ok(tabs && tabs.height > 0, '<vscode-tabs> takes space on the page');
  });

  it('draws the loss chart axes, then the loss curve as steps arrive', async function () {
    const before = await chartInk(d);
    assert.ok(before.width > 0 && before.height > 0, `the chart canvas has a size (${before.width}x${before.height})`);
    assert.ok(before.ink > 0, 'axes and labels are drawn before any data');
    assert.equal(before.colour, 0, 'no series is drawn before any data');
    for (let step = 1; step <= 60; step++) await d.send({ type: 'step', step, loss: 4 * Math.exp(-step / 20) + 0.5 });
    await d.page.waitForTimeout(100);
    const after = await chartInk(d);
    // A 1.5 px line across most of the plot: at least a few hundred coloured pixels.
    assert.ok(after.colour > 200, `the loss curve is drawn in a series colour (${after.colour} coloured pixels)`);
    assert.equal(await d.page.locator('#run-step').textContent(), 'step 60');
  });

  it('answers ping with pong: the same id, its rendered components and the chart ink', async function () {
    await d.send({ type: 'ping', id: 41 });
    const pong = await d.waitForPosted('pong for id 41', (m) => m.type === 'pong' && m.id === 41);
    assert.ok(Array.isArray(pong.components), 'components is a list');
    const components = pong.components as string[];
    assert.ok(components.includes('vscode-tabs'), `components include vscode-tabs: ${JSON.stringify(components)}`);
    const { ink } = await chartInk(d);
    assert.equal(typeof pong.chartInk, 'number');
    assert.ok((pong.chartInk as number) > 0 && Math.abs((pong.chartInk as number) - ink) <= ink * 0.05, `pong.chartInk (${pong.chartInk}) matches the canvas (${ink})`);
  });

  it('runs under its strict CSP without violations or errors', async function () {
    assert.deepEqual(await d.cspViolations(), []);
    assert.deepEqual(d.errors, []);
  });

  it('looks right (screenshot in test-artifacts/webview-dashboard.png)', async function () {
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    await d.page.screenshot({ path: join(ROOT, 'test-artifacts/webview-dashboard.png') });
  });
});
