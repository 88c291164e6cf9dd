// The coordinator's channel to its ranks (docs/rank-channel.md): one JSON object per line over a Unix socket
// in a private temporary folder, or over TCP for a multi-node run. Ranks report progress, protocol messages
// (step, memory, comm, eval, log), saved checkpoint parts, their own failure and their end; the coordinator
// sends control requests (stop, checkpoint) to rank 0, which passes them on inside the step's collective so
// every rank acts on the same step. The same channel serves the local engine's TypeScript ranks, the torch
// engine's Python ranks and users' own scripts, so everything that arrives is checked: a peer must open
// with a hello carrying the per-run token, lines are capped, and anything malformed drops that one socket
// (logged once) without touching the run.
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateMessage, type GpuMessage, type Message } from '../../common/protocol';
import { newToken, tokensEqual } from '../server/auth';
import { parseShapeLine, type ShapeLine } from './shape-report';

export type RankEngineKind = 'local' | 'torch' | 'monitor';

export interface RankHello {
  k: 'hello';
  rank: number;
  pid: number;
  token: string;
  world: number;
  engine: RankEngineKind;
  node: string;
  localRank: number;
  /** The rank's machine in a multi-node run (torchrun's GROUP_RANK, or `scalelm launch --node-rank`). */
  nodeRank?: number;
}

/**
 * A multi-node run's other machines: each `scalelm launch --node-rank K` (K > 0) is a peer of the
 * coordinator's channel, authenticated like a rank, that forwards its machine's GPU samples and reports how
 * its command ended (docs/rank-channel.md, "Node peers").
 */
export interface NodeHello {
  k: 'node';
  node: number;
  nnodes: number;
  host: string;
  pid: number;
  token: string;
}

export type NodeToCoordinator =
  | NodeHello
  /** One sample of the node's GPUs; `m.node` is this node. */
  | { k: 'gpu'; node: number; m: GpuMessage }
  /** The node's command ended (last line): its exit status, and its last stderr lines when it failed. */
  | { k: 'exit'; node: number; code: number | null; signal: string | null; tail?: string };

export type NodeReport = Exclude<NodeToCoordinator, NodeHello> | Omit<NodeHello, 'token'>;

/** `welcome`: the node was accepted (it starts its command only then); `control`: stop its command. */
export type CoordinatorToNode = { k: 'welcome' } | { k: 'control'; action: 'stop' };

export type RankToCoordinator =
  | RankHello
  /** `sync`: the rank waits for an `ack` of this step before computing it (see CoordinatorToRank). */
  | { k: 'progress'; rank: number; step: number; sync?: boolean }
  | { k: 'msg'; rank: number; m: Message }
  | { k: 'timing'; rank: number; step: number; stepMs: number; exposedCommMs: number }
  | { k: 'saved'; rank: number; step: number; bytes: number }
  | { k: 'error'; rank: number; step: number; message: string; kind?: string }
  | { k: 'done'; rank: number; step: number; reason: 'completed' | 'stopped' }
  /** A monitored script's model shape and layout, for the planner (runtime/parallel/shape-report.ts). */
  | ShapeLine;

/** What the coordinator hands on: the hello without its token. */
export type RankReport = Exclude<RankToCoordinator, RankHello> | Omit<RankHello, 'token'>;

export type CoordinatorToRank =
  | { k: 'control'; action: 'stop' | 'checkpoint' }
  /**
   * The answer to a `progress` with `sync`: every request made while the coordinator handled what the rank
   * sent before (its previous step's messages) is on the socket ahead of it — so a stop asked on step N's
   * record ends the run at step N, whatever the timing.
   */
  | { k: 'ack'; step: number };

/** Longest line either side accepts, in bytes before the newline. */
export const MAX_LINE_BYTES = 1 << 20;
/** Longest first line (a hello) from a peer that has not yet proven it belongs to the run. */
export const MAX_HELLO_BYTES = 4096;
/**
 * Peers connected that have not said a valid hello yet; more are refused at once. With the line caps this
 * bounds what strangers can make the coordinator hold (a multi-node channel listens on the network) to
 * MAX_PENDING_PEERS × MAX_HELLO_BYTES, instead of 1 MiB per connection with no limit on connections.
 */
export const MAX_PENDING_PEERS = 64;
const HELLO_TIMEOUT_MS = 10_000;
/** Rejected peers logged before the channel goes quiet about them (a flood must not flood the log). */
const MAX_REJECTION_LOGS = 20;

