// A rank of the test worlds: runs the whole collective suite (checks.ts) and returns each check's failures.
import type { Comm } from '../../../runtime/comm/comm';
import { runChecks, type SuiteArgs } from './checks';

export function main(comm: Comm, args: SuiteArgs): Record<string, string[]> {
  return runChecks(comm, args);
}
