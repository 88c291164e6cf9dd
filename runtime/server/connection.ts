// One connected client and its backpressure. While the socket keeps up, every message goes straight out.
// Once more than highWaterBytes wait in the socket, the client is "slow":
//   - events (step, eval, status, log, alert, checkpoint, hello) queue in order and are never dropped;
//   - gauges (gpu, memory per rank, comm per rank) keep only the latest per key ("latest wins");
//   - if the event queue passes maxQueueBytes the client is cut off (terminate, not a polite close that
//     would itself wait on the stalled socket). It reconnects and gets a fresh snapshot; nothing was
//     silently skipped.
// So a stalled client costs at most highWater + maxQueue + one gauge per key, whatever the run does.
import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import { gaugeKey, isGauge, type Message } from '../../common/protocol';
import { timeDeferred } from '../telemetry/cost';

export interface ConnectionLimits {
  highWaterBytes: number;
  maxQueueBytes: number;
  /** Client messages: sustained rate and burst, beyond which the client is disconnected. */
  ratePerSecond: number;
  rateBurst: number;
}

export interface ConnectionStats {
  id: number;
  runId: string;
  bufferedBytes: number;
  queuedBytes: number;
  queuedEvents: number;
  pendingGauges: number;
  sent: number;
  coalesced: number;
  slow: boolean;
  /** Answered the last ping. */
  alive: boolean;
}

export class Connection {
  alive = true;
  sent = 0;
  coalesced = 0;
  private queue: string[] = [];
  private queueBytes = 0;
  private readonly gauges = new Map<string, string>();
  private tokens: number;
  private lastRefill = Date.now();
  private closed = false;
  private corked = false;
  private readonly afterSend = (err?: Error) => {
    if (!err && (this.queue.length || this.gauges.size)) this.flush();
  };

  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    readonly runId: string,
    private readonly limits: ConnectionLimits,
    private readonly onCutOff: (conn: Connection, reason: string) => void,
  ) {
    this.tokens = limits.rateBurst;
  }

  private get backlogged(): boolean {
    return this.queue.length > 0 || this.ws.bufferedAmount > this.limits.highWaterBytes;
  }

  /** Sends now, bypassing the queue (the snapshot, replies). */
  sendNow(encoded: string): void {
    if (this.closed) return;
    this.sent++;
    this.cork();
    this.ws.send(encoded, this.afterSend);
  }

  /**
   * A step publishes a burst of messages (a step record, a memory and a comm gauge per rank): one writev
   * per client per tick instead of one write per frame. ws itself corks its socket the same way; the
   * socket is not part of its typed API.
   */
  private cork(): void {
    if (this.corked) return;
    const socket = (this.ws as unknown as { _socket?: Socket })._socket;
    if (!socket || typeof socket.cork !== 'function') return;
    this.corked = true;
    socket.cork();
    process.nextTick(() => {
      this.corked = false;
      timeDeferred(() => socket.uncork());
    });
  }

  deliver(msg: Message, encoded: string): void {
    if (this.closed) return;
    if (isGauge(msg)) {
      if (this.backlogged) {
        if (this.gauges.has(gaugeKey(msg))) this.coalesced++;
        this.gauges.set(gaugeKey(msg), encoded);
      } else this.sendNow(encoded);
      return;
    }
    if (!this.backlogged) {
      this.sendNow(encoded);
      return;
    }
    this.queue.push(encoded);
    this.queueBytes += encoded.length;
    if (this.queueBytes > this.limits.maxQueueBytes) {
      this.cutOff(`client too slow: ${this.queueBytes} bytes of step records waiting; reconnect to get a snapshot`);
    }
  }

  private flush(): void {
    while (this.queue.length && this.ws.bufferedAmount <= this.limits.highWaterBytes) {
      const next = this.queue.shift()!;
      this.queueBytes -= next.length;
      this.sendNow(next);
    }
    if (this.queue.length) return;
    for (const [key, encoded] of this.gauges) {
      if (this.ws.bufferedAmount > this.limits.highWaterBytes) return;
      this.gauges.delete(key);
      this.sendNow(encoded);
    }
  }

  /** Token bucket for client messages; false when the client has sent too many. */
  admit(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.limits.rateBurst, this.tokens + ((now - this.lastRefill) / 1000) * this.limits.ratePerSecond);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  cutOff(reason: string): void {
    if (this.closed) return;
    this.release();
    this.onCutOff(this, reason);
    this.ws.terminate();
  }

  /**
   * The run is over: hand the socket everything still held for this client (the last steps and the final
   * status must not be lost), then close politely; a client that does not answer within `timeoutMs` is cut.
   */
  finish(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    for (const encoded of this.queue) this.sendNow(encoded);
    for (const encoded of this.gauges.values()) this.sendNow(encoded);
    this.release();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, timeoutMs);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close(1001, 'the run has ended');
    });
  }

  /** Drops everything held for this client. */
  release(): void {
    this.closed = true;
    this.queue = [];
    this.queueBytes = 0;
    this.gauges.clear();
  }

  stats(): ConnectionStats {
    return {
      id: this.id,
      runId: this.runId,
      bufferedBytes: this.ws.bufferedAmount,
      queuedBytes: this.queueBytes,
      queuedEvents: this.queue.length,
      pendingGauges: this.gauges.size,
      sent: this.sent,
      coalesced: this.coalesced,
      slow: this.backlogged,
      alive: this.alive,
    };
  }
}