/** Splits a socket's bytes into lines; calls onTooLong (and stops) when a line passes the cap (`maxBytes()`, asked as bytes arrive). */
function lines(socket: Socket, onLine: (line: string) => void, onTooLong: () => void, maxBytes: () => number = () => MAX_LINE_BYTES): void {
  let parts: Buffer[] = [];
  let size = 0;
  let dead = false;
  socket.on('data', (chunk: Buffer) => {
    let from = 0;
    while (!dead) {
      const nl = chunk.indexOf(0x0a, from);
      const end = nl < 0 ? chunk.length : nl;
      size += end - from;
      if (size > maxBytes()) {
        dead = true;
        parts = [];
        return onTooLong();
      }
      if (nl < 0) {
        if (end > from) parts.push(chunk.subarray(from));
        return;
      }
      parts.push(chunk.subarray(from, nl));
      const line = Buffer.concat(parts).toString('utf8');
      parts = [];
      size = 0;
      from = nl + 1;
      if (line) onLine(line);
    }
  });
}

/** The coordinator's lines to a client: JSON objects; anything else is dropped (the coordinator is trusted, but a line cut short is not an object). */
function objectLines(socket: Socket, onObject: (v: Record<string, unknown>) => void): void {
  lines(
    socket,
    (line) => {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        return;
      }
      if (isObj(v)) onObject(v);
    },
    () => socket.destroy(),
  );
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isNat = (v: unknown): v is number => isInt(v) && v >= 0;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The typed line, or why it is not one (shape only: ranks and tokens are checked against the run). */
export function parseRankLine(line: string): { ok: true; value: RankToCoordinator } | { ok: false; reason: string } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'a line that is not JSON' };
  }
  if (!isObj(v)) return { ok: false, reason: 'a line that is not a JSON object' };
  if (!isNat(v.rank)) return { ok: false, reason: `a line without a valid rank (k=${JSON.stringify(v.k)?.slice(0, 40)})` };
  const bad = (what: string) => ({ ok: false as const, reason: `a malformed ${String(v.k)} line (${what})` });
  switch (v.k) {
    case 'hello':
      if (typeof v.token !== 'string') return bad('token');
      if (!isNat(v.pid) || !isInt(v.world) || v.world < 1 || !isNat(v.localRank)) return bad('pid, world or localRank');
      if (v.engine !== 'local' && v.engine !== 'torch' && v.engine !== 'monitor') return bad('engine');
      if (typeof v.node !== 'string' || v.node.length > 255) return bad('node');
      if (v.nodeRank !== undefined && !isNat(v.nodeRank)) return bad('nodeRank');
      return {
        ok: true,
        value: {
          k: 'hello',
          rank: v.rank,
          pid: v.pid,
          token: v.token,
          world: v.world,
          engine: v.engine,
          node: v.node,
          localRank: v.localRank,
          ...(v.nodeRank !== undefined ? { nodeRank: v.nodeRank } : {}),
        },
      };
    case 'progress':
      if (v.sync !== undefined && typeof v.sync !== 'boolean') return bad('sync');
      return isNat(v.step) ? { ok: true, value: { k: 'progress', rank: v.rank, step: v.step, ...(v.sync ? { sync: true } : {}) } } : bad('step');
    case 'timing':
      return isNat(v.step) && isNum(v.stepMs) && isNum(v.exposedCommMs)
        ? { ok: true, value: { k: 'timing', rank: v.rank, step: v.step, stepMs: v.stepMs, exposedCommMs: v.exposedCommMs } }
        : bad('step or times');
    case 'saved':
      return isNat(v.step) && isNat(v.bytes) ? { ok: true, value: { k: 'saved', rank: v.rank, step: v.step, bytes: v.bytes } } : bad('step or bytes');
    case 'error':
      if (!isNat(v.step) || typeof v.message !== 'string' || (v.kind !== undefined && typeof v.kind !== 'string')) return bad('step, message or kind');
      return { ok: true, value: { k: 'error', rank: v.rank, step: v.step, message: v.message.slice(0, 16_000), ...(typeof v.kind === 'string' ? { kind: v.kind.slice(0, 100) } : {}) } };
    case 'done':
      if (!isNat(v.step) || (v.reason !== 'completed' && v.reason !== 'stopped')) return bad('step or reason');
      return { ok: true, value: { k: 'done', rank: v.rank, step: v.step, reason: v.reason } };
    case 'shape': {
      const r = parseShapeLine({ ...v, rank: v.rank });
      return r.ok ? r : bad(r.what);
    }
    case 'msg': {
      const r = validateMessage(v.m);
      if (!r.ok) return bad(`m: ${r.reason.slice(0, 200)}`);
      const m = r.value;
      // Only what a rank may say: the coordinator itself publishes hello, status, checkpoint, gpu and alert.
      if (m.type !== 'step' && m.type !== 'eval' && m.type !== 'memory' && m.type !== 'comm' && m.type !== 'log') return bad(`m of type ${m.type}`);
      if ((m.type === 'memory' || m.type === 'comm' || (m.type === 'log' && m.rank !== undefined)) && m.rank !== v.rank) return bad("m.rank is not the line's rank");
      return { ok: true, value: { k: 'msg', rank: v.rank, m } };
    }
    default:
      return { ok: false, reason: `an unknown kind of line (k=${JSON.stringify(v.k)?.slice(0, 40)})` };
  }
}

