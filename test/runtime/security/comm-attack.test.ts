// Issue 12, item 2: the rank layer trusts only processes that hold the run's secret. A hostile local process
// talks to rank 0's rendezvous store and to its mesh listener (TCP transport) while the world starts: a
// non-JSON line, forged and duplicate rank claims, an ABORT frame, data and HELLO frames, silent and closed
// connections. Every one is dropped without effect: the world finishes with the exact sums.
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../../../runtime/comm/launch';
import { F, FRAME, HEADER_BYTES } from '../../../runtime/comm/socket-proto';
import { reviveError, type SerializedError } from '../../../runtime/comm/types';
import { until } from '../telemetry/util';

const RANK_MAIN = join(__dirname, '../../../runtime/comm/process-rank.js');
const ENTRY = join(__dirname, 'comm-entry.js');
const ROUNDS = 20;

interface Rank {
  child: ChildProcess;
  outcome: Promise<{ ok: boolean; result?: number[]; error?: Error }>;
}

function startRank(rank: number, size: number, port: number, secret: string): Rank {
  const child = fork(RANK_MAIN, [ENTRY], {
    env: {
      ...process.env,
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      WORLD_SIZE: String(size),
      RANK: String(rank),
      SCALELM_COMM_SOCKET: 'tcp',
      SCALELM_COMM_SECRET: secret,
      SCALELM_COMM_RENDEZVOUS_TIMEOUT_MS: '60000',
    },
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const outcome = new Promise<{ ok: boolean; result?: number[]; error?: Error }>((resolve) => {
    let got: { ok: boolean; result?: number[]; error?: Error } = { ok: false, error: new Error('exited without a report') };
    child.on('message', (m: { ok: boolean; result?: number[]; error?: SerializedError }) => (got = m.ok ? { ok: true, result: m.result! } : { ok: false, error: reviveError(m.error!) }));
    child.on('exit', () => resolve(got));
  });
  child.send({ args: { rounds: ROUNDS, sleepMs: 20 } });
  return { child, outcome };
}

/** Connects, writes `bytes`, and resolves with what came back once the other side closes (or after 2 s). */
function poke(port: number, bytes: Buffer | string, o: { readFirst?: boolean } = {}): Promise<{ got: string; closedByPeer: boolean }> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, '127.0.0.1');
    let got = '';
    let closedByPeer = false;
    const timer = setTimeout(() => s.destroy(), 2000);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (o.readFirst && got.includes('\n')) s.write(bytes);
    });
    s.on('end', () => (closedByPeer = true));
    s.on('error', () => (closedByPeer = true));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ got, closedByPeer });
    });
    s.once('connect', () => o.readFirst || s.write(bytes));
  });
}

function frame(kind: number, from: number, payload = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeInt32LE(kind, 4 * F.kind);
  h.writeInt32LE(payload.length, 4 * F.bytes);
  h.writeInt32LE(from, 4 * F.from);
  return Buffer.concat([h, payload]);
}

/** TCP ports `pid` listens on (Linux /proc): the store's and the rank's mesh listener. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  const ports: number[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
  }
  return ports;
}

describe('security: hostile peers of the rank layer (TCP transport)', function () {
  this.timeout(120_000);

  it('a hostile local process cannot fail, join or alter a 2-rank world', async function () {
    if (process.platform !== 'linux') this.skip();
    const port = await freePort();
    const secret = randomBytes(32).toString('hex');
    const rank0 = startRank(0, 2, port, secret);
    try {
      let mesh = 0;
      await until(() => {
        mesh = listeningPorts(rank0.child.pid!).find((p) => p !== port) ?? 0;
        return mesh !== 0 && listeningPorts(rank0.child.pid!).includes(port);
      }, 'rank 0 to host the store and listen for peers');

      // The store: each connection is dropped, nothing it said is kept.
      const wrongMac = createHmac('sha256', randomBytes(32)).update('x').digest('hex');
      const storeCases: Array<[string, Buffer | string, boolean?]> = [
        ['a non-JSON line', 'hello there\n'],
        ['a JSON array', '[1,2,3]\n'],
        ['a claim of rank 1 without a mac', JSON.stringify({ rank: 1, address: 'tcp:127.0.0.1:1' }) + '\n', true],
        ['a claim of rank 1 with a wrong mac', JSON.stringify({ rank: 1, address: 'tcp:127.0.0.1:1', nonce: 'a'.repeat(64), mac: wrongMac }) + '\n', true],
        ['a duplicate claim of rank 0', JSON.stringify({ rank: 0, address: 'tcp:127.0.0.1:1', nonce: 'a'.repeat(64), mac: wrongMac }) + '\n', true],
        ['a prototype-named rank', JSON.stringify({ rank: '__proto__', address: 'x', nonce: 'a'.repeat(64), mac: wrongMac }) + '\n', true],
        ['an endless line', 'x'.repeat(20_000)],
      ];
      for (const [name, bytes, readFirst] of storeCases) {
        const r = await poke(port, bytes, { readFirst: readFirst ?? false });
        assert.ok(r.closedByPeer, `${name}: the store dropped the connection`);
        assert.doesNotMatch(r.got, /addresses/, `${name}: no table handed out`);
      }

      // Rank 0's mesh listener: an ABORT, a data frame, forged HELLOs, a connect-and-close, a silent socket.
      const meshCases: Array<[string, Buffer]> = [
        ['an ABORT frame from "rank 1"', frame(FRAME.abort, 1, Buffer.from('hostile abort'))],
        ['a data frame', frame(FRAME.data, 1, Buffer.alloc(16))],
        ['a HELLO without a mac', frame(FRAME.hello, 1)],
        ['a HELLO with a wrong mac', frame(FRAME.hello, 1, Buffer.from(wrongMac, 'latin1'))],
        ['a BYE', frame(FRAME.bye, 1)],
        ['a huge frame header', frame(FRAME.probeReply, 1).subarray(0, HEADER_BYTES)],
        ['garbage', randomBytes(200)],
        ['nothing (connect and close)', Buffer.alloc(0)],
      ];
      for (const [name, bytes] of meshCases) {
        const r = await poke(mesh, bytes);
        assert.ok(r.closedByPeer || bytes.length === 0, `${name}: rank 0 dropped the connection`);
      }
      const silent = connect(mesh, '127.0.0.1');
      silent.on('error', () => undefined);

      // The real rank 1 joins; the world runs to the end with the exact sums.
      const rank1 = startRank(1, 2, port, secret);
      const [a, b] = await Promise.all([rank0.outcome, rank1.outcome]);
      silent.destroy();
      assert.ok(a.ok, a.error?.message);
      assert.ok(b.ok, b.error?.message);
      const want = Array.from({ length: ROUNDS }, (_, i) => [1 + i + 2 + i, 1 + i + 2 + i]).flat();
      assert.deepEqual(a.result, want);
      assert.deepEqual(b.result, want);
    } finally {
      rank0.child.kill('SIGKILL');
    }
  });

  it('a rank without the secret is refused with a clear error before it connects', async () => {
    const port = await freePort();
    const child = fork(RANK_MAIN, [ENTRY], {
      env: { ...process.env, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), WORLD_SIZE: '2', RANK: '1', SCALELM_COMM_SECRET: '' },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const report = await new Promise<{ ok: boolean; error?: SerializedError }>((resolve) => {
      child.on('message', resolve);
      child.send({ args: { rounds: 1, sleepMs: 0 } });
    });
    assert.equal(report.ok, false);
    assert.match(report.error!.message, /SCALELM_COMM_SECRET is not set: the ranks of a socket world prove they belong/);
  });
});
