// Issue 12, item 9: a seeded, time-bounded property fuzzer over the four readers of untrusted input — the
// config parser, the protocol decoder, the safetensors reader and the run-store reader. Each mutates a
// valid corpus (bytes flipped, inserted, deleted, duplicated; JSON values swapped for hostile ones: huge
// and non-finite numbers, prototype names, deep nesting, wrong types) and asserts the invariants: the
// reader terminates, throws nothing but its typed error (or answers {ok:false}), and whatever it accepts
// is valid. The seed is printed on failure (SCALELM_FUZZ_SEED=N replays it); each target gets ~3 s.
import { rng } from '../../webview/synthetic';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeClientMessage, decodeMessage, encodeMessage, validateMessage } from '../../../common/protocol';
import { parseConfig } from '../../../runtime/config/parse';
import { runConfigSchema } from '../../../runtime/config/schema';
import type { AnyNode } from '../../../runtime/config/dsl';
import { encodeSafetensors, parseSafetensors, SafetensorsError } from '../../../runtime/train/safetensors';
import { streamMessages } from '../../../runtime/telemetry/run-store';

const BUDGET_MS = Number(process.env.SCALELM_FUZZ_MS ?? 3000);
const SEED = Number(process.env.SCALELM_FUZZ_SEED ?? Date.now() % 2 ** 31);

const HOSTILE_VALUES: unknown[] = [
  1e308,
  -1e308,
  2 ** 53 + 1,
  -1,
  0,
  0.5,
  1e-320,
  'NaN',
  'Infinity',
  '',
  'x'.repeat(5000),
  null,
  true,
  [],
  {},
  [[[[[]]]]],
  { __proto__: 1 },
  'constructor',
  '__proto__',
  'toString',
  '\u001b[2J',
  '../../etc/passwd',
  '0B',
  '1e15',
  '99999999TiB',
];
const HOSTILE_KEYS = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '$schema', '', 'x'.repeat(300)];

function mutateJson(value: unknown, r: () => number, depth = 0): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  if (r() < 0.15) return pick(HOSTILE_VALUES);
  if (Array.isArray(value)) return value.map((v) => (r() < 0.3 ? mutateJson(v, r, depth + 1) : v));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (r() < 0.05) continue;
      out[k] = r() < 0.4 ? mutateJson(v, r, depth + 1) : v;
    }
    if (r() < 0.1) Object.defineProperty(out, pick(HOSTILE_KEYS), { value: pick(HOSTILE_VALUES), enumerable: true, writable: true, configurable: true });
    return out;
  }
  if (typeof value === 'number' && r() < 0.5) return value * pick([0, -1, 1e6, 1e300, 0.5, Infinity]);
  return value;
}

function mutateBytes(input: Uint8Array, r: () => number): Uint8Array {
  const b = Array.from(input);
  const edits = 1 + Math.floor(r() * 8);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(r() * (b.length + 1));
    switch (Math.floor(r() * 5)) {
      case 0:
        if (b.length) b[at % b.length] = Math.floor(r() * 256);
        break;
      case 1:
        b.splice(at, 0, ...Array.from({ length: 1 + Math.floor(r() * 8) }, () => Math.floor(r() * 256)));
        break;
      case 2:
        b.splice(at, 1 + Math.floor(r() * 16));
        break;
      case 3:
        b.splice(at, 0, ...b.slice(at, at + 1 + Math.floor(r() * 64)));
        break;
      case 4:
        b.splice(at, 0, ...Buffer.from(['{', '[', '"', '\\', '\n', '1e999', '-0', '"__proto__":'][Math.floor(r() * 8)]!));
        break;
    }
  }
  return Uint8Array.from(b);
}

/** Runs `body` with fresh randomness until the budget is spent; returns the number of cases. */
function fuzz(name: string, body: (r: () => number, i: number) => void): number {
  const r = rng(SEED ^ [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261));
  const until = Date.now() + BUDGET_MS;
  let i = 0;
  for (; Date.now() < until; i++) {
    try {
      body(r, i);
    } catch (e) {
      throw new Error(`${name}: case ${i} (SCALELM_FUZZ_SEED=${SEED}): ${(e as Error).stack ?? String(e)}`, { cause: e });
    }
  }
  return i;
}

/** Every number in an accepted config is finite and within the schema's bounds. */
function withinBounds(node: AnyNode, value: unknown, path: string): void {
  if (value === undefined) return;
  if (node.kind === 'number') {
    assert.ok(typeof value === 'number' && Number.isFinite(value), `${path}: ${String(value)}`);
    if (node.maximum !== undefined) assert.ok(value <= node.maximum, `${path}=${value} > ${node.maximum}`);
    if (node.minimum !== undefined) assert.ok(value >= node.minimum, `${path}=${value} < ${node.minimum}`);
  } else if (node.kind === 'object') {
    // No key was accepted that the schema does not declare as its own (prototype names included).
    for (const k of Object.keys(value as object)) assert.ok(Object.hasOwn(node.properties, k) || (path === 'config' && k === '$schema'), `${path}.${k} accepted`);
    for (const [k, child] of Object.entries(node.properties as Record<string, AnyNode>)) withinBounds(child, (value as Record<string, unknown>)?.[k], `${path}.${k}`);
  }
}

