// `scalelm launch [--name NAME] [--run-dir DIR] [--stop-timeout-ms N] -- <command…>`: runs any training
// command as one ScaleLM run (runtime/launch/launch.ts), served live like `scalelm train` (the listening
// JSON line, then the dashboard URL), and exits with the command's status. Ctrl-C stops the command
// (SIGINT to its process group, SIGKILL after the timeout); a second Ctrl-C kills it at once.
import { basename, resolve } from 'node:path';
import { CliError, intFlag, parseArgs, type Command } from './args';

const USAGE = `usage: scalelm launch [--name NAME] [--run-dir DIR] [--plan CONFIG] [--stop-timeout-ms N] -- <command…>

  e.g. scalelm launch --name ddp -- torchrun --nproc-per-node 2 train.py --lr 3e-4

  --name NAME          the run's name (default: the command's script or program)
  --run-dir DIR        where metrics.jsonl and logs/ go (default runs/<name>-<time>)
  --plan CONFIG        a *.scalelm.json (model and layout) or a HuggingFace config.json (the model; the layout
                       as the script reports it): each rank's memory shows the planner's prediction. Without
                       it, a HuggingFace model's own config is planned when the script reports it.
  --stop-timeout-ms N  after Stop (SIGINT to the command's process group), how long before SIGKILL (default 15000)

The command gets SCALELM_CHANNEL, SCALELM_CHANNEL_TOKEN and SCALELM_RUN_DIR: ranks that use the scalelm
Python Monitor report their steps and memory to this run (docs/rank-channel.md). The run ends with the
command's exit status; a rank that dies is named.`;

export const launch: Command = async (argv) => {
  const cut = argv.indexOf('--');
  const own = cut >= 0 ? argv.slice(0, cut) : argv;
  const command = cut >= 0 ? argv.slice(cut + 1) : [];
  const args = parseArgs(own, { values: ['name', 'run-dir', 'stop-timeout-ms', 'plan'], positional: [0, 0], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (!command.length) throw new CliError(`missing the command after --\n\n${USAGE}`);
  const stopTimeoutMs = intFlag(args, 'stop-timeout-ms');
  const script = command.find((a, i) => i > 0 && /\.(py|sh)$/.test(a)) ?? command[0]!;
  const name = args.values.get('name') ?? basename(script).replace(/\.(py|sh)$/, '');
  const { launchPlan } = await import('../launch/plan');
  const plan = launchPlan(args.values.get('plan')); // a bad file stops here, before anything starts
  const { RunDir } = await import('../train/run-dir');
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const runDir = RunDir.create(resolve(args.values.get('run-dir') ?? `runs/${name.replace(/[^A-Za-z0-9._-]+/g, '-')}-${stamp}`));
  const { LaunchRun } = await import('../launch/launch');
  const run = new LaunchRun({
    name,
    command,
    runDir,
    cwd: process.cwd(),
    plan,
    ...(stopTimeoutMs !== undefined ? { stopTimeoutMs } : {}),
    onLine: (line, stream) => (stream === 'stdout' ? console.log(line) : console.error(line)),
    log: (line) => console.error(`scalelm: ${line}`),
  });
  // The monitor needs a config for its listening address and the recorder's defaults; a launched command
  // has none, so the monitor section comes from the defaults (127.0.0.1, a free port, token-protected).
  const { loadConfig } = await import('../config/parse');
  // devices.memory: the schema's maximum, since a launched command's devices have no configured capacity.
  const config = loadConfig({ name, model: { preset: 'tiny' }, devices: { memory: '16TiB' } });
  const { monitorTrainer } = await import('../server/monitor');
  // The out-of-memory forecast needs the run's length, which rank 0 reports once it starts.
  const monitored = await monitorTrainer({ trainer: run, runDir, config, warn: (line) => console.error(line), alerts: { totalSteps: () => run.totalSteps } });
  console.log(`run directory: ${runDir.path}`);
  console.log(process.env.SCALELM_MONITOR_TOKEN ? `live stream: ${monitored.server.url}` : `dashboard: ${monitored.server.dashboardUrl}`);
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      console.error('\nstopping the command (SIGINT to its process group; Ctrl-C again to kill it)');
      run.requestStop();
    } else {
      run.dispose();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  try {
    const result = await run.run();
    if (result.error) console.error(`scalelm: ${result.error}`);
    return result.exitCode ?? 1;
  } finally {
    process.off('SIGINT', onSigint);
    await monitored.close();
    run.dispose();
  }
};
