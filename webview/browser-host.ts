// The dashboard's host in a plain browser, served by `scalelm serve` / `scalelm train`: it plays the
// extension host's part against the runtime's WebSocket, so the dashboard speaks one set of messages
// (webview/messages.ts) in both places.
//   - The token arrives in the URL fragment (#token=…, never sent to a server). It is read once, kept in
//     sessionStorage for reloads of this tab, and removed from the address bar.
//   - The socket offers `scalelm.v1` and `scalelm.token.<token>` as subprotocols (browsers cannot set headers).
//   - selectRun reconnects to ?run=ID (a new snapshot replaces the view); compareRun opens a second socket
//     for that run's snapshot and closes it; control messages go to the server as protocol ControlMessages.
//   - A dropped connection is retried with back-off; each reconnect starts with a fresh snapshot.
// Incoming frames are parsed here and validated by the dashboard like any host's messages.
import { isEnded, tokenFromFragment, webSocketProtocols, WS_PATH } from '../common/protocol';
import type { DashboardHost } from './host';
import { validateWebviewMessage, type ConnectionMessage, type WebviewToHost } from './messages';

const TOKEN_KEY = 'scalelm.token';
const STATE_KEY = 'scalelm.dashboard.state';

export function browserHost(): DashboardHost | undefined {
  if (document.documentElement.dataset.host !== 'browser' || typeof WebSocket !== 'function') return undefined;
  const fromFragment = tokenFromFragment(location.hash);
  if (fromFragment) {
    try {
      sessionStorage.setItem(TOKEN_KEY, fromFragment);
    } catch {
      /* storage off: the token lives only in this page */
    }
    history.replaceState(null, '', location.pathname + location.search);
  }
  let token: string | null = fromFragment;
  try {
    token ??= sessionStorage.getItem(TOKEN_KEY);
  } catch {
    /* no storage */
  }
  const handlers: ((m: unknown) => void)[] = [];
  const deliver = (m: unknown): void => {
    for (const h of handlers) h(m);
  };
  const connection = (state: ConnectionMessage['state'], detail?: string): void => deliver({ type: 'connection', state, ...(detail ? { detail } : {}) });

  let runId = new URLSearchParams(location.search).get('run');
  let socket: WebSocket | null = null;
  let attempt = 0;
  let retry: ReturnType<typeof setTimeout> | null = null;
  let started = false;
  /** The shown run's last status was final: when its server goes away, the run is over, not unreachable. */
  let ended = false;

  const url = (run: string | null): string => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${WS_PATH}${run ? `?run=${encodeURIComponent(run)}` : ''}`;

  function connect(): void {
    if (!token) {
      connection('closed', 'no token: open the dashboard with the URL that scalelm printed (it ends in #token=…)');
      return;
    }
    if (retry) clearTimeout(retry);
    retry = null;
    const ws = new WebSocket(url(runId), webSocketProtocols(token));
    socket = ws;
    connection('connecting');
    let opened = false;
    ws.onopen = () => {
      opened = true;
      attempt = 0;
      connection('open');
    };
    ws.onmessage = (e: MessageEvent) => {
      if (socket !== ws || typeof e.data !== 'string') return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(e.data);
      } catch {
        return;
      }
      const m = parsed as { type?: unknown; state?: unknown; status?: { state?: unknown } | null };
      if (m.type === 'status' && typeof m.state === 'string') ended = isEnded(m.state as never);
      if (m.type === 'snapshot') ended = typeof m.status?.state === 'string' && isEnded(m.status.state as never);
      deliver(parsed);
    };
    ws.onclose = (e: CloseEvent) => {
      if (socket !== ws) return;
      socket = null;
      if (ended) {
        // `scalelm train` serves the run only while it trains; the recorded run stays browsable.
        connection('ended', 'the run has ended and its live server closed with it; browse it again with `scalelm serve <its run folder>`');
        return;
      }
      // A handshake the server refused (bad token, unknown run) closes before opening: retrying is pointless
      // after a few tries; the browser hides the HTTP status, so say what usually causes it.
      attempt++;
      if (!opened && attempt >= 4) {
        connection('closed', 'the server refused the connection: the token may be wrong or the run gone (restart scalelm and open the new URL)');
        return;
      }
      const delay = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6));
      connection('waiting', `${e.reason || 'connection lost'}; retrying in ${Math.round(delay / 1000)} s`);
      retry = setTimeout(connect, delay);
    };
  }

  function fetchSnapshot(run: string): void {
    if (!token) return;
    const ws = new WebSocket(url(run), webSocketProtocols(token));
    ws.onmessage = (e: MessageEvent) => {
      ws.close();
      try {
        deliver({ type: 'runHistory', runId: run, snapshot: JSON.parse(String(e.data)) as unknown });
      } catch {
        /* ignored: the dashboard reports what it could not load */
      }
    };
  }

  return {
    kind: 'browser',
    post(message: WebviewToHost): void {
      // Checked here as the extension host checks it: this host too acts only on valid messages.
      const checked = validateWebviewMessage(message);
      if (!checked.ok) return;
      const m = checked.value;
      switch (m.type) {
        case 'ready':
          if (!started) {
            started = true;
            connect();
          }
          break;
        case 'selectRun':
          {
            runId = m.runId;
            const search = new URLSearchParams(location.search);
            search.set('run', m.runId);
            history.replaceState(null, '', `${location.pathname}?${search.toString()}`);
            const old = socket;
            socket = null;
            old?.close();
            attempt = 0;
            ended = false;
            connect();
          }
          break;
        case 'compareRun':
          fetchSnapshot(m.runId);
          break;
        case 'control':
          if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'control', id: m.id, action: m.action, by: 'the browser dashboard' }));
          break;
        default:
          break; // pong, inspectResult, chooseLayout (shown as JSON), requestPlannerInput: nobody to tell
      }
    },
    onMessage(handler) {
      handlers.push(handler);
    },
    getState<T>(): T | undefined {
      try {
        const raw = localStorage.getItem(STATE_KEY);
        return raw ? (JSON.parse(raw) as T) : undefined;
      } catch {
        return undefined;
      }
    },
    setState(state) {
      try {
        localStorage.setItem(STATE_KEY, JSON.stringify(state));
      } catch {
        /* storage full or off */
      }
    },
  };
}
