// extensionTestsPath of the .vsix suite: ScaleLM installed from its package, no development copy loaded.
import { runMochaIn } from '../mocha-in-host';

export function run(): Promise<void> {
  return runMochaIn(__dirname);
}
