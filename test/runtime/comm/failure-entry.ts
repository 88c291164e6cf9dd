// Ranks that misbehave on purpose, for the failure tests: absent, dying, mismatched, stuck.
import type { Comm } from '../../../runtime/comm/comm';

export type Scenario = 'absent' | 'absent-async' | 'throws' | 'exits' | 'killed' | 'mismatch' | 'p2p-mismatch' | 'p2p-absent' | 'group-order' | 'stuck';

export interface Outcome {
  error?: { name: string; message: string };
  /** The caller's buffer still holds its input after a failed call (nothing was half-written). */
  intact?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Stays out of every call until the others have given up (the world is aborted), or `ms` passes. */
async function stayAway(comm: Comm, ms: number): Promise<void> {
  for (let t = 0; t < ms && !comm.abortReason(); t += 20) await sleep(20);
}

/** Runs `fn`, turning a thrown error into a result so the test can inspect its class and message. */
function capture(fn: () => void, buf?: Float32Array, original?: Float32Array): Outcome {
  try {
    fn();
    return {};
  } catch (e) {
    const err = e as Error;
    return { error: { name: err.name, message: err.message }, intact: buf && original ? buf.every((v, i) => v === original[i]) : undefined };
  }
}

export async function main(comm: Comm, args: { scenario: Scenario; victim: number; holdMs: number }): Promise<Outcome> {
  const { scenario, victim } = args;
  const g = comm.world;
  const me = comm.rank;
  const buf = new Float32Array(1000).fill(me + 1);
  const original = buf.slice();
  switch (scenario) {
    case 'absent':
      if (me === victim) {
        await stayAway(comm, args.holdMs); // never joins the call
        return {};
      }
      return capture(() => g.allReduce(buf), buf, original);
    case 'absent-async':
      if (me === victim) {
        await stayAway(comm, args.holdMs);
        return {};
      }
      return capture(() => g.allReduceAsync(buf).wait());
    case 'throws':
      if (me === victim) throw new Error(`rank ${me} fell over on purpose`);
      return capture(() => g.allReduce(buf));
    case 'exits':
      if (me === victim) process.exit(3);
      return capture(() => g.allReduce(buf));
    case 'killed':
      if (me === victim) process.kill(process.pid, 'SIGKILL');
      return capture(() => g.allReduce(buf));
    case 'mismatch':
      // Rank 0 all-reduces 1000 floats while the others all-gather 10 each.
      if (me === 0) return capture(() => g.allReduce(buf), buf, original);
      return capture(() => g.allGather(new Float32Array(10 * g.size), new Float32Array(10)));
    case 'p2p-mismatch':
      if (me === 0) return capture(() => g.send(new Float32Array(10), 1, 0));
      if (me === 1) return capture(() => g.recv(new Float32Array(20), 0, 0));
      return {};
    case 'p2p-absent':
      if (me === 0) return capture(() => g.recv(new Float32Array(5), victim, 0));
      if (me === victim) await stayAway(comm, args.holdMs);
      return {};
    case 'group-order': {
      // Rank 0 creates the groups in the opposite order from everyone else.
      const lists = [
        [0, 1],
        [1, 2 % comm.size],
      ].map((l) => [...new Set(l)]);
      if (me === 0) lists.reverse();
      return capture(() => {
        const groups = lists.map((l) => comm.newGroup(l));
        for (const grp of groups) grp?.allReduce(buf);
      });
    }
    case 'stuck':
      if (me === victim)
        for (;;) {
          /* spins in JavaScript until the launcher terminates it */
        }
      throw new Error(`rank ${me} failed while rank ${victim} is stuck`);
  }
}
