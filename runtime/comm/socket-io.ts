// The I/O thread of a socket-world process: it owns every socket of the rank, so the compute thread (and
// the comm thread) can block in Atomics.wait inside synchronous code while bytes keep moving.
//
// Why a thread: Node has no blocking socket API, and a collective must be callable from a synchronous
// backward function. Clients (compute thread, comm thread) post send/recv commands on a MessagePort with
// buffers given as offsets into the process's shared memory; this thread writes them to the socket straight
// from that memory, streams received payloads straight into it, then flips the request's cell and notifies.
//
// Wire: a full mesh of Unix domain (default) or TCP sockets, set up through a torchrun-style rendezvous:
// rank 0 hosts a tiny store on MASTER_ADDR:MASTER_PORT; every rank listens on its own address, registers it
// in the store, gets the table back, and connects to every lower rank. Frames are a 48-byte header
// (socket-proto.ts) and a payload. Receives are matched per (peer, channel) in FIFO order; a frame that
// arrives before its receive is posted is buffered. The header carries the sender's call descriptor, and a
// receive checks it against its own: mismatched calls fail on the spot instead of corrupting data.
// Failure: an ABORT frame or a connection that closes without a BYE aborts this rank's world (the abort
// record in shared memory), which wakes and fails every pending call.
//
// Membership: every rank holds the run's 256-bit secret (SCALELM_COMM_SECRET). Nothing is trusted before a
// peer proves it holds it, by HMAC-SHA256 over a fresh challenge (the secret never crosses the wire):
//   store:  -> {"challenge"}   <- {"rank","address","nonce","mac"}   -> {"addresses","mac" over the nonce}
//   mesh:   the listening rank sends a CHALLENGE frame; the connecting rank answers HELLO with its mac.
// Anything else from a connection that has not proved itself (a non-JSON line, a wrong mac, an ABORT or
// data frame, a silence) drops that connection and has no other effect; a rank claimed twice by peers that
// both proved themselves is a launch error and fails the rendezvous.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { readAbort, writeAbortRecord } from './shm-world';
import { CMD, F, FRAME, GROUP_INTS, GROUPS_AT, HEADER_BYTES, MAX_CLIENTS, SLOT_DONE, SLOT_FAILED, SLOTS_AT, SLOTS_PER_CLIENT, type Reply, type TransferCommand } from './socket-proto';

export interface IoData {
  memory: WebAssembly.Memory;
  rank: number;
  size: number;
  masterAddr: string;
  masterPort: number;
  socket: 'unix' | 'tcp';
  rendezvousTimeoutMs: number;
  client: MessagePort;
  /** The run's membership secret: 64 hex digits, the same on every rank (empty for a world of one). */
  secret: string;
}

const data = workerData as IoData;
const { rank, size } = data;
const u8 = new Uint8Array(data.memory.buffer);
const i32 = new Int32Array(data.memory.buffer);

interface Recv {
  slot: number;
  client: MessagePort;
  peer: number;
  offset: number;
  bytes: number;
  fields: Int32Array; // expected header
}
interface Early {
  header: Int32Array;
  chunks: Buffer[];
  filled: number;
  complete: boolean;
}
type Target = { kind: 'recv'; recv: Recv; written: number } | { kind: 'early'; early: Early } | { kind: 'discard' } | { kind: 'small'; parts: Buffer[] };

/** HMAC-SHA256 under the run's secret of the parts, joined with "|" (hex). */
function mac(...parts: (string | number)[]): string {
  return createHmac('sha256', Buffer.from(data.secret, 'hex')).update(parts.join('|')).digest('hex');
}

/** Constant-time comparison of two hex macs (false for anything that is not one). */
function macEqual(given: unknown, expected: string): boolean {
  if (typeof given !== 'string' || given.length !== expected.length || !/^[0-9a-f]+$/.test(given)) return false;
  return timingSafeEqual(Buffer.from(given, 'hex'), Buffer.from(expected, 'hex'));
}

/** Frames other than data carry small payloads (an abort reason, a probe answer, a hello). */
const MAX_SMALL_FRAME = 64 * 1024;
/** How long a connection may take to prove itself before it is dropped. */
const PROVE_WITHIN_MS = 10_000;

