// The dashboard page alone in headless Chromium: the HTML that VS Code would get (dashboardHtml, same strict
// CSP, plus the theme variables VS Code adds), served with dist/webview.js and media/ over 127.0.0.1, and an acquireVsCodeApi stand-in that records
// what the page posts and lets the test send it messages as the extension host would.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { dashboardHtml, makeNonce } from '../../webview/html';
import { closeChromium, launchChromium } from './chromium';

export const ROOT = resolve(__dirname, '../../..');
/** Folders the page may load from, as a webview's localResourceRoots would allow. */
const SERVED = ['dist', 'media'];
const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
  '.json': 'application/json',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
};

/**
 * What VS Code adds to every webview document: the theme as --vscode-* variables on <html> and the theme
 * kind as the body's class. These are a few of the Dark Modern theme's values, enough for the dashboard.
 */
const DARK_MODERN: Record<string, string> = {
  '--vscode-font-family': 'system-ui, "Ubuntu", "Droid Sans", sans-serif',
  '--vscode-font-size': '13px',
  '--vscode-font-weight': 'normal',
  '--vscode-foreground': '#cccccc',
  '--vscode-editor-background': '#1f1f1f',
  '--vscode-editor-foreground': '#cccccc',
  '--vscode-focusBorder': '#0078d4',
  '--vscode-panel-border': '#2b2b2b',
  '--vscode-panelTitle-activeBorder': '#0078d4',
  '--vscode-panelTitle-activeForeground': '#cccccc',
  '--vscode-panelTitle-inactiveForeground': '#9d9d9d',
  '--vscode-badge-background': '#616161',
  '--vscode-badge-foreground': '#f8f8f8',
  '--vscode-editorWidget-border': '#313131',
  '--vscode-descriptionForeground': '#9d9d9d',
  '--vscode-charts-foreground': '#cccccc',
  '--vscode-charts-lines': 'rgba(204, 204, 204, 0.5)',
  '--vscode-charts-blue': '#3794ff',
  '--vscode-charts-orange': '#d18616',
  '--vscode-charts-green': '#89d185',
  '--vscode-charts-purple': '#b180d7',
  '--vscode-charts-red': '#f14c4c',
  '--vscode-charts-yellow': '#cca700',
};

function asVsCodeServesIt(html: string): string {
  const style = Object.entries(DARK_MODERN)
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ');
  return html.replace(/<html\b/, `<html style='${style}'`).replace(/<body\b/, '<body class="vscode-dark" data-vscode-theme-kind="vscode-dark" data-vscode-theme-name="Dark Modern"');
}

/** In the page before any of its scripts: the VS Code webview API as the dashboard sees it. */
function vscodeApiStandIn(): void {
  const w = window as unknown as { __posted: unknown[]; __cspViolations: string[]; acquireVsCodeApi: () => unknown };
  w.__posted = [];
  w.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => w.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || '(inline)'}`));
  let acquired = false;
  let state: unknown;
  w.acquireVsCodeApi = () => {
    // Like VS Code: the API can be acquired once per page.
    if (acquired) throw new Error('An instance of the VS Code API has already been acquired');
    acquired = true;
    return Object.freeze({
      postMessage: (message: unknown) => void w.__posted.push(JSON.parse(JSON.stringify(message))),
      getState: () => state,
      setState: (s: unknown) => {
        state = s;
        return s;
      },
    });
  };
}

/** The stylesheet the extension links: esbuild's dist/webview.css when the bundle imports its CSS, else media/. */
function styleSheet(): string {
  return existsSync(join(ROOT, 'dist/webview.css')) ? 'dist/webview.css' : 'media/dashboard.css';
}

export interface DashboardPage {
  page: Page;
  url: string;
  /** Messages the page posted to the "extension host", in order. */
  posted(): Promise<Array<{ type?: string; [k: string]: unknown }>>;
  /** Delivers a message as webview.postMessage from the extension host would. */
  send(message: unknown): Promise<void>;
  /** Waits for the first posted message that matches. */
  waitForPosted(what: string, match: (m: { type?: string; [k: string]: unknown }) => boolean, timeoutMs?: number): Promise<{ type?: string; [k: string]: unknown }>;
  cspViolations(): Promise<string[]>;
  /** console errors and uncaught exceptions in the page. */
  errors: string[];
  close(): Promise<void>;
}

function serve(html: () => string): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/favicon.ico') {
      res.writeHead(204).end(); // a browser asks for it; a webview does not
      return;
    }
    if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html());
      return;
    }
    const file = normalize(join(ROOT, path));
    const allowed = SERVED.some((dir) => file.startsWith(join(ROOT, dir) + '/'));
    if (!allowed || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((resolveServer) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (!address || typeof address === 'string') throw new Error('no port');
      resolveServer({ server, origin: `http://127.0.0.1:${address.port}` });
    }),
  );
}

export async function openDashboard(viewport = { width: 1000, height: 700 }): Promise<DashboardPage> {
  if (!existsSync(join(ROOT, 'dist/webview.js'))) throw new Error('no dist/webview.js: run "node scripts/build.mjs" first');
  let origin = '';
  const { server, origin: o } = await serve(() =>
    asVsCodeServesIt(dashboardHtml({ scriptUri: `${origin}/dist/webview.js`, styleUri: `${origin}/${styleSheet()}`, cspSource: origin, nonce: makeNonce(), title: 'ScaleLM Dashboard' })),
  );
  origin = o;
  let browser: Browser | undefined;
  try {
    browser = await launchChromium();
    const page = await browser.newPage({ viewport });
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.url()}`);
    });
    await page.addInitScript(vscodeApiStandIn);
    await page.goto(`${origin}/`, { waitUntil: 'load' });
    const posted = (): Promise<Array<{ type?: string; [k: string]: unknown }>> => page.evaluate(() => (window as unknown as { __posted: Array<{ type?: string }> }).__posted);
    const opened: DashboardPage = {
      page,
      url: `${origin}/`,
      errors,
      posted,
      send: (message) => page.evaluate((m) => void window.dispatchEvent(new MessageEvent('message', { data: m })), message),
      waitForPosted: async (what, match, timeoutMs = 10_000) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const found = (await posted()).find(match);
          if (found) return found;
          if (Date.now() > deadline) throw new Error(`the page did not post ${what} within ${timeoutMs} ms; it posted ${JSON.stringify(await posted())}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      cspViolations: () => page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations),
      close: async () => {
        await closeChromium(browser);
        server.close();
      },
    };
    return opened;
  } catch (e) {
    await closeChromium(browser);
    server.close();
    throw e;
  }
}
