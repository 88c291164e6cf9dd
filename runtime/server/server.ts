// The runtime's server: one HTTP listener on 127.0.0.1 (port 0 unless asked) carrying
//   GET /            the dashboard page (no data in it)        GET /webview.js, /dashboard.css  its assets
//   GET /ws          the WebSocket stream (token)              GET /metrics  Prometheus text (token)
//   GET /export.csv  the run's steps as CSV (token)
// Every route, method and upgrade passes the same checks (auth.ts). The stream: a snapshot of the run so
// far, then live messages with per-client backpressure (connection.ts). Clients may send exactly one kind
// of message, a schema-valid control message (stop, checkpoint), rate-limited.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { isLoopback } from '../config/rules';
import { decodeClientMessage, encodeMessage, SUBPROTOCOL, WS_PATH, type ControlResultMessage, type RejectedMessage, type RunSummary } from '../../common/protocol';
import type { MetricBus } from '../telemetry/bus';
import { exportCsv } from '../telemetry/csv';
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from '../telemetry/prometheus';
import {
  checkFetchSite,
  checkHost,
  checkOrigin,
  checkSingleHeaders,
  checkToken,
  checkUrl,
  firstRefusal,
  makePolicy,
  newToken,
  requestTarget,
  targetPath,
  type AccessPolicy,
  type Verdict,
} from './auth';
import { Connection, type ConnectionStats } from './connection';
import { defaultAssets, renderPage, type DashboardAssets } from './static';

export interface ServerOptions {
  /** The runs to serve; the first is the default for clients that do not ask for one (?run=ID). */
  runs: MetricBus[];
  host?: string;
  port?: number;
  /** Needed to listen on anything but loopback; a warning is printed. */
  allowRemote?: boolean;
  /** A 64-hex-digit token chosen by the parent; a fresh one otherwise. */
  token?: string;
  assets?: DashboardAssets;
  /** More Host values / browser origins to accept (e.g. a reverse proxy's name). */
  extraHosts?: string[];
  extraOrigins?: string[];
  maxClients?: number;
  /** Largest frame a client may send (bytes); control messages are tiny. */
  maxPayload?: number;
  highWaterBytes?: number;
  maxQueueBytes?: number;
  /** Ping interval; a client that has not answered the previous ping is terminated. 0: only heartbeat(). */
  heartbeatMs?: number;
  ratePerSecond?: number;
  rateBurst?: number;
  warn?: (line: string) => void;
}

export interface TelemetryServer {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  /** http://HOST:PORT/ */
  readonly url: string;
  /** The page with the token in the fragment (never sent to the server): print this for a human. */
  readonly dashboardUrl: string;
  clients(): ConnectionStats[];
  /** One heartbeat round (also run every heartbeatMs). */
  heartbeat(): void;
  /** The most recent refused requests (status, reason, path), for diagnostics and tests. */
  refusals(): Refusal[];
  /** Cut every client (tests; a client then reconnects and gets a snapshot). */
  dropClients(reason?: string): void;
  close(): Promise<void>;
}

export interface Refusal {
  status: number;
  reason: string;
  path: string;
  upgrade: boolean;
}

const SECURITY_HEADERS: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