class Peer {
  left = false; // said BYE: will send nothing more
  /** Proved it holds the run's secret (always true for a peer we connected to from the table). */
  trusted: boolean;
  /** The challenge we sent (the listening side), answered by the peer's HELLO. */
  challenge = '';
  proveTimer: ReturnType<typeof setTimeout> | undefined;
  /** The connecting side: called once the listening rank's challenge has been answered. */
  onChallenge: (() => void) | undefined;
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private payloadLeft = 0;
  private frame = new Int32Array(12);
  private target: Target = { kind: 'discard' };
  readonly queues = new Map<number, { posted: Recv[]; early: Early[] }>();

  constructor(
    readonly socket: Socket,
    public rank: number,
  ) {
    this.trusted = rank >= 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  /** Drops a connection that has not proved itself: no abort, no effect on the world. */
  reject(): void {
    this.socket.destroy();
  }

  queue(channel: number) {
    let q = this.queues.get(channel);
    if (!q) this.queues.set(channel, (q = { posted: [], early: [] }));
    return q;
  }

  /** A receive just posted for an early frame this peer is still streaming: stream the rest into memory. */
  adopt(early: Early, recv: Recv): boolean {
    if (this.target.kind !== 'early' || this.target.early !== early) return false;
    this.target = { kind: 'recv', recv, written: early.filled };
    return true;
  }

  private onData(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.payloadLeft === 0) {
        const take = Math.min(HEADER_BYTES - this.headerFill, chunk.length - pos);
        chunk.copy(this.header, this.headerFill, pos, pos + take);
        this.headerFill += take;
        pos += take;
        if (this.headerFill < HEADER_BYTES) return;
        this.headerFill = 0;
        this.frame = new Int32Array(12);
        for (let k = 0; k < 12; k++) this.frame[k] = this.header.readInt32LE(4 * k);
        this.payloadLeft = this.frame[F.bytes]!;
        const kind = this.frame[F.kind];
        // Before a peer has proved itself only its HELLO (a mac) is read; anything else drops it.
        if (!this.trusted && (kind !== FRAME.hello || this.payloadLeft !== 64)) return this.reject();
        if (this.payloadLeft < 0 || (kind !== FRAME.data && this.payloadLeft > MAX_SMALL_FRAME)) {
          if (this.trusted) abortWorld(`rank ${this.rank} sent a malformed frame (kind ${kind}, ${this.payloadLeft} bytes)`);
          return this.reject();
        }
        this.startFrame();
        if (this.payloadLeft === 0) this.finishFrame();
      } else {
        const take = Math.min(this.payloadLeft, chunk.length - pos);
        this.deliver(chunk.subarray(pos, pos + take));
        pos += take;
        this.payloadLeft -= take;
        if (this.payloadLeft === 0) this.finishFrame();
      }
    }
  }

  private startFrame(): void {
    const f = this.frame;
    if (f[F.kind] === FRAME.data) {
      checkGroup(this.rank, f[F.channel]! >> 1, f[F.hash]!);
      const q = this.queue(f[F.channel]!);
      const recv = q.early.length === 0 ? q.posted.shift() : undefined;
      if (recv) {
        const problem = compare(recv, f);
        if (problem) {
          fail(recv, problem);
          this.target = { kind: 'discard' };
        } else {
          this.target = { kind: 'recv', recv, written: 0 };
        }
      } else {
        const early: Early = { header: f, chunks: [], filled: 0, complete: false };
        q.early.push(early);
        this.target = { kind: 'early', early };
      }
    } else {
      this.target = { kind: 'small', parts: [] };
    }
  }

  private deliver(bytes: Buffer): void {
    const t = this.target;
    if (t.kind === 'recv') {
      u8.set(bytes, t.recv.offset + t.written);
      t.written += bytes.length;
    } else if (t.kind === 'early') {
      t.early.chunks.push(bytes);
      t.early.filled += bytes.length;
    } else if (t.kind === 'small') {
      t.parts.push(bytes);
    }
  }

  private finishFrame(): void {
    const f = this.frame;
    const t = this.target;
    this.target = { kind: 'discard' };
    switch (f[F.kind]) {
      case FRAME.data:
        if (t.kind === 'recv') done(t.recv);
        else if (t.kind === 'early') t.early.complete = true;
        return;
      case FRAME.hello:
        onHello(this, f[F.from]!, t.kind === 'small' ? Buffer.concat(t.parts).toString('latin1') : '');
        return;
      case FRAME.challenge:
        // The listening rank asks us (the connecting side) to prove membership.
        if (t.kind !== 'small' || !this.onChallenge) return;
        sendFrame(this, FRAME.hello, 0, 0, Buffer.from(mac('hello', Buffer.concat(t.parts).toString('hex'), rank, this.rank), 'latin1'));
        this.onChallenge();
        this.onChallenge = undefined;
        return;
      case FRAME.abort: {
        const text = t.kind === 'small' ? Buffer.concat(t.parts).toString('utf8') : '';
        // Blame the proven sender, not what its header claims.
        abortLocal(this.rank, text);
        return;
      }
      case FRAME.bye:
        this.left = true;
        for (const q of this.queues.values()) {
          for (const r of q.posted.splice(0)) fail(r, { kind: 'left', message: `rank ${this.rank} closed its communicator and will send nothing more` });
        }
        return;
      case FRAME.probe:
        sendFrame(this, FRAME.probeReply, f[F.channel]!, f[F.tag]!, Buffer.from(new Uint8Array(data.memory.buffer, GROUPS_AT + f[F.channel]! * GROUP_INTS * 4, GROUP_INTS * 4).slice()));
        return;
      case FRAME.probeReply:
        onProbeReply(this.rank, f[F.tag]!, t.kind === 'small' ? Buffer.concat(t.parts) : Buffer.alloc(0));
        return;
    }
  }
}

