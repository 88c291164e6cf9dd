// The examples as shipped train smoothly: their first steps (through the warm-up, where the tiny example
// once spiked to a loss above ln(256) with grad norm 112 at step 16) stay below the uniform-guess loss and
// never jump far above the best loss so far. (A lone large gradient norm is clipped and leaves the curve
// smooth, so the loss is what is checked.) Each run is the example's own config and schedule, stopped after
// its warm-up.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StepMessage } from '../../common/protocol';
import { loadConfig } from '../../runtime/config/parse';
import { createLocalRun } from '../../runtime/parallel/local-engine';
import { EXAMPLES } from './train/fixtures';

/** Trains `file` as shipped until `lastStep` (then stops, like Ctrl-C) and returns its steps. */
async function firstSteps(file: string, lastStep: number): Promise<StepMessage[]> {
  const config = loadConfig(readFileSync(join(EXAMPLES, file), 'utf8'), file);
  const run = await createLocalRun({ config, baseDir: EXAMPLES, threads: 1 });
  const steps: StepMessage[] = [];
  run.subscribe((m) => {
    if (m.type !== 'step') return;
    steps.push(m);
    if (m.step === lastStep) run.requestStop('the test');
  });
  try {
    await run.run();
  } finally {
    run.dispose();
  }
  return steps;
}

describe('the examples train smoothly', function () {
  this.timeout(600_000);
  const uniform = Math.log(256); // a byte-level model that guesses uniformly

  for (const [file, through] of [
    ['tiny.scalelm.json', 30],
    ['tiny-parallel.scalelm.json', 20],
  ] as const) {
    it(`${file}: no loss above ln(256) after the first step and no loss spike through step ${through}`, async () => {
      const steps = await firstSteps(file, through);
      assert.ok(steps.length >= through, `${steps.length} steps`);
      const worst = steps.filter((s) => s.step > 1).reduce((a, s) => (s.loss > a.loss ? s : a));
      const wildest = steps.reduce((a, s) => (s.gradNorm > a.gradNorm ? s : a));
      console.log(`${file}: highest loss after step 1 ${worst.loss.toFixed(3)} (step ${worst.step}), largest grad norm ${wildest.gradNorm.toFixed(2)} (step ${wildest.step})`);
      assert.ok(worst.loss < uniform, `step ${worst.step}: loss ${worst.loss} ≥ ln(256) = ${uniform.toFixed(3)}`);
      // The old spike went from about 3 back above 5.5; step-to-step noise here is under 0.2 nats.
      let best = Infinity;
      for (const s of steps) {
        assert.ok(s.loss < best + 0.5, `step ${s.step}: loss ${s.loss.toFixed(3)} jumped above the best so far (${best.toFixed(3)})`);
        best = Math.min(best, s.loss);
      }
      assert.ok(steps.at(-1)!.loss < steps[0]!.loss - 1, `it learns: ${steps[0]!.loss} → ${steps.at(-1)!.loss}`);
    });
  }
});
