#!/usr/bin/env node
// Runs every test layer in order and prints one summary. Exit code is non-zero if any layer fails.
// Layers: lint (ESLint, Prettier's check), unit (pure code in Node), python (python/: ruff, mypy, pytest in .venv), runtime (threads,
// sockets, child processes), webview (headless Chromium), e2e (the extension in a real VS Code via
// code-server). `node scripts/test.mjs unit webview` runs a subset.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const all = ['lint', 'unit', 'python', 'runtime', 'webview', 'e2e'];
const asked = process.argv.slice(2);
const layers = asked.length ? asked : all;
for (const l of layers)
  if (!all.includes(l)) {
    console.error(`unknown test layer "${l}"; choose from ${all.join(', ')}`);
    process.exit(2);
  }

// The pinned venv that scripts/setup-python.sh makes: the python layer, and the runtime tests' PyTorch peer
// and torch engine, use it unless SCALELM_PYTHON names another interpreter.
const venvPython = join(root, '.venv/bin/python');
// What Prettier formats (package.json's format scripts name the same globs; .prettierignore the exceptions).
const FORMATTED = ['**/*.{ts,mjs,cjs}'];
if (!process.env.SCALELM_PYTHON && existsSync(venvPython)) process.env.SCALELM_PYTHON = venvPython;

function step(title, cmd, args, env = {}, cwd = root) {
  console.log(`\n=== ${title}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

// ruff, mypy, then pytest (JUnit XML for the counts). A missing venv is a failure, not a skip.
function pythonLayer(report) {
  const xml = join(resultsDir, 'python.xml');
  rmSync(xml, { force: true });
  if (!existsSync(venvPython)) {
    console.error('\n=== python: .venv is missing: run `bash scripts/setup-python.sh` (.ci/run does)');
    return 1;
  }
  const py = join(root, 'python');
  let code = step('python lint (ruff)', venvPython, ['-m', 'ruff', 'check', '.'], {}, py);
  code = step('python types (mypy)', venvPython, ['-m', 'mypy'], {}, py) || code;
  const tests = step('python tests (pytest)', venvPython, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', `--junitxml=${xml}`], {}, py);
  if (existsSync(xml)) {
    const head = /<testsuite [^>]*>/.exec(readFileSync(xml, 'utf8'))?.[0] ?? '';
    const attr = (n) => Number(new RegExp(`${n}="(\\d+)"`).exec(head)?.[1] ?? 0);
    const failures = attr('failures') + attr('errors') + (code ? 1 : 0);
    writeFileSync(report, JSON.stringify({ passes: attr('tests') - attr('failures') - attr('errors') - attr('skipped'), failures, pending: attr('skipped') }));
  }
  return tests || code;
}

// ESLint, then Prettier's check (the same files `npm run format` writes); one pass or failure per tool.
function lintLayer(report) {
  const checks = [step('lint (eslint)', 'npx', ['eslint', '.']), step('format (prettier --check)', 'npx', ['prettier', '--check', '--log-level', 'warn', ...FORMATTED])];
  const failures = checks.filter((c) => c !== 0).length;
  writeFileSync(report, JSON.stringify({ passes: checks.length - failures, failures, pending: 0 }));
  return failures ? 1 : 0;
}

if (step('compile (tsc, strict)', 'npx', ['tsc', '-p', '.']) !== 0) {
  console.error('type errors: fix them first');
  process.exit(1);
}
if (step('bundle (esbuild)', 'node', ['scripts/build.mjs']) !== 0) process.exit(1);

const resultsDir = join(root, 'test-artifacts');
mkdirSync(resultsDir, { recursive: true });
const summary = [];
for (const layer of layers) {
  const report = join(resultsDir, `${layer}.json`);
  rmSync(report, { force: true });
  let code;
  if (layer === 'lint') {
    code = lintLayer(report);
  } else if (layer === 'python') {
    code = pythonLayer(report);
  } else if (layer === 'e2e') {
    code = step('e2e (code-server)', 'node', ['out/test/e2e/run.js'], { SCALELM_E2E_REPORT: report });
  } else {
    if (!existsSync(join(root, 'out/test', layer))) {
      console.log(`\n=== ${layer}: no tests yet`);
      continue;
    }
    const spec = `out/test/${layer}/**/*.test.js`;
    code = step(layer, 'npx', ['mocha', '--timeout', '120000', '--reporter', join(root, 'scripts/mocha-reporter.cjs'), spec], { SCALELM_MOCHA_JSON: report });
  }
  let counts = { passes: 0, failures: code === 0 ? 0 : 1, pending: 0 };
  if (existsSync(report)) counts = JSON.parse(readFileSync(report, 'utf8'));
  if (code !== 0 && counts.failures === 0) counts.failures = 1; // a crash without a report still fails
  summary.push({ layer, code, ...counts });
}

console.log('\n=== summary');
let passed = 0,
  failed = 0,
  skipped = 0;
for (const s of summary) {
  console.log(`${s.layer.padEnd(8)} ${String(s.passes).padStart(4)} passed ${String(s.failures).padStart(3)} failed ${String(s.pending).padStart(3)} skipped${s.code ? `  (exit ${s.code})` : ''}`);
  passed += s.passes;
  failed += s.failures;
  skipped += s.pending;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(summary.some((s) => s.code !== 0) ? 1 : 0);
