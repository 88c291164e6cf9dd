// One memory vocabulary (common/memory-categories.ts): every name a producer reports or plans is declared
// there with the category it counts under, and the Python package uses the same categories.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { categoryOf, isDeclaredCategory, MEMORY_CATEGORIES } from '../../common/memory-categories';
import { MEMORY_CATEGORIES as LOCAL_RUNTIME, PARALLEL_MEMORY_CATEGORIES } from '../../runtime/model/memory';
import { CATEGORIES as PLANNER } from '../../runtime/planner/types';
import { DISPLAY_CATEGORIES, groupCategories } from '../../webview/metrics';

const REPO = join(__dirname, '..', '..', '..');

describe('memory categories: one vocabulary', () => {
  it('every name the local runtime measures and the planner plans is declared, none lumped into "other" by default', () => {
    for (const name of [...LOCAL_RUNTIME, ...PARALLEL_MEMORY_CATEGORIES, ...PLANNER]) assert.ok(isDeclaredCategory(name), `${name} is not declared in common/memory-categories.ts`);
    assert.equal(isDeclaredCategory('scratch'), false);
  });

  it("the Python package's categories are the shared ones, in the same order", () => {
    const source = readFileSync(join(REPO, 'python', 'scalelm', 'memory.py'), 'utf8');
    const m = /^CATEGORIES = \(([^)]*)\)/m.exec(source);
    assert.ok(m, 'python/scalelm/memory.py declares CATEGORIES = (…)');
    const names = [...m[1]!.matchAll(/"([a-z]+)"/g)].map((x) => x[1]);
    assert.deepEqual(names, [...MEMORY_CATEGORIES]);
  });

  it('finer names count under their category; the dashboard groups by the same table', () => {
    assert.equal(categoryOf('gathered'), 'buffers');
    assert.equal(categoryOf('temporaries'), 'other');
    assert.equal(categoryOf('overhead'), 'other');
    assert.equal(categoryOf('NCCL'), 'buffers');
    assert.equal(categoryOf('scratch'), 'other');
    assert.equal(categoryOf('__proto__'), 'other');
    assert.deepEqual([...DISPLAY_CATEGORIES], [...MEMORY_CATEGORIES]);
    const g = groupCategories({ params: 10, gathered: 5, comm: 1, temporaries: 3, overhead: 2, peak: 99, total: 99 });
    assert.deepEqual(g.bytes, { params: 10, grads: 0, optimizer: 0, activations: 0, buffers: 6, other: 5 });
    assert.deepEqual(g.parts.buffers, ['gathered', 'comm']);
  });
});
