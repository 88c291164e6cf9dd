// The rank channel over real sockets (docs/rank-channel.md): legitimate ranks are heard, hostile peers and
// malformed lines cost only their own connection, and the run's ranks never notice.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { ChannelClient, ChannelServer, MAX_LINE_BYTES, NodeClient, NodeJoinError, parseChannelAddress, type CoordinatorToRank, type NodeReport, type RankReport } from '../../runtime/parallel/channel';

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
    s.resume(); // what the server says (a node's welcome) is read and dropped, so its close is seen
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
        assert.ok(
          hellos.every((h) => !('token' in h)),
          'the token is not handed on',
        );
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
      assert.deepEqual(
        got.filter((m) => m.k !== 'hello'),
        [],
      );
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

  it('node peers (multi-node): welcomed with the token, their GPU samples and end handed on; hostile ones dropped; stop reaches them', async () => {
    const nodes: NodeReport[] = [];
    const rejected: string[] = [];
    const gone: number[] = [];
    const server = await ChannelServer.open(() => {}, {
      tcp: { host: '127.0.0.1', port: 0 },
      nodes: 3,
      onNode: (m) => nodes.push(m),
      onNodeDisconnect: (n) => gone.push(n),
      onReject: (r) => rejected.push(r),
      helloTimeoutMs: 300,
    });
    try {
      const tok = server.token;
      const stops: number[] = [];
      const n1 = await NodeClient.join(
        server.address,
        tok,
        { node: 1, nnodes: 3 },
        () => stops.push(1),
        () => {},
      );
      const gpu = (node: number) => ({ type: 'gpu', t: 1, devices: [], node: { rank: node, host: 'h' } });
      n1.send({ k: 'gpu', node: 1, m: gpu(1) as never });
      const hello = (over: Record<string, unknown>) => JSON.stringify({ k: 'node', node: 2, nnodes: 3, host: 'h', pid: 1, token: tok, ...over }) + '\n';
      const cases: [string | Buffer, RegExp][] = [
        [hello({ token: 'f'.repeat(64) }), /a node hello with a wrong token \(node 2/],
        [hello({ node: 3 }), /a node hello for node 3, outside 1\.\.2/],
        [hello({ node: 0 }), /a node hello for node 0, outside 1\.\.2/],
        [hello({ nnodes: 4 }), /a node hello for 4 nodes \(this run has 3\)/],
        [hello({ node: 1 }), /a second hello for node 1/],
        [hello({}) + JSON.stringify({ k: 'gpu', node: 2, m: gpu(1) }) + '\n', /a malformed gpu line \(m\.node is not the line's node\)/],
        [hello({}) + JSON.stringify({ k: 'gpu', node: 1, m: gpu(1) }) + '\n', /a line for node 1 on node 2's connection/],
        [hello({}) + JSON.stringify({ k: 'progress', rank: 0, step: 1 }) + '\n', /a line that is not a node line/],
        [JSON.stringify({ k: 'gpu', node: 2, m: gpu(2) }) + '\n', /gpu before its node hello/],
      ];
      for (const [payload, why] of cases) {
        const before = rejected.length;
        assert.equal(await rawPeer(server.address, payload), true, `not dropped: ${String(payload).slice(0, 300).replace(/\n/g, ' ')}`);
        await until(() => rejected.length === before + 1, `the refusal of ${String(payload).slice(0, 60)}`);
        assert.match(rejected.at(-1)!, why);
      }
      // A NodeClient with a wrong token gets a clear refusal, not a hang.
      await assert.rejects(
        NodeClient.join(
          server.address,
          'e'.repeat(64),
          { node: 2, nnodes: 3 },
          () => {},
          () => {},
        ),
        (e: unknown) => e instanceof NodeJoinError && e.kind === 'refused' && /refused this node: the run token differs from node 0's/.test(e.message),
      );
      // Node 1 was never disturbed: its sample arrived, it gets stop, its end arrives.
      server.sendNode(1, { k: 'control', action: 'stop' });
      await until(() => stops.length === 1, 'stop at node 1');
      n1.send({ k: 'exit', node: 1, code: 1, signal: null, tail: 'boom' });
      await n1.close();
      await until(() => gone.includes(1), 'node 1 gone');
      const kinds = nodes.map((m) => m.k);
      assert.deepEqual(
        kinds.filter((k) => k !== 'node'),
        ['gpu', 'exit'],
      );
      assert.ok(nodes.filter((m) => m.k === 'node').every((m) => !('token' in m)));
      assert.deepEqual(
        nodes.find((m) => m.k === 'exit'),
        { k: 'exit', node: 1, code: 1, signal: null, tail: 'boom' },
      );
      // A run that is not multi-node has no node peers.
      const single = await ChannelServer.open(() => {}, { tcp: { host: '127.0.0.1', port: 0 }, onReject: (r) => rejected.push(r) });
      try {
        await assert.rejects(
          NodeClient.join(
            single.address,
            single.token,
            { node: 1, nnodes: 2 },
            () => {},
            () => {},
          ),
          NodeJoinError,
        );
        await until(() => /this run is not multi-node/.test(rejected.at(-1)!), 'the single-node refusal');
      } finally {
        await single.close(100);
      }
    } finally {
      await server.close(200);
    }
  });
});
