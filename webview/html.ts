// The dashboard's HTML document, shared by the VS Code webview panel, the runtime's browser server and
// the tests, so there is one page and one CSP. Pure string building: no DOM, no Node.

export interface DashboardHtmlOptions {
  /** URL of dist/webview.js as the host can serve it (asWebviewUri inside VS Code). */
  scriptUri: string;
  /** URL of media/dashboard.css. */
  styleUri: string;
  /** The origin allowed for scripts/styles/images (webview.cspSource, or 'self' in a browser). */
  cspSource: string;
  /** Fresh per render; only the script carrying it may run. */
  nonce: string;
  title?: string;
  /** Extra connect-src for the browser host's WebSocket (e.g. "ws://127.0.0.1:PORT"); none in VS Code. */
  connectSrc?: string;
  /** "vscode" (theme from --vscode-* variables) or "browser" (its own neutral theme). */
  host?: 'vscode' | 'browser';
}

export function dashboardHtml(o: DashboardHtmlOptions): string {
  const csp = [
    "default-src 'none'",
    `style-src ${o.cspSource}`,
    `img-src ${o.cspSource} data:`,
    `font-src ${o.cspSource}`,
    `script-src 'nonce-${o.nonce}'`,
    `connect-src ${o.connectSrc ?? "'none'"}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en" data-host="${o.host ?? 'vscode'}">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${escapeAttr(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${escapeAttr(o.styleUri)}">
<title>${escapeText(o.title ?? 'ScaleLM')}</title>
</head>
<body>
<div id="app" aria-live="polite"></div>
<script nonce="${escapeAttr(o.nonce)}" src="${escapeAttr(o.scriptUri)}"></script>
</body>
</html>`;
}

/** 128 bits from the platform's CSPRNG, hex. */
export function makeNonce(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
