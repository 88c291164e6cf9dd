// Entry of a rank's comm thread (see async-engine.ts): runs posted calls in order with its own backend
// instance over the rank's shared memory, reports each result, flips its completion cell.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { Backend, Call, GroupResources } from './backend';
import type { CommThreadCall, CommThreadResult } from './async-engine';
import { now, serializeError } from './types';
import { createShmBackend, type ShmThreadSpec } from './shm-backend';
import { createSocketBackend, type SocketThreadSpec } from './socket-backend';

interface Data {
  kind: 'shm' | 'socket';
  spec: unknown;
  memory: WebAssembly.Memory;
  cellsOffset: number;
  cells: number;
  results: MessagePort;
}

const data = workerData as Data;
const backend: Backend = data.kind === 'shm' ? createShmBackend(data.spec as ShmThreadSpec) : createSocketBackend(data.spec as SocketThreadSpec);
const i32 = new Int32Array(data.memory.buffer);
const cellsBase = data.cellsOffset / 4;
const groups = new Map<number, GroupResources>();

process.on('exit', () => {
  Atomics.store(i32, cellsBase, 1);
  for (let c = 0; c < data.cells; c++) Atomics.notify(i32, cellsBase + c);
});

const view = (b: [number, number] | null) => (b ? new Float32Array(data.memory.buffer, b[0], b[1]) : null);

parentPort!.on('message', (m: CommThreadCall | 'close') => {
  if (m === 'close') {
    backend.close();
    parentPort!.close();
    data.results.close();
    return;
  }
  let resources = groups.get(m.spec.id);
  if (!resources) {
    resources = backend.adopt(m.spec, m.shareable);
    groups.set(m.spec.id, resources);
  }
  const input = view(m.input);
  const output = m.output && m.input && m.output[0] === m.input[0] && m.output[1] === m.input[1] ? input : view(m.output);
  const call: Call = { desc: m.desc, input, output, peer: m.peer, tag: m.tag };
  let result: CommThreadResult;
  let state = 1;
  const start = now();
  try {
    const algorithm = backend.execute(m.spec, resources, call, m.timeoutMs);
    result = { id: m.id, algorithm, start, end: now() };
  } catch (e) {
    state = 2;
    result = { id: m.id, error: serializeError(e) };
  }
  data.results.postMessage(result);
  Atomics.store(i32, m.cell, state);
  Atomics.notify(i32, m.cell);
});
