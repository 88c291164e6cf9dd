// The browser dashboard as the runtime serves it: the same HTML document VS Code shows (webview/html.ts),
// rendered per request with a fresh nonce, plus the built bundle and stylesheet. Only these named files
// are served (no directory walking). The page holds no run data and no token: the token reaches the page
// in the URL fragment (#token=…), which browsers never send to a server.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { dashboardHtml, makeNonce } from '../../webview/html';

export interface DashboardAssets {
  /** URL path -> file on disk. */
  files: Map<string, { path: string; type: string }>;
  title: string;
}

/** The directory holding package.json of this package (works from out/, dist/ and the source tree). */
export function packageRoot(from = __dirname): string | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'scalelm') return dir;
      } catch {
        /* keep looking */
      }
    }
    if (dirname(dir) === dir) return null;
  }
}

/** Development mode (SCALELM_DEV=1): the server also ships the bundle's source map, for debugging the page. */
export const isDevelopment = (): boolean => process.env.SCALELM_DEV === '1';

export function defaultAssets(root = packageRoot(), title = 'ScaleLM Dashboard', dev = isDevelopment()): DashboardAssets {
  const files = new Map<string, { path: string; type: string }>();
  if (root) {
    files.set('/webview.js', { path: join(root, 'dist', 'webview.js'), type: 'text/javascript; charset=utf-8' });
    // The source map reveals the sources to anyone who can reach the port: development only.
    if (dev) files.set('/webview.js.map', { path: join(root, 'dist', 'webview.js.map'), type: 'application/json; charset=utf-8' });
    files.set('/dashboard.css', { path: join(root, 'media', 'dashboard.css'), type: 'text/css; charset=utf-8' });
  }
  return { files, title };
}

/** The page for a browser at `origin` (e.g. http://127.0.0.1:PORT), with its nonce for the CSP header. */
export function renderPage(assets: DashboardAssets, host: string): { html: string; nonce: string } {
  const nonce = makeNonce();
  const html = dashboardHtml({
    scriptUri: '/webview.js',
    styleUri: '/dashboard.css',
    cspSource: "'self'",
    nonce,
    title: assets.title,
    connectSrc: `ws://${host}`,
    host: 'browser',
  });
  return { html, nonce };
}
