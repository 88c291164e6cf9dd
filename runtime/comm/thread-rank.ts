// Entry of one rank of a thread world (see launch.ts): builds the rank's Comm over the shared world memory,
// runs the user's entry module, reports its result or error to the launcher.

import { parentPort, workerData } from 'node:worker_threads';
import { Comm, type CommOptions } from './comm';
import { ShmBackend, type ShmBackendOptions } from './shm-backend';
import { serializeError } from './types';
import { runEntry } from './entry';

interface Data {
  memory: WebAssembly.Memory;
  rank: number;
  entry: string;
  args: unknown;
  comm: CommOptions;
  shm: ShmBackendOptions;
}

const data = workerData as Data;

async function main(): Promise<void> {
  let comm: Comm | undefined;
  try {
    comm = new Comm(new ShmBackend(data.memory, data.rank, data.shm), data.comm);
    const result = await runEntry(data.entry, comm, data.args);
    comm.close();
    parentPort!.postMessage({ ok: true, result });
  } catch (e) {
    // Peers may be waiting for this rank inside a collective: make them fail now, not at their timeout.
    comm?.abort(`rank ${data.rank} failed: ${(e as Error)?.message ?? String(e)}`);
    comm?.close();
    parentPort!.postMessage({ ok: false, error: serializeError(e) });
  }
}

void main();
