// Mocha reporter: the usual "spec" output on the console, plus a small JSON of the counts written to
// $SCALELM_MOCHA_JSON so scripts/test.mjs can print one summary for all layers.
const Mocha = require('mocha');
const { writeFileSync } = require('node:fs');
class SpecWithCounts extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const out = process.env.SCALELM_MOCHA_JSON;
      if (out) writeFileSync(out, JSON.stringify({ passes: this.stats.passes, failures: this.stats.failures, pending: this.stats.pending }));
    });
  }
}
module.exports = SpecWithCounts;