// ---- requests ----------------------------------------------------------------------------------------------

function fields(cmd: TransferCommand): Int32Array {
  const h = new Int32Array(12);
  h[F.kind] = FRAME.data;
  h[F.channel] = cmd[5];
  h[F.seq] = cmd[6];
  h[F.op] = cmd[7];
  h[F.count] = cmd[8];
  h[F.reduce] = cmd[9];
  h[F.root] = cmd[10];
  h[F.step] = cmd[11];
  h[F.tag] = cmd[12];
  h[F.hash] = cmd[13];
  h[F.bytes] = cmd[4];
  h[F.from] = rank;
  return h;
}

/** Why a frame cannot satisfy a receive (its header, for the client to describe); undefined if it can. */
function compare(recv: Recv, got: Int32Array): { kind: 'mismatch'; message: string; theirs: number[] } | undefined {
  const want = recv.fields;
  for (const k of [F.op, F.count, F.reduce, F.root, F.tag, F.hash, F.seq, F.step, F.bytes]) {
    if (want[k] !== got[k]) return { kind: 'mismatch', message: `header field ${k} differs`, theirs: Array.from(got) };
  }
  return undefined;
}

/** Member hashes of this rank's groups, by id (from the clients, as groups are created). */
const groupHashes = new Map<number, number>();

/** A frame for group `id` whose sender has other members in its group `id`: groups were created in different orders. */
function checkGroup(from: number, id: number, hash: number): void {
  const local = groupHashes.get(id);
  if (local !== undefined && local !== hash) {
    abortWorld(`rank ${from} sent data for process group #${id}, which has different members there than on rank ${rank}: every rank must create groups in the same order`);
  }
}

function onGroup(id: number, hash: number): void {
  groupHashes.set(id, hash);
  // Frames that arrived before this rank created the group.
  for (const p of peers) {
    if (!p) continue;
    for (const channel of [2 * id, 2 * id + 1]) for (const e of p.queue(channel).early) checkGroup(p.rank, id, e.header[F.hash]!);
  }
}

function done(recv: { slot: number }): void {
  Atomics.store(i32, recv.slot, SLOT_DONE);
  Atomics.notify(i32, recv.slot);
}

function fail(req: { slot: number; client: MessagePort }, error: { kind: 'mismatch' | 'aborted' | 'left'; message: string; theirs?: number[] }): void {
  const reply: Reply = { slot: req.slot, error };
  req.client.postMessage(reply);
  Atomics.store(i32, req.slot, SLOT_FAILED);
  Atomics.notify(i32, req.slot);
}

