// The Node client the extension host (and tools) use to follow a run: connects with the token in a
// header (never in the URL), validates every incoming message (an invalid one is reported and dropped,
// never applied), and reconnects with back-off — each new connection starts with a fresh snapshot, so
// the host can simply replace its state on 'snapshot'. A refused handshake (wrong token, wrong Host…)
// is not retried: it would fail the same way.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  decodeServerMessage,
  encodeMessage,
  SUBPROTOCOL,
  WS_PATH,
  type ControlAction,
  type ControlMessage,
  type ControlResultMessage,
  type Message,
  type SnapshotMessage,
} from '../../common/protocol';

export interface RunClientOptions {
  port: number;
  host?: string;
  token: string;
  /** Which run on a server that serves several (default: the server's first). */
  run?: string;
  reconnect?: boolean;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Largest message accepted from the server (a snapshot of a long run is a few MiB). */
  maxPayload?: number;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'waiting' | 'closed';

export declare interface RunClient {
  on(event: 'snapshot', listener: (s: SnapshotMessage) => void): this;
  on(event: 'message', listener: (m: Message) => void): this;
  on(event: 'invalid', listener: (reason: string) => void): this;
  on(event: 'state', listener: (s: ClientState, detail: string) => void): this;
  on(event: 'refused', listener: (status: number, reason: string) => void): this;
}

/** HTTP statuses that will not change by trying again. */
const FATAL = new Set([400, 401, 403, 404]);

export class RunClient extends EventEmitter {
  state: ClientState = 'idle';
  connections = 0;
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly pending = new Map<string, { resolve: (r: ControlResultMessage) => void; reject: (e: Error) => void }>();
  private readonly o: Required<Omit<RunClientOptions, 'run'>> & { run?: string };

  constructor(options: RunClientOptions) {
    super();
    this.o = { host: '127.0.0.1', reconnect: true, minDelayMs: 250, maxDelayMs: 10_000, maxPayload: 512 * 1024 * 1024, ...options };
  }

  private setState(s: ClientState, detail = ''): void {
    this.state = s;
    this.emit('state', s, detail);
  }

  connect(): this {
    if (this.stopped || this.ws) return this;
    const host = this.o.host.includes(':') ? `[${this.o.host}]` : this.o.host;
    const query = this.o.run ? `?run=${encodeURIComponent(this.o.run)}` : '';
    this.setState('connecting');
    const ws = new WebSocket(`ws://${host}:${this.o.port}${WS_PATH}${query}`, [SUBPROTOCOL], {
      headers: { Authorization: `Bearer ${this.o.token}` },
      perMessageDeflate: false,
      maxPayload: this.o.maxPayload,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    let refused = false;
    ws.on('unexpected-response', (_req, res) => {
      refused = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d.slice(0, 1000)));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        this.emit('refused', status, body.trim());
        this.ws = null;
        if (FATAL.has(status)) {
          this.stopped = true;
          this.setState('closed', `refused (${status}): ${body.trim()}`);
        } else this.retry(`refused (${status})`);
      });
      ws.terminate();
    });
    ws.on('open', () => {
      this.connections++;
      this.setState('open');
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return void this.emit('invalid', 'binary frame from the server');
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
      const r = decodeServerMessage(text);
      if (!r.ok) return void this.emit('invalid', r.reason);
      const m = r.value;
      if (m.type === 'snapshot') {
        this.attempt = 0;
        this.emit('snapshot', m);
      } else if (m.type === 'control-result') {
        this.pending.get(m.id)?.resolve(m);
        this.pending.delete(m.id);
      } else if (m.type === 'rejected') {
        this.emit('invalid', `server rejected a message: ${m.reason}`);
      } else this.emit('message', m);
    });
    ws.on('error', () => undefined); // followed by 'close'
    ws.on('close', (code, reason) => {
      if (refused) return;
      this.ws = null;
      for (const p of this.pending.values()) p.reject(new Error('connection closed before the server answered'));
      this.pending.clear();
      this.retry(`closed (${code}${reason.length ? `: ${reason.toString()}` : ''})`);
    });
    return this;
  }

  private retry(detail: string): void {
    if (this.stopped || !this.o.reconnect) {
      this.setState('closed', detail);
      return;
    }
    const delay = Math.min(this.o.maxDelayMs, this.o.minDelayMs * 2 ** this.attempt);
    this.attempt++;
    this.setState('waiting', `${detail}; reconnecting in ${delay} ms`);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Asks the run to stop or to checkpoint; resolves with the server's answer. */
  control(action: ControlAction, by?: string): Promise<ControlResultMessage> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    const msg: ControlMessage = { type: 'control', id: randomUUID(), action, ...(by ? { by } : {}) };
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject });
      ws.send(encodeMessage(msg));
    });
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    for (const p of this.pending.values()) p.reject(new Error('client closed'));
    this.pending.clear();
    if (ws) {
      ws.removeAllListeners('close');
      ws.on('close', () => undefined);
      ws.close(1000);
      ws.terminate();
    }
    this.setState('closed', 'closed by the client');
  }
}
