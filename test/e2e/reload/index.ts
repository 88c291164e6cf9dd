// extensionTestsPath of the reload suite: it runs once before a window reload and once after it.
import { runMochaIn } from '../mocha-in-host';

export function run(): Promise<void> {
  return runMochaIn(__dirname);
}