/** A node peer's line (k = node, gpu or exit), or why it is not one; `other` when it is no node line at all. */
export function parseNodeLine(line: string): { ok: true; value: NodeToCoordinator } | { ok: false; reason: string; other?: true } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'a line that is not JSON', other: true };
  }
  if (!isObj(v) || (v.k !== 'node' && v.k !== 'gpu' && v.k !== 'exit')) return { ok: false, reason: 'a line that is not a node line', other: true };
  if (!isNat(v.node)) return { ok: false, reason: `a ${v.k} line without a valid node` };
  const bad = (what: string) => ({ ok: false as const, reason: `a malformed ${String(v.k)} line (${what})` });
  switch (v.k) {
    case 'node':
      if (typeof v.token !== 'string') return bad('token');
      if (!isInt(v.nnodes) || v.nnodes < 2 || !isNat(v.pid)) return bad('nnodes or pid');
      if (typeof v.host !== 'string' || v.host.length > 255) return bad('host');
      return { ok: true, value: { k: 'node', node: v.node, nnodes: v.nnodes, host: v.host, pid: v.pid, token: v.token } };
    case 'gpu': {
      const r = validateMessage(v.m);
      if (!r.ok) return bad(`m: ${r.reason.slice(0, 200)}`);
      if (r.value.type !== 'gpu') return bad(`m of type ${r.value.type}`);
      if (r.value.node?.rank !== v.node) return bad("m.node is not the line's node");
      return { ok: true, value: { k: 'gpu', node: v.node, m: r.value } };
    }
    default:
      if ((v.code !== null && !isInt(v.code)) || (v.signal !== null && typeof v.signal !== 'string') || (v.tail !== undefined && typeof v.tail !== 'string')) return bad('code, signal or tail');
      return {
        ok: true,
        value: {
          k: 'exit',
          node: v.node,
          code: v.code as number | null,
          signal: v.signal === null ? null : String(v.signal).slice(0, 20),
          ...(typeof v.tail === 'string' ? { tail: v.tail.slice(0, 16_000) } : {}),
        },
      };
  }
}

export interface ChannelOptions {
  /** Ranks expected (0..world-1). Absent: the first accepted hello's world fixes it (scalelm launch). */
  world?: number;
  /** The per-run secret (default: a fresh 256-bit token). */
  token?: string;
  /** Listen on TCP (multi-node) instead of a private Unix socket. */
  tcp?: { host: string; port: number };
  /** A peer was refused: called once per refused socket, for the first few. */
  onReject?: (reason: string) => void;
  /** A rank's socket closed (its end of the channel; whether it said `done` is the caller's to judge). */
  onDisconnect?: (rank: number) => void;
  /** A multi-node run's node count: node peers 1..nodes-1 are accepted (none when absent). */
  nodes?: number;
  /** What node peers report (their hello without its token, GPU samples, their command's end). */
  onNode?: (m: NodeReport) => void;
  /** A node peer's socket closed (whether it reported its `exit` first is the caller's to judge). */
  onNodeDisconnect?: (node: number) => void;
  helloTimeoutMs?: number;
}

