// The e2e runner: the extension in a real VS Code 1.100.3 (code-server's server + web workbench) driven by
// headless Chromium, the way VS Code's own browser integration tests run. For each suite it
//   1. starts code-server on 127.0.0.1:0 with throwaway user-data/extensions/XDG dirs,
//   2. opens the workbench in Chromium with extensionDevelopmentPath = this repo and
//      extensionTestsPath = the suite's compiled folder (its index.js exports run()),
//   3. serves the suite's questions about the drawn workbench (test/e2e/bridge.ts),
//   4. waits for codeAutomationExit, bounded by a timeout, and always stops code-server and Chromium.
// Usage: node out/test/e2e/run.js [suite ...]   (all suites when none is named)
// Env: SCALELM_E2E_REPORT=<file> gets {"passes","failures","pending"}; SCALELM_E2E_TIMEOUT_MS (per suite,
// default 240000); SCALELM_E2E_EXTENSION=<dir> tests another extension folder; SCALELM_E2E_VERBOSE=1 also prints the workbench's routine log lines; SCALELM_E2E_KEEP=1 keeps the temp
// dirs; SCALELM_E2E_GREP=<regex> runs only matching tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { format } from 'node:util';
import { join, relative, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { closeChromium, launchChromium } from '../webview/chromium';
import { BRIDGE_ENV, type BridgeOp, type BridgeOps, type Counts, type StatusBarItem } from './bridge';

const ROOT = resolve(__dirname, '../../..');
/** The extension under test (extensionDevelopmentPath); another folder only when debugging the runner. */
const EXTENSION_PATH = resolve(process.env.SCALELM_E2E_EXTENSION ?? ROOT);
const CODE_SERVER_VERSION = '4.100.3';
const CODE_SERVER_HOME = join(ROOT, '.vscode-test/code-server');
const CODE_SERVER_BIN = join(CODE_SERVER_HOME, 'node_modules/.bin/code-server');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const VERBOSE = process.env.SCALELM_E2E_VERBOSE === '1';

export interface E2ESuite {
  name: string;
  /** Compiled folder whose index.js exports run() (VS Code's extensionTestsPath). */
  testsDir: string;
  /** Copied to a temp folder that is opened as the workspace. */
  workspace: string;
  /**
   * "off": code-server --disable-workspace-trust (everything trusted).
   * "untrusted": trust enabled and the folder not trusted (fresh browser profile, startup prompt off), so the
   * extension runs in Restricted Mode.
   */
  trust: 'off' | 'untrusted';
  /** Extra user settings (settings.json) for this suite. */
  settings?: Record<string, unknown>;
  timeoutMs?: number;
  /**
   * Install this .vsix into the suite's extensions dir (with code-server --install-extension) and load no
   * development copy of ScaleLM: the tests then run against the packaged extension, carried by a stub
   * development extension that contributes nothing.
   */
  vsix?: string;
}

export const SUITES: E2ESuite[] = [
  // scalelm.pythonPath: the pinned .venv (torch 2.13.0 CPU) for the torch engine's launch test.
  {
    name: 'extension',
    testsDir: join(ROOT, 'out/test/e2e/suite'),
    workspace: join(ROOT, 'test/fixtures/e2e-workspace'),
    trust: 'off',
    settings: { 'scalelm.pythonPath': process.env.SCALELM_PYTHON ?? join(ROOT, '.venv/bin/python') },
  },
  { name: 'untrusted', testsDir: join(ROOT, 'out/test/e2e/untrusted'), workspace: join(ROOT, 'test/fixtures/e2e-workspace'), trust: 'untrusted' },
  // The examples folder copied to a temp dir: what a new user gets when copying the examples anywhere.
  { name: 'lifecycle', testsDir: join(ROOT, 'out/test/e2e/lifecycle'), workspace: join(ROOT, 'examples'), trust: 'off', timeoutMs: 480_000 },
  // Reloads the window once (the suite runs again after the reload and carries on from a marker file).
  { name: 'reload', testsDir: join(ROOT, 'out/test/e2e/reload'), workspace: join(ROOT, 'test/fixtures/e2e-workspace'), trust: 'off', timeoutMs: 360_000 },
  { name: 'vsix', testsDir: join(ROOT, 'out/test/e2e/vsix'), workspace: join(ROOT, 'test/fixtures/e2e-workspace'), trust: 'off', vsix: join(ROOT, 'scalelm.vsix') },
];

const BASE_SETTINGS: Record<string, unknown> = {
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'git.enabled': false,
  'security.workspace.trust.startupPrompt': 'never',
};

const log = (message: string): void => console.log(`[e2e] ${message}`);

// ---------------------------------------------------------------------------------------------------------
// code-server

function ensureCodeServer(): void {
  if (existsSync(join(CODE_SERVER_HOME, `.installed-${CODE_SERVER_VERSION}`)) && existsSync(CODE_SERVER_BIN)) return;
  log(`code-server ${CODE_SERVER_VERSION} is not set up in ${relative(ROOT, CODE_SERVER_HOME)}: running scripts/setup-code-server.sh`);
  const r = spawnSync('bash', [join(ROOT, 'scripts/setup-code-server.sh')], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`scripts/setup-code-server.sh failed (exit ${r.status ?? r.signal}); see its output above`);
}

interface CodeServer {
  child: ChildProcess;
  url: string;
  output: string[];
  exited: Promise<string>;
}

/** Packages the extension (npm run package) and installs the .vsix into the suite's extensions dir. */
function installVsix(vsix: string, dirs: TempDirs): void {
  log(`packaging ${vsix}`);
  const pack = spawnSync('npm', ['run', '--silent', 'package'], { cwd: ROOT, stdio: 'inherit', env: process.env });
  if (pack.status !== 0) throw new Error(`npm run package failed (exit ${pack.status ?? pack.signal})`);
  const bin = join(CODE_SERVER_HOME, 'node_modules/.bin/code-server');
  const r = spawnSync(bin, ['--extensions-dir', dirs.extensions, '--user-data-dir', dirs.userData, '--install-extension', vsix], {
    encoding: 'utf8',
    env: { ...process.env, XDG_CONFIG_HOME: dirs.xdgConfig, XDG_DATA_HOME: dirs.xdgData },
  });
  log(`code-server --install-extension: ${(r.stdout + r.stderr).trim().split('\n').slice(-2).join(' | ')}`);
  if (r.status !== 0) throw new Error(`installing ${vsix} into code-server failed (exit ${r.status ?? r.signal})`);
}

async function startCodeServer(dirs: TempDirs, suite: E2ESuite, bridgeUrl: string): Promise<CodeServer> {
  if (suite.vsix) installVsix(suite.vsix, dirs);
  const args = [
    '--auth',
    'none',
    '--bind-addr',
    '127.0.0.1:0',
    '--disable-telemetry',
    '--disable-update-check',
    '--user-data-dir',
    dirs.userData,
    '--extensions-dir',
    dirs.extensions,
    '--log',
    'info',
  ];
  if (suite.trust === 'off') args.push('--disable-workspace-trust');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_CONFIG_HOME: dirs.xdgConfig,
    XDG_DATA_HOME: dirs.xdgData,
    // No extension gallery: it is unreachable offline, and asking it only logs errors.
    EXTENSIONS_GALLERY: '{}',
    [BRIDGE_ENV]: bridgeUrl,
    SCALELM_E2E_SUITE: suite.name,
  };
  // Own process group, so stopping it also stops the VS Code server's children (extension host, pty host).
  const child = spawn(CODE_SERVER_BIN, args, { cwd: dirs.base, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  let onLine: ((line: string) => void) | undefined;
  const take = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      output.push(line);
      console.log(`[code-server] ${line}`);
      onLine?.(line);
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(`code-server exited (code ${code}, signal ${signal})`)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`code-server did not report its port within 60 s:\n${output.join('\n')}`)), 60_000);
    const check = (line: string): void => {
      const m = /HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    onLine = check;
    output.forEach(check);
    void exited.then((why) => {
      clearTimeout(timer);
      reject(new Error(`${why} before listening:\n${output.join('\n')}`));
    });
  });
  onLine = undefined;
  return { child, url, output, exited };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to the whole process group, SIGKILL after 5 s; resolves when nothing of the group is left. */
