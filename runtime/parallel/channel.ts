// The coordinator's side channel to its ranks: a Unix socket in a private temporary folder, one JSON object
// per line. Ranks report progress, protocol messages (step, memory, comm, eval, log) and saved shards; the
// coordinator sends control requests (stop, checkpoint) to rank 0, which passes them on inside the step's
// world all-reduce so every rank acts on the same step. Works the same for worker threads and processes;
// a rank's writes go out when its event loop runs (it yields between steps).
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type RankToCoordinator =
  | { k: 'hello'; rank: number; pid: number }
  /** `sync`: the rank waits for an `ack` of this step before computing it (see CoordinatorToRank). */
  | { k: 'progress'; rank: number; step: number; sync?: boolean }
  | { k: 'msg'; rank: number; m: unknown }
  | { k: 'timing'; rank: number; step: number; stepMs: number; exposedCommMs: number }
  | { k: 'saved'; rank: number; step: number; bytes: number };

export type CoordinatorToRank =
  | { k: 'control'; action: 'stop' | 'checkpoint' }
  /**
   * The answer to a `progress` with `sync`: every request made while the coordinator handled what the rank
   * sent before (its previous step's messages) is on the socket ahead of it — so a stop asked on step N's
   * record ends the run at step N, whatever the timing.
   */
  | { k: 'ack'; step: number };

function lines(socket: Socket, onLine: (value: unknown) => void): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line) onLine(JSON.parse(line));
    }
  });
}

export class ChannelServer {
  readonly path: string;
  private readonly dir: string;
  private readonly server: Server;
  private readonly sockets = new Map<number, Socket>();
  private readonly queued = new Map<number, CoordinatorToRank[]>();

  private constructor(onMessage: (m: RankToCoordinator) => void) {
    this.dir = mkdtempSync(join(tmpdir(), 'scalelm-ch-'));
    this.path = join(this.dir, 's');
    this.server = createServer((socket) => {
      socket.on('error', () => {}); // a dying rank: the launcher reports it
      lines(socket, (v) => {
        const m = v as RankToCoordinator;
        if (m.k === 'hello') {
          this.sockets.set(m.rank, socket);
          for (const q of this.queued.get(m.rank) ?? []) socket.write(JSON.stringify(q) + '\n');
          this.queued.delete(m.rank);
        }
        onMessage(m);
      });
    });
  }

  static async open(onMessage: (m: RankToCoordinator) => void): Promise<ChannelServer> {
    const c = new ChannelServer(onMessage);
    await new Promise<void>((resolve, reject) => {
      c.server.once('error', reject);
      c.server.listen(c.path, () => resolve());
    });
    return c;
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
    for (const s of this.sockets.values()) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class ChannelClient {
  private constructor(private readonly socket: Socket) {}

  static connect(path: string, onMessage: (m: CoordinatorToRank) => void, onClose?: () => void): Promise<ChannelClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path, () => {
        if (onClose) socket.on('close', onClose);
        socket.off('error', reject);
        socket.on('error', () => {}); // the coordinator went away: the launcher ends this rank
        resolve(new ChannelClient(socket));
      });
      socket.once('error', reject);
      lines(socket, (v) => onMessage(v as CoordinatorToRank));
      socket.unref();
    });
  }

  send(m: RankToCoordinator): void {
    if (!this.socket.destroyed) this.socket.write(JSON.stringify(m) + '\n');
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
