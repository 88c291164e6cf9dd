// Launching training from VS Code for real: the runtime child process, its live stream into the dashboard
// and the status bar, the run in the Runs view afterwards, and Stop leaving no process behind.
import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import { bridgeAvailable, waitFor, workbench } from '../workbench';

function workspaceFile(name: string): vscode.Uri {
  return vscode.Uri.joinPath(vscode.workspace.workspaceFolders![0]!.uri, name);
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('Launch Training from VS Code', function () {
  this.timeout(240_000);

  it('runs the tiny config: steps reach the dashboard and the status bar, then the run is listed as finished', async function () {
    const api = await vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
    const outcome = await vscode.commands.executeCommand<Awaited<ReturnType<ScaleLMApi['launch']>>>('scalelm.launchTraining', workspaceFile('a.scalelm.json'));
    assert.ok(outcome && 'started' in outcome, `the run started: ${JSON.stringify(outcome)}`);
    const run = outcome.started;
    assert.ok(alive(run.pid), 'the runtime is a live child process');
    await waitFor('step 3 to arrive over the WebSocket', () => (run.lastStep?.step ?? 0) >= 3, 120_000);
    assert.match(api.statusBarText(), /step \d+ · loss \d+\.\d{3}/);
    const seen = await waitFor(
      'the dashboard to draw steps',
      async () => {
        const r = (await api.dashboardRequest({ type: 'inspect' })) as { stepsShown: number; runId: string | null; memory: unknown[] };
        return r.stepsShown >= 3 ? r : undefined;
      },
      30_000,
    );
    console.log(`dashboard shows run ${seen.runId}: ${seen.stepsShown} steps, ${seen.memory.length} memory panel(s)`);
    if (bridgeAvailable()) {
      await vscode.commands.executeCommand('notifications.clearAll');
      await vscode.window.showTextDocument(workspaceFile('a.scalelm.json'), { viewColumn: vscode.ViewColumn.One, preview: false });
      console.log(`workbench during the run: ${await workbench.screenshot('live-run')}`);
    }
    await waitFor('the run to finish', () => run.state === 'finished' || run.state === 'failed', 180_000);
    assert.equal(run.state, 'finished', run.detail);
    assert.equal(run.lastStep?.step, 10);
    await waitFor('the runtime process to exit', () => !alive(run.pid), 10_000);
    const listed = api.pastRuns().find((n) => n.kind === 'past' && n.run.dir === run.options.runDir);
    assert.ok(listed && listed.kind === 'past', `the finished run is in the Runs view: ${JSON.stringify(api.pastRuns().map((n) => n.kind))}`);
    assert.equal(listed.run.state, 'finished');
    assert.equal(listed.run.lastStep, 10);
  });

  it('Stop checkpoints and ends the runtime; no process is left behind', async function () {
    const api = await vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
    const outcome = await api.launch(workspaceFile('a.scalelm.json'), ['--set', 'train.steps=100000']);
    assert.ok('started' in outcome, JSON.stringify(outcome));
    const run = outcome.started;
    await waitFor('a first step', () => (run.lastStep?.step ?? 0) >= 1, 120_000);
    const t0 = Date.now();
    await vscode.commands.executeCommand('scalelm.stopRun', { runId: run.id });
    console.log(`stopped after step ${run.lastStep?.step} in ${Date.now() - t0} ms (state ${run.state})`);
    assert.equal(alive(run.pid), false, 'the runtime process is gone');
    assert.notEqual(run.state, 'failed', run.detail);
    const checkpoints = join(run.options.runDir, 'checkpoints');
    assert.ok(existsSync(checkpoints) && readdirSync(checkpoints).some((d) => d.startsWith('step-')), 'a checkpoint was written on stop');
    assert.deepEqual(
      api.runs().filter((r) => r.live),
      [],
    );
  });

  it('launches on the torch engine (torchrun, the Python from scalelm.pythonPath): both ranks reach the dashboard', async function () {
    const api = await vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
    const sets = ['devices.engine=torch', 'parallel.dp=2', 'parallel.zero=3', 'train.steps=4'].flatMap((s) => ['--set', s]);
    const outcome = await api.launch(workspaceFile('a.scalelm.json'), sets);
    assert.ok('started' in outcome, JSON.stringify(outcome));
    const run = outcome.started;
    await waitFor('the torch run to finish', () => run.state === 'finished' || run.state === 'failed', 200_000);
    assert.equal(run.state, 'finished', run.detail);
    assert.equal(run.lastStep?.step, 4);
    const hello = JSON.parse(readFileSync(join(run.options.runDir, 'metrics.jsonl'), 'utf8').split('\n')[0]!) as { type: string; world: number; engine?: { name: string } };
    assert.equal(hello.type, 'hello');
    assert.equal(hello.engine?.name, 'torch');
    assert.equal(hello.world, 2);
    const seen = await waitFor(
      'the dashboard to show both ranks of the torch run',
      async () => {
        const r = (await api.dashboardRequest({ type: 'inspect' })) as { stepsShown: number; runId: string | null; memory: unknown[] };
        return r.stepsShown >= 4 && r.memory.length === 2 ? r : undefined;
      },
      30_000,
    );
    console.log(`dashboard shows torch run ${seen.runId}: ${seen.stepsShown} steps, ${seen.memory.length} memory panels`);
    await waitFor('the runtime process to exit', () => !alive(run.pid), 10_000);
  });
});
