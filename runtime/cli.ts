// `scalelm <command>`: the command-line twin of the extension. Each command lives in runtime/commands/
// and is loaded only when asked for, so `scalelm validate` does not pay for TensorFlow.js.
import { CliError, describeSystemError, isUserFacingError, sanitizeForTerminal, type Command } from './commands/args';

// Everything printed passes through one filter: a name or path from a config, a checkpoint or a message
// cannot smuggle terminal escape sequences (cursor moves, title changes, hyperlinks) onto the user's screen.
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => write(typeof chunk === 'string' ? sanitizeForTerminal(chunk) : chunk, ...rest)) as typeof stream.write;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  validate: { summary: 'check a *.scalelm.json and print its errors or a one-line summary', load: async () => (await import('./commands/validate')).validate },
  serve: { summary: 'replay recorded runs to the browser dashboard (read-only), with /metrics and CSV export', load: async () => (await import('./commands/serve')).serve },
  'export-csv': { summary: "write a run's steps (loss, lr, throughput, memory, eval loss) as CSV", load: async () => (await import('./commands/export-csv')).exportCsvCommand },
  train: { summary: "train the config's model on this machine (wasm/cpu/GPU backends), with metrics and checkpoints in a run directory", load: async () => (await import('./commands/train')).train },
  launch: {
    summary: 'run any training command (torchrun, python, …) as one monitored run; its ranks report through the scalelm Monitor',
    load: async () => (await import('./commands/launch')).launch,
  },
  checkpoint: {
    summary: 'consolidate a sharded checkpoint of a parallel run into one HF-named model.safetensors (+ optimizer state)',
    load: async () => (await import('./commands/checkpoint')).checkpointCommand,
  },
  estimate: { summary: 'memory per GPU and step time of the layout in a *.scalelm.json or HF config.json', load: async () => (await import('./commands/estimate')).estimateCommand },
  plan: { summary: 'search layouts that fit the cluster, ranked by estimated throughput', load: async () => (await import('./commands/plan')).planCommand },
  export: { summary: 'write the layout as a DeepSpeed config, Megatron-LM arguments or a torchrun command', load: async () => (await import('./commands/export')).exportCommand },
  calibrate: { summary: "fit the planner's GPU efficiency constants to a recorded GPU run; writes a cluster profile", load: async () => (await import('./commands/calibrate')).calibrateCommand },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'usage: scalelm <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(width)}  ${v.summary}`),
    '',
    'Run `scalelm <command> --help` for its options.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  if (name === '--version') {
    console.log(process.env.SCALELM_VERSION ?? '0.1.0');
    return 0;
  }
  // Own keys only: "constructor", "toString", "__proto__" are Object.prototype's, not commands.
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    console.error(`scalelm: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const command = await entry.load();
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit explicitly: a backend's worker pool (wasm threads) or a lingering handle must not keep a finished
    // command alive. stdout and stderr are synchronous for files, pipes and terminals on Linux, so nothing
    // printed is lost.
    process.exit(code);
  },
  (err: unknown) => {
    const system = describeSystemError(err);
    if (err instanceof CliError) {
      console.error(`scalelm: ${err.message}`);
      process.exitCode = err.exitCode;
    } else if (process.env.SCALELM_DEBUG !== '1' && (system || isUserFacingError(err))) {
      // A file system refusal (read-only, permission, not a directory, disk full) or a named runtime error
      // (a hung rank, a bad file): one line, no stack. SCALELM_DEBUG=1 shows the stack.
      // A named error's own sentence first: it says which file and why (a FileReadError carries an errno code too).
      console.error(`scalelm: ${isUserFacingError(err) ? err.message : (system ?? (err as Error).message)}`);
      process.exitCode = 1;
    } else {
      console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exitCode = 1;
    }
    process.exit();
  },
);
