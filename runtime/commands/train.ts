// `scalelm train <file> [--set path=value]… [--steps N] [--run-dir DIR] [--init-from DIR]` trains on this
// machine, printing a line per step and writing DIR/metrics.jsonl and checkpoints; `--resume DIR` continues
// a run from its latest checkpoint. Ctrl-C stops after the current step with a checkpoint.
import { dirname, resolve } from 'node:path';
import { parseConfig } from '../config/parse';
import { setPath } from '../config/set-path';
import { CliError, intFlag, parseArgs, type Command } from './args';
import { readRawConfig } from './load';
import type { RunDir as RunDirType } from '../train/run-dir';
import type { Trainer as TrainerType } from '../train/trainer';
import type { ParallelTrainer as ParallelTrainerType } from '../parallel/coordinator';

const USAGE = `usage: scalelm train <file.scalelm.json> [--set path=value]… [--steps N] [--run-dir DIR] [--init-from HF_GPT2_DIR] [--threads N]
       scalelm train --resume DIR [--steps N] [--set path=value]…

  --steps N        train.steps (the schedule's length)
  --run-dir DIR    where metrics.jsonl, logs/ and checkpoints/ go (default <config folder>/<monitor.runDir>/<name>-<time>)
  --resume DIR     continue the run in DIR from its latest checkpoint (same loss curve as an uninterrupted run)
  --init-from DIR  initial weights: a local HuggingFace GPT-2 folder (config.json + model.safetensors) or a ScaleLM checkpoint
  --threads N      wasm threads (default: SCALELM_WASM_THREADS, else one per core up to 4)

The run is served live on monitor.host (127.0.0.1) with a per-run token: the first stdout line is JSON
({"scalelm":"listening",…}) for programs, followed by the dashboard URL for people.
A layout whose planned memory does not fit devices.memory is refused before anything starts.
Parallel layouts (parallel.dp·tp > 1, parallel.zero, devices.transport "tcp") train one rank per device —
worker threads over shared memory, or processes over sockets — with sharded checkpoints (docs/parallel.md).`;

/** Errors a user can meet: printed as one message, exit 1. */
const USER_ERRORS = new Set(['ConfigError', 'DataError', 'CheckpointError', 'SafetensorsError', 'TrainError', 'BackendError', 'DeviceOutOfMemoryError', 'RunDirError', 'ModelShapeError', 'ParallelError']);

