#!/usr/bin/env node
// One build tool: esbuild. Bundles the extension host (CJS, vscode external), the webview (browser IIFE),
// the runtime CLI (Node CJS with a shebang) and writes the JSON schema generated from runtime/config.
import { build } from 'esbuild';
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const schemaOnly = process.argv.includes('--schema-only');
const common = { bundle: true, sourcemap: true, logLevel: 'warning', absWorkingDir: root, target: 'es2022' };

// The schema comes from the same source of truth as the config types (runtime/config/schema.ts).
await build({ ...common, entryPoints: ['runtime/config/schema.ts'], outfile: 'out/build/schema.cjs', platform: 'node', format: 'cjs', sourcemap: false });
const require = createRequire(import.meta.url);
const { buildJsonSchema, buildMarkdownReference } = require(join(root, 'out/build/schema.cjs'));
mkdirSync(join(root, 'media'), { recursive: true });
writeFileSync(join(root, 'media/scalelm.schema.json'), JSON.stringify(buildJsonSchema(), null, 2) + '\n');
writeFileSync(join(root, 'docs/config.md'), buildMarkdownReference() + '\n');
if (schemaOnly) process.exit(0);

mkdirSync(join(root, 'dist'), { recursive: true });
// The list lives in runtime/comm/index.ts (COMM_WORKER_ENTRIES); read it from there so the two cannot drift.
const commIndex = readFileSync(join(root, 'runtime/comm/index.ts'), 'utf8');
const listed = /COMM_WORKER_ENTRIES = \[([^\]]*)\]/.exec(commIndex);
if (!listed) throw new Error('scripts/build.mjs: COMM_WORKER_ENTRIES not found in runtime/comm/index.ts');
const COMM_WORKER_ENTRIES = [...listed[1].matchAll(/'([^']+)'/g)].map((m) => m[1]);
await Promise.all([
  // mainFields: jsonc-parser's UMD "main" requires ./impl/* at run time, which a bundle cannot; its ESM build bundles whole.
  build({ ...common, entryPoints: ['extension/extension.ts'], outfile: 'dist/extension.js', platform: 'node', format: 'cjs', external: ['vscode'], mainFields: ['module', 'main'] }),
  // The planner worker thread the extension starts by path (extension/config-analysis.ts).
  build({ ...common, entryPoints: ['extension/config-worker.ts'], outfile: 'dist/config-worker.js', platform: 'node', format: 'cjs' }),
  build({ ...common, entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser', format: 'iife', minify: true }),
  build({ ...common, entryPoints: ['runtime/cli.ts'], outfile: 'dist/cli.js', platform: 'node', format: 'cjs', banner: { js: '#!/usr/bin/env node' } }),
  // Worker and rank entry points started by path, next to the CLI bundle (found via __dirname): the comm
  // launchers' workers and the parallel trainer's rank module (runtime/parallel/local-engine.ts RANK_ENTRY).
  build({
    ...common,
    entryPoints: [...COMM_WORKER_ENTRIES.map((e) => ({ in: `runtime/comm/${e}.ts`, out: e })), { in: 'runtime/parallel/parallel-rank.ts', out: 'parallel-rank' }],
    outdir: 'dist',
    platform: 'node',
    format: 'cjs',
  }),
]);
// The wasm backend loads its binaries from the folder of the bundle (runtime/model/backend.ts: wasmBinaryDirs).
const wasmDist = join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');
for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm']) cpSync(join(wasmDist, f), join(root, 'dist', f));
chmodSync(join(root, 'dist/cli.js'), 0o755);
// The torch engine's trainer runs from the bundle: dist/python is put first on its PYTHONPATH
// (runtime/engines/torch/torchrun.ts bundledPythonPath), so the .vsix needs no pip install.
rmSync(join(root, 'dist/python'), { recursive: true, force: true });
cpSync(join(root, 'python/scalelm'), join(root, 'dist/python/scalelm'), { recursive: true, filter: (src) => !/__pycache__|\.pyc$/.test(src) });
