#!/usr/bin/env node
// `npm run demo`: the main job on a fresh machine. Builds, checks and plans the tiny example, then trains it
// on this machine with the live dashboard (open the printed URL in a browser). Ctrl-C stops cleanly with a
// checkpoint; `npx scalelm train --resume <run dir>` continues. Extra arguments go to `scalelm train`.
import { spawn, spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const example = 'examples/tiny.scalelm.json';
const run = (args) => spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' }).status ?? 1;

if (run(['scripts/build.mjs']) !== 0) process.exit(1);
console.log(`\n$ scalelm validate ${example}`);
if (run(['dist/cli.js', 'validate', example]) !== 0) process.exit(1);
console.log(`\n$ scalelm estimate ${example}`);
run(['dist/cli.js', 'estimate', example, '--convention', 'runtime']);
const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
const args = ['dist/cli.js', 'train', example, '--run-dir', `runs/demo-${stamp}`, ...process.argv.slice(2)];
console.log(`\n$ scalelm ${args.slice(1).join(' ')}`);
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.on('SIGINT', () => child.kill('SIGINT'));
child.on('exit', (code) => process.exit(code ?? 1));
