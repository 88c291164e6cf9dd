// `scalelm export <file> --to deepspeed|megatron|torchrun|slurm [flags]`: the file's layout as a DeepSpeed
// config, Megatron-LM arguments, a torchrun command line or an sbatch script, checked for consistency. Notes go to stderr so stdout can
// be redirected into a file.
import { estimate } from '../planner/estimate';
import { layoutOf } from '../planner/memory';
import { EXPORT_TARGETS, exportFileName, exportLayout, shellWords, type ExportTarget, type SlurmOptions } from '../planner/export';
import { bundledPythonPath } from '../launch/command';
import { basename, dirname, join, resolve } from 'node:path';
import { formatBytes } from '../../common/units';
import { writeFileSynced } from '../files';
import { CliError, parseArgs, type Command } from './args';
import { loadPlanInput, PLAN_FLAGS_HELP, PLAN_SWITCHES, PLAN_VALUE_FLAGS } from './plan-input';

const USAGE = `usage: scalelm export <file> --to ${EXPORT_TARGETS.join('|')} [--write] [--script train.py] [--entry "train.py args"] [flags]

deepspeed   a DeepSpeed config JSON (batch sizes, precision, optimizer, LR scheduler, ZeRO, offload, checkpointing)
megatron    a runnable bash script launching Megatron-LM's pretrain_gpt.py (checks DATA_PATH etc. first)
torchrun    a torchrun command line (Megatron-LM, or your DeepSpeed script with --script)
slurm       an sbatch script: one \`scalelm launch\` per node running torchrun, as one monitored run;
            it trains with the built-in torch trainer, or runs --entry "train.py args" (your script)
--write     write it next to <file> as <name>.ds_config.json / <name>.megatron.sh / <name>.torchrun.sh /
            <name>.slurm.sh (the names the editor uses) instead of printing it

${PLAN_FLAGS_HELP}`;

/** "llama.scalelm.json" -> "llama", "config.json" -> "config". */
export function exportBase(file: string): string {
  return basename(file).replace(/\.scalelm\.json$|\.json$/, '');
}

/** The Slurm script's entry: --entry's words, else the built-in trainer on this config (paths relative to its folder). */
function slurmOptions(file: string, base: string, config: { name?: string }, entry: string | undefined): SlurmOptions {
  const o: SlurmOptions = { name: config.name ?? base, pythonPackage: bundledPythonPath() };
  if (entry === undefined) return { ...o, trainer: { config, baseDir: resolve(dirname(file)) } };
  try {
    return { ...o, entry: shellWords(entry) };
  } catch (e) {
    throw new CliError(`--entry: ${(e as Error).message}`);
  }
}

export const exportCommand: Command = async (argv) => {
  const args = parseArgs(argv, { values: [...PLAN_VALUE_FLAGS, 'to', 'script', 'entry'], repeatable: ['set'], switches: [...PLAN_SWITCHES, 'write'], positional: [1, 1], usage: USAGE });
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
  const base = exportBase(file);
  const entry = args.values.get('entry');
  if (entry !== undefined && to !== 'slurm') throw new CliError('--entry is for --to slurm (what torchrun runs on each node)');
  const result = exportLayout(config, layoutOf(config), to as ExportTarget, {
    ...(script ? { script } : {}),
    deepspeedConfigFile: exportFileName(base, 'deepspeed'),
    ...(to === 'slurm' ? { slurm: slurmOptions(file, base, config, entry) } : {}),
  });
  if (!result.ok) {
    console.error(`${file}: cannot export to ${to}:`);
    for (const i of result.issues) console.error(`  ${i.path}: ${i.message}`);
    return 1;
  }
  if (args.switches.has('write')) {
    const out = join(dirname(file), exportFileName(base, to as ExportTarget));
    // Not through a link: a cloned repository could hold <name>.torchrun.sh -> ~/.bashrc (openRunFile refuses it).
    writeFileSynced(out, result.text.endsWith('\n') ? result.text : `${result.text}\n`, to === 'deepspeed' ? 0o644 : 0o755);
    console.log(out);
  } else console.log(result.text.replace(/\n$/, ''));
  for (const n of result.notes) console.error(`note: ${n}`);
  const e = estimate(config);
  if (e.ok && !e.fits)
    console.error(`warning: by the scalelm estimate this layout needs ${formatBytes(e.memory.perDevice.total)} per GPU, more than the ${formatBytes(e.usable)} usable; try \`scalelm plan ${file}\``);
  return 0;
};
