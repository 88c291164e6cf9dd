// The attack corpus (issue 12): raw requests, frames and lines that once killed or altered a run. Each entry
// is sent byte for byte on a fresh socket; the tests assert the clean refusal and that the run goes on.
// Add a case here whenever a new one is found, so it stays fixed.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';

export interface HostileRequest {
  name: string;
  /** The raw bytes, with HOST standing for 127.0.0.1:PORT and TOKEN for the run token (when known). */
  raw: string;
  /** The status line the server must answer with (null: any answer or a close, but no crash). */
  status: number | null;
}

const wsHeaders = (): string[] => [
  'Connection: Upgrade',
  'Upgrade: websocket',
  'Sec-WebSocket-Version: 13',
  `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
  'Sec-WebSocket-Protocol: scalelm.v1',
];
const get = (target: string, headers: string[] = ['Host: HOST']): string => [`GET ${target} HTTP/1.1`, ...headers, '', ''].join('\r\n');

/** Request targets `new URL(target, base)` threw on, with any Host and no token, plain and as upgrades. */
export const BAD_TARGETS = ['//', '///', '//a:b', '//[', '//h:99999/', 'http://[::1', '//localhost:1/ws', '*'];

export function hostileRequests(): HostileRequest[] {
  const out: HostileRequest[] = [];
  for (const t of BAD_TARGETS) {
    out.push({ name: `GET ${t}`, raw: get(t), status: 400 });
    out.push({ name: `GET ${t} (foreign Host)`, raw: get(t, ['Host: evil.example']), status: 400 });
    out.push({ name: `upgrade to ${t}`, raw: get(t, ['Host: HOST', ...wsHeaders()]), status: 400 });
    out.push({ name: `upgrade to ${t} with the token`, raw: get(t, ['Host: HOST', 'Authorization: Bearer TOKEN', ...wsHeaders()]), status: 400 });
  }
  out.push({ name: 'duplicate Host', raw: get('/metrics', ['Host: HOST', 'Host: evil.example', 'Authorization: Bearer TOKEN']), status: 400 });
  out.push({ name: 'duplicate Host (ours second)', raw: get('/metrics', ['Host: evil.example', 'Host: HOST', 'Authorization: Bearer TOKEN']), status: 400 });
  out.push({ name: 'duplicate Authorization', raw: get('/metrics', ['Host: HOST', 'Authorization: Bearer TOKEN', `Authorization: Bearer ${'0'.repeat(64)}`]), status: 400 });
  out.push({ name: 'duplicate Authorization on the upgrade', raw: get('/ws', ['Host: HOST', 'Authorization: Bearer TOKEN', 'Authorization: Bearer x', ...wsHeaders()]), status: 400 });
  out.push({ name: 'the source map (not development)', raw: get('/webview.js.map'), status: 404 });
  out.push({ name: 'garbage request line', raw: '\x00\x01\x02 not http\r\n\r\n', status: 400 });
  out.push({ name: 'huge header', raw: `GET / HTTP/1.1\r\nHost: HOST\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`, status: null });
  out.push({ name: 'POST with a body to //', raw: 'POST // HTTP/1.1\r\nHost: HOST\r\nContent-Length: 5\r\n\r\nhello', status: 400 });
  return out;
}

/** Sends `raw` on a new socket; resolves with everything the server wrote before closing (or after 3 s). */
export function exchange(port: number, raw: string | Buffer, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, waitMs);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      got += d;
      // One response is enough: the status line and the end of the headers.
      if (/^HTTP\/1\.1 \d{3}[^\n]*\n[\s\S]*\r\n\r\n/.test(got)) setTimeout(done, 20);
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.once('connect', () => socket.write(raw));
  });
}

export const statusOf = (response: string): number | null => {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(response);
  return m ? Number(m[1]) : null;
};

export const fill = (raw: string, port: number, token: string): string => raw.replaceAll('HOST', `127.0.0.1:${port}`).replaceAll('TOKEN', token);