export const train: Command = async (argv) => {
  const args = parseArgs(argv, { values: ['steps', 'run-dir', 'resume', 'init-from', 'threads'], repeatable: ['set'], positional: [0, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const resumeDir = args.values.get('resume');
  if (resumeDir && args.positional.length) throw new CliError(`--resume continues the run with its own config; leave out ${args.positional[0]}\n\n${USAGE}`);
  if (!resumeDir && !args.positional.length) throw new CliError(`missing the config file\n\n${USAGE}`);
  if (resumeDir && args.values.has('run-dir')) throw new CliError('--resume DIR already names the run directory; leave out --run-dir');
  if (resumeDir && args.values.has('init-from')) throw new CliError('--resume continues from the run\'s checkpoint; --init-from is for new runs');
  const steps = intFlag(args, 'steps');
  const threads = intFlag(args, 'threads');
  const sets = [...(args.repeated.get('set') ?? []), ...(steps !== undefined ? [`train.steps=${steps}`] : [])];

  // Heavy modules load only when training (so `scalelm --help` stays instant).
  const { RunDir, defaultRunDir } = await import('../train/run-dir');
  const { Trainer } = await import('../train/trainer');

  let raw: Record<string, unknown>;
  let baseDir: string;
  let file: string | undefined;
  let runDir: RunDirType;
  try {
    if (resumeDir) {
      runDir = RunDir.open(resumeDir);
      const source = runDir.readSource();
      raw = source.raw;
      baseDir = source.baseDir;
      file = source.file;
      for (const s of sets) setPath(raw, s);
    } else {
      file = resolve(args.positional[0]!);
      raw = readRawConfig(file, sets);
      baseDir = dirname(file);
    }
  } catch (e) {
    throw asCliError(e);
  }
  const parsed = parseConfig(raw);
  if (!parsed.ok) {
    console.error(`${file ?? 'config'}: ${parsed.errors.length} problem${parsed.errors.length === 1 ? '' : 's'}`);
    for (const e of parsed.errors) console.error(`  ${e.path || '(root)'}: ${e.message}`);
    return 1;
  }
  const config = parsed.config;
  const { checkFit, describeSuggestion } = await import('../planner/target');
  const fit = checkFit(config);
  if (fit.result.ok && !fit.result.fits) {
    const { formatBytes } = await import('../../common/units');
    const per = fit.result.memory.perDevice;
    console.error(`${file ?? 'config'}: this layout does not fit — planned ${formatBytes(per.total)} per device, ${formatBytes(fit.target.capacity)} available on ${fit.target.label}; nothing was started`);
    for (const c of ['params', 'grads', 'optimizer', 'activations', 'buffers', 'overhead'] as const) if (per[c] > 0) console.error(`  ${c.padEnd(12)} ${formatBytes(per[c])}`);
    console.error(fit.suggestion ? `  ${describeSuggestion(config, fit.suggestion)}` : '  no layout of these devices fits: raise devices.memory or use a smaller model/batch');
    return 1;
  }

  // dp·tp > 1 (or ZeRO, or the socket transport) runs on the parallel engine: one rank per device.
  const { isParallel } = await import('../parallel/layout');
  const parallel = isParallel(config);
  let trainer: TrainerType | ParallelTrainerType;
  try {
    if (!resumeDir) runDir = RunDir.create(args.values.get('run-dir') ?? defaultRunDir(baseDir, config));
    // A resume writes its (possibly --set/--steps changed) config only once the trainer has accepted the
    // checkpoint: a refused resume leaves config.source.json as it was, so the plain --resume still works.
    if (!resumeDir) runDir!.writeConfig(config, { ...(file ? { file } : {}), baseDir, raw });
    const setup = {
      config,
      baseDir,
      runDir: runDir!,
      resume: Boolean(resumeDir),
      ...(args.values.has('init-from') ? { initFrom: resolve(args.values.get('init-from')!) } : {}),
      ...(threads !== undefined ? { threads } : {}),
      log: (line: string) => console.log(line),
      sampleBytes: 200,
      ...(fit.result.ok ? { plan: { convention: fit.target.convention, target: fit.target.label, capacity: fit.target.capacity, perDevice: fit.result.memory.perDevice } } : {}),
    };
    if (parallel) {
      const { ParallelTrainer } = await import('../parallel/coordinator');
      trainer = await ParallelTrainer.create(setup);
    } else {
      // A sharded checkpoint of a parallel run resumes here once it is consolidated into single-device files.
      if (resumeDir) (await import('../parallel/checkpoint')).consolidateLatestIfSharded(runDir!.checkpoints, (line) => console.log(line));
      trainer = await Trainer.create(setup);
    }
    if (resumeDir) runDir!.writeConfig(config, { ...(file ? { file } : {}), baseDir, raw });
  } catch (e) {
    throw asCliError(e);
  }
  const { monitorTrainer } = await import('../server/monitor');
  let monitored: Awaited<ReturnType<typeof monitorTrainer>>;
  try {
    monitored = await monitorTrainer({
      trainer,
      runDir: runDir!,
      config,
      ...(parallel ? { world: (trainer as ParallelTrainerType).world } : {}),
      warn: (line) => console.error(line),
    });
  } catch (e) {
    trainer.dispose();
    throw asCliError(e);
  }
  if (parallel) {
    // Which process (and device) each rank is: the GPU sampler and the per-rank memory panels use it.
    const pt = trainer as ParallelTrainerType;
    monitored.recorder.setRanks(pt.rankProcesses());
    pt.onRanks((ranks) => monitored.recorder.setRanks(ranks));
  }
  const url = monitored.server.dashboardUrl;
  console.log(`run directory: ${runDir!.path}`);
  console.log(process.env.SCALELM_MONITOR_TOKEN ? `live stream: ${monitored.server.url}` : `dashboard: ${url}   (follow the run in a browser; the token after # never leaves this machine)`);

  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      console.log('\nstopping after this step and writing a checkpoint (Ctrl-C again to quit at once; the last checkpoint stays intact)');
      trainer.requestStop();
    } else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  try {
    const result = await trainer.run();
    const where = result.checkpoint ? ` — checkpoint ${result.checkpoint}` : '';
    if (result.reason === 'stopped') {
      console.log(`stopped at step ${result.step}${where}\ncontinue with: scalelm train --resume ${runDir!.path}`);
      return 130;
    }
    console.log(`done: ${result.step} steps, last loss ${result.lastLoss?.toFixed(4) ?? 'n/a'}${where}`);
    return 0;
  } catch (e) {
    throw asCliError(e);
  } finally {
    process.off('SIGINT', onSigint);
    await monitored.close();
    trainer.dispose();
  }
};

function asCliError(e: unknown): unknown {
  if (e instanceof Error && USER_ERRORS.has(e.name)) return new CliError(e.message, 1);
  return e;
}
