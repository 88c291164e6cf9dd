// The dashboard after a window reload, in the real VS Code: it comes back by itself (its webview serializer)
// showing the run it showed before, not "No run yet". The suite runs twice: before the reload it opens a
// recorded run and reloads the window (Developer: Reload Window); VS Code then starts the tests again, and a
// marker file in the workspace says that this is the run after the reload.
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { waitFor } from '../workbench';

const ROOT = join(__dirname, '../../../..');
const workspace = (): string => vscode.workspace.workspaceFolders![0]!.uri.fsPath;
const marker = (): string => join(workspace(), '.reloaded.json');

interface Shown {
  runId: string | null;
  stepsShown: number;
  header: Record<string, string>;
}

async function api(): Promise<ScaleLMApi> {
  const ext = vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!;
  // Activation comes from the workspace (or the revived panel), never from this test.
  await waitFor('ScaleLM to activate by itself', () => ext.isActive, 60_000);
  return ext.activate();
}

describe('the dashboard across a window reload', function () {
  this.timeout(180_000);

  it('comes back by itself showing the run it showed', async function () {
    const a = await api();
    if (!existsSync(marker())) {
      // Before the reload: two recorded runs in the workspace's runs folder; the older one is shown (the newer
      // is what a dashboard that forgot would fall back to).
      const recorded = readFileSync(join(ROOT, 'test/fixtures/streams/tiny-cpu/metrics.jsonl'), 'utf8');
      const runDir = join(workspace(), 'runs', 'tiny-replay');
      const newer = join(workspace(), 'runs', 'tiny-newer');
      for (const [dir, text] of [
        [runDir, recorded],
        [newer, recorded.replace('"runId":"tiny-cpu"', '"runId":"tiny-newer"')],
      ] as const) {
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'metrics.jsonl'), text);
      }
      const hourAgo = new Date(Date.now() - 3_600_000);
      for (const p of [join(runDir, 'metrics.jsonl'), runDir]) utimesSync(p, hourAgo, hourAgo);
      await vscode.commands.executeCommand('scalelm.refreshRuns');
      await vscode.commands.executeCommand('scalelm.openDashboard', { runDir });
      const before = await waitFor(
        'the dashboard to show the older recorded run',
        async () => {
          const i = (await a.dashboardRequest({ type: 'inspect' })) as unknown as Shown;
          return i.runId === 'tiny-cpu' && i.stepsShown > 0 && i.header.state === 'finished' ? i : undefined;
        },
        60_000,
        500,
      );
      console.log(`before the reload: run ${before.runId}, ${before.stepsShown} steps, ${before.header.state}`);
      writeFileSync(marker(), JSON.stringify({ runId: before.runId, stepsShown: before.stepsShown }));
      // The page keeps its state with VS Code; give the workbench a moment to store it, as a user would.
      await new Promise((r) => setTimeout(r, 2000));
      await vscode.commands.executeCommand('workbench.action.reloadWindow');
      // This extension host ends with the reload; still being here means the window did not reload.
      await new Promise((r) => setTimeout(r, 120_000));
      assert.fail('the window did not reload');
    }
    // After the reload: nothing here opens the dashboard; VS Code restores its tab and the serializer revives it.
    const before = JSON.parse(readFileSync(marker(), 'utf8')) as { runId: string; stepsShown: number };
    rmSync(marker());
    await waitFor(
      'the dashboard tab to be restored',
      () => vscode.window.tabGroups.all.flatMap((g) => g.tabs).some((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('scalelm.dashboard')),
      60_000,
    );
    await waitFor('the serializer to revive the dashboard', () => a.dashboardShown(), 60_000);
    const after = await waitFor(
      `the revived dashboard to show ${before.runId}`,
      async () => {
        const i = (await a.dashboardRequest({ type: 'inspect' })) as unknown as Shown;
        return i.runId === before.runId && i.stepsShown > 0 ? i : undefined;
      },
      60_000,
      500,
    );
    console.log(`after the reload: run ${after.runId}, ${after.stepsShown} steps, ${after.header.state}`);
    assert.equal(after.header.state, 'finished', 'its state, not "No run yet"');
    assert.equal(after.stepsShown, before.stepsShown, 'the whole recorded curve');
  });
});
