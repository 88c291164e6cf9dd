// The server seen from a real browser (Debian's Chromium, headless): the printed dashboard URL loads the
// page, whose bundle takes the token from the #fragment and connects with it as a subprotocol entry,
// within the page's CSP. A page from any other origin — another local port, a data: URL — is refused even when it
// knows the token, and cannot read /metrics either. Skipped where Chromium is not installed.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { startServer, type TelemetryServer } from '../../runtime/server/server';
import { CHROMIUM_PATH, closeChromium, launchChromium } from '../webview/chromium';
import { ROOT } from '../webview/harness';
import { until } from './telemetry/util';
import { busWithSteps } from './telemetry/ws-helpers';

/** Runs in the page: connect like the dashboard does, resolve with what happened. */
const CONNECT = `async ({ url, token }) => {
  const t = token;
  return await new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(url, ['scalelm.v1', 'scalelm.token.' + t]);
    } catch (e) {
      resolve({ opened: false, error: String(e) });
      return;
    }
    const got = [];
    let opened = false;
    ws.onopen = () => (opened = true);
    ws.onmessage = (e) => {
      got.push(JSON.parse(e.data).type);
      ws.close();
      resolve({ opened, protocol: ws.protocol, got });
    };
    ws.onerror = () => resolve({ opened, got });
    setTimeout(() => resolve({ opened, got, timedOut: true }), 20000);
  });
}`;

describe('server with a real browser', function () {
  this.timeout(120_000);
  let browser: Browser | undefined;
  let server: TelemetryServer;
  let other: Server;
  let otherPort: number;

  before(async function () {
    if (!existsSync(CHROMIUM_PATH)) return this.skip();
    const bus = busWithSteps(3, 'browser-run');
    server = await startServer({ runs: [bus], heartbeatMs: 0, warn: () => undefined });
    // A page from another origin on this machine, e.g. some other local dev server.
    other = createServer((_req, res) => res.end('<!doctype html><title>elsewhere</title>'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    otherPort = (other.address() as { port: number }).port;
    browser = await launchChromium();
  });
  after(async () => {
    await closeChromium(browser);
    await server?.close();
    other?.close();
  });

  it('the printed URL opens the page, whose own script connects with the token from the fragment', async () => {
    const page = await browser!.newPage();
    try {
      const response = await page.goto(server.dashboardUrl);
      assert.equal(response!.status(), 200);
      if (existsSync(join(ROOT, 'dist', 'webview.js'))) {
        await until(() => server.clients().length >= 1, `the dashboard's own connection (refusals: ${JSON.stringify(server.refusals())})`);
        await until(() => !page.url().includes('#token='), 'the token to leave the address bar', 200);
      }
      // The same from a script of ours on the page: our origin and the page's CSP allow exactly this.
      const run = (await page.evaluate(`(${CONNECT})(${JSON.stringify({ url: `ws://127.0.0.1:${server.port}/ws`, token: server.token })})`)) as { opened: boolean; protocol: string; got: string[] };
      assert.equal(run.opened, true, JSON.stringify(server.refusals()));
      assert.equal(run.protocol, 'scalelm.v1');
      assert.equal(run.got[0], 'snapshot');
      const wrongPort = (await page.evaluate(`(${CONNECT})(${JSON.stringify({ url: `ws://127.0.0.1:${otherPort}/ws`, token: server.token })})`)) as { opened: boolean };
      assert.equal(wrongPort.opened, false, 'the CSP allows no other socket');
    } finally {
      await page.close();
    }
  });

  it('a page on another local port is refused, even holding the token, and cannot read /metrics', async () => {
    const page = await browser!.newPage();
    try {
      await page.goto(`http://127.0.0.1:${otherPort}/`);
      const before = server.refusals().length;
      const run = (await page.evaluate(`(${CONNECT})(${JSON.stringify({ url: `ws://127.0.0.1:${server.port}/ws`, token: server.token })})`)) as { opened: boolean };
      assert.equal(run.opened, false);
      await until(() => server.refusals().length > before, 'the server to refuse it');
      const refusal = server.refusals()[before]!;
      assert.equal(refusal.status, 403);
      assert.match(refusal.reason, /IP-literal Origin|cross-site|not allowed/);
      const read = await page.evaluate(
        `fetch('http://127.0.0.1:${server.port}/metrics', { headers: { Authorization: 'Bearer ${server.token}' } }).then((r) => r.text()).then((t) => 'read ' + t.length, (e) => 'blocked: ' + e)`,
      );
      assert.match(String(read), /^blocked/);
    } finally {
      await page.close();
    }
  });

  it('a data: URL page (Origin null) is refused', async () => {
    const page = await browser!.newPage();
    try {
      await page.goto('data:text/html,<title>x</title>');
      const before = server.refusals().length;
      const run = (await page.evaluate(`(${CONNECT})(${JSON.stringify({ url: `ws://127.0.0.1:${server.port}/ws`, token: server.token })})`)) as { opened: boolean };
      assert.equal(run.opened, false);
      // Chromium may block it itself (an opaque origin reaching a local address); if it reaches us, it is "null".
      for (const r of server.refusals().slice(before)) assert.match(r.reason, /null/);
    } finally {
      await page.close();
    }
  });
});
