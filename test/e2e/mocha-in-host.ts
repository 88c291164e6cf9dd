// Runs a folder of compiled mocha tests inside the VS Code extension host. Each e2e suite's index.ts is
// one line that calls this with its own folder; VS Code calls the index's run() (extensionTestsPath) and
// reports a rejection to the runner as a non-zero exit code.
import Mocha from 'mocha';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Counts } from './bridge';
import { ask, bridgeAvailable } from './workbench';

export async function runMochaIn(dir: string, options: { timeoutMs?: number } = {}): Promise<void> {
  // The extension host forwards console.log to the runner (codeAutomationLog); colours would be noise.
  const mocha = new Mocha({ ui: 'bdd', color: false, reporter: 'spec', timeout: options.timeoutMs ?? 60_000 });
  if (process.env.SCALELM_E2E_GREP) mocha.grep(process.env.SCALELM_E2E_GREP);
  const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.test.js')).sort();
  if (files.length === 0) throw new Error(`no *.test.js files under ${dir}`);
  for (const f of files) mocha.addFile(join(dir, f));

  // A picture of the workbench for every failed test, while the failure is still on screen.
  mocha.suite.afterEach(async function () {
    const test = this.currentTest;
    if (test?.state === 'failed' && bridgeAvailable()) {
      const name = test
        .fullTitle()
        .replace(/[^a-z0-9]+/gi, '-')
        .replace(/^-|-$/g, '')
        .slice(0, 80);
      try {
        console.log(`screenshot of the failure: ${await ask('screenshot', { name: `failed-${name}` }).then((r) => r.path)}`);
      } catch (e) {
        console.log(`(no screenshot: ${String(e)})`);
      }
    }
  });

  const counts = await new Promise<Counts>((resolve, reject) => {
    try {
      const runner = mocha.run(() => resolve({ passes: runner.stats?.passes ?? 0, failures: runner.stats?.failures ?? 0, pending: runner.stats?.pending ?? 0 }));
    } catch (e) {
      reject(e);
    }
  });
  console.log(`SCALELM_E2E_RESULT ${JSON.stringify(counts)}`);
  if (bridgeAvailable()) await ask('result', counts);
  if (counts.failures > 0) throw new Error(`${counts.failures} e2e test(s) failed`);
}
