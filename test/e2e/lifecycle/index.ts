// extensionTestsPath of the lifecycle suite: the examples copied to a temp folder opened as the workspace.
import { runMochaIn } from '../mocha-in-host';

export function run(): Promise<void> {
  return runMochaIn(__dirname);
}
