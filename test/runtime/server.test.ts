// The server's security checks, one case at a time. Each bad request is refused with a reason, and a
// well-behaved client connected beforehand keeps receiving the run throughout.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { encodeMessage, SUBPROTOCOL, type ControlResultMessage, type RejectedMessage } from '../../common/protocol';
import { makePolicy } from '../../runtime/server/auth';
import { startServer, type TelemetryServer } from '../../runtime/server/server';
import type { MetricBus } from '../../runtime/telemetry/bus';
import { until } from './telemetry/util';
import { busWithSteps, openClient, rawRequest, step, type Recorder } from './telemetry/ws-helpers';

describe('server security', function () {
  this.timeout(30_000);
  let bus: MetricBus;
  let server: TelemetryServer;
  let good: Recorder;
  let token: string;
  let port: number;
  let nextStep = 10;
  const warnings: string[] = [];
  const controls: string[] = [];

  before(async () => {
    bus = busWithSteps(10);
    bus.onControl((action) => void controls.push(action));
    server = await startServer({ runs: [bus], heartbeatMs: 0, warn: (l) => warnings.push(l), ratePerSecond: 5, rateBurst: 20 });
    ({ token, port } = server);
    good = await openClient(port, token);
  });
  after(async () => {
    good.ws.close();
    await server.close();
  });

  /** The good client still gets a step published after the bad request. */
  async function goodClientUndisturbed(): Promise<void> {
    const k = nextStep++;
    bus.publish(step(k));
    await until(() => good.steps().some((s) => s.step === k), `the good client to get step ${k}`);
    assert.equal(good.closed, null);
  }

  const upgrade = (headers: Record<string, string>, path = '/ws') => rawRequest(port, { headers: { 'Sec-WebSocket-Protocol': SUBPROTOCOL, ...headers }, path });
  const bearer = () => ({ Authorization: `Bearer ${token}` });

  it('serves only on 127.0.0.1 and uses a 256-bit token', () => {
    assert.equal(server.host, '127.0.0.1');
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.ok(server.dashboardUrl.endsWith(`/#token=${token}`), 'the printed URL carries the token in the fragment only');
  });

  it('accepts the token in a header (Node) and as a subprotocol entry (browser), selecting only scalelm.v1', async () => {
    const ok = await upgrade(bearer());
    assert.equal(ok.status, 101);
    const browser = await openClient(port, token, { browser: true, origin: `http://127.0.0.1:${port}` });
    assert.equal(browser.ws.protocol, SUBPROTOCOL, 'the server never echoes the token entry');
    await until(() => browser.messages.length > 0, 'a snapshot');
    assert.equal(browser.messages[0]!.type, 'snapshot');
    browser.ws.close();
    await goodClientUndisturbed();
  });

  it('no token: 401', async () => {
    const r = await upgrade({});
    assert.equal(r.status, 401);
    assert.match(r.body, /needs its token/);
    await goodClientUndisturbed();
  });

  it('wrong token: 401, in the header or as a subprotocol entry', async () => {
    const wrong = 'f'.repeat(64) === token ? 'e'.repeat(64) : 'f'.repeat(64);
    assert.equal((await upgrade({ Authorization: `Bearer ${wrong}` })).status, 401);
    assert.equal((await upgrade({ 'Sec-WebSocket-Protocol': `${SUBPROTOCOL}, scalelm.token.${wrong}` })).status, 401);
    assert.equal((await upgrade({ Authorization: 'Bearer short' })).status, 401);
    assert.equal((await upgrade({ ...bearer(), 'Sec-WebSocket-Protocol': `${SUBPROTOCOL}, scalelm.token.${wrong}` })).status, 401, 'a wrong copy next to a right one');
    await goodClientUndisturbed();
  });

  it('token in the URL: 400, even when it is the right token', async () => {
    const r = await upgrade({}, `/ws?token=${token}`);
    assert.equal(r.status, 400);
    assert.match(r.body, /must not be sent in a URL/);
    assert.equal((await upgrade(bearer(), `/ws?token=${token}`)).status, 400);
    assert.equal((await upgrade(bearer(), `/ws?access_token=x`)).status, 400);
    assert.equal((await rawRequest(port, { upgrade: false, path: `/metrics?token=${token}` })).status, 400);
    await goodClientUndisturbed();
  });

  it('foreign Origin: 403 even with the right token', async () => {
    const r = await upgrade({ ...bearer(), Origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.match(r.body, /not allowed/);
    assert.equal((await upgrade({ ...bearer(), Origin: `http://localhost:${port + 1}` })).status, 403, 'another local port is another origin');
    await goodClientUndisturbed();
  });

  it('Origin: null: 403', async () => {
    const r = await upgrade({ ...bearer(), Origin: 'null' });
    assert.equal(r.status, 403);
    assert.match(r.body, /null/);
    await goodClientUndisturbed();
  });

  it('IP-literal Origin: 403 (other than our own page)', async () => {
    for (const origin of ['http://192.168.1.20', `http://127.0.0.1:${port + 1}`, 'http://0.0.0.0', `http://[::1]:${port + 1}`, 'http://2130706433']) {
      const r = await upgrade({ ...bearer(), Origin: origin });
      assert.equal(r.status, 403, origin);
    }
    assert.match((await upgrade({ ...bearer(), Origin: 'http://192.168.1.20' })).body, /IP-literal/);
    assert.equal((await upgrade({ ...bearer(), Origin: `http://127.0.0.1:${port}` })).status, 101, 'our own page is allowed');
    assert.equal((await upgrade({ ...bearer(), Origin: `http://localhost:${port}` })).status, 101);
    await goodClientUndisturbed();
  });

  it('rebinding Host: 403 on the upgrade and on every HTTP route', async () => {
    for (const host of [`evil.example:${port}`, `attacker.localhost.evil:${port}`, '127.0.0.1', `127.0.0.1:${port + 1}`, `0.0.0.0:${port}`]) {
      assert.equal((await upgrade({ ...bearer(), Host: host })).status, 403, host);
      for (const path of ['/', '/metrics', '/webview.js', '/export.csv', '/nope']) {
        assert.equal((await rawRequest(port, { upgrade: false, path, headers: { ...bearer(), Host: host } })).status, 403, `${host} ${path}`);
      }
    }
    assert.equal((await upgrade({ ...bearer(), Host: `localhost:${port}` })).status, 101);
    await goodClientUndisturbed();
  });

  it('needs the scalelm.v1 subprotocol (the protocol version)', async () => {
    const r = await rawRequest(port, { headers: { ...bearer(), 'Sec-WebSocket-Protocol': 'scalelm.v2' } });
    assert.equal(r.status, 400);
    assert.match(r.body, /scalelm\.v1/);
    await goodClientUndisturbed();
  });

  it('the same checks on every route and method; no CORS', async () => {
    const get = (path: string, headers: Record<string, string> = {}, method = 'GET') => rawRequest(port, { upgrade: false, path, headers, method });
    assert.equal((await get('/metrics')).status, 401);
    const metrics = await get('/metrics', bearer());
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /scalelm_step\{run="test-run"\}/);
    assert.equal((await get('/metrics', { ...bearer(), Origin: 'https://evil.example' })).status, 403);
    assert.equal((await get('/metrics', { ...bearer(), Origin: 'null' })).status, 403);
    assert.equal((await get('/metrics', { ...bearer(), 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'cors' })).status, 403);
    assert.equal((await get('/metrics', { ...bearer(), 'Sec-Fetch-Site': 'same-site', 'Sec-Fetch-Mode': 'cors' })).status, 403, 'another localhost port is same-site');
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const r = await get('/metrics', bearer(), method);
      assert.equal(r.status, 405, method);
    }
    assert.equal((await get('/', { Origin: 'https://evil.example' })).status, 403);
    const page = await get('/');
    assert.equal(page.status, 200);
    assert.ok(!page.body.includes(token), 'the page never contains the token');
    assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/);
    for (const r of [page, metrics]) {
      assert.equal(r.headers['access-control-allow-origin'], undefined);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
    }
    assert.equal((await get('/../../etc/passwd')).status, 404);
    assert.equal((await get('/ws', bearer())).status, 426);
    await goodClientUndisturbed();
  });

  it('an oversized frame closes that client with 1009', async () => {
    const c = await openClient(port, token);
    c.ws.send('x'.repeat(64 * 1024));
    await until(() => c.closed !== null, 'the close');
    assert.equal(c.closed!.code, 1009);
    await goodClientUndisturbed();
  });

  it('malformed JSON closes that client with 1007; a binary frame with 1003', async () => {
    const c = await openClient(port, token);
    c.ws.send('{"type":"control",');
    await until(() => c.closed !== null, 'the close');
    assert.equal(c.closed!.code, 1007);
    const b = await openClient(port, token);
    b.ws.send(Buffer.from([1, 2, 3]));
    await until(() => b.closed !== null, 'the close');
    assert.equal(b.closed!.code, 1003);
    await goodClientUndisturbed();
  });

  it('a schema-invalid control message is rejected with a reason and nothing happens', async () => {
    const c = await openClient(port, token);
    for (const bad of [
      { type: 'control', id: 'a1', action: 'rm -rf /' },
      { type: 'control', action: 'stop' },
      { type: 'control', id: 'a2', action: 'stop', extra: 1 },
      { type: 'step', step: 1 },
      [1, 2],
    ]) {
      c.ws.send(JSON.stringify(bad));
    }
    await until(() => c.messages.filter((m) => m.type === 'rejected').length === 5, '5 rejections');
    const reasons = c.messages.filter((m): m is RejectedMessage => m.type === 'rejected').map((m) => m.reason);
    assert.match(reasons[0]!, /action: must be one of stop, checkpoint/);
    assert.match(reasons[1]!, /id: is required/);
    assert.match(reasons[2]!, /extra: is not a field/);
    assert.deepEqual(controls, []);
    assert.equal(c.closed, null, 'a schema-invalid message does not cost the connection');
    c.ws.close();
    await goodClientUndisturbed();
  });

  it('a valid control message with the token reaches the run and is answered', async () => {
    const c = await openClient(port, token);
    c.ws.send(encodeMessage({ type: 'control', id: 'ck-1', action: 'checkpoint' }));
    await until(() => c.messages.some((m) => m.type === 'control-result'), 'the answer');
    const r = c.messages.find((m): m is ControlResultMessage => m.type === 'control-result')!;
    assert.deepEqual(r, { type: 'control-result', id: 'ck-1', ok: true });
    assert.deepEqual(controls, ['checkpoint']);
    c.ws.close();
    controls.length = 0;
    await goodClientUndisturbed();
  });

  it('a flood of messages cuts that client off, without disturbing others or the run', async () => {
    const c = await openClient(port, token);
    for (let i = 0; i < 500 && c.ws.readyState === WebSocket.OPEN; i++) c.ws.send(JSON.stringify({ type: 'control', id: `f${i}`, action: 'nope' }));
    await until(() => c.closed !== null, 'the flooding client to be cut off');
    assert.ok(warnings.some((w) => /too many messages/.test(w)));
    assert.deepEqual(controls, []);
    await goodClientUndisturbed();
  });

  it('refuses to listen beyond loopback unless asked', async () => {
    await assert.rejects(startServer({ runs: [bus], host: '0.0.0.0' }), /not a loopback address/);
    const policy = makePolicy(token, '127.0.0.1', 1234);
    assert.deepEqual([...policy.hosts].sort(), ['127.0.0.1:1234', '[::1]:1234', 'localhost:1234']);
  });
});
