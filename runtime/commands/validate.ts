// `scalelm validate <file> [--set path=value]… [--json]`: errors (exit 1) or a one-line summary (exit 0); with
// --json the resolved config (presets and defaults applied) as one JSON object, for scripts.
import { parseConfig } from '../config/parse';
import { formatBytes } from '../../common/units';
import { parseArgs, type Command } from './args';
import { readRawConfig } from './load';

const USAGE = 'usage: scalelm validate <file.scalelm.json> [--set path=value]… [--json]';

export const validate: Command = async (argv) => {
  const args = parseArgs(argv, { repeatable: ['set'], switches: ['json'], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const file = args.positional[0]!;
  const result = parseConfig(readRawConfig(file, args.repeated.get('set')));
  if (!result.ok) {
    console.error(`${file}: ${result.errors.length} problem${result.errors.length === 1 ? '' : 's'}`);
    for (const e of result.errors) console.error(`  ${e.path || '(root)'}: ${e.message}`);
    return 1;
  }
  if (args.switches.has('json')) {
    console.log(JSON.stringify(result.config));
    return 0;
  }
  const { model, parallel, train, devices } = result.config;
  const world = parallel.dp * parallel.tp * parallel.pp;
  console.log(
    `${file}: ok — ${model.name} (${model.layers}L h${model.hidden} a${model.heads}) · dp${parallel.dp}×tp${parallel.tp}×pp${parallel.pp} = ${world} device${world === 1 ? '' : 's'}` +
      ` · ZeRO-${parallel.zero} · ${train.precision} · batch ${train.globalBatch}×${model.seqLen} · ${train.steps} steps · ${devices.backend} ${formatBytes(devices.memory)}/device`,
  );
  return 0;
};
