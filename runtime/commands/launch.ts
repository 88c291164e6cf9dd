// `scalelm launch [--name NAME] [--run-dir DIR] [--stop-timeout-ms N] -- <command…>`: runs any training
// command as one ScaleLM run (runtime/launch/launch.ts), served live like `scalelm train` (the listening
// JSON line, then the dashboard URL), and exits with the command's status. Ctrl-C stops the command
// (SIGINT to its process group, SIGKILL after the timeout); a second Ctrl-C kills it at once.
// `scalelm launch --config FILE` runs the command of FILE's `launch` section (its cwd and env) the same way.
import { existsSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { isToken } from '../../common/protocol';
import { CliError, intFlag, parseArgs, type Command, type ParsedArgs } from './args';
import { FileReadError, readTextBounded } from '../files';

const USAGE = `usage: scalelm launch [--name NAME] [--run-dir DIR] [--plan CONFIG] [--stop-timeout-ms N] -- <command…>
       scalelm launch --config FILE.scalelm.json [--name NAME] [--run-dir DIR] [--plan CONFIG] [--stop-timeout-ms N]
       scalelm launch --nnodes N --node-rank K --master ADDR:PORT [--token-file F] [options] -- <command…>

  e.g. scalelm launch --name ddp -- torchrun --nproc-per-node 2 train.py --lr 3e-4

  --name NAME          the run's name (default: the command's script or program)
  --run-dir DIR        where metrics.jsonl and logs/ go (default runs/<name>-<time>)
  --plan CONFIG        a *.scalelm.json (model and layout) or a HuggingFace config.json (the model; the layout
                       as the script reports it): each rank's memory shows the planner's prediction. Without
                       it, a HuggingFace model's own config is planned when the script reports it.
  --stop-timeout-ms N  after Stop (SIGINT to the command's process group), how long before SIGKILL (default 15000)
  --config FILE        run FILE's launch section: its command, in its cwd (relative to FILE) with its env;
                       the run takes FILE's name and monitor settings

Multi-node (run it on every node, each with its own --node-rank; docs/launch.md):
  --nnodes N           machines in the run
  --node-rank K        this machine (0 = the coordinator: run folder, dashboard, rank channel)
  --master ADDR:PORT   node 0's address for the rank channel (node 0 listens there; the others connect)
  --token-file F       the run token (64 hex digits, mode 0600), else SCALELM_RUN_TOKEN; the same on every node
  --join-timeout-s N   node 0: fail the run when a node has not joined N s after start (default 600)

The command gets SCALELM_CHANNEL, SCALELM_CHANNEL_TOKEN and SCALELM_RUN_DIR: ranks that use the scalelm
Python Monitor report their steps and memory to this run (docs/rank-channel.md). The run ends with the
command's exit status; a rank that dies is named.`;

export const launch: Command = async (argv) => {
  const cut = argv.indexOf('--');
  const own = cut >= 0 ? argv.slice(0, cut) : argv;
  const command = cut >= 0 ? argv.slice(cut + 1) : [];
  const args = parseArgs(own, { values: ['name', 'run-dir', 'stop-timeout-ms', 'config', 'plan', 'nnodes', 'node-rank', 'master', 'token-file', 'join-timeout-s'], positional: [0, 0], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const configFile = args.values.get('config');
  if (configFile && command.length) throw new CliError(`--config ${configFile} brings its own command (launch.command); leave out -- ${command.join(' ')}`);
  if (!configFile && !command.length) throw new CliError(`missing the command after --\n\n${USAGE}`);
  const stopTimeoutMs = intFlag(args, 'stop-timeout-ms');
  const multi = multiNodeArgs(args);
  const { loadConfig, parseConfig } = await import('../config/parse');
  let fromConfig: { config: import('../config/types').RunConfig; launch: import('../config/types').LaunchConfig; cwd: string } | undefined;
  if (configFile) {
    const { readRawConfig } = await import('./load');
    const file = resolve(configFile);
    const raw = readRawConfig(file);
    // Like a bare command's (below): no configured device capacity unless the config gives one.
    if (!(raw.devices as { memory?: unknown } | undefined)?.memory) raw.devices = { ...(raw.devices as object | undefined), memory: '16TiB' };
    const parsed = parseConfig(raw);
    if (!parsed.ok)
      throw new CliError(`${configFile}: ${parsed.errors.length} problem${parsed.errors.length === 1 ? '' : 's'}\n${parsed.errors.map((e) => `  ${e.path || '(root)'}: ${e.message}`).join('\n')}`, 1);
    if (!parsed.config.launch) throw new CliError(`${configFile} has no launch section (launch.command): train it with \`scalelm train ${configFile}\`, or give the command after --`, 1);
    const cwd = resolve(dirname(file), parsed.config.launch.cwd ?? '.');
    // Said here: a missing cwd would otherwise surface as the program's own "spawn … ENOENT".
    if (!existsSync(cwd) || !statSync(cwd).isDirectory()) throw new CliError(`${configFile}: launch.cwd "${parsed.config.launch.cwd}" is ${cwd}, which is not a folder`, 1);
    fromConfig = { config: parsed.config, launch: parsed.config.launch, cwd };
  }
  const commandArgs = fromConfig?.launch.command ?? command;
  if (multi && multi.nodeRank > 0) return launchNode(multi, commandArgs, stopTimeoutMs);
  const script = commandArgs.find((a, i) => i > 0 && /\.(py|sh)$/.test(a)) ?? commandArgs[0]!;
  const name = args.values.get('name') ?? fromConfig?.config.name ?? basename(script).replace(/\.(py|sh)$/, '');
  const { launchPlan } = await import('../launch/plan');
  const plan = launchPlan(args.values.get('plan')); // a bad file stops here, before anything starts
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
    plan,
    ...(stopTimeoutMs !== undefined ? { stopTimeoutMs } : {}),
    ...(multi ? { multiNode: { nnodes: multi.nnodes, host: multi.master.host, port: multi.master.port, token: multi.token, joinTimeoutMs: multi.joinTimeoutS * 1000 } } : {}),
    onLine: (line, stream) => (stream === 'stdout' ? console.log(line) : console.error(line)),
    log: (line) => console.error(`scalelm: ${line}`),
  });
  // The monitor needs a config for its listening address and the recorder's defaults; a launched command
  // has none, so the monitor section comes from the defaults (127.0.0.1, a free port, token-protected).
  // devices.memory: the schema's maximum, since a launched command's devices have no configured capacity.
  const config = fromConfig?.config ?? loadConfig({ name, model: { preset: 'tiny' }, devices: { memory: '16TiB' } });
  const { monitorTrainer } = await import('../server/monitor');
  // The out-of-memory forecast needs the run's length, which rank 0 reports once it starts.
  const monitored = await monitorTrainer({
    trainer: run,
    runDir,
    config,
    warn: (line) => console.error(line),
    alerts: { totalSteps: () => run.totalSteps },
    ...(multi ? { gpu: { node: { rank: 0, host: hostname() } } } : {}),
  });
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

interface MultiNodeArgs {
  nnodes: number;
  nodeRank: number;
  master: { host: string; port: number };
  token: string;
  joinTimeoutS: number;
}

/** The multi-node flags, checked together (one error for a bad combination), or null for a one-machine launch. */
function multiNodeArgs(args: ParsedArgs): MultiNodeArgs | null {
  const given = ['nnodes', 'node-rank', 'master', 'token-file', 'join-timeout-s'].filter((f) => args.values.has(f));
  if (!given.length) return null;
  if (!args.values.has('nnodes')) throw new CliError(`--${given[0]} is for a multi-node launch: give --nnodes N (with --node-rank and --master) too`);
  const nnodes = intFlag(args, 'nnodes', 1, 1 << 16)!;
  if (nnodes === 1) {
    if (given.length > 1) throw new CliError(`--nnodes 1 is a one-machine launch: leave out --${given.filter((f) => f !== 'nnodes').join(', --')}`);
    return null;
  }
  if (!args.values.has('node-rank')) throw new CliError(`--nnodes ${nnodes} needs --node-rank K (0 on the coordinator, 1..${nnodes - 1} on the others)`);
  const nodeRank = intFlag(args, 'node-rank', 0, 1 << 16)!;
  if (nodeRank >= nnodes) throw new CliError(`--node-rank ${nodeRank} is outside 0..${nnodes - 1} (--nnodes ${nnodes})`);
  const masterRaw = args.values.get('master');
  if (masterRaw === undefined) throw new CliError(`--nnodes ${nnodes} needs --master ADDR:PORT (node 0's address, the same on every node)`);
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(masterRaw);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw new CliError(`--master must be ADDR:PORT with a port from 1 to 65535 (e.g. 10.0.0.1:29600), got "${masterRaw.slice(0, 80)}"`);
  const joinTimeoutS = intFlag(args, 'join-timeout-s', 1, 86_400) ?? 600;
  return { nnodes, nodeRank, master: { host: m[1]!.replace(/^\[|\]$/g, ''), port }, token: runToken(args.values.get('token-file')), joinTimeoutS };
}

const TOKEN_HINT = 'the same 64 lowercase hex digits on every node, e.g. from `openssl rand -hex 32`';

/** The run token every node shares: --token-file (owner-only) and/or SCALELM_RUN_TOKEN, never a command-line value. */
function runToken(file: string | undefined): string {
  const fromEnv = process.env.SCALELM_RUN_TOKEN || undefined;
  if (fromEnv !== undefined && !isToken(fromEnv)) throw new CliError(`SCALELM_RUN_TOKEN must be ${TOKEN_HINT}; got ${fromEnv.length} characters`);
  let fromFile: string | undefined;
  if (file !== undefined) {
    let text: string;
    let mode: number;
    try {
      mode = statSync(file).mode;
      // Bounded, and refusing a FIFO (which would block here until a writer came) or a device.
      text = readTextBounded(file, 4096);
    } catch (e) {
      throw new CliError(e instanceof FileReadError ? `--token-file ${e.message}` : `--token-file ${file}: ${(e as Error).message}`);
    }
    if (mode & 0o077) throw new CliError(`--token-file ${file} is readable by others (mode ${(mode & 0o777).toString(8)}): the run token must be private, run chmod 600 ${file}`);
    fromFile = text.trim();
    if (!isToken(fromFile)) throw new CliError(`--token-file ${file} must hold ${TOKEN_HINT}`);
  }
  if (fromEnv !== undefined && fromFile !== undefined && fromEnv !== fromFile) throw new CliError(`SCALELM_RUN_TOKEN and --token-file ${file} hold different tokens: give one`);
  const token = fromFile ?? fromEnv;
  if (token === undefined) throw new CliError(`a multi-node launch needs the run token on every node: set SCALELM_RUN_TOKEN or give --token-file F (mode 0600), ${TOKEN_HINT}`);
  return token;
}

/** Node K > 0: no run folder, no server; the command's ranks report to node 0; exits with the command's status. */
async function launchNode(multi: MultiNodeArgs, command: string[], stopTimeoutMs: number | undefined): Promise<number> {
  const { NodeLaunch } = await import('../launch/node');
  const node = new NodeLaunch({
    command,
    nnodes: multi.nnodes,
    nodeRank: multi.nodeRank,
    master: multi.master,
    token: multi.token,
    cwd: process.cwd(),
    ...(stopTimeoutMs !== undefined ? { stopTimeoutMs } : {}),
    onLine: (line, stream) => (stream === 'stdout' ? console.log(line) : console.error(line)),
    log: (line) => console.error(`scalelm: node ${multi.nodeRank}: ${line}`),
  });
  let interrupts = 0;
  const onSigint = (): void => {
    if (++interrupts === 1) node.requestStop('Ctrl-C (Ctrl-C again to kill it)');
    else {
      node.dispose();
      process.exit(130);
    }
  };
  // As on node 0: a SIGTERM/SIGHUP (srun ending the step, a closed terminal) does not orphan the command.
  const onSigterm = (): void => {
    node.dispose();
    process.exit(143);
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  process.on('SIGHUP', onSigterm);
  try {
    const result = await node.run();
    if (result.error) console.error(`scalelm: node ${multi.nodeRank}: ${result.error}`);
    return result.exitCode ?? 1;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    process.off('SIGHUP', onSigterm);
    node.dispose();
  }
}