export class ChannelServer {
  readonly token: string;
  /** `unix:/path` or `tcp:host:port`: what ranks get in SCALELM_CHANNEL. */
  address = '';
  private world: number | undefined;
  private dir: string | undefined;
  private readonly server: Server;
  private readonly sockets = new Map<number, Socket>();
  private readonly nodeSockets = new Map<number, Socket>();
  private readonly queued = new Map<number, CoordinatorToRank[]>();
  private readonly peers = new Set<Socket>();
  private rejections = 0;
  /** Sockets open that have not said a valid hello (bounded by MAX_PENDING_PEERS). */
  private pending = 0;

  private constructor(
    private readonly onMessage: (m: RankReport) => void,
    private readonly opts: ChannelOptions,
  ) {
    this.token = opts.token ?? newToken();
    this.world = opts.world;
    this.server = createServer((socket) => this.accept(socket));
  }

  static async open(onMessage: (m: RankReport) => void, opts: ChannelOptions = {}): Promise<ChannelServer> {
    const c = new ChannelServer(onMessage, opts);
    await new Promise<void>((resolve, reject) => {
      c.server.once('error', reject);
      if (opts.tcp) {
        c.server.listen(opts.tcp.port, opts.tcp.host, () => resolve());
      } else {
        c.dir = mkdtempSync(join(tmpdir(), 'scalelm-ch-')); // 0700: only this user reaches the socket
        c.server.listen(join(c.dir, 's'), () => resolve());
      }
    });
    if (opts.tcp) {
      const a = c.server.address() as AddressInfo;
      c.address = `tcp:${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    } else c.address = `unix:${join(c.dir!, 's')}`;
    return c;
  }

  /** The environment a rank needs to reach this channel. */
  env(): Record<string, string> {
    return { SCALELM_CHANNEL: this.address, SCALELM_CHANNEL_TOKEN: this.token };
  }

  /** Ranks currently connected (said hello, socket open). */
  connected(): number[] {
    return [...this.sockets.entries()].filter(([, s]) => !s.destroyed).map(([r]) => r);
  }

  private reject(socket: Socket, reason: string): void {
    if (socket.destroyed) return;
    socket.destroy();
    this.rejections++;
    if (this.rejections <= MAX_REJECTION_LOGS)
      this.opts.onReject?.(`rank channel: dropped a peer that sent ${reason}${this.rejections === MAX_REJECTION_LOGS ? ' (further refusals are not logged)' : ''}`);
  }

  private accept(socket: Socket): void {
    socket.on('error', () => {}); // a dying rank: its process exit is what reports it
    if (this.pending >= MAX_PENDING_PEERS) return this.reject(socket, `nothing yet while ${MAX_PENDING_PEERS} other peers had not said hello (too many at once)`);
    this.peers.add(socket);
    let rank: number | undefined;
    let node: number | undefined;
    const authenticated = () => rank !== undefined || node !== undefined;
    this.pending++;
    let counted = true;
    const settle = () => {
      if (counted) this.pending--;
      counted = false;
    };
    const timer = setTimeout(() => this.reject(socket, 'no hello within the time allowed'), this.opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS);
    timer.unref();
    socket.on('close', () => {
      clearTimeout(timer);
      settle();
      this.peers.delete(socket);
      if (rank !== undefined && this.sockets.get(rank) === socket) {
        this.sockets.delete(rank);
        this.opts.onDisconnect?.(rank);
      }
      if (node !== undefined && this.nodeSockets.get(node) === socket) {
        this.nodeSockets.delete(node);
        this.opts.onNodeDisconnect?.(node);
      }
    });
    lines(
      socket,
      (line) => {
        if (socket.destroyed) return;
        if (rank === undefined) {
          const n = parseNodeLine(line);
          if (node !== undefined || !('other' in n && n.other)) {
            if (!n.ok) return this.reject(socket, n.reason);
            if (node === undefined) {
              node = this.acceptNode(socket, n.value);
              if (node !== undefined) {
                clearTimeout(timer);
                settle();
              }
              return;
            }
            if (n.value.k === 'node') return this.reject(socket, `a second hello on node ${node}'s connection`);
            if (n.value.node !== node) return this.reject(socket, `a line for node ${n.value.node} on node ${node}'s connection`);
            return this.opts.onNode?.(n.value);
          }
        }
        const parsed = parseRankLine(line);
        if (!parsed.ok) return this.reject(socket, parsed.reason);
        const m = parsed.value;
        if (rank === undefined) {
          if (m.k !== 'hello') return this.reject(socket, `${m.k} before its hello`);
          if (!tokensEqual(m.token, this.token)) return this.reject(socket, 'a hello with a wrong token');
          const world = this.world ?? m.world;
          if (m.world !== world) return this.reject(socket, `a hello for a world of ${m.world} (this run has ${world} ranks)`);
          if (m.rank >= world) return this.reject(socket, `a hello for rank ${m.rank}, outside 0..${world - 1}`);
          if (this.sockets.get(m.rank)?.destroyed === false) return this.reject(socket, `a second hello for rank ${m.rank}`);
          clearTimeout(timer);
          settle();
          this.world = world;
          rank = m.rank;
          this.sockets.set(rank, socket);
          for (const q of this.queued.get(rank) ?? []) socket.write(JSON.stringify(q) + '\n');
          this.queued.delete(rank);
          const { token: _token, ...hello } = m;
          return this.onMessage(hello);
        }
        if (m.k === 'hello') return this.reject(socket, `a second hello on rank ${rank}'s connection`);
        if (m.rank !== rank) return this.reject(socket, `a line for rank ${m.rank} on rank ${rank}'s connection`);
        this.onMessage(m);
      },
      () => this.reject(socket, authenticated() ? `a line longer than ${MAX_LINE_BYTES} bytes` : `a first line longer than ${MAX_HELLO_BYTES} bytes (a hello is shorter)`),
      () => (authenticated() ? MAX_LINE_BYTES : MAX_HELLO_BYTES),
    );
  }

  /** A node peer's hello: checked like a rank's (token, range, one connection per node); the node, or undefined when refused. */
  private acceptNode(socket: Socket, m: NodeToCoordinator): number | undefined {
    if (m.k !== 'node') return void this.reject(socket, `${m.k} before its node hello`);
    if (!tokensEqual(m.token, this.token)) return void this.reject(socket, `a node hello with a wrong token (node ${m.node}, host ${JSON.stringify(m.host)})`);
    const nodes = this.opts.nodes;
    if (!nodes || nodes < 2) return void this.reject(socket, 'a node hello, but this run is not multi-node');
    if (m.nnodes !== nodes) return void this.reject(socket, `a node hello for ${m.nnodes} nodes (this run has ${nodes})`);
    if (m.node < 1 || m.node >= nodes) return void this.reject(socket, `a node hello for node ${m.node}, outside 1..${nodes - 1}`);
    if (this.nodeSockets.get(m.node)?.destroyed === false) return void this.reject(socket, `a second hello for node ${m.node}`);
    this.nodeSockets.set(m.node, socket);
    socket.write(JSON.stringify({ k: 'welcome' } satisfies CoordinatorToNode) + '\n');
    const { token: _token, ...hello } = m;
    this.opts.onNode?.(hello);
    return m.node;
  }

  /** Sends to a node peer (dropped when it is not connected: a node that never joined has nothing to stop). */
  sendNode(node: number, m: CoordinatorToNode): void {
    const s = this.nodeSockets.get(node);
    if (s && !s.destroyed) s.write(JSON.stringify(m) + '\n');
  }

  /** Node peers currently connected. */
  connectedNodes(): number[] {
    return [...this.nodeSockets.entries()].filter(([, s]) => !s.destroyed).map(([n]) => n);
  }

  /** Sends to a rank (queued until it has said hello). */
  send(rank: number, m: CoordinatorToRank): void {
    const s = this.sockets.get(rank);
    if (s && !s.destroyed) s.write(JSON.stringify(m) + '\n');
    else this.queued.set(rank, [...(this.queued.get(rank) ?? []), m]);
  }

  /** Waits (up to graceMs) for the ranks to end their side, so their last messages are read; then closes. */
  async close(graceMs = 2000): Promise<void> {
    const open = [...this.sockets.values()].filter((s) => !s.destroyed && !s.readableEnded);
    await Promise.race([
      Promise.all(open.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve()).once('end', () => resolve())))),
      new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
    ]);
    for (const s of this.peers) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `unix:/path` or `tcp:host:port` (a bare path is a Unix socket) → what net.createConnection takes. */
