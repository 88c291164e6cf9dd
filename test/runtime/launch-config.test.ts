// `scalelm launch --config FILE`: a config's launch section (command, cwd relative to the config, env) runs
// as one monitored run; `scalelm train` on such a config refuses and names the launch command; SIGTERM to
// the CLI (VS Code ending a stop, closing the window) leaves none of the command's processes running. The
// command is a real script with scalelm.Monitor, importing the package from the CLI's bundled PYTHONPATH.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, running, tempDir } from './train/fixtures';
import { torchPythonForSuite } from './train/python';

const CLI = join(REPO, 'out', 'runtime', 'cli.js');
const SCRIPT = join(REPO, 'test', 'fixtures', 'e2e-workspace', 'monitored.py');

describe("cli: a config's launch section (scalelm launch --config)", function () {
  this.timeout(120_000);
  const torchPython = torchPythonForSuite();
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('scalelm-launch-config-');
    mkdirSync(join(dir.path, 'scripts'));
    copyFileSync(SCRIPT, join(dir.path, 'scripts', 'monitored.py'));
  });
  afterEach(() => dir.remove());

  const writeConfig = (launch: unknown): string => {
    const file = join(dir.path, 'own.scalelm.json');
    writeFileSync(file, JSON.stringify({ name: 'own-script', model: { preset: 'tiny' }, launch }));
    return file;
  };
  // No PYTHONPATH from the caller: the CLI must supply the scalelm package itself.
  const env = (): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, SCALELM_MONITOR_TOKEN: 'b'.repeat(64) };
    delete e.PYTHONPATH;
    return e;
  };
  const python = torchPython;

  it("runs the command in its cwd with its env; steps arrive and the run finishes under the config's name", () => {
    const file = writeConfig({ command: [python(), 'monitored.py'], cwd: 'scripts', env: { STEPS: '4', MONITORED_GREETING: 'hello from the config' } });
    const runDir = join(dir.path, 'run');
    const r = spawnSync(process.execPath, [CLI, 'launch', '--config', file, '--run-dir', runDir], { cwd: dir.path, encoding: 'utf8', timeout: 100_000, env: env() });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.ok(r.stdout.includes(`greeting: hello from the config from ${join(dir.path, 'scripts')}`), r.stdout);
    const messages = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(messages[0]!.type, 'hello');
    assert.equal(messages[0]!.name, 'own-script');
    assert.deepEqual(
      messages.filter((m) => m.type === 'step').map((m) => m.step),
      [1, 2, 3, 4],
    );
    assert.equal(messages.at(-1)!.state, 'finished');
  });

  it('scalelm train on such a config refuses, names `scalelm launch --config`, and starts nothing', () => {
    const file = writeConfig({ command: [python(), 'monitored.py'], cwd: 'scripts' });
    const r = spawnSync(process.execPath, [CLI, 'train', file], { cwd: dir.path, encoding: 'utf8', timeout: 60_000, env: env() });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /has a launch section: it runs its own command \(.*monitored\.py\), not the built-in trainer; start it with: scalelm launch --config /);
    assert.equal(existsSync(join(dir.path, 'runs')), false, 'no run folder');
  });

  it('refuses --config without a launch section, with a command after --, or with an invalid section', () => {
    const plain = join(dir.path, 'plain.scalelm.json');
    writeFileSync(plain, JSON.stringify({ model: { preset: 'tiny' } }));
    let r = spawnSync(process.execPath, [CLI, 'launch', '--config', plain], { cwd: dir.path, encoding: 'utf8', env: env() });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /has no launch section/);
    const file = writeConfig({ command: ['python', 'x.py'] });
    r = spawnSync(process.execPath, [CLI, 'launch', '--config', file, '--', 'python', 'y.py'], { cwd: dir.path, encoding: 'utf8', env: env() });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /brings its own command \(launch\.command\); leave out -- python y\.py/);
    const bad = writeConfig({ command: [], env: { A: 1 } });
    r = spawnSync(process.execPath, [CLI, 'launch', '--config', bad], { cwd: dir.path, encoding: 'utf8', env: env() });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /2 problems\n {2}launch\.command: launch\.command must have at least 1 item\n {2}launch\.env\.A: launch\.env\.A must be a string/);
    const nowhere = writeConfig({ command: ['python', 'x.py'], cwd: 'missing' });
    r = spawnSync(process.execPath, [CLI, 'launch', '--config', nowhere], { cwd: dir.path, encoding: 'utf8', env: env() });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /launch\.cwd "missing" is .*missing, which is not a folder/);
    assert.equal(existsSync(join(dir.path, 'runs')), false, 'nothing was started');
  });

  it("SIGTERM to the CLI kills the command's processes before it exits", async () => {
    const file = writeConfig({ command: [python(), 'monitored.py'], cwd: 'scripts', env: { STEPS: '100000', STEP_SLEEP: '0.05' } });
    const child = spawn(process.execPath, [CLI, 'launch', '--config', file, '--run-dir', join(dir.path, 'run')], { cwd: dir.path, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const pid = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no rank joined: ${stderr}`)), 60_000);
      child.stderr.on('data', () => {
        const m = /joined \(pid (\d+)/.exec(stderr);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
    });
    assert.ok(running(pid));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 143);
    for (let i = 0; i < 20 && running(pid); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(running(pid), false, 'the script was killed with the CLI');
  });
});
