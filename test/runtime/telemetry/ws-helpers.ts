// Clients for the server tests: a raw HTTP upgrade with any headers (to probe the checks), a ws client
// that records what it gets, and a stalled client that completes the handshake and then never reads.
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { decodeServerMessage, SUBPROTOCOL, webSocketProtocols, type ServerMessage } from '../../../common/protocol';
import { MetricBus } from '../../../runtime/telemetry/bus';
import type { StepMessage } from '../../../common/protocol';

export interface RawResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A WebSocket handshake (or any GET) with exactly these headers; resolves with the status and body. */
export function rawRequest(port: number, o: { path?: string; headers?: Record<string, string>; upgrade?: boolean; method?: string } = {}): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: `127.0.0.1:${port}`, ...o.headers };
    if (o.upgrade ?? true) {
      headers.Connection = 'Upgrade';
      headers.Upgrade = 'websocket';
      headers['Sec-WebSocket-Version'] = '13';
      headers['Sec-WebSocket-Key'] = randomBytes(16).toString('base64');
    }
    const req = request({ host: '127.0.0.1', port, path: o.path ?? '/ws', method: o.method ?? 'GET', headers, setHost: false });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 101, body: '', headers: res.headers });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

export interface Recorder {
  ws: WebSocket;
  messages: ServerMessage[];
  invalid: string[];
  closed: { code: number; reason: string } | null;
  steps(): StepMessage[];
}

/** A ws client with the token in the Authorization header (or as a browser would, in the subprotocol). */
export function openClient(port: number, token: string, o: { browser?: boolean; origin?: string; path?: string } = {}): Promise<Recorder> {
  const ws = o.browser
    ? new WebSocket(`ws://127.0.0.1:${port}${o.path ?? '/ws'}`, webSocketProtocols(token), { headers: o.origin ? { Origin: o.origin } : {}, perMessageDeflate: false })
    : new WebSocket(`ws://127.0.0.1:${port}${o.path ?? '/ws'}`, [SUBPROTOCOL], { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false });
  const rec: Recorder = {
    ws,
    messages: [],
    invalid: [],
    closed: null,
    steps: () => rec.messages.filter((m): m is StepMessage => m.type === 'step'),
  };
  ws.on('message', (data) => {
    const r = decodeServerMessage(data.toString());
    if (r.ok) rec.messages.push(r.value);
    else rec.invalid.push(r.reason);
  });
  ws.on('close', (code, reason) => (rec.closed = { code, reason: reason.toString() }));
  ws.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(rec));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Completes the handshake, then stops reading: the kernel buffers fill and the server must cope. */
export function stalledClient(port: number, token: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let head = '';
    socket.setEncoding('latin1');
    socket.once('connect', () => {
      socket.write(
        [
          'GET /ws HTTP/1.1',
          `Host: 127.0.0.1:${port}`,
          'Connection: Upgrade',
          'Upgrade: websocket',
          'Sec-WebSocket-Version: 13',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`,
          `Authorization: Bearer ${token}`,
          '',
          '',
        ].join('\r\n'),
      );
    });
    const onData = (d: string) => {
      head += d;
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(head.split('\r\n')[0]));
      socket.pause();
      resolve(socket);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  });
}

export function step(k: number, loss = 4 - k / 1000): StepMessage {
  return { type: 'step', step: k, loss, lr: 3e-4, gradNorm: 1.2, tokensPerSec: 12_345, stepMs: 50, memory: { params: 1e6, grads: 1e6, optimizer: 2e6, activations: 3e6, peak: 8e6 } };
}

/** A bus with a hello and `steps` steps. */
export function busWithSteps(steps: number, runId = 'test-run'): MetricBus {
  const bus = new MetricBus();
  bus.publish({ type: 'hello', protocol: 1, runId, name: runId, startedAt: Date.now(), world: 1, config: { model: { preset: 'tiny' } } });
  bus.publish({ type: 'status', state: 'running', t: Date.now() });
  for (let k = 0; k < steps; k++) bus.publish(step(k));
  return bus;
}
