// How the dashboard talks to whoever hosts it. Inside VS Code: acquireVsCodeApi().postMessage and window
// "message" events (the extension host owns the WebSocket; a webview never opens one — that breaks under
// Remote-SSH). In a plain browser served by `scalelm serve/train`: browser-host.ts, which speaks the same
// messages (webview/messages.ts) and plays the extension host's part against the runtime's WebSocket.

import type { WebviewToHost } from './messages';

export interface DashboardHost {
  readonly kind: 'vscode' | 'browser' | 'detached';
  /** Typed: only the messages of webview/messages.ts's WebviewToHost go out (the host validates them again). */
  post(message: WebviewToHost): void;
  onMessage(handler: (message: unknown) => void): void;
  getState<T>(): T | undefined;
  setState<T>(state: T): void;
}

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare const acquireVsCodeApi: (() => VsCodeApi) | undefined;

export function vscodeHost(): DashboardHost | undefined {
  if (typeof acquireVsCodeApi !== 'function') return undefined;
  const api = acquireVsCodeApi();
  return {
    kind: 'vscode',
    post: (m) => api.postMessage(m),
    onMessage: (handler) => window.addEventListener('message', (e: MessageEvent) => handler(e.data)),
    getState: <T>() => api.getState() as T | undefined,
    setState: (s) => api.setState(s),
  };
}

/** A host for a page opened without VS Code and without a server: messages go nowhere. */
export function detachedHost(): DashboardHost {
  let state: unknown;
  return {
    kind: 'detached',
    post: () => undefined,
    onMessage: (handler) => window.addEventListener('message', (e: MessageEvent) => handler(e.data)),
    getState: <T>() => state as T | undefined,
    setState: (s) => {
      state = s;
    },
  };
}
