// What every trainer (one device or the parallel coordinator) does with its events: protocol messages to
// its subscribers (the RunRecorder follows these), and human lines to the CLI, the run's log file and the
// stream at once.
import type { Message } from '../../common/protocol';
import type { RunDir } from './run-dir';

export type MessageListener = (msg: Message) => void;

export abstract class RunEvents {
  private readonly listeners = new Set<MessageListener>();

  /** Where human-readable lines go besides the stream: the CLI's printer and the run directory's log. */
  protected abstract get lineSinks(): { log?: (line: string) => void; runDir?: RunDir };

  /** Subscribes to every message the run publishes; returns the unsubscribe function. */
  subscribe(listener: MessageListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  protected publish(msg: Message): void {
    for (const l of this.listeners) l(msg);
  }

  protected log(line: string, level: 'info' | 'warn' = 'info', record = true): void {
    const sinks = this.lineSinks;
    sinks.log?.(line);
    sinks.runDir?.log(line);
    if (record) this.publish({ type: 'log', level, message: line, t: Date.now(), source: 'trainer' });
  }
}
