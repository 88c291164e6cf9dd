// Who may talk to the runtime's server. The same checks run on every HTTP route, method and WebSocket
// upgrade (lessons from the Jupyter, webpack-dev-server, Vite, Ollama, Ray and Live Server CVEs):
//   1. Host must be one of ours (127.0.0.1:PORT, localhost:PORT, [::1]:PORT, or the opted-in bind
//      address): this is what defeats DNS rebinding.
//   2. The token never travels in a URL (query strings end up in logs, history and Referer): a request
//      carrying one there is refused even when the token is right.
//   3. Origin: absent (a non-browser client, which must then hold the token) or exactly our own origin.
//      "null" (sandboxed iframes, file://) and foreign IP-literal origins are refused by name.
//   4. Sec-Fetch-Site, when a browser sends it, must be same-origin or none (a typed URL), except for a
//      plain navigation to the page, which carries no data.
//   5. Data (the stream, /metrics, CSV) needs the per-run 256-bit token: `Authorization: Bearer <token>`
//      from Node clients and scrapers, a `scalelm.token.<token>` Sec-WebSocket-Protocol entry from
//      browsers. Compared in constant time.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { hostname, networkInterfaces } from 'node:os';
import { isToken, TOKEN_PROTOCOL_PREFIX } from '../../common/protocol';

export type Verdict = { ok: true } | { ok: false; status: number; reason: string };
const OK: Verdict = { ok: true };
const refuse = (status: number, reason: string): Verdict => ({ ok: false, status, reason });

/** 256 bits from the CSPRNG, as 64 hex digits. */
export function newToken(): string {
  return randomBytes(32).toString('hex');
}

export function tokensEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface AccessPolicy {
  token: string;
  /** Lower-cased Host header values we answer to. */
  hosts: Set<string>;
  /** Browser origins we accept (our own page). */
  origins: Set<string>;
}

const isIpLiteral = (host: string): boolean => /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.startsWith('[') || host.includes(':');
const hostPort = (host: string, port: number): string => `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;

/** The Host values and origins for a server bound to `bindHost`:`port`. */
export function makePolicy(token: string, bindHost: string, port: number, extraHosts: string[] = [], extraOrigins: string[] = []): AccessPolicy {
  const names = new Set(['127.0.0.1', 'localhost', '::1']);
  if (bindHost === '0.0.0.0' || bindHost === '::') {
    for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) names.add(i.address);
    names.add(hostname());
  } else names.add(bindHost);
  for (const h of extraHosts) names.add(h);
  const hosts = new Set<string>();
  for (const n of names) hosts.add(hostPort(n, port).toLowerCase());
  const origins = new Set<string>([...hosts].map((h) => `http://${h}`));
  for (const o of extraOrigins) origins.add(o.toLowerCase());
  return { token, hosts, origins };
}

export function checkHost(req: IncomingMessage, p: AccessPolicy): Verdict {
  const host = req.headers.host?.toLowerCase();
  if (!host) return refuse(403, 'missing Host header');
  if (!p.hosts.has(host)) return refuse(403, `Host "${host.slice(0, 100)}" is not this server (DNS rebinding?); use http://127.0.0.1:PORT`);
  return OK;
}

const URL_CREDENTIAL_PARAMS = ['token', 'access_token', 'auth', 'key', 'password'];

/**
 * The request target as a URL, or null when it is not a plain origin-form path ("/a/b?c"). Total: never
 * throws. `new URL('//a:b', base)` reads "//…" as an authority and throws on a bad host or port, and an
 * absolute-form target ("http://[::1") may be unparsable, so the path is appended to a fixed origin and
 * anything not starting with exactly one "/" is refused before parsing.
 */
export function requestTarget(raw: string | undefined): URL | null {
  if (raw === undefined || !raw.startsWith('/') || raw.startsWith('//') || raw.length > 8192) return null;
  try {
    return new URL(`http://localhost${raw}`);
  } catch {
    return null;
  }
}