const CONFIG = {
  name: 'fuzz',
  model: { preset: 'gpt2', layers: 4, hidden: 256, heads: 4 },
  train: { steps: 100, lr: 3e-4, microBatch: 2, globalBatch: 8 },
  parallel: { dp: 2, tp: 2 },
  devices: { memory: '2GiB', count: 4 },
  cluster: { nodes: 1, gpusPerNode: 4 },
  data: { source: 'synthetic' },
  monitor: { port: 0 },
};
const MESSAGES = [
  { type: 'hello', protocol: 1, runId: 'r', name: 'n', startedAt: 1, world: 2, config: { a: 1 } },
  { type: 'step', step: 3, loss: 2.5, lr: 1e-3, gradNorm: 1, tokensPerSec: 100, stepMs: 10, memory: { params: 1, grads: 1, optimizer: 2, activations: 3, peak: 8 } },
  { type: 'status', state: 'running', t: 5, step: 1 },
  { type: 'eval', step: 3, loss: 'NaN' },
  { type: 'control', id: '1', action: 'stop' },
];

describe('security: fuzzing the readers of untrusted input (seeded, time-bounded)', function () {
  this.timeout(BUDGET_MS * 4 + 30_000);

  it('the config parser: never throws, and what it accepts is within every bound', () => {
    const n = fuzz('config', (r) => {
      const value = mutateJson(CONFIG, r);
      const text = r() < 0.5 ? JSON.stringify(value) : Buffer.from(mutateBytes(Buffer.from(JSON.stringify(CONFIG)), r)).toString('utf8');
      const result = parseConfig(text);
      if (result.ok) {
        withinBounds(runConfigSchema, JSON.parse(text), 'config');
        assert.ok(Number.isSafeInteger(result.config.devices.memory) && result.config.devices.memory > 0);
      } else assert.ok(result.errors.length > 0 && result.errors.every((e) => typeof e.message === 'string'));
    });
    assert.ok(n > 50, `${n} cases`);
  });

  it('the protocol decoder: never throws; an accepted message re-validates and re-encodes identically', () => {
    const n = fuzz('protocol', (r) => {
      const base = MESSAGES[Math.floor(r() * MESSAGES.length)]!;
      const text = r() < 0.5 ? JSON.stringify(mutateJson(base, r)) : Buffer.from(mutateBytes(Buffer.from(JSON.stringify(base)), r)).toString('utf8');
      const m = decodeMessage(text);
      if (m.ok) {
        const revalidated = validateMessage(m.value);
        assert.ok(revalidated.ok, `${text.slice(0, 300)} decoded, but its value does not validate: ${revalidated.ok ? '' : revalidated.reason}`);
        // Nothing the sender wrote was silently accepted and dropped (a "constructor" key, say).
        for (const k of Object.keys(JSON.parse(text) as object)) assert.ok(Object.hasOwn(m.value, k), `accepted and dropped key ${k}`);
        const again = decodeMessage(encodeMessage(m.value));
        assert.ok(again.ok);
        assert.equal(encodeMessage(again.value), encodeMessage(m.value));
      }
      const c = decodeClientMessage(text);
      if (c.ok) assert.deepEqual(Object.keys(c.value).sort(), ['action', 'id', 'type']);
    });
    assert.ok(n > 50, `${n} cases`);
  });

  it('the safetensors reader: only SafetensorsError, and accepted tensors lie inside the buffer', () => {
    const valid = Buffer.concat(
      encodeSafetensors(
        [
          ['a', { shape: [2, 3], data: new Float32Array(6).fill(1) }],
          ['b', { shape: [4], data: new Float32Array(4) }],
        ],
        { format: 'pt' },
      ),
    );
    const n = fuzz('safetensors', (r) => {
      const bytes = mutateBytes(valid, r);
      try {
        const st = parseSafetensors(bytes, 'fuzz.safetensors');
        for (const t of st.tensors.values()) {
          assert.ok(t.bytes.byteOffset >= bytes.byteOffset && t.bytes.byteOffset + t.bytes.byteLength <= bytes.byteOffset + bytes.byteLength);
        }
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw e;
      }
    });
    assert.ok(n > 50, `${n} cases`);
  });

  it('the run-store reader: never throws; every message it yields is valid, every damaged line is reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalelm-fuzz-'));
    try {
      const lines =
        MESSAGES.filter((m) => m.type !== 'control')
          .map((m) => JSON.stringify(m))
          .join('\n') + '\n';
      const r = rng(SEED);
      const until = Date.now() + BUDGET_MS;
      let n = 0;
      for (; Date.now() < until; n++) {
        const bytes = mutateBytes(Buffer.from(lines.repeat(3)), r);
        writeFileSync(join(dir, 'metrics.jsonl'), bytes);
        let yielded = 0;
        let problems = 0;
        const result = await streamMessages(
          dir,
          (m) => {
            assert.ok(validateMessage(m).ok);
            yielded++;
          },
          () => problems++,
        ).catch((e: unknown) => {
          throw new Error(`run-store: case ${n} (SCALELM_FUZZ_SEED=${SEED}): ${(e as Error).stack}`);
        });
        assert.ok(yielded + problems + (result.truncatedTail ? 1 : 0) <= result.lines);
      }
      assert.ok(n > 20, `${n} cases`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