export async function startServer(o: ServerOptions): Promise<TelemetryServer> {
  if (o.runs.length === 0) throw new Error('startServer needs at least one run');
  const host = o.host ?? '127.0.0.1';
  const warn = o.warn ?? ((line: string) => process.stderr.write(line + '\n'));
  if (!isLoopback(host)) {
    if (!o.allowRemote) throw new Error(`refusing to listen on ${host}: not a loopback address. Set monitor.allowRemote (or --allow-remote) if you mean it`);
    warn(`warning: the metrics server listens on ${host}, reachable from the network without TLS; the run token is the only protection`);
  }
  const token = o.token ?? newToken();
  const limits = {
    highWaterBytes: o.highWaterBytes ?? 256 * 1024,
    maxQueueBytes: o.maxQueueBytes ?? 8 * 1024 * 1024,
    ratePerSecond: o.ratePerSecond ?? 20,
    rateBurst: o.rateBurst ?? 50,
  };
  const maxClients = o.maxClients ?? 32;
  const assets = o.assets ?? defaultAssets();
  const connections = new Set<Connection>();
  const refused: Refusal[] = [];
  const noteRefusal = (status: number, reason: string, req: IncomingMessage, upgrade: boolean): void => {
    refused.push({ status, reason, path: pathOf(req).slice(0, 200), upgrade });
    if (refused.length > 50) refused.shift();
  };
  let nextId = 1;
  let policy: AccessPolicy = makePolicy(token, host, 0);

  const runById = (req: IncomingMessage): MetricBus | undefined => {
    // Only reached after checkUrl passed, so the target parses; a null here still means "no such run".
    const url = requestTarget(req.url);
    if (!url) return undefined;
    const id = url.searchParams.get('run');
    return id === null ? o.runs[0] : o.runs.find((b) => b.history.runId === id);
  };
  const summaries = (): RunSummary[] | undefined => (o.runs.length > 1 ? o.runs.map((b) => b.summary()) : undefined);

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: o.maxPayload ?? 16 * 1024,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: () => SUBPROTOCOL,
  });

  // Handlers are total: whatever a handler throws answers 500 once and is logged once; the run goes on.
  const failed = (what: string, e: unknown): void => {
    try {
      warn(`scalelm server: ${what} failed: ${(e instanceof Error ? e.message : String(e)).slice(0, 300)}`);
    } catch {
      /* a broken log sink must not take the run down either */
    }
  };
  const http: Server = createServer((req, res) => {
    handleHttp(req, res).catch((e: unknown) => {
      failed(`${String(req.method).slice(0, 20)} ${pathOf(req)}`, e);
      try {
        if (!res.headersSent) send(res, 500, 'internal error\n');
        else res.destroy();
      } catch {
        res.destroy();
      }
    });
  });
  http.on('clientError', (_e, socket) => {
    // Unparsable requests: Node's parser refused them; answer 400 when the socket still can take it.
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });
  http.headersTimeout = 10_000;
  http.requestTimeout = 30_000;

  const pathOf = (req: IncomingMessage): string => targetPath(req.url);

  function commonChecks(req: IncomingMessage, isPage: boolean): Verdict {
    return firstRefusal(
      () => checkUrl(req, policy),
      () => checkSingleHeaders(req),
      () => checkHost(req, policy),
      () => checkOrigin(req, policy),
      () => checkFetchSite(req, isPage),
    );
  }

  function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8', extra: Record<string, string> = {}, head = false): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
    res.end(head ? undefined : body);
  }

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req);
    const isPage = path === '/' || path === '/index.html';
    const verdict = commonChecks(req, isPage);
    if (!verdict.ok) {
      noteRefusal(verdict.status, verdict.reason, req, false);
      return send(res, verdict.status, verdict.reason + '\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      noteRefusal(405, `method ${req.method}`, req, false);
      return send(res, 405, 'only GET and HEAD\n', undefined, { Allow: 'GET, HEAD' });
    }
    const head = req.method === 'HEAD';
    if (isPage) {
      const { html, nonce } = renderPage(assets, req.headers.host!);
      return send(
        res,
        200,
        html,
        'text/html; charset=utf-8',
        { 'Content-Security-Policy': `frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'; script-src 'nonce-${nonce}'` },
        head,
      );
    }
    const asset = assets.files.get(path);
    if (asset) {
      if (!existsSync(asset.path)) return send(res, 404, `${path} is not built yet: run \`npm run build\`\n`);
      const body = readFileSync(asset.path);
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Content-Length': body.length });
      res.end(head ? undefined : body);
      return;
    }
    if (path === WS_PATH) return send(res, 426, 'this is the WebSocket endpoint\n', undefined, { Upgrade: 'websocket' });
    if (path !== '/metrics' && path !== '/export.csv') return send(res, 404, 'not found\n');
    const auth = checkToken(req, policy);
    if (!auth.ok) {
      noteRefusal(auth.status, auth.reason, req, false);
      return send(res, auth.status, auth.reason + '\n', undefined, { 'WWW-Authenticate': 'Bearer realm="scalelm"' });
    }
    if (path === '/metrics') return send(res, 200, renderPrometheus(o.runs.map((b) => b.history)), PROMETHEUS_CONTENT_TYPE, {}, head);
    const bus = runById(req);
    if (!bus?.runDir) return send(res, 404, 'no such run, or it has no run directory\n');
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/csv; charset=utf-8', 'Content-Disposition': `attachment; filename="${bus.history.runId}.csv"` });
    if (head) return void res.end();
    try {
      // Waits for 'drain': a slow reader holds the file reading back instead of the server's memory.
      await exportCsv(bus.runDir, (chunk) =>
        res.write(chunk) || res.destroyed
          ? undefined
          : new Promise<void>((resolve) => {
              res.once('drain', resolve);
              res.once('close', resolve);
            }),
      );
    } finally {
      res.end();
    }
  }

  function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
    const text = reason + '\n';
    const statusText: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable' };
    socket.once('finish', () => socket.destroy());
    socket.end(`HTTP/1.1 ${status} ${statusText[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  }

  let closing = false;
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      handleUpgrade(req, socket, head);
    } catch (e) {
      failed(`upgrade ${pathOf(req)}`, e);
      try {
        refuseUpgrade(socket, 500, 'internal error');
      } catch {
        socket.destroy();
      }
    }
  });

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const verdict = firstRefusal(
      () => commonChecks(req, false),
      () => (pathOf(req) === WS_PATH ? { ok: true } : { ok: false, status: 404, reason: `no WebSocket endpoint at ${pathOf(req).slice(0, 100)}; use ${WS_PATH}` }),
      () => checkToken(req, policy),
      () => {
        const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
        return offered.includes(SUBPROTOCOL) ? { ok: true } : { ok: false, status: 400, reason: `offer the "${SUBPROTOCOL}" subprotocol (protocol version 1)` };
      },
      () => (runById(req) ? { ok: true } : { ok: false, status: 404, reason: 'no such run' }),
      () => (connections.size < maxClients ? { ok: true } : { ok: false, status: 503, reason: `too many clients (${maxClients})` }),
      () => (closing ? { ok: false, status: 503, reason: 'the run has ended; the server is closing' } : { ok: true }),
    );
    if (!verdict.ok) {
      noteRefusal(verdict.status, verdict.reason, req, true);
      return refuseUpgrade(socket, verdict.status, verdict.reason);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      try {
        accept(ws, runById(req)!);
      } catch (e) {
        failed('accepting a client', e);
        ws.terminate();
      }
    });
  }

  function accept(ws: WebSocket, bus: MetricBus): void {
    const conn = new Connection(nextId++, ws, bus.history.runId, limits, (c, reason) => warn(`scalelm server: disconnected client ${c.id}: ${reason}`));
    connections.add(conn);
    ws.on('error', () => undefined); // oversized frames, resets: the close handler cleans up
    ws.on('pong', () => (conn.alive = true));
    // The snapshot and the subscription happen in the same tick: nothing is missed or sent twice.
    conn.sendNow(encodeMessage(bus.history.snapshot(bus.readOnly, summaries())));
    const unsubscribe = bus.subscribe((msg, encoded) => conn.deliver(msg, encoded));
    ws.on('close', () => {
      unsubscribe();
      conn.release();
      connections.delete(conn);
    });
    ws.on('message', (data, isBinary) => {
      try {
        onMessage(data, isBinary);
      } catch (e) {
        failed(`client ${conn.id} message`, e);
        conn.cutOff('internal error');
      }
    });
    const onMessage = (data: RawData, isBinary: boolean): void => {
      if (!conn.admit()) return conn.cutOff('too many messages');
      if (isBinary) return ws.close(1003, 'binary frames are not accepted');
      const text = (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString('utf8');
      const parsed = decodeClientMessage(text);
      if (!parsed.ok) {
        if (parsed.reason.startsWith('not valid JSON')) return ws.close(1007, 'malformed JSON');
        const reply: RejectedMessage = { type: 'rejected', reason: parsed.reason };
        return conn.sendNow(encodeMessage(reply));
      }
      const { id, action, by } = parsed.value;
      const result = (ok: boolean, error?: string): void => {
        const reply: ControlResultMessage = { type: 'control-result', id, ok };
        if (error !== undefined) reply.error = error;
        conn.sendNow(encodeMessage(reply));
      };
      bus
        .control(action, by)
        .then(
          () => result(true),
          (e: unknown) => result(false, e instanceof Error ? e.message : String(e)),
        )
        .catch((e: unknown) => failed(`client ${conn.id} control reply`, e));
    };
  }

  function heartbeat(): void {
    for (const c of connections) {
      if (!c.alive) {
        c.cutOff('no answer to ping');
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(o.port ?? 0, host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const address = http.address();
  const port = typeof address === 'object' && address ? address.port : (o.port ?? 0);
  policy = makePolicy(token, host, port, o.extraHosts, o.extraOrigins);
  const heartbeatMs = o.heartbeatMs ?? 30_000;
  const timer = heartbeatMs > 0 ? setInterval(heartbeat, heartbeatMs) : null;
  timer?.unref();
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const url = `http://${urlHost}:${port}/`;

  return {
    host,
    port,
    token,
    url,
    dashboardUrl: `${url}#token=${token}`,
    clients: () => [...connections].map((c) => c.stats()),
    heartbeat,
    refusals: () => [...refused],
    dropClients: (reason = 'dropped') => {
      for (const c of [...connections]) c.cutOff(reason);
    },
    close: async () => {
      if (timer) clearInterval(timer);
      // Stop taking connections first (a client that reconnects after the polite close below must not
      // slip in: an upgraded socket is not an HTTP connection that closeAllConnections would end).
      closing = true;
      const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
      await Promise.all([...connections].map((c) => c.finish(2000)));
      for (const c of connections) c.ws.terminate();
      wss.close();
      http.closeAllConnections();
      await stopped;
    },
  };
}
