// `scalelm train <file> [--set path=value]… [--steps N] [--run-dir DIR] [--init-from DIR]` trains on this
// machine, printing a line per step and writing DIR/metrics.jsonl and checkpoints; `--resume DIR` continues
// a run from its latest checkpoint. Ctrl-C stops after the current step with a checkpoint.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseConfig } from '../config/parse';
import { setPath } from '../config/set-path';
import { CliError, intFlag, parseArgs, type Command } from './args';
import { readRawConfig } from './load';
import { STATE_LOOK } from '../../common/lifecycle';
import type { RunDir as RunDirType } from '../train/run-dir';
import type { Coordinator } from '../coordinator/coordinator';
import type { PlanSummary } from '../../common/protocol';

const USAGE = `usage: scalelm train <file.scalelm.json> [--set path=value]… [--steps N] [--run-dir DIR] [--init-from HF_GPT2_DIR] [--threads N] [--python PATH]
       scalelm train --resume DIR [--steps N] [--set path=value]…

  --steps N        train.steps (the schedule's length)
  --run-dir DIR    where metrics.jsonl, logs/ and checkpoints/ go (default <config folder>/<monitor.runDir>/<name>-<time>)
  --resume DIR     continue the run in DIR from its latest checkpoint (same loss curve as an uninterrupted run)
  --init-from DIR  initial weights: a local HuggingFace GPT-2 folder (config.json + model.safetensors) or a ScaleLM checkpoint
  --threads N      wasm threads (default: SCALELM_WASM_THREADS, else one per core up to 4)
  --python PATH    the Python of the torch engine (default: SCALELM_PYTHON, else python3 on PATH)

The run is served live on monitor.host (127.0.0.1) with a per-run token: the first stdout line is JSON
({"scalelm":"listening",…}) for programs, followed by the dashboard URL for people.
A layout whose planned memory does not fit devices.memory is refused before anything starts.
Every layout trains one rank per device (one device: a world of one) — worker threads over shared memory,
or processes over sockets (devices.transport "tcp") — with sharded checkpoints (docs/parallel.md).
devices.engine "torch" (or "auto" where the Python's torch ≥ 2.6 sees CUDA GPUs) trains under torchrun with
the bundled python package instead (docs/torch-engine.md).`;

/** Errors a user can meet: printed as one message, exit 1. */
const USER_ERRORS = new Set([
  'TorchEngineError',
  'ConfigError',
  'DataError',
  'CheckpointError',
  'SafetensorsError',
  'BackendError',
  'DeviceOutOfMemoryError',
  'RunDirError',
  'ModelShapeError',
  'ParallelError',
]);

