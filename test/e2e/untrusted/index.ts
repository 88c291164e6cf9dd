// extensionTestsPath of the untrusted-workspace suite: workspace trust on, the folder not trusted.
import { runMochaIn } from '../mocha-in-host';

export function run(): Promise<void> {
  return runMochaIn(__dirname);
}
