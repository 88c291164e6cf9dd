// How a world runs user code: an entry module exports `main(comm, args)` (or a default export of that
// shape), returning a structured-cloneable result, possibly through a promise.

import type { Comm } from './comm';

export type RankMain<A = unknown, R = unknown> = (comm: Comm, args: A) => R | Promise<R>;

export async function runEntry(entry: string, comm: Comm, args: unknown): Promise<unknown> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(entry) as { main?: RankMain; default?: RankMain | { main?: RankMain } };
  const fn = mod.main ?? (typeof mod.default === 'function' ? mod.default : mod.default?.main);
  if (typeof fn !== 'function') throw new Error(`${entry} exports no main(comm, args) function`);
  return await fn(comm, args);
}