export const train: Command = async (argv) => {
  const args = parseArgs(argv, { values: ['steps', 'run-dir', 'resume', 'init-from', 'threads', 'python'], repeatable: ['set'], positional: [0, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const resumeDir = args.values.get('resume');
  if (resumeDir && args.positional.length) throw new CliError(`--resume continues the run with its own config; leave out ${args.positional[0]}\n\n${USAGE}`);
  if (!resumeDir && !args.positional.length) throw new CliError(`missing the config file\n\n${USAGE}`);
  if (resumeDir && args.values.has('run-dir')) throw new CliError('--resume DIR already names the run directory; leave out --run-dir');
  if (resumeDir && args.values.has('init-from')) throw new CliError("--resume continues from the run's checkpoint; --init-from is for new runs");
  const steps = intFlag(args, 'steps');
  const threads = intFlag(args, 'threads');
  const sets = [...(args.repeated.get('set') ?? []), ...(steps !== undefined ? [`train.steps=${steps}`] : [])];

  // Heavy modules load only when training (so `scalelm --help` stays instant).
  const { RunDir, defaultRunDir } = await import('../train/run-dir');

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
  // One way to run a config's own command: `scalelm launch --config` (train's flags mean nothing to it).
  if (config.launch)
    throw new CliError(
      `${file ?? 'config'} has a launch section: it runs its own command (${config.launch.command.join(' ').slice(0, 200)}), not the built-in trainer; start it with: scalelm launch --config ${args.positional[0] ?? file ?? 'FILE'}`,
      1,
    );
  // The engine first: a torch run that cannot start must leave nothing behind (no run folder).
  const { chooseEngine } = await import('../engines/torch/choose');
  let engine: ReturnType<typeof chooseEngine>;
  try {
    engine = chooseEngine(config, args.values.has('python') ? { python: args.values.get('python')!, source: '--python' } : undefined);
  } catch (e) {
    throw asCliError(e);
  }
  const { checkFit, describeSuggestion } = await import('../planner/target');
  const fit = checkFit(config);
  // On GPUs devices.memory (a CPU device's capacity) says nothing: the GPUs' own memory is the limit there.
  if (fit.result.ok && !fit.result.fits && !(engine.name === 'torch' && engine.device === 'cuda')) {
    const { formatBytes } = await import('../../common/units');
    const per = fit.result.memory.perDevice;
    console.error(
      `${file ?? 'config'}: this layout does not fit — planned ${formatBytes(per.total)} per device, ${formatBytes(fit.target.capacity)} available on ${fit.target.label}; nothing was started`,
    );
    for (const c of ['params', 'grads', 'optimizer', 'activations', 'buffers', 'overhead'] as const) if (per[c] > 0) console.error(`  ${c.padEnd(12)} ${formatBytes(per[c])}`);
    console.error(fit.suggestion ? `  ${describeSuggestion(config, fit.suggestion)}` : '  no layout of these devices fits: raise devices.memory or use a smaller model/batch');
    return 1;
  }

  let trainer: Coordinator;
  // A run that cannot start leaves no folder behind: remove the one made here (never an existing one).
  let madeDir: string | undefined;
  const removeMadeDir = (): void => {
    if (madeDir) rmSync(madeDir, { recursive: true, force: true });
  };
  try {
    if (!resumeDir) {
      const path = resolve(args.values.get('run-dir') ?? defaultRunDir(baseDir, config));
      const fresh = !existsSync(path) || readdirSync(path).length === 0;
      runDir = RunDir.create(path);
      if (fresh) madeDir = runDir.path;
    }
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
      engineReason: engine.reason,
      ...(fit.result.ok
        ? { plan: { convention: fit.target.convention, target: fit.target.label, capacity: fit.target.capacity, perDevice: { ...fit.result.memory.perDevice } } satisfies PlanSummary }
        : {}),
    };
    if (engine.name === 'torch') {
      const { threads: _threads, ...torchSetup } = setup;
      const { createTorchRun } = await import('../engines/torch/engine');
      trainer = await createTorchRun({ ...torchSetup, choice: engine });
    } else {
      const { createLocalRun } = await import('../parallel/local-engine');
      trainer = await createLocalRun(setup);
    }
    if (resumeDir) runDir!.writeConfig(config, { ...(file ? { file } : {}), baseDir, raw });
  } catch (e) {
    if (madeDir) runDir!.close();
    removeMadeDir();
    throw asCliError(e);
  }
  const { monitorTrainer } = await import('../server/monitor');
  let monitored: Awaited<ReturnType<typeof monitorTrainer>>;
  try {
    // A resumed run continues its curve: the server starts from what the run recorded before.
    const prior = resumeDir ? (await (await import('../telemetry/run-store')).readRun(runDir!.path)).messages : undefined;
    monitored = await monitorTrainer({
      ...(prior ? { prior } : {}),
      trainer,
      runDir: runDir!,
      config,
      world: trainer.world,
      warn: (line) => console.error(line),
    });
  } catch (e) {
    trainer.dispose();
    removeMadeDir();
    throw asCliError(e);
  }
  // Which process (and device) each rank is: the GPU sampler and the per-rank memory panels use it.
  monitored.recorder.setRanks(trainer.rankProcesses());
  trainer.onRanks((ranks) => monitored.recorder.setRanks(ranks));
  const url = monitored.server.dashboardUrl;
  console.log(`run directory: ${runDir!.path}`);
  // After the listening line, which stays the first stdout line (programs read it).
  console.log(`engine: ${engine.name} (${engine.reason})`);
  console.log(process.env.SCALELM_MONITOR_TOKEN ? `live stream: ${monitored.server.url}` : `dashboard: ${url}   (follow the run in a browser; the token after # never leaves this machine)`);

  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      console.log('\nstopping after this step and writing a checkpoint (Ctrl-C again to quit at once; the last checkpoint stays intact)');
      trainer.requestStop('Ctrl-C');
    } else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  // The end of the run, said as the end of the run (the lifecycle's words, common/lifecycle.ts), then how
  // to look at it again: the live server goes away with this process.
  const browse = `browse it again: scalelm serve ${runDir!.path}`;
  try {
    const result = await trainer.run();
    const where = result.checkpoint ? ` — checkpoint ${result.checkpoint}` : '';
    if (result.reason === 'stopped') {
      console.log(`${STATE_LOOK.stopped.glyph} run stopped at step ${result.step}${where}\ncontinue with: scalelm train --resume ${runDir!.path}\n${browse}`);
      return 130;
    }
    console.log(`${STATE_LOOK.finished.glyph} run finished: ${result.step} steps, last loss ${result.lastLoss?.toFixed(4) ?? 'n/a'}${where}\n${browse}`);
    return 0;
  } catch (e) {
    console.error(`${STATE_LOOK.failed.glyph} run failed — ${browse}`);
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
