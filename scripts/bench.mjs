#!/usr/bin/env node
// `npm run bench -- <name> [args]` runs bench/<name>.ts (or bench/<name>/index.ts) after compiling.
// Each bench prints a table and ends with one line `RESULT {json}`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const [name, ...rest] = process.argv.slice(2);
// The PyTorch peers run on the pinned .venv (scripts/setup-python.sh) unless SCALELM_PYTHON names another.
const venvPython = join(root, '.venv/bin/python');
if (!process.env.SCALELM_PYTHON && existsSync(venvPython)) process.env.SCALELM_PYTHON = venvPython;
const available = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.ts') || !f.includes('.'))
  .map((f) => f.replace(/\.ts$/, ''));
if (!name) {
  console.error(`usage: npm run bench -- <name>\navailable: ${available.join(', ')}`);
  process.exit(2);
}
const tsc = spawnSync('npx', ['tsc', '-p', '.'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(1);
spawnSync('node', ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
const candidates = [join(root, 'out/bench', name, 'index.js'), join(root, 'out/bench', `${name}.js`)];
const entry = candidates.find((c) => existsSync(c));
if (!entry) {
  console.error(`no bench named "${name}"; available: ${available.join(', ')}`);
  process.exit(2);
}
const r = spawnSync('node', [entry, ...rest], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
