// Recorded message streams (test/fixtures/streams/*/metrics.jsonl) for the dashboard tests, as the hosts
// deliver them: live messages in wire form (what postMessage carries), or the snapshot the runtime's
// RunHistory builds (what a host sends first).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage, encodeMessage, PROTOCOL_VERSION, type HelloMessage, type Message, type SnapshotMessage } from '../../common/protocol';
import { RunHistory } from '../../runtime/telemetry/history';
import { ROOT } from './harness';
import { SYNTHETIC_RUN_ID, syntheticConfig, syntheticMessages } from './synthetic';

export const STREAMS = join(ROOT, 'test/fixtures/streams');

/** A recorded run's messages, each checked by the protocol's validator. */
export function readStream(name: string): Message[] {
  const text = readFileSync(join(STREAMS, name, 'metrics.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((line, i) => {
      const r = decodeMessage(line);
      if (!r.ok) throw new Error(`${name} line ${i + 1}: ${r.reason}`);
      return r.value;
    });
}

/** JSON as it crosses postMessage (non-finite numbers spelled as strings). */
export function wire<T>(m: T): T {
  return JSON.parse(encodeMessage(m as unknown as Message)) as T;
}

/** The same run moved in time so that its last message is `lastT` (a recorded run replayed as if live). */
export function shiftedTo<T extends Message>(messages: T[], lastT: number): T[] {
  const last = Math.max(...messages.map((m) => (m as { t?: number }).t ?? 0));
  const delta = lastT - last;
  return messages.map((m) => {
    const c = structuredClone(m) as T & { t?: number; startedAt?: number };
    if (typeof c.t === 'number') c.t += delta;
    if (c.type === 'hello') (c as unknown as { startedAt: number }).startedAt += delta;
    return c;
  });
}

export function snapshotOf(messages: Message[], readOnly = true): SnapshotMessage {
  const h = new RunHistory();
  for (const m of messages) h.add(m);
  return h.snapshot(readOnly);
}

/** A second synthetic run (another seed, a slightly higher loss) to overlay. */
export function syntheticVariant(runId: string, steps: number, lossOffset: number, startedAt = Date.UTC(2025, 5, 1, 8, 0, 0), totalSteps = 2000): Message[] {
  const config = syntheticConfig(totalSteps);
  const hello: HelloMessage = {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    runId,
    name: `${config.name} (lr 6e-4)`,
    startedAt,
    world: 8,
    config: config as unknown as HelloMessage['config'],
    t: startedAt,
  };
  return [hello, { type: 'status', state: 'running', t: startedAt + 1000, step: 0 }, ...syntheticMessages({ steps, totalSteps, startedAt, seed: 11, lossOffset, gpuEvery: 5, commEvery: 5 })];
}

export { SYNTHETIC_RUN_ID };
