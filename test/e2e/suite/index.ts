// extensionTestsPath of the main e2e suite: the extension in a trusted (trust disabled) workspace.
import { runMochaIn } from '../mocha-in-host';

export function run(): Promise<void> {
  return runMochaIn(__dirname);
}
