// The rank channel over real sockets (docs/rank-channel.md): legitimate ranks are heard, hostile peers and
// malformed lines cost only their own connection, and the run's ranks never notice.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { ChannelClient, ChannelServer, MAX_LINE_BYTES, parseChannelAddress, type CoordinatorToRank, type RankReport } from '../../runtime/parallel/channel';

const until = async (cond: () => boolean, what: string, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A raw peer: writes `payload`, resolves when the server closes the connection (or after ms: false). */
function rawPeer(address: string, payload: string | Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const s: Socket = connect(parseChannelAddress(address), () => s.write(payload));
    s.on('error', () => {});
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 4000);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const step = (n: number) => ({ type: 'step', step: n, loss: 2.5, lr: 1e-3, gradNorm: 1, tokensPerSec: 100, stepMs: 10, memory: { params: 1, grads: 1, optimizer: 2, activations: 3, peak: 7 }, t: 1 });

describe('rank channel: token, limits and validation over real sockets', function () {
  this.timeout(30_000);

  for (const mode of ['unix', 'tcp'] as const) {
    it(`${mode}: legitimate ranks say hello, report in order, get control lines (queued before hello too)`, async () => {
      const got: RankReport[] = [];
      const server = await ChannelServer.open((m) => got.push(m), { world: 2, ...(mode === 'tcp' ? { tcp: { host: '127.0.0.1', port: 0 } } : {}) });
      try {
        assert.match(server.address, mode === 'tcp' ? /^tcp:127\.0\.0\.1:\d+$/ : /^unix:\//);
        assert.match(server.token, /^[0-9a-f]{64}$/);
        server.send(0, { k: 'control', action: 'stop' }); // before rank 0 exists
        const controls: CoordinatorToRank[] = [];
        const r0 = await ChannelClient.connect(server.address, server.token, { rank: 0, world: 2, engine: 'torch' }, (m) => controls.push(m));
        const r1 = await ChannelClient.connect(server.address, server.token, { rank: 1, world: 2, engine: 'torch', localRank: 1 }, () => {});
        r0.send({ k: 'progress', rank: 0, step: 1 });
        r0.send({ k: 'msg', rank: 0, m: step(1) as never });
        r1.send({ k: 'msg', rank: 1, m: { type: 'memory', rank: 1, t: 1, step: 1, categories: { params: 10, grads: 10 }, stepPeak: 20, capacity: 0, device: 'cpu:1' } });
        r1.send({ k: 'saved', rank: 1, step: 1, bytes: 123 });
        r0.send({ k: 'done', rank: 0, step: 1, reason: 'completed' });
        await until(() => got.length === 7 && controls.length === 1, 'seven reports and one control');
        const hellos = got.filter((m) => m.k === 'hello');
        assert.equal(hellos.length, 2);
        assert.ok(hellos.every((h) => !('token' in h)), 'the token is not handed on');
        assert.deepEqual(controls, [{ k: 'control', action: 'stop' }]);
        const r0lines = got.filter((m) => m.rank === 0).map((m) => m.k);
        assert.deepEqual(r0lines, ['hello', 'progress', 'msg', 'done']);
        server.send(1, { k: 'control', action: 'checkpoint' });
        await r0.close();
        await r1.close();
      } finally {
        await server.close(500);
      }
    });
  }

  it('hostile peers and malformed lines drop only their socket, logged once each; the run goes on', async () => {
    const got: RankReport[] = [];
    const rejected: string[] = [];
    const disconnected: number[] = [];
    const server = await ChannelServer.open((m) => got.push(m), { world: 2, onReject: (r) => rejected.push(r), onDisconnect: (r) => disconnected.push(r), helloTimeoutMs: 300 });
    try {
      const tok = server.token;
      const hello = (over: Record<string, unknown>) => JSON.stringify({ k: 'hello', rank: 1, pid: 1, token: tok, world: 2, engine: 'torch', node: 'n', localRank: 1, ...over }) + '\n';
      // Rank 0 is connected and stays so through everything below.
      const r0 = await ChannelClient.connect(server.address, tok, { rank: 0, world: 2, engine: 'local' }, () => {});
      await until(() => got.length === 1, 'rank 0 hello');

      const cases: [string, string | Buffer, RegExp][] = [
        ['wrong token', hello({ token: 'b'.repeat(64) }), /wrong token/],
        ['missing token', hello({ token: undefined }), /malformed hello/],
        ['not JSON', '{"k":"hello",\n', /not JSON/],
        ['not an object', '[1,2,3]\n', /not a JSON object/],
        ['progress before hello', JSON.stringify({ k: 'progress', rank: 1, step: 1 }) + '\n', /before its hello/],
        ['unknown k', JSON.stringify({ k: 'shell', rank: 1, cmd: 'rm -rf /' }) + '\n', /unknown kind/],
        ['rank out of range', hello({ rank: 2 }), /outside 0\.\.1/],
        ['negative rank', hello({ rank: -1 }), /valid rank/],
        ['other world', hello({ world: 3 }), /world of 3/],
        ['duplicate rank 0', hello({ rank: 0 }), /second hello for rank 0/],
        ['over-long line', Buffer.alloc(MAX_LINE_BYTES + 10, 0x61), /longer than/],
        ['hello, then a line for another rank', hello({}) + JSON.stringify({ k: 'progress', rank: 0, step: 9 }) + '\n', /for rank 0 on rank 1/],
        ['hello, then an invalid protocol message', hello({}) + JSON.stringify({ k: 'msg', rank: 1, m: { type: 'step', step: 'x' } }) + '\n', /malformed msg/],
        ['hello, then a message ranks may not send', hello({}) + JSON.stringify({ k: 'msg', rank: 1, m: { type: 'status', state: 'done', t: 1 } }) + '\n', /type status/],
        ['hello, then a second hello', hello({}) + hello({}), /second hello on rank 1/],
        ['silence', '', /no hello/],
      ];
      for (const [name, payload, reason] of cases) {
        const before = rejected.length;
        assert.equal(await rawPeer(server.address, payload), true, `${name}: the server closed the connection`);
        await until(() => rejected.length === before + 1, `${name}: logged`);
        assert.match(rejected.at(-1)!, reason, name);
      }
      // The legitimate rank 1 hello'd and was dropped in three cases; those are reports of real ranks. Nothing
      // else arrived: no progress for rank 0 at step 9, no status, no second rank 0.
      assert.deepEqual(got.filter((m) => m.k !== 'hello'), []);
      assert.equal(got.filter((m) => m.k === 'hello' && m.rank === 0).length, 1);
      // Rank 0 never noticed: its reports still arrive, and a real rank 1 can still join.
      r0.send({ k: 'progress', rank: 0, step: 3 });
      const r1 = await ChannelClient.connect(server.address, tok, { rank: 1, world: 2, engine: 'local' }, () => {});
      r1.send({ k: 'done', rank: 1, step: 3, reason: 'completed' });
      await until(() => got.some((m) => m.k === 'progress' && m.rank === 0 && m.step === 3) && got.some((m) => m.k === 'done' && m.rank === 1), 'rank 0 progress, rank 1 done');
      assert.deepEqual(server.connected().sort(), [0, 1]);
      await r1.close();
      await until(() => disconnected.includes(1), 'rank 1 disconnect reported');
      await r0.close();
    } finally {
      await server.close(500);
    }
  });

  it('a flood of bad peers is logged only up to a cap', async () => {
    const rejected: string[] = [];
    const server = await ChannelServer.open(() => {}, { world: 1, onReject: (r) => rejected.push(r) });
    try {
      await Promise.all(Array.from({ length: 30 }, () => rawPeer(server.address, 'junk\n')));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(rejected.length, 20);
      assert.match(rejected[19]!, /further refusals are not logged/);
    } finally {
      await server.close(100);
    }
  });

  it('without a fixed world (scalelm launch) the first hello sets it', async () => {
    const got: RankReport[] = [];
    const rejected: string[] = [];
    const server = await ChannelServer.open((m) => got.push(m), { onReject: (r) => rejected.push(r) });
    try {
      const a = await ChannelClient.connect(server.address, server.token, { rank: 2, world: 4, engine: 'monitor' }, () => {});
      await until(() => got.length === 1, 'hello');
      const line = JSON.stringify({ k: 'hello', rank: 0, pid: 1, token: server.token, world: 8, engine: 'monitor', node: 'n', localRank: 0 }) + '\n';
      assert.equal(await rawPeer(server.address, line), true);
      await until(() => rejected.length === 1, 'refusal');
      assert.match(rejected[0]!, /world of 8 \(this run has 4 ranks\)/);
      await a.close();
    } finally {
      await server.close(100);
    }
  });
});