function postRecv(client: MessagePort, cmd: TransferCommand): void {
  const peer = peers[cmd[2]];
  const recv: Recv = { slot: cmd[1], client, peer: cmd[2], offset: cmd[3], bytes: cmd[4], fields: fields(cmd) };
  if (!peer) return fail(recv, { kind: 'aborted', message: `no connection to rank ${cmd[2]}` });
  const q = peer.queue(cmd[5]);
  const early = q.early.length && q.posted.length === 0 ? q.early.shift() : undefined;
  if (!early) {
    if (peer.left) return fail(recv, { kind: 'left', message: `rank ${peer.rank} closed its communicator and will send nothing more` });
    q.posted.push(recv);
    return;
  }
  const problem = compare(recv, early.header);
  if (problem) return fail(recv, problem);
  let at = recv.offset;
  for (const c of early.chunks) {
    u8.set(c, at);
    at += c.length;
  }
  if (early.complete) done(recv);
  else if (!peer.adopt(early, recv)) fail(recv, { kind: 'aborted', message: 'internal: lost track of a partly received frame' });
}

function postSend(client: MessagePort, cmd: TransferCommand): void {
  const req = { slot: cmd[1], client };
  const peer = peers[cmd[2]];
  if (!peer || peer.socket.destroyed) return fail(req, { kind: 'aborted', message: `no connection to rank ${cmd[2]}` });
  const header = headerBuffer(fields(cmd));
  const bytes = cmd[4];
  const onWritten = (err?: Error | null) => (err ? fail(req, { kind: 'aborted', message: `sending to rank ${cmd[2]} failed: ${err.message}` }) : done(req));
  peer.socket.cork();
  if (bytes === 0) {
    peer.socket.write(header, onWritten);
  } else {
    peer.socket.write(header);
    // Straight from shared memory: the client keeps the region unchanged until this request completes.
    peer.socket.write(Buffer.from(data.memory.buffer, cmd[3], bytes), onWritten);
  }
  peer.socket.uncork();
}

function headerBuffer(h: Int32Array): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  for (let k = 0; k < 12; k++) b.writeInt32LE(h[k]!, 4 * k);
  return b;
}

function sendFrame(peer: Peer, kind: number, channel: number, tag = 0, payload: Buffer = Buffer.alloc(0)): void {
  const h = new Int32Array(12);
  h[F.kind] = kind;
  h[F.channel] = channel;
  h[F.tag] = tag;
  h[F.bytes] = payload.length;
  h[F.from] = rank;
  if (peer.socket.destroyed) return;
  peer.socket.cork();
  peer.socket.write(headerBuffer(h));
  if (payload.length) peer.socket.write(payload);
  peer.socket.uncork();
}

// ---- abort, probe, goodbye ------------------------------------------------------------------------------------

let closing = false;

function wakeAllSlots(): void {
  for (let s = 0; s < MAX_CLIENTS * SLOTS_PER_CLIENT; s++) Atomics.notify(i32, SLOTS_AT / 4 + s);
}

/** Records the abort (first one wins) and wakes every waiting client. */
function abortLocal(origin: number, message: string): void {
  if (writeAbortRecord(data.memory, origin, message)) wakeAllSlots();
}

function abortWorld(message: string): void {
  const first = writeAbortRecord(data.memory, rank, message);
  const record = readAbort(data.memory)!;
  if (first) {
    for (const p of peers) if (p && p.rank !== rank) sendFrame(p, FRAME.abort, 0, 0, Buffer.from(record.message, 'utf8'));
    wakeAllSlots();
  }
}

interface Probe {
  answers: Map<number, number[]>;
  expected: number;
  finish: () => void;
}
const probes = new Map<number, Probe>();
let nextProbe = 1;

