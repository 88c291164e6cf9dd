// `scalelm launch [--name NAME] [--run-dir DIR] [--stop-timeout-ms N] -- <command…>`: runs any training
// command as one ScaleLM run (runtime/launch/launch.ts), served live like `scalelm train` (the listening
// JSON line, then the dashboard URL), and exits with the command's status. Ctrl-C stops the command
// (SIGINT to its process group, SIGKILL after the timeout); a second Ctrl-C kills it at once.
// `scalelm launch --config FILE` runs the command of FILE's `launch` section (its cwd and env) the same way.
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { CliError, intFlag, parseArgs, type Command } from './args';

const USAGE = `usage: scalelm launch [--name NAME] [--run-dir DIR] [--stop-timeout-ms N] -- <command…>
       scalelm launch --config FILE.scalelm.json [--name NAME] [--run-dir DIR] [--stop-timeout-ms N]

  e.g. scalelm launch --name ddp -- torchrun --nproc-per-node 2 train.py --lr 3e-4

  --name NAME          the run's name (default: the command's script or program)
  --run-dir DIR        where metrics.jsonl and logs/ go (default runs/<name>-<time>)
  --stop-timeout-ms N  after Stop (SIGINT to the command's process group), how long before SIGKILL (default 15000)
  --config FILE        run FILE's launch section: its command, in its cwd (relative to FILE) with its env;
                       the run takes FILE's name and monitor settings

The command gets SCALELM_CHANNEL, SCALELM_CHANNEL_TOKEN and SCALELM_RUN_DIR: ranks that use the scalelm
Python Monitor report their steps and memory to this run (docs/rank-channel.md). The run ends with the
command's exit status; a rank that dies is named.`;

export const launch: Command = async (argv) => {
  const cut = argv.indexOf('--');
  const own = cut >= 0 ? argv.slice(0, cut) : argv;
  const command = cut >= 0 ? argv.slice(cut + 1) : [];
  const args = parseArgs(own, { values: ['name', 'run-dir', 'stop-timeout-ms', 'config'], positional: [0, 0], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const configFile = args.values.get('config');
  if (configFile && command.length) throw new CliError(`--config ${configFile} brings its own command (launch.command); leave out -- ${command.join(' ')}`);
  if (!configFile && !command.length) throw new CliError(`missing the command after --\n\n${USAGE}`);
  const stopTimeoutMs = intFlag(args, 'stop-timeout-ms');
  const { loadConfig, parseConfig } = await import('../config/parse');
  let fromConfig: { config: import('../config/types').RunConfig; launch: import('../config/types').LaunchConfig; cwd: string } | undefined;
  if (configFile) {
    const { readRawConfig } = await import('./load');
    const file = resolve(configFile);
    const raw = readRawConfig(file);
    // Like a bare command's (below): no configured device capacity unless the config gives one.
    if (!(raw.devices as { memory?: unknown } | undefined)?.memory) raw.devices = { ...(raw.devices as object | undefined), memory: '16TiB' };
    const parsed = parseConfig(raw);
    if (!parsed.ok) throw new CliError(`${configFile}: ${parsed.errors.length} problem${parsed.errors.length === 1 ? '' : 's'}\n${parsed.errors.map((e) => `  ${e.path || '(root)'}: ${e.message}`).join('\n')}`, 1);
    if (!parsed.config.launch) throw new CliError(`${configFile} has no launch section (launch.command): train it with \`scalelm train ${configFile}\`, or give the command after --`, 1);
    const cwd = resolve(dirname(file), parsed.config.launch.cwd ?? '.');
    // Said here: a missing cwd would otherwise surface as the program's own "spawn … ENOENT".
    if (!existsSync(cwd) || !statSync(cwd).isDirectory()) throw new CliError(`${configFile}: launch.cwd "${parsed.config.launch.cwd}" is ${cwd}, which is not a folder`, 1);
    fromConfig = { config: parsed.config, launch: parsed.config.launch, cwd };
  }
  const commandArgs = fromConfig?.launch.command ?? command;
  const script = commandArgs.find((a, i) => i > 0 && /\.(py|sh)$/.test(a)) ?? commandArgs[0]!;
  const name = args.values.get('name') ?? fromConfig?.config.name ?? basename(script).replace(/\.(py|sh)$/, '');
  const { RunDir } = await import('../train/run-dir');
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const runDir = RunDir.create(resolve(args.values.get('run-dir') ?? `runs/${name.replace(/[^A-Za-z0-9._-]+/g, '-')}-${stamp}`));
  const { LaunchRun } = await import('../launch/launch');
  const run = new LaunchRun({
    name,
    command: commandArgs,
    runDir,
    cwd: fromConfig?.cwd ?? process.cwd(),
    ...(fromConfig ? { env: fromConfig.launch.env } : {}),
    ...(stopTimeoutMs !== undefined ? { stopTimeoutMs } : {}),
    onLine: (line, stream) => (stream === 'stdout' ? console.log(line) : console.error(line)),
    log: (line) => console.error(`scalelm: ${line}`),
  });
  // The monitor needs a config for its listening address and the recorder's defaults; a launched command
  // has none, so the monitor section comes from the defaults (127.0.0.1, a free port, token-protected).
  // devices.memory: the schema's maximum, since a launched command's devices have no configured capacity.
  const config = fromConfig?.config ?? loadConfig({ name, model: { preset: 'tiny' }, devices: { memory: '16TiB' } });
  const { monitorTrainer } = await import('../server/monitor');
  const monitored = await monitorTrainer({ trainer: run, runDir, config, warn: (line) => console.error(line) });
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
  // SIGTERM/SIGHUP (VS Code ending a Stop that timed out, closing the window or a task's terminal): the
  // command's process groups are not ours to orphan, so they are killed before this process goes.
  const onSigterm = (): void => {
    run.dispose();
    process.exit(143);
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  process.on('SIGHUP', onSigterm);
  try {
    const result = await run.run();
    if (result.error) console.error(`scalelm: ${result.error}`);
    return result.exitCode ?? 1;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    process.off('SIGHUP', onSigterm);
    await monitored.close();
    run.dispose();
  }
};
