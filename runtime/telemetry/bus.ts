// The metric bus: the one place a run's messages enter. Every message is validated (rejected whole with a
// reason, never half-applied), stamped with a time, encoded once, remembered in the run's history and
// handed to the sinks (metrics.jsonl, TensorBoard, alerts, the server's clients) in publish order.
import { RunHistory, type HistoryLimits } from './history';
import { encodeMessage, validateMessage, type ControlAction, type Message, type RunSummary } from '../../common/protocol';

/** Thrown by publish() for a message that does not fit protocol v1; nothing was recorded or sent. */
export class ProtocolError extends Error {
  constructor(readonly reason: string) {
    super(`invalid telemetry message: ${reason}`);
    this.name = 'ProtocolError';
  }
}

export type Listener = (msg: Message, encoded: string) => void;
/** `by`: who asked, as the client said (for the stopped status). */
export type ControlHandler = (action: ControlAction, by?: string) => Promise<void> | void;

export interface MetricBusOptions {
  history?: Partial<HistoryLimits>;
  /** The run's id until its hello is published. */
  runId?: string;
  /** The run directory (metrics.jsonl lives there), for CSV export. */
  runDir?: string;
  /** Stamp step/eval/hello messages that have no time with now (default). Off for replays: a recorded
   *  message without a time must not look as if it happened now. */
  stamp?: boolean;
  /** A listener threw: by default printed once per listener to stderr. */
  onListenerError?: (err: unknown) => void;
}

const STAMPED = new Set(['step', 'eval', 'hello']);

export class MetricBus {
  readonly history: RunHistory;
  readonly runDir?: string;
  private readonly listeners = new Set<Listener>();
  private controlHandler?: ControlHandler;
  private readonly onListenerError: (err: unknown) => void;
  private readonly stamp: boolean;
  private readonly failedListeners = new WeakSet<Listener>();
  /** Time spent inside publish() (validation, encoding, every sink), for the overhead report. */
  publishMs = 0;
  published = 0;

  constructor(options: MetricBusOptions = {}) {
    this.history = new RunHistory(options.history, options.runId);
    if (options.runDir !== undefined) this.runDir = options.runDir;
    this.stamp = options.stamp ?? true;
    this.onListenerError = options.onListenerError ?? ((err) => console.error(`scalelm telemetry: a sink failed: ${err instanceof Error ? err.message : String(err)}`));
  }

  /** Validates and publishes; throws ProtocolError for an invalid message. Returns the stored copy. */
  publish(input: unknown): Message {
    const t0 = performance.now();
    const result = validateMessage(input);
    if (!result.ok) throw new ProtocolError(result.reason);
    const msg = result.value;
    if (this.stamp && STAMPED.has(msg.type) && (msg as { t?: number }).t === undefined) (msg as { t?: number }).t = Date.now();
    const encoded = encodeMessage(msg);
    this.history.add(msg);
    for (const listener of this.listeners) {
      try {
        listener(msg, encoded);
      } catch (err) {
        if (!this.failedListeners.has(listener)) {
          this.failedListeners.add(listener);
          this.onListenerError(err);
        }
      }
    }
    this.published++;
    this.publishMs += performance.now() - t0;
    return msg;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Lets clients stop the run or ask for a checkpoint. Without a handler the run is read-only. */
  onControl(handler: ControlHandler | undefined): void {
    this.controlHandler = handler;
  }

  get readOnly(): boolean {
    return this.controlHandler === undefined;
  }

  async control(action: ControlAction, by?: string): Promise<void> {
    if (!this.controlHandler) throw new Error('this run is read-only (a replay, or the runtime accepts no control)');
    await this.controlHandler(action, by);
  }

  summary(): RunSummary {
    return this.history.summary();
  }
}