/** Asks every live peer what it is doing on `group` (their progress cells); replies after 1.5 s at most. */
function startProbe(client: MessagePort, slot: number, group: number): void {
  const id = nextProbe++;
  const live = peers.filter((p): p is Peer => !!p && p.rank !== rank && !p.left && !p.socket.destroyed);
  const answers = new Map<number, number[]>();
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    probes.delete(id);
    const reply: Reply = {
      slot,
      probe: Array.from({ length: size }, (_, r) => r)
        .filter((r) => r !== rank)
        .map((r) => ({ rank: r, answered: answers.has(r), progress: answers.get(r) })),
    };
    client.postMessage(reply);
    Atomics.store(i32, slot, SLOT_DONE);
    Atomics.notify(i32, slot);
  };
  const timer = setTimeout(finish, 1500);
  probes.set(id, { answers, expected: live.length, finish });
  for (const p of live) sendFrame(p, FRAME.probe, group, id);
  if (live.length === 0) finish();
}

function onProbeReply(from: number, id: number, payload: Buffer): void {
  const probe = probes.get(id);
  if (!probe) return;
  const progress: number[] = [];
  for (let k = 0; k + 4 <= payload.length; k += 4) progress.push(payload.readInt32LE(k));
  probe.answers.set(from, progress);
  if (probe.answers.size >= probe.expected) probe.finish();
}

/**
 * BYE, then a half-close: sockets close once each peer has closed too. Peers that are still working get
 * two seconds, after which the sockets are dropped (they have our BYE, so they do not take it for a crash).
 */
function goodbye(): void {
  closing = true;
  for (const p of peers) {
    if (!p || p.rank === rank) continue;
    sendFrame(p, FRAME.bye, 0);
    p.socket.end();
  }
  setTimeout(() => {
    for (const p of peers) p?.socket.destroy();
  }, 2000).unref();
  listener?.close();
  if (unixPath && existsSync(unixPath)) unlinkSync(unixPath);
  for (const c of clients) c.close();
  parentPort!.close();
}

// ---- clients ---------------------------------------------------------------------------------------------------

const clients: MessagePort[] = [];
function addClient(port: MessagePort): void {
  clients.push(port);
  port.on('message', (m: TransferCommand | [number, ...unknown[]]) => {
    switch (m[0]) {
      case CMD.send:
        return postSend(port, m as TransferCommand);
      case CMD.recv:
        return postRecv(port, m as TransferCommand);
      case CMD.abort:
        return abortWorld(m[1] as string);
      case CMD.probe:
        return startProbe(port, m[1] as number, m[2] as number);
      case CMD.bye:
        return goodbye();
      case CMD.client:
        return addClient(m[1] as MessagePort);
      case CMD.group:
        return onGroup(m[1] as number, m[2] as number);
    }
  });
}

// ---- connection setup (rendezvous + mesh) -----------------------------------------------------------------------

const peers: (Peer | undefined)[] = new Array(size).fill(undefined);
let listener: Server | undefined;
let unixPath: string | undefined;
let connected = 0;
let ready = false;
let deadline = Date.now() + data.rendezvousTimeoutMs;

function setupFailed(message: string): void {
  if (ready) return;
  ready = true; // report once
  parentPort!.postMessage({ error: message });
  listener?.close();
  for (const p of peers) p?.socket.destroy();
  setTimeout(() => process.exit(0), 10);
}

function watch(peer: Peer): void {
  peer.socket.on('error', () => {});
  peer.socket.on('close', () => {
    if (closing || peer.left || !peer.trusted || peers[peer.rank] !== peer) return;
    if (!ready) return setupFailed(`lost the connection to rank ${peer.rank} while connecting the ranks`);
    abortLocal(rank, `lost the connection to rank ${peer.rank} (it exited or was killed)`);
  });
}

function onHello(peer: Peer, from: number, proof: string): void {
  if (peer.trusted) return; // said twice: ignore
  // Only higher ranks connect to us, and each proves it holds the secret for exactly this pair.
  if (!Number.isInteger(from) || from <= rank || from >= size || !macEqual(proof, mac('hello', peer.challenge, from, rank))) return peer.reject();
  if (peers[from]) return setupFailed(`two processes claim RANK=${from} (both hold the run's secret): check the launcher`);
  clearTimeout(peer.proveTimer);
  peer.trusted = true;
  peer.rank = from;
  peers[from] = peer;
  connected++;
  maybeReady();
}

function maybeReady(): void {
  if (ready || connected < size - 1) return;
  ready = true;
  // Every peer is connected: nobody else has a reason to connect, so stop listening.
  listener?.close();
  parentPort!.postMessage({ ready: true });
}

