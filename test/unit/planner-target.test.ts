import * as assert from 'node:assert/strict';
import { loadConfig } from '../../runtime/config';
import { checkFit, describeSuggestion, planTarget, suggestionEdits } from '../../runtime/planner/target';
import { applyConfigEdits } from '../../extension/json-paths';

describe('planner fit target (what the editor, the launcher and train check against)', () => {
  it('plans a local run against devices.memory in the runtime convention', () => {
    const c = loadConfig({ model: { preset: 'tiny' }, parallel: { dp: 2 }, devices: { memory: '512MiB' } });
    const t = planTarget(c);
    assert.equal(t.kind, 'local');
    assert.equal(t.convention, 'runtime');
    assert.equal(t.capacity, 512 * 2 ** 20);
    assert.equal(t.label, '2 × CPU device (512.00 MiB)');
    const fit = checkFit(c);
    assert.ok(fit.result.ok && fit.result.fits);
    assert.equal(fit.suggestion, undefined);
  });

  it('plans a config with a cluster in the scalelm convention, with headroom', () => {
    const c = loadConfig({ model: { preset: 'gpt2' }, train: { precision: 'bf16-mixed', microBatch: 4, globalBatch: 32 }, parallel: { dp: 8 }, cluster: { gpu: 'A100-80GB', headroom: 0.1 } });
    const t = planTarget(c);
    assert.equal(t.kind, 'cluster');
    assert.equal(t.label, '8 × A100-80GB');
    assert.equal(t.capacity, 81920 * 2 ** 20 * 0.9);
    const fit = checkFit(c);
    assert.ok(fit.result.ok && fit.result.fits);
  });

  it('a layout that does not fit gets the best fitting layout of the same devices, as edits', () => {
    const c = loadConfig({ model: { preset: 'llama-2-70b' }, train: { precision: 'bf16-mixed', microBatch: 1, globalBatch: 512 }, parallel: { dp: 64 }, cluster: { gpu: 'H100-SXM', nodes: 8 } });
    const fit = checkFit(c);
    assert.ok(fit.result.ok && !fit.result.fits);
    assert.ok(fit.suggestion, 'a 70B model fits 64 H100s in some layout');
    assert.ok(fit.suggestion.memory.total <= fit.target.capacity);
    const l = fit.suggestion.layout;
    assert.equal(l.dp * l.tp * l.pp, 64);
    assert.match(describeSuggestion(c, fit.suggestion), /^use .*— fits at \d+\.\d GiB$/);
    const edits = suggestionEdits(c, fit.suggestion);
    assert.ok(edits.some((e) => e.path === 'parallel.dp' && e.value === l.dp));
    // Applying the edits to the file gives a config whose own check fits.
    const text = JSON.stringify(
      { model: { preset: 'llama-2-70b' }, train: { precision: 'bf16-mixed', microBatch: 1, globalBatch: 512 }, parallel: { dp: 64 }, cluster: { gpu: 'H100-SXM', nodes: 8 } },
      null,
      2,
    );
    const fixed = checkFit(loadConfig(applyConfigEdits(text, edits)));
    assert.ok(fixed.result.ok && fixed.result.fits);
  });

  it('a local run whose model cannot fit any layout gets no suggestion', () => {
    const fit = checkFit(loadConfig({ model: { preset: 'tiny' }, devices: { memory: '8MiB' } }));
    assert.ok(fit.result.ok && !fit.result.fits);
    assert.equal(fit.suggestion, undefined);
  });

  it('config edits keep comments and create missing sections', () => {
    const text = '{\n  // my run\n  "model": { "preset": "tiny" }\n}';
    const out = applyConfigEdits(text, [
      { path: 'parallel.tp', value: 2 },
      { path: 'train.recompute', value: 'full' },
    ]);
    assert.match(out, /\/\/ my run/);
    assert.match(out, /"parallel": \{\s*"tp": 2\s*\}/);
    assert.match(out, /"recompute": "full"/);
  });
});