export function parseChannelAddress(address: string): { path: string } | { host: string; port: number } {
  if (address.startsWith('tcp:')) {
    const m = /^tcp:(\[[^\]]+\]|[^:]+):(\d+)$/.exec(address);
    if (!m) throw new Error(`SCALELM_CHANNEL=${address}: expected tcp:HOST:PORT`);
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  }
  return { path: address.startsWith('unix:') ? address.slice(5) : address };
}

export class ChannelClient {
  private constructor(private readonly socket: Socket) {}

  /** Connects and says hello (the first line) for `rank`; `onClose` when the coordinator goes away. */
  static connect(
    address: string,
    token: string,
    hello: { rank: number; world: number; engine: RankEngineKind; localRank?: number },
    onMessage: (m: CoordinatorToRank) => void,
    onClose?: () => void,
  ): Promise<ChannelClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(parseChannelAddress(address), () => {
        if (onClose) socket.on('close', onClose);
        socket.off('error', reject);
        socket.on('error', () => {}); // the coordinator went away: the launcher ends this rank
        const c = new ChannelClient(socket);
        c.write({ k: 'hello', rank: hello.rank, pid: process.pid, token, world: hello.world, engine: hello.engine, node: hostname(), localRank: hello.localRank ?? hello.rank });
        resolve(c);
      });
      socket.once('error', reject);
      objectLines(socket, (v) => {
        if (v.k === 'control' && (v.action === 'stop' || v.action === 'checkpoint')) onMessage({ k: 'control', action: v.action });
        else if (v.k === 'ack' && isNat(v.step)) onMessage({ k: 'ack', step: v.step });
      });
      socket.unref();
    });
  }

  private write(m: RankToCoordinator): void {
    if (!this.socket.destroyed) this.socket.write(JSON.stringify(m) + '\n');
  }

  send(m: Exclude<RankToCoordinator, RankHello>): void {
    this.write(m);
  }

  /** Resolves once everything written so far has been handed to the kernel. */
  flush(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.socket.writableLength === 0) return resolve();
      this.socket.write('', () => resolve());
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.end(() => resolve());
    });
  }
}

