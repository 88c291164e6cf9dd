// Waiting helpers for the telemetry tests. No timed assertions: each waits for an event or a condition,
// bounded by a count (polls) so a broken test fails instead of hanging; mocha's timeout is the backstop.
import type { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Resolves with the first event `name` whose args satisfy `ok`. */
export function nextEvent<T = unknown>(emitter: EventEmitter, name: string, ok: (value: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve) => {
    const on = (value: T) => {
      if (!ok(value)) return;
      emitter.off(name, on);
      resolve(value);
    };
    emitter.on(name, on);
  });
}

/** Polls `cond` every `everyMs` up to `polls` times; throws with `what` if it never holds. */
export async function until(cond: () => boolean, what: string, polls = 1000, everyMs = 20): Promise<void> {
  for (let i = 0; i < polls; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`gave up waiting for: ${what}`);
}

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

const made: string[] = [];

/** A fresh directory under the system temp dir, removed by removeTempDirs(). */
export function tempDir(prefix = 'scalelm-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every directory tempDir() made (call from a root-level after hook). */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
