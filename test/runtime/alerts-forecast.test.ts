// The out-of-memory forecast of the alert engine (runtime/telemetry/alerts.ts), on synthetic per-rank series:
// raised once the trend window is full when the growth carried to the run's last step reaches the capacity,
// naming the rank, the crossing step and the time; not raised without a known run length or when the growth
// ends below capacity; cleared when the growth stops.
import assert from 'node:assert/strict';
import type { AlertMessage } from '../../common/protocol';
import { AlertEngine, DEFAULT_ALERT_OPTIONS } from '../../runtime/telemetry/alerts';

const MiB = 2 ** 20;
const t0 = 1_800_000_000_000;

function drive(total: number | undefined, used: (step: number) => number, steps: number, capacity = 100 * MiB): AlertMessage[] {
  const alerts: AlertMessage[] = [];
  const engine = new AlertEngine((a) => alerts.push(a), { totalSteps: () => total });
  for (let step = 1; step <= steps; step++) {
    // 500 ms per step; rank 0 is flat, rank 1 follows `used`.
    for (const [rank, bytes] of [
      [0, 10 * MiB],
      [1, used(step)],
    ] as const) {
      engine.observe({ type: 'memory', rank, t: t0 + step * 500, step, categories: { params: bytes }, stepPeak: bytes, capacity });
    }
  }
  return alerts.filter((a) => a.id.startsWith('memory-oom:'));
}

describe('alerts: the out-of-memory forecast', () => {
  const n = DEFAULT_ALERT_OPTIONS.warmupSteps + DEFAULT_ALERT_OPTIONS.trendSamples - 1; // the first step with a full window

  it('raises when the trend crosses the capacity before the last step: rank, crossing step and time', () => {
    const alerts = drive(200, (s) => 10 * MiB + s * MiB, n);
    assert.equal(alerts.length, 1);
    const a = alerts[0]!;
    assert.equal(a.id, 'memory-oom:rank1');
    assert.equal(a.kind, 'memory-leak');
    assert.equal(a.state, 'raised');
    assert.equal(a.rank, 1);
    assert.equal(a.step, n);
    // 10 + s MiB reaches 100 MiB at step 90; 500 ms per step: (90 - 25) · 0.5 s.
    assert.match(a.message, /^rank 1 will run out of memory at step 90 of 200 \(in ~33 s\): its peak grows 1\.00 MiB\/step/);
    assert.equal(a.timeToFullSec, (90 - n) * 0.5);
  });

  it('stays quiet when the run ends first, or its length is unknown', () => {
    assert.deepEqual(
      drive(80, (s) => 10 * MiB + s * MiB, 60),
      [],
      'at step 80 it is at 90 of 100 MiB',
    );
    assert.deepEqual(
      drive(undefined, (s) => 10 * MiB + s * MiB, 60),
      [],
    );
  });

  it('clears once the growth stops', () => {
    const alerts = drive(200, (s) => 10 * MiB + Math.min(s, 30) * MiB, 60);
    assert.deepEqual(
      alerts.map((a) => a.state),
      ['raised', 'cleared'],
    );
    assert.ok(alerts[1]!.step! > 30 && alerts[1]!.step! <= 30 + DEFAULT_ALERT_OPTIONS.trendSamples, `cleared at ${alerts[1]!.step}`);
    assert.match(alerts[1]!.message, /^rank 1 memory stopped growing toward its capacity/);
  });
});