async function stopProcessGroup(child: ChildProcess | undefined): Promise<void> {
  const pgid = child?.pid;
  if (!pgid) return;
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + 5000;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(100);
  if (groupAlive(pgid)) {
    log(`code-server (process group ${pgid}) ignored SIGTERM; sending SIGKILL`);
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
    const killDeadline = Date.now() + 5000;
    while (groupAlive(pgid) && Date.now() < killDeadline) await sleep(100);
    if (groupAlive(pgid)) log(`WARNING: processes of group ${pgid} are still alive`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// temp dirs

interface TempDirs {
  base: string;
  userData: string;
  extensions: string;
  xdgConfig: string;
  xdgData: string;
  workspace: string;
}

function makeTempDirs(suite: E2ESuite): TempDirs {
  const base = mkdtempSync(join(tmpdir(), `scalelm-e2e-${suite.name}-`));
  const dirs: TempDirs = {
    base,
    userData: join(base, 'user-data'),
    extensions: join(base, 'extensions'),
    xdgConfig: join(base, 'xdg-config'),
    xdgData: join(base, 'xdg-data'),
    workspace: join(base, 'workspace'),
  };
  for (const d of [dirs.userData, dirs.extensions, dirs.xdgConfig, dirs.xdgData]) mkdirSync(d, { recursive: true });
  cpSync(suite.workspace, dirs.workspace, { recursive: true });
  mkdirSync(join(dirs.userData, 'User'), { recursive: true });
  const settings = {
    ...BASE_SETTINGS,
    'security.workspace.trust.enabled': suite.trust !== 'off',
    ...suite.settings,
  };
  writeFileSync(join(dirs.userData, 'User/settings.json'), JSON.stringify(settings, null, 2));
  return dirs;
}

/** Lines of VS Code's own logs that show which VS Code ran and that our extension was loaded. */
function printEvidence(dirs: TempDirs): void {
  const logsDir = join(dirs.userData, 'logs');
  if (!existsSync(logsDir)) return;
  const files = (readdirSync(logsDir, { recursive: true }) as string[]).filter((f) => f.endsWith('.log')).sort();
  const wanted = /1\.100\.3|scalelm|\[error\]/i;
  const entryStart = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/;
  for (const f of files) {
    const lines = readFileSync(join(logsDir, f), 'utf8').split('\n');
    let printing = false;
    let printed = 0;
    for (const line of lines) {
      // An entry may span lines (stack traces): keep the continuation lines of an entry we print.
      if (entryStart.test(line)) printing = wanted.test(line) && !/getaddrinfo ENOTFOUND/.test(line);
      if (printing && line.trim() && printed++ < 40) console.log(`[vscode-log ${f}] ${line}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// the bridge: questions from tests in the extension host about the drawn workbench

type Handler<K extends BridgeOp> = (request: BridgeOps[K]['request']) => Promise<BridgeOps[K]['reply']>;

function workbenchHandlers(getPage: () => Page | undefined, suite: E2ESuite, onResult: (c: Counts) => void): { [K in BridgeOp]: Handler<K> } {
  const page = (): Page => {
    const p = getPage();
    if (!p) throw new Error('the workbench page is not open');
    return p;
  };
  return {
    statusBar: async () => {
      const items = await page().$$eval('#workbench\\.parts\\.statusbar .statusbar-item', (els) =>
        els.map((e) => ({ id: e.id, text: (e.textContent ?? '').trim(), ariaLabel: e.querySelector('[aria-label]')?.getAttribute('aria-label') ?? e.getAttribute('aria-label') ?? '' })),
      );
      return { items: items as StatusBarItem[] };
    },
    explorerContextMenu: async ({ file }) => {
      const p = page();
      const row = p.locator(`.explorer-folders-view .monaco-list-row[aria-label="${file.replace(/"/g, '\\"')}"]`).first();
      if ((await row.count()) === 0) {
        // The Explorer may not be showing: open it.
        await p.keyboard.press('Control+Shift+E');
      }
      await row.waitFor({ state: 'visible', timeout: 15_000 });
      await row.click({ button: 'right' });
      const menu = p.locator('.monaco-menu-container .monaco-menu').first();
      await menu.waitFor({ state: 'visible', timeout: 10_000 });
      const entries = (await menu.locator('.action-item:not(.disabled) .action-label, .action-item.disabled .action-label').allTextContents()).map((t) => t.trim()).filter(Boolean);
      await p.keyboard.press('Escape');
      return { entries };
    },
    viewport: async ({ width, height }) => {
      await page().setViewportSize({ width, height });
      return {};
    },
    layout: async () => {
      const shown = (selector: string): Promise<boolean> =>
        page()
          .$eval(selector, (el) => {
            const r = (el as HTMLElement).getBoundingClientRect();
            return getComputedStyle(el).display !== 'none' && r.width > 0 && r.height > 0;
          })
          .catch(() => false);
      return { sidebarVisible: await shown('#workbench\\.parts\\.sidebar'), panelVisible: await shown('#workbench\\.parts\\.panel') };
    },
    editorActions: async () => {
      const actions = await page().$$eval('.editor-group-container.active .editor-actions .action-label', (els) =>
        els.map((e) => ({
          label: e.getAttribute('aria-label') ?? (e.textContent ?? '').trim(),
          disabled: e.classList.contains('disabled') || e.getAttribute('aria-disabled') === 'true' || Boolean(e.closest('.action-item')?.classList.contains('disabled')),
        })),
      );
      return { actions };
    },
    quickInput: async ({ value }) => {
      const p = page();
      const box = p.locator('.quick-input-widget .quick-input-box input').first();
      await box.waitFor({ state: 'visible', timeout: 20_000 });
      const offered = await box.inputValue();
      const title = ((await p.locator('.quick-input-widget .quick-input-title').first().textContent()) ?? '').trim();
      if (value === null) await box.press('Escape');
      else {
        await box.fill(value);
        await box.press('Enter');
      }
      return { title, offered };
    },
    screenshot: async ({ name }) => {
      mkdirSync(ARTIFACTS, { recursive: true });
      const file = join(ARTIFACTS, `e2e-${suite.name}-${name.replace(/[^a-z0-9._-]+/gi, '-')}.png`);
      await page().screenshot({ path: file });
      return { path: file };
    },
    result: async (counts) => {
      onResult(counts);
      return {};
    },
  };
}

async function startBridge(handlers: { [K in BridgeOp]: Handler<K> }): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const op = (req.url ?? '').replace(/^\//, '') as BridgeOp;
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const answer = (status: number, value: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const handler = (handlers as Record<string, Handler<BridgeOp>>)[op];
      if (req.method !== 'POST' || !handler) return answer(404, { error: `unknown request ${req.method} ${req.url}` });
      let request: unknown;
      try {
        request = body ? JSON.parse(body) : {};
      } catch {
        return answer(400, { error: 'body is not JSON' });
      }
      handler(request as never).then(
        (reply) => answer(200, reply),
        (e: unknown) => answer(500, { error: e instanceof Error ? e.message : String(e) }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('bridge server has no port');
  return { server, url: `http://127.0.0.1:${address.port}` };
}

// ---------------------------------------------------------------------------------------------------------
// one suite

/** console.log arguments from the extension host (mocha's reporter uses printf-style formats). */
function formatLogArgs(args: unknown): string {
  const list: unknown[] = Array.isArray(args) ? args : [args];
  return format(...list);
}

/** The workbench's routine start-up chatter; everything else (our tests' output, errors) is printed. */
const NOISE =
  /^(Resolving connection token|Resolved connection token|Creating a socket|Ignoring fetching additional builtin extensions|Updating additional builtin extensions cache|\[Service Worker\] registered|ChatSessionStore: Migrating|\s*$)/;
function interesting(type: string, text: string): boolean {
  return type === 'error' || !NOISE.test(text);
}

export async function runSuite(suite: E2ESuite): Promise<Counts> {
  const started = Date.now();
  const timeoutMs = suite.timeoutMs ?? Number(process.env.SCALELM_E2E_TIMEOUT_MS ?? 240_000);
  if (!existsSync(join(suite.testsDir, 'index.js'))) throw new Error(`no compiled suite at ${relative(ROOT, suite.testsDir)}/index.js: run "npx tsc -p ." first`);
  if (!existsSync(join(EXTENSION_PATH, 'dist/extension.js'))) throw new Error(`no dist/extension.js in ${EXTENSION_PATH}: run "node scripts/build.mjs" first`);
  // Screenshots of an earlier run would read as this run's failures.
  if (existsSync(ARTIFACTS)) for (const f of readdirSync(ARTIFACTS)) if (f.startsWith(`e2e-${suite.name}-`) && f.endsWith('.png')) rmSync(join(ARTIFACTS, f));
  const dirs = makeTempDirs(suite);
  activeTempDirs.add(dirs.base);
  const version = spawnSync(CODE_SERVER_BIN, ['--version'], { env: { ...process.env, XDG_CONFIG_HOME: dirs.xdgConfig, XDG_DATA_HOME: dirs.xdgData }, encoding: 'utf8' });
  log(`code-server --version: ${(version.stdout ?? '').trim().split('\n').pop() ?? ''}${version.status === 0 ? '' : ` (exit ${version.status}) ${version.stderr}`}`);
  log(`suite "${suite.name}": workspace trust ${suite.trust}, workspace ${dirs.workspace}, timeout ${timeoutMs / 1000} s`);

  let page: Page | undefined;
  let browser: Browser | undefined;
  let codeServer: CodeServer | undefined;
  let reported: Counts | undefined;
  const bridge = await startBridge(
    workbenchHandlers(
      () => page,
      suite,
      (c) => (reported = c),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  try {
    codeServer = await startCodeServer(dirs, suite, bridge.url);
    activeGroups.add(codeServer.child);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });

    let exitWith!: (code: number) => void;
    const exited = new Promise<number>((r) => (exitWith = r));
    await page.exposeFunction('codeAutomationLog', (type: string, args: unknown) => {
      const text = formatLogArgs(args);
      if (VERBOSE || interesting(type, text)) console.log(`[workbench ${type}] ${text}`);
    });
    await page.exposeFunction('codeAutomationExit', (code: number) => exitWith(code));
    page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));

    const remote = (p: string): string => `vscode-remote://${new URL(codeServer!.url).host}${p}`;
    const payload = [
      ['extensionDevelopmentPath', remote(suite.vsix ? join(ROOT, 'test/fixtures/vsix-test-host') : EXTENSION_PATH)],
      ['extensionTestsPath', remote(suite.testsDir)],
      ['skipWelcome', 'true'],
      ['skipReleaseNotes', 'true'],
    ];
    const url = `${codeServer.url}/?folder=${encodeURIComponent(dirs.workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;
    log(`opening ${url}`);
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60_000 });

    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`suite "${suite.name}" did not finish within ${timeoutMs / 1000} s (SCALELM_E2E_TIMEOUT_MS)`)), timeoutMs);
    });
    const died = codeServer.exited.then((why) => Promise.reject(new Error(`${why} while the suite was running`)));
    const code = await Promise.race([exited, timedOut, died]);
    log(`suite "${suite.name}" exited with code ${code} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    let counts: Counts = reported ?? { passes: 0, failures: 0, pending: 0 };
    if (!reported) log('the suite did not report its counts (it crashed before or while running mocha): counted as a failure');
    if ((code !== 0 || !reported) && counts.failures === 0) counts = { ...counts, failures: 1 };
    return counts;
  } catch (e) {
    if (page) {
      try {
        mkdirSync(ARTIFACTS, { recursive: true });
        const shot = join(ARTIFACTS, `e2e-${suite.name}-runner-error.png`);
        await page.screenshot({ path: shot, timeout: 10_000 });
        log(`screenshot of the workbench: ${relative(ROOT, shot)}`);
      } catch {
        /* the page may be gone */
      }
    }
    throw e;
  } finally {
    clearTimeout(timer);
    await closeChromium(browser);
    await stopProcessGroup(codeServer?.child);
    if (codeServer) activeGroups.delete(codeServer.child);
    bridge.server.close();
    printEvidence(dirs);
    activeTempDirs.delete(dirs.base);
    if (process.env.SCALELM_E2E_KEEP === '1') log(`kept ${dirs.base}`);
    else rmSync(dirs.base, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// main

const activeGroups = new Set<ChildProcess>();
const activeTempDirs = new Set<string>();

/** Last resort on Ctrl-C, kill, or an unexpected exit: no code-server may outlive the runner. */
function killLeftovers(): void {
  for (const child of activeGroups) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  activeGroups.clear();
  if (process.env.SCALELM_E2E_KEEP !== '1') for (const dir of activeTempDirs) rmSync(dir, { recursive: true, force: true });
  activeTempDirs.clear();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function main(): Promise<number> {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((n) => !SUITES.some((s) => s.name === n));
  if (unknown.length) {
    console.error(`unknown e2e suite(s) ${unknown.join(', ')}; choose from ${SUITES.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const suites = asked.length ? SUITES.filter((s) => asked.includes(s.name)) : SUITES;
  const total: Counts = { passes: 0, failures: 0, pending: 0 };
  const started = Date.now();
  ensureCodeServer();
  // Each suite bounds its own wait; this bounds everything else too (start-up, a wedged browser).
  const perSuite = Number(process.env.SCALELM_E2E_TIMEOUT_MS ?? 240_000) + 120_000;
  setTimeout(() => {
    console.error(`[e2e] the e2e run did not finish within ${(perSuite * suites.length) / 1000} s: stopping code-server and Chromium`);
    killLeftovers();
    if (process.env.SCALELM_E2E_REPORT) writeFileSync(process.env.SCALELM_E2E_REPORT, JSON.stringify({ ...total, failures: total.failures + 1 }));
    process.exit(1);
  }, perSuite * suites.length).unref();
  for (const suite of suites) {
    let counts: Counts;
    try {
      counts = await runSuite(suite);
    } catch (e) {
      console.error(`[e2e] suite "${suite.name}" could not run: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      counts = { passes: 0, failures: 1, pending: 0 };
    }
    total.passes += counts.passes;
    total.failures += counts.failures;
    total.pending += counts.pending;
  }
  log(`${total.passes} passed, ${total.failures} failed, ${total.pending} pending in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (process.env.SCALELM_E2E_REPORT) writeFileSync(process.env.SCALELM_E2E_REPORT, JSON.stringify(total));
  return total.failures > 0 ? 1 : 0;
}

if (require.main === module) {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`[e2e] ${signal}: stopping code-server`);
      killLeftovers();
      process.exit(130);
    });
  }
  process.once('exit', killLeftovers);
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(`[e2e] ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      if (process.env.SCALELM_E2E_REPORT) writeFileSync(process.env.SCALELM_E2E_REPORT, JSON.stringify({ passes: 0, failures: 1, pending: 0 }));
      process.exit(1);
    },
  );
}