/** Why a node could not join: `unreachable` (nothing listens yet: worth retrying) or `refused` (the coordinator closed on it). */
export class NodeJoinError extends Error {
  constructor(
    message: string,
    readonly kind: 'unreachable' | 'refused',
  ) {
    super(message);
  }
}

/** A node peer's end of the channel (`scalelm launch --node-rank K`, K > 0). */
export class NodeClient {
  private constructor(private readonly socket: Socket) {}

  /**
   * Connects, says the node hello and resolves once the coordinator welcomed it; rejects with a
   * NodeJoinError. After that, `onMessage` gets the coordinator's controls and `onClose` its going away.
   */
  static join(address: string, token: string, hello: { node: number; nnodes: number }, onMessage: (m: CoordinatorToNode) => void, onClose: () => void, welcomeTimeoutMs = 15_000): Promise<NodeClient> {
    return new Promise((resolve, reject) => {
      let welcomed = false;
      const socket = createConnection(parseChannelAddress(address));
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new NodeJoinError(`the coordinator at ${address} did not answer this node's hello within ${welcomeTimeoutMs} ms`, 'refused'));
      }, welcomeTimeoutMs);
      socket.once('error', (e: NodeJS.ErrnoException) => {
        if (welcomed) return;
        clearTimeout(timer);
        const kind = e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' || e.code === 'ETIMEDOUT' ? 'unreachable' : 'refused';
        reject(new NodeJoinError(`cannot reach the coordinator at ${address}: ${e.message}`, kind));
      });
      socket.on('error', () => {});
      socket.once('connect', () => {
        socket.write(JSON.stringify({ k: 'node', node: hello.node, nnodes: hello.nnodes, host: hostname(), pid: process.pid, token } satisfies NodeHello) + '\n');
      });
      socket.once('close', () => {
        clearTimeout(timer);
        if (welcomed) onClose();
        else
          reject(
            new NodeJoinError(
              `the coordinator at ${address} refused this node: the run token differs from node 0's (set the same SCALELM_RUN_TOKEN or --token-file on every node), or node ${hello.node} already joined, or node 0 runs with another --nnodes than ${hello.nnodes}`,
              'refused',
            ),
          );
      });
      objectLines(socket, (v) => {
        if (v.k === 'welcome' && !welcomed) {
          welcomed = true;
          clearTimeout(timer);
          resolve(new NodeClient(socket));
        } else if (welcomed && v.k === 'control' && v.action === 'stop') onMessage({ k: 'control', action: 'stop' });
      });
    });
  }

  send(m: Exclude<NodeToCoordinator, NodeHello>): void {
    if (!this.socket.destroyed) this.socket.write(JSON.stringify(m) + '\n');
  }

  /** Ends this side after everything written so far went out. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.end(() => resolve());
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