function retrying(connect: () => Socket, what: string, onSocket: (s: Socket) => void): void {
  const attempt = () => {
    const s = connect();
    const onError = (err: NodeJS.ErrnoException) => {
      s.destroy();
      if (Date.now() > deadline) return setupFailed(`could not reach ${what} within ${data.rendezvousTimeoutMs} ms (${err.code ?? err.message})`);
      setTimeout(attempt, 50);
    };
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      onSocket(s);
    });
  };
  attempt();
}

function listen(): Promise<string> {
  return new Promise((resolve, reject) => {
    listener = createServer((socket) => {
      const peer = new Peer(socket, -1);
      watch(peer);
      const challenge = randomBytes(32);
      peer.challenge = challenge.toString('hex');
      peer.proveTimer = setTimeout(() => peer.trusted || peer.reject(), PROVE_WITHIN_MS);
      peer.proveTimer.unref();
      sendFrame(peer, FRAME.challenge, 0, 0, challenge);
    });
    listener.on('error', reject);
    if (data.socket === 'unix') {
      unixPath = join(tmpdir(), `scalelm-${data.masterPort}-${process.pid}-${rank}.sock`);
      if (existsSync(unixPath)) unlinkSync(unixPath);
      listener.listen(unixPath, () => resolve(`unix:${unixPath}`));
    } else {
      listener.listen(0, '127.0.0.1', () => resolve(`tcp:127.0.0.1:${(listener!.address() as { port: number }).port}`));
    }
  });
}

function connectTo(address: string): Socket {
  return address.startsWith('unix:') ? createConnection(address.slice(5)) : createConnection(Number(address.split(':')[2]), address.split(':')[1]);
}

/** Reads newline-terminated lines of at most `max` bytes; a longer one calls `tooLong` (and stops reading). */
function lines(socket: Socket, max: number, onLine: (line: string) => void, tooLong: () => void): void {
  let buf = '';
  socket.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
    if (buf.length > max) {
      buf = '';
      tooLong();
    }
  });
}

/** JSON.parse that answers undefined for anything but a plain object. */
function parseObject(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const MAX_STORE_LINE = 4096;

/** Rank 0's store: collects every rank's address (from peers that prove membership), then hands out the table. */
function hostStore(): Promise<void> {
  return new Promise((resolve) => {
    const addresses: (string | undefined)[] = new Array(size).fill(undefined);
    /** The proven registrations, with the nonce each answer is bound to. */
    const members: { socket: Socket; nonce: string }[] = [];
    const sockets = new Set<Socket>();
    const server = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      const challenge = randomBytes(32).toString('hex');
      const drop = (): void => void s.destroy();
      const timer = setTimeout(drop, PROVE_WITHIN_MS);
      timer.unref();
      let registered = false;
      s.write(JSON.stringify({ challenge }) + '\n');
      lines(
        s,
        MAX_STORE_LINE,
        (line) => {
          if (registered) return drop();
          const m = parseObject(line);
          const r = m?.rank;
          if (
            !m ||
            typeof r !== 'number' ||
            !Number.isInteger(r) ||
            r < 0 ||
            r >= size ||
            typeof m.address !== 'string' ||
            m.address.length > 1024 ||
            typeof m.nonce !== 'string' ||
            !/^[0-9a-f]{64}$/.test(m.nonce) ||
            !macEqual(m.mac, mac('register', challenge, r, m.address))
          )
            return drop();
          registered = true;
          clearTimeout(timer);
          // Two proven processes with one RANK: the launcher is wrong. The first keeps its place.
          if (addresses[r] !== undefined) return void s.end(JSON.stringify({ error: `two processes claim RANK=${r}` }) + '\n');
          addresses[r] = m.address;
          members.push({ socket: s, nonce: m.nonce });
          if (addresses.every((a) => a !== undefined)) {
            clearTimeout(deadlineTimer);
            const table = JSON.stringify(addresses);
            for (const { socket, nonce } of members) socket.end(JSON.stringify({ addresses, mac: mac('table', nonce, table) }) + '\n');
            for (const other of sockets) if (!members.some((x) => x.socket === other)) other.destroy();
            server.close();
          }
        },
        drop,
      );
    });
    const deadlineTimer = setTimeout(
      () => {
        const missing = addresses.map((a, r) => (a === undefined ? r : -1)).filter((r) => r >= 0);
        const message =
          `rendezvous: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not join within ${data.rendezvousTimeoutMs} ms ` +
          `(WORLD_SIZE=${size}, MASTER_ADDR=${data.masterAddr}, MASTER_PORT=${data.masterPort})`;
        for (const { socket } of members) socket.end(JSON.stringify({ error: message }) + '\n');
        for (const other of sockets) if (!members.some((x) => x.socket === other)) other.destroy();
        server.close();
        setupFailed(message);
      },
      Math.max(0, deadline - Date.now()),
    );
    server.on('error', (e: NodeJS.ErrnoException) => setupFailed(`rendezvous: rank 0 cannot host the store on ${data.masterAddr}:${data.masterPort}: ${e.code ?? e.message}`));
    server.listen(data.masterPort, data.masterAddr, () => resolve());
  });
}

