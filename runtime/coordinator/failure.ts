// Which rank's failure started a run's end, for every engine (the coordinator and `scalelm launch`). When one rank dies, the others fail in their next collective ("Connection
// reset by peer", NCCL's remote-process errors) and may report that first: a rank's own error comes before a
// rank that just vanished (killed, crashed), and both before errors that only say a peer went away.
export interface RankFailure {
  rank: number;
  step?: number;
  message: string;
  kind?: string;
  /** The rank's channel closed without an error line. */
  abrupt: boolean;
}

/** Errors that say only that another rank went away (gloo, NCCL, the store). */
export const PEER_GONE = /Connection reset by peer|Connection closed by peer|Broken pipe|remote process exited|ProcessGroupNCCL.*(abort|timeout)|Socket Timeout|recvValue|connection refused/i;

export function rootFailure(failures: readonly RankFailure[]): RankFailure | undefined {
  const own = failures.filter((f) => !f.abrupt && !PEER_GONE.test(f.message));
  return own[0] ?? failures.find((f) => f.abrupt) ?? failures[0];
}