/** The path for logs and refusals: never throws, whatever the client sent. */
export function targetPath(raw: string | undefined): string {
  return requestTarget(raw)?.pathname ?? String(raw ?? '').slice(0, 200);
}

/**
 * Headers that must appear at most once. Node keeps the first Host/Authorization and drops the rest; a
 * proxy in front may keep the last: two copies are an ambiguity an attacker can exploit, so both refuse.
 */
const SINGLE_HEADERS = new Set(['host', 'authorization', 'origin', 'sec-fetch-site', 'sec-fetch-mode']);

export function checkSingleHeaders(req: IncomingMessage): Verdict {
  const seen = new Set<string>();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!SINGLE_HEADERS.has(name)) continue;
    if (seen.has(name)) return refuse(400, `duplicate ${name} header`);
    seen.add(name);
  }
  return OK;
}

export function checkUrl(req: IncomingMessage, p: AccessPolicy): Verdict {
  const raw = req.url ?? '/';
  const url = requestTarget(raw);
  if (!url) return refuse(400, 'malformed request target: expected a path starting with a single "/"');
  const names = [...url.searchParams.keys()].map((k) => k.toLowerCase());
  if (names.some((k) => URL_CREDENTIAL_PARAMS.includes(k)) || raw.toLowerCase().includes(p.token)) {
    return refuse(400, 'credentials must not be sent in a URL; send the token in the Authorization header or as a Sec-WebSocket-Protocol entry');
  }
  return OK;
}

export function checkOrigin(req: IncomingMessage, p: AccessPolicy): Verdict {
  const origin = req.headers.origin;
  if (origin === undefined) return OK; // not a browser; the token decides
  const o = origin.toLowerCase();
  if (o === 'null') return refuse(403, 'Origin "null" (a sandboxed frame or a file:// page) is refused');
  if (p.origins.has(o)) return OK;
  let hostName: string;
  try {
    hostName = new URL(o).hostname;
  } catch {
    return refuse(403, 'malformed Origin');
  }
  if (isIpLiteral(hostName)) return refuse(403, `IP-literal Origin "${origin.slice(0, 100)}" is refused`);
  return refuse(403, `Origin "${origin.slice(0, 100)}" is not allowed`);
}

export function checkFetchSite(req: IncomingMessage, isNavigationToPage: boolean): Verdict {
  const site = req.headers['sec-fetch-site'];
  if (site === undefined || site === 'same-origin' || site === 'none') return OK;
  if (isNavigationToPage && req.headers['sec-fetch-mode'] === 'navigate') return OK;
  return refuse(403, `cross-site request (Sec-Fetch-Site: ${String(site).slice(0, 40)}) refused`);
}

/** The token a request presents (header or subprotocol entry), or a refusal when it is missing or wrong. */
export function checkToken(req: IncomingMessage, p: AccessPolicy): Verdict {
  const presented: string[] = [];
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m) return refuse(401, 'Authorization must be "Bearer <token>"');
    presented.push(m[1]!);
  }
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined) {
    for (const entry of protocols.split(',').map((s) => s.trim())) if (entry.startsWith(TOKEN_PROTOCOL_PREFIX)) presented.push(entry.slice(TOKEN_PROTOCOL_PREFIX.length));
  }
  if (presented.length === 0) return refuse(401, 'this run needs its token (Authorization: Bearer <token>, or the scalelm.token.<token> subprotocol)');
  // Every presented copy must be right: a wrong one next to a right one is still a wrong token.
  for (const t of presented) if (!isToken(t) || !tokensEqual(t, p.token)) return refuse(401, 'wrong token');
  return OK;
}

export function firstRefusal(...verdicts: (() => Verdict)[]): Verdict {
  for (const v of verdicts) {
    const r = v();
    if (!r.ok) return r;
  }
  return OK;
}
