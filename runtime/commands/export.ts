// `scalelm export <file> --to deepspeed|megatron|torchrun [flags]`: the file's layout as a DeepSpeed config,
// Megatron-LM arguments or a torchrun command line, checked for consistency. Notes go to stderr so stdout can
// be redirected into a file.
import { estimate } from '../planner/estimate';
import { layoutOf } from '../planner/memory';
import { EXPORT_TARGETS, exportLayout, type ExportTarget } from '../planner/export';
import { formatBytes } from '../../common/units';
import { CliError, parseArgs, type Command } from './args';
import { loadPlanInput, PLAN_FLAGS_HELP, PLAN_SWITCHES, PLAN_VALUE_FLAGS } from './plan-input';

const USAGE = `usage: scalelm export <file> --to ${EXPORT_TARGETS.join('|')} [--script train.py] [flags]

deepspeed   a DeepSpeed config JSON (zero_optimization, batch sizes, precision, offload)
megatron    Megatron-LM pretrain_gpt.py arguments
torchrun    a torchrun command line (Megatron-LM, or your DeepSpeed script with --script)

${PLAN_FLAGS_HELP}`;

export const exportCommand: Command = async (argv) => {
  const args = parseArgs(argv, { values: [...PLAN_VALUE_FLAGS, 'to', 'script'], repeatable: ['set'], switches: [...PLAN_SWITCHES], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const to = args.values.get('to');
  if (to === undefined) throw new CliError(`--to is required: ${EXPORT_TARGETS.join(', ')}\n\n${USAGE}`);
  if (!(EXPORT_TARGETS as readonly string[]).includes(to)) throw new CliError(`--to must be one of ${EXPORT_TARGETS.join(', ')}, got "${to}"`);
  const file = args.positional[0]!;
  const { config } = loadPlanInput(file, args, 'export');
  const script = args.values.get('script');
  const result = exportLayout(config, layoutOf(config), to as ExportTarget, script ? { script } : {});
  if (!result.ok) {
    console.error(`${file}: cannot export to ${to}:`);
    for (const i of result.issues) console.error(`  ${i.path}: ${i.message}`);
    return 1;
  }
  console.log(result.text);
  for (const n of result.notes) console.error(`note: ${n}`);
  const e = estimate(config);
  if (e.ok && !e.fits) console.error(`warning: by the scalelm estimate this layout needs ${formatBytes(e.memory.perDevice.total)} per GPU, more than the ${formatBytes(e.usable)} usable; try \`scalelm plan ${file}\``);
  return 0;
};