async function setup(): Promise<void> {
  const address = await listen();
  if (rank === 0) await hostStore();
  retrying(
    () => createConnection(data.masterPort, data.masterAddr),
    `the rendezvous store at ${data.masterAddr}:${data.masterPort} (hosted by rank 0)`,
    (s) => {
      const nonce = randomBytes(32).toString('hex');
      let answer: Record<string, unknown> | undefined;
      let got = 0;
      const notOurs = 'rendezvous: the store did not prove it belongs to this run (another process on MASTER_PORT?)';
      s.on('error', () => {});
      lines(
        s,
        MAX_STORE_LINE,
        (line) => {
          const m = parseObject(line);
          if (got++ === 0) {
            const challenge = m?.challenge;
            if (typeof challenge !== 'string' || !/^[0-9a-f]{64}$/.test(challenge)) return setupFailed(notOurs);
            s.write(JSON.stringify({ rank, address, nonce, mac: mac('register', challenge, rank, address) }) + '\n');
          } else answer ??= m ?? {};
        },
        () => setupFailed(notOurs),
      );
      s.on('close', () => {
        if (!answer) return setupFailed('rendezvous: the store closed without an answer (rank 0 failed?)');
        if (typeof answer.error === 'string') return setupFailed(answer.error.slice(0, 500));
        const table = answer.addresses;
        if (!Array.isArray(table) || table.length !== size || !table.every((a) => typeof a === 'string') || !macEqual(answer.mac, mac('table', nonce, JSON.stringify(table))))
          return setupFailed(notOurs);
        // Everyone has registered: now connect the mesh, with a fresh deadline.
        deadline = Date.now() + data.rendezvousTimeoutMs;
        setTimeout(() => {
          if (!ready) {
            const missing = peers.map((p, r) => (!p && r !== rank ? r : -1)).filter((r) => r >= 0);
            setupFailed(`connecting the ranks: no connection from rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} within ${data.rendezvousTimeoutMs} ms`);
          }
        }, data.rendezvousTimeoutMs + 100).unref();
        for (let peer = 0; peer < rank; peer++) {
          retrying(
            () => connectTo(table[peer]!),
            `rank ${peer} at ${table[peer]}`,
            (socket) => {
              const p = new Peer(socket, peer);
              peers[peer] = p;
              watch(p);
              // Connected once we have answered its challenge: nothing of ours may reach it before our HELLO.
              p.onChallenge = () => {
                connected++;
                maybeReady();
              };
            },
          );
        }
        maybeReady();
      });
    },
  );
  // While registered and waiting, the store (rank 0) owns the deadline and names the missing ranks; if rank 0
  // dies instead, the store connection closes and that is reported.
}

// A bug here must not leave the compute thread waiting forever: fail the world with the reason.
process.on('uncaughtException', (e) => {
  if (ready) abortWorld(`the I/O thread of rank ${rank} crashed: ${e.stack ?? e.message}`);
  else setupFailed(`the I/O thread crashed: ${e.stack ?? e.message}`);
});

addClient(data.client);
if (size === 1) {
  ready = true;
  parentPort!.postMessage({ ready: true });
} else {
  setup().catch((e: Error) => setupFailed(`rendezvous: ${e.message}`));
}
