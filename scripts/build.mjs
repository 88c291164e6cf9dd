#!/usr/bin/env node
// One build tool: esbuild. Bundles the extension host (CJS, vscode external), the webview (browser IIFE),
// the runtime CLI (Node CJS with a shebang) and writes the JSON schema generated from runtime/config.
import { build } from 'esbuild';
import { chmodSync, mkdirSync, writeFileSync, cpSync, existsSync } from 'node:fs';
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
await Promise.all([
  // mainFields: jsonc-parser's UMD "main" requires ./impl/* at run time, which a bundle cannot; its ESM build bundles whole.
  build({ ...common, entryPoints: ['extension/extension.ts'], outfile: 'dist/extension.js', platform: 'node', format: 'cjs', external: ['vscode'], mainFields: ['module', 'main'] }),
  build({ ...common, entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser', format: 'iife' }),
  build({ ...common, entryPoints: ['runtime/cli.ts'], outfile: 'dist/cli.js', platform: 'node', format: 'cjs', banner: { js: '#!/usr/bin/env node' } }),
]);
chmodSync(join(root, 'dist/cli.js'), 0o755);
