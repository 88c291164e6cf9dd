// Entry of one rank of a process world (see launch.ts): joins the socket world from the environment, runs
// the user's entry module (argv[2]) with the args the launcher sends over IPC, reports the outcome.

import { initProcessWorld } from './process-world';
import { runEntry } from './entry';
import type { Comm } from './comm';
import type { SocketBackend, SocketOptions } from './socket-backend';
import { serializeError } from './types';

const entry = process.argv[2]!;
// The launcher is gone (killed, crashed): do not linger as an orphan.
process.on('disconnect', () => process.exit(1));

function report(message: unknown): Promise<void> {
  return new Promise((resolve) => process.send!(message, () => resolve()));
}

process.once('message', (m: { args: unknown; recordCapacity?: number; socketOptions?: SocketOptions }) => {
  void (async () => {
    let comm: Comm | undefined;
    try {
      comm = await initProcessWorld({ recordCapacity: m.recordCapacity, ...m.socketOptions });
      const result = await runEntry(entry, comm, m.args);
      comm.close();
      // Wait for the I/O thread to say goodbye to every peer: exiting earlier would look like a crash to them.
      await (comm.backend as SocketBackend).closed();
      await report({ ok: true, result });
      process.exit(0);
    } catch (e) {
      comm?.abort(`rank ${process.env.RANK} failed: ${(e as Error)?.message ?? String(e)}`);
      await report({ ok: false, error: serializeError(e) });
      // Give the I/O thread a moment to tell the peers, then go.
      setTimeout(() => process.exit(1), 50);
    }
  })();
});
