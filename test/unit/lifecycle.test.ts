// How a failed run names its rank (the status's error.rank, never a number read back from the message),
// and the runs table's engine column (the hello's engine name, with the backend as its detail).
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeState } from '../../common/lifecycle';
import { validateMessage, validateRunSummary, type HelloMessage, type Message } from '../../common/protocol';
import { RunHistory } from '../../runtime/telemetry/history';

const ROOT = join(__dirname, '../../..');
const recorded = (): Message[] =>
  readFileSync(join(ROOT, 'test/fixtures/streams/tiny-cpu/metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      // As every reader takes a recorded line: through the protocol (an older runtime's "done" reads as finished).
      const r = validateMessage(JSON.parse(l));
      if (!r.ok) throw new Error(r.reason);
      return r.value;
    });

describe('a failed run names its rank from error.rank', () => {
  it('says the rank and the cause once when the engine set error.rank', () => {
    const s = describeState('failed', { step: 12, error: { message: 'rank 1, step 12: loss is NaN after the all-reduce', rank: 1 } });
    assert.equal(s, 'failed on rank 1 at step 12: loss is NaN after the all-reduce');
  });

  it('reads no rank out of a message that only starts with one (no error.rank: no rank named)', () => {
    const s = describeState('failed', { step: 12, error: { message: 'rank 3, step 12: loss is NaN' } });
    assert.equal(s, 'failed at step 12: rank 3, step 12: loss is NaN');
  });

  it('strips only the prefix of the rank it names (rank 1 is not rank 12)', () => {
    const s = describeState('failed', { step: 4, error: { message: 'rank 12, step 4: out of memory', rank: 1 } });
    assert.equal(s, 'failed on rank 1 at step 4: rank 12, step 4: out of memory');
  });
});

describe('the runs table engine column', () => {
  it('shows hello.engine.name with the backend label as its detail', () => {
    const stream = recorded();
    const hello = {
      ...(stream[0] as HelloMessage),
      engine: { name: 'torch', reason: 'devices.engine is "torch"' },
      backend: { name: 'cuda', label: 'cuda (NVIDIA H200) nccl' },
    } satisfies HelloMessage;
    assert.ok(validateMessage(hello).ok, 'a hello the protocol accepts');
    const h = new RunHistory();
    for (const m of [hello, ...stream.slice(1)]) h.add(m);
    const row = h.summary();
    assert.equal(row.engine, 'torch');
    assert.equal(row.engineDetail, 'cuda (NVIDIA H200) nccl');
    assert.deepEqual(validateRunSummary(row), { ok: true, value: row }, 'the row crosses the wire as it is');
  });

  it('a run recorded before the hello named its engine shows the backend from its log, with no detail', () => {
    const h = new RunHistory();
    for (const m of recorded()) h.add(m);
    const row = h.summary();
    assert.equal(row.engine, 'wasm');
    assert.equal(row.engineDetail, undefined);
  });
});
