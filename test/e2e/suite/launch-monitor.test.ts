// Your own script from VS Code: "Launch with Monitor" on a .py (the real input box, answered in the drawn
// workbench), a config's `launch` section through Launch Training, and the `scalelm` task type with a
// command. The script is test/fixtures/e2e-workspace/monitored.py (scalelm.Monitor), run by the venv's
// torch (scalelm.pythonPath); the run goes the same way as Launch Training's: LiveRun, dashboard, Runs view.
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as vscode from 'vscode';
import type { ScaleLMApi } from '../../../extension/extension';
import type { LaunchOutcome } from '../../../extension/launch';
import { bridgeAvailable, waitFor, workbench } from '../workbench';

const folder = (): string => vscode.workspace.workspaceFolders![0]!.uri.fsPath;
const workspaceFile = (name: string): vscode.Uri => vscode.Uri.file(join(folder(), name));
const python = (): string => vscode.workspace.getConfiguration('scalelm').get<string>('pythonPath', '');

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function steps(runDir: string): number[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; step?: number })
    .filter((m) => m.type === 'step')
    .map((m) => m.step!);
}

describe('Launch with Monitor and launch configs from VS Code', function () {
  this.timeout(240_000);
  let api: ScaleLMApi;
  before(async () => {
    api = await vscode.extensions.getExtension<ScaleLMApi>('scalelm.scalelm')!.activate();
  });

  it('a .py offers Launch with Monitor; it asks for the command line (torchrun of the configured Python), runs it, and the dashboard follows both ranks', async function () {
    if (!bridgeAvailable()) this.skip();
    assert.ok((await workbench.explorerContextMenu('monitored.py')).includes('Launch with Monitor'), 'the Explorer menu of a .py');
    const script = workspaceFile('monitored.py');
    const pending = vscode.commands.executeCommand<LaunchOutcome>('scalelm.launchWithMonitor', script);
    const torchrun = join(dirname(python()), 'torchrun');
    const line = `${torchrun} --nproc-per-node 2 monitored.py`;
    const asked = await workbench.quickInput(line);
    assert.equal(asked.offered, `${torchrun} --nproc-per-node 1 monitored.py`, 'the first time: one rank of torchrun from the configured Python');
    assert.match(asked.title, /Launch monitored\.py with Monitor/);
    const outcome = await pending;
    assert.ok(outcome && 'started' in outcome, `started: ${JSON.stringify(outcome)}`);
    const run = outcome.started;
    assert.equal(run.options.launch?.name, 'monitored');
    assert.deepEqual(run.options.launch?.command, [torchrun, '--nproc-per-node', '2', 'monitored.py']);
    await waitFor('the launched run to end', () => run.state === 'finished' || run.state === 'failed' || run.state === 'crashed', 180_000);
    assert.equal(run.state, 'finished', run.detail);
    assert.equal(run.lastStep?.step, 5);
    assert.deepEqual(steps(run.options.runDir), [1, 2, 3, 4, 5]);
    const seen = await waitFor(
      'the dashboard to show the run with both ranks',
      async () => {
        const r = (await api.dashboardRequest({ type: 'inspect' })) as { stepsShown: number; runId: string | null; memory: unknown[] };
        return r.stepsShown >= 5 && r.memory.length === 2 ? r : undefined;
      },
      30_000,
    );
    console.log(`dashboard shows launched run ${seen.runId}: ${seen.stepsShown} steps, ${seen.memory.length} memory panels`);
    const listed = api.pastRuns().find((n) => n.kind === 'past' && n.run.dir === run.options.runDir);
    assert.ok(listed && listed.kind === 'past', 'the run is in the Runs view');
    assert.equal(listed.run.state, 'finished');
    await waitFor('the CLI to exit', () => !alive(run.pid), 10_000);

    // The second time the box offers the line used last for this file; Escape starts nothing.
    const again = vscode.commands.executeCommand<LaunchOutcome>('scalelm.launchWithMonitor', script);
    const second = await workbench.quickInput(null);
    assert.equal(second.offered, line, 'the remembered command line');
    assert.deepEqual(await again, { refused: 'cancelled', reason: 'no command line given' });
  });

  it('a line that cannot be read is refused with its reason; nothing starts', async () => {
    const before = api.runs().length;
    const outcome = await api.launchWithMonitor(workspaceFile('monitored.py'), async () => `${python()} "monitored.py`);
    assert.deepEqual(outcome, { refused: 'invalid', reason: 'unclosed " at column ' + String(python().length + 2) });
    assert.equal(api.runs().length, before);
  });

  it('a config with a launch section runs its command under Launch Training; Stop sends SIGINT and ends it, nothing left running', async () => {
    const pidFile = join(folder(), 'scripts', 'pid');
    mkdirSync(join(folder(), 'scripts'), { recursive: true });
    writeFileSync(join(folder(), 'scripts', 'monitored.py'), readFileSync(join(folder(), 'monitored.py')));
    writeFileSync(
      join(folder(), 'own.scalelm.json'),
      JSON.stringify(
        { name: 'own-script', model: { preset: 'tiny' }, launch: { command: [python(), 'monitored.py'], cwd: 'scripts', env: { STEPS: '100000', STEP_SLEEP: '0.05', PID_FILE: pidFile } } },
        null,
        2,
      ),
    );
    const outcome = await vscode.commands.executeCommand<LaunchOutcome>('scalelm.launchTraining', workspaceFile('own.scalelm.json'));
    assert.ok(outcome && 'started' in outcome, JSON.stringify(outcome));
    const run = outcome.started;
    await waitFor('two steps', () => (run.lastStep?.step ?? 0) >= 2, 120_000);
    const scriptPid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(alive(scriptPid), 'the script runs');
    const t0 = Date.now();
    await vscode.commands.executeCommand('scalelm.stopRun', { runId: run.id });
    const ms = Date.now() - t0;
    console.log(`stopped the launched script at step ${run.lastStep?.step} in ${ms} ms (state ${run.state}: ${run.detail})`);
    assert.equal(run.state, 'stopped', run.detail);
    assert.ok(ms < vscode.workspace.getConfiguration('scalelm').get<number>('stopTimeoutMs', 15000), 'SIGINT ended it before the kill timeout');
    assert.equal(alive(run.pid), false, 'the CLI is gone');
    await waitFor('the script to be gone', () => !alive(scriptPid), 5_000);
    assert.equal(JSON.parse(readFileSync(join(run.options.runDir, 'metrics.jsonl'), 'utf8').split('\n')[0]!).name, 'own-script');

    // A cwd outside the workspace is refused before anything starts.
    writeFileSync(join(folder(), 'outside.scalelm.json'), JSON.stringify({ model: { preset: 'tiny' }, launch: { command: [python(), 'x.py'], cwd: '..' } }));
    const refused = await api.launch(workspaceFile('outside.scalelm.json'));
    assert.ok('refused' in refused && refused.refused === 'invalid' && /outside the workspace folder/.test(refused.reason), JSON.stringify(refused));
  });

  it('the scalelm task type runs a command under scalelm launch', async () => {
    mkdirSync(join(folder(), '.vscode'), { recursive: true });
    writeFileSync(
      join(folder(), '.vscode', 'tasks.json'),
      JSON.stringify({ version: '2.0.0', tasks: [{ type: 'scalelm', label: 'monitored', command: [python(), 'monitored.py'], name: 'from-task' }] }),
    );
    const task = await waitFor(
      'the task from tasks.json',
      async () => (await vscode.tasks.fetchTasks({ type: 'scalelm' })).find((t) => t.name === 'monitored' || t.definition.name === 'from-task'),
      20_000,
    );
    assert.ok(task.execution instanceof vscode.ProcessExecution, 'resolved by the provider');
    assert.deepEqual(task.execution.args.slice(1, 4), ['launch', '--name', 'from-task']);
    const ended = new Promise<number | undefined>((resolve) => {
      const d = vscode.tasks.onDidEndTaskProcess((e) => {
        if (e.execution.task.definition.name === 'from-task') {
          d.dispose();
          resolve(e.exitCode);
        }
      });
    });
    await vscode.tasks.executeTask(task);
    assert.equal(await ended, 0);
    const runs = readdirSync(join(folder(), 'runs')).filter((d) => d.startsWith('from-task-'));
    assert.equal(runs.length, 1, JSON.stringify(runs));
    assert.deepEqual(steps(join(folder(), 'runs', runs[0]!)), [1, 2, 3, 4, 5]);
    assert.ok(existsSync(join(folder(), 'runs', runs[0]!, 'metrics.jsonl')));
  });
});
