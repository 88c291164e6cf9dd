// The import rules of docs/architecture.md, checked on every source file rather than remembered:
// common/ is pure; runtime/ never reaches VS Code or the webview (except the one HTML document it serves);
// webview/ is browser code (no Node, no vscode) that may use only the pure config and planner of runtime/;
// extension/ takes from webview/ only its two pure modules.
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');
const NODE_BUILTINS = /^(node:|fs$|path$|os$|child_process$|net$|http$|https$|crypto$|worker_threads$|url$|util$|stream$|events$|readline$|zlib$)/;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sources(rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** Every module a file imports, re-exports, dynamically imports or requires, as written. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(
    /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g,
  )) {
    specs.push((m[1] ?? m[2] ?? m[3] ?? m[4])!);
  }
  return specs;
}

/** A relative import as a repository path ("runtime/planner/search"), or the bare module name. */
function target(file: string, spec: string): string {
  return spec.startsWith('.') ? relative(ROOT, normalize(join(ROOT, dirname(file), spec))) : spec;
}

function violations(dir: string, rule: (spec: string, to: string) => string | undefined): string[] {
  const found: string[] = [];
  for (const file of sources(dir)) {
    for (const spec of importsOf(file)) {
      const why = rule(spec, target(file, spec));
      if (why) found.push(`${file} imports "${spec}": ${why}`);
    }
  }
  return found;
}

describe('layering: the import rules of docs/architecture.md hold in every file', () => {
  it('the scanner sees imports of every form (a check that cannot miss them silently)', () => {
    const specs = importsOf('runtime/cli.ts');
    assert.ok(specs.length > 0, 'runtime/cli.ts imports something');
    assert.ok(importsOf('webview/main.ts').length > 0);
  });

  it('common/ is pure: no Node, no vscode, nothing outside common/', () => {
    assert.deepEqual(
      violations('common', (spec, to) =>
        NODE_BUILTINS.test(spec) ? 'a Node module' : spec === 'vscode' ? 'vscode' : spec.startsWith('.') && !to.startsWith('common/') ? 'outside common/' : undefined,
      ),
      [],
    );
  });

  it('runtime/ never imports vscode, the extension or the webview (but the one HTML document it serves)', () => {
    assert.deepEqual(
      violations('runtime', (spec, to) =>
        spec === 'vscode' ? 'vscode' : to.startsWith('extension/') ? 'the extension' : to.startsWith('webview/') && to !== 'webview/html' ? 'webview code' : undefined,
      ),
      [],
    );
  });

  it('webview/ is browser code: no Node, no vscode, and of runtime/ only the pure config and planner', () => {
    assert.deepEqual(
      violations('webview', (spec, to) =>
        NODE_BUILTINS.test(spec)
          ? 'a Node module'
          : spec === 'vscode'
            ? 'vscode'
            : to.startsWith('extension/')
              ? 'the extension'
              : to.startsWith('runtime/') && !/^runtime\/(config|planner)(\/|$)/.test(to)
                ? 'runtime code beyond config/ and planner/'
                : undefined,
      ),
      [],
    );
  });

  it('extension/ takes from webview/ only its pure html and messages modules', () => {
    assert.deepEqual(
      violations('extension', (_spec, to) => (to.startsWith('webview/') && to !== 'webview/html' && to !== 'webview/messages' ? 'webview code' : undefined)),
      [],
    );
  });
});
