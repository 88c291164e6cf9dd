// Argument parsing shared by every command: flags with values, boolean switches, repeated --set, and
// clear errors for anything unknown. Node-free (the commands themselves use Node).
import { closest } from '../config/dsl';

export type Command = (argv: string[]) => Promise<number>;

/** An error meant for the user: printed without a stack, with its exit code (2 = bad usage). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface FlagSpec {
  /** Flags that take a value (`--tp 2` or `--tp=2`). Repeatable ones collect every value. */
  values?: readonly string[];
  repeatable?: readonly string[];
  /** Flags that are on or off (`--json`). */
  switches?: readonly string[];
  /** How many positional arguments, at least and at most. */
  positional?: [min: number, max: number];
  usage: string;
}

export interface ParsedArgs {
  positional: string[];
  values: Map<string, string>;
  repeated: Map<string, string[]>;
  switches: Set<string>;
}

export function parseArgs(argv: string[], spec: FlagSpec): ParsedArgs | 'help' {
  const values = new Map<string, string>();
  const repeated = new Map<string, string[]>();
  const switches = new Set<string>();
  const positional: string[] = [];
  const valueFlags = [...(spec.values ?? []), ...(spec.repeatable ?? [])];
  const known = [...valueFlags, ...(spec.switches ?? []), 'help'];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!known.includes(name)) {
      const hint = closest(name, known);
      throw new CliError(`unknown option --${name}${hint ? `; did you mean --${hint}?` : ''}\n\n${spec.usage}`);
    }
    if (spec.switches?.includes(name)) {
      if (eq !== -1) throw new CliError(`--${name} takes no value`);
      switches.add(name);
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined || value.startsWith('--')) throw new CliError(`--${name} needs a value\n\n${spec.usage}`);
    }
    if (spec.repeatable?.includes(name)) repeated.set(name, [...(repeated.get(name) ?? []), value]);
    else {
      if (values.has(name)) throw new CliError(`--${name} was given twice`);
      values.set(name, value);
    }
  }
  const [min, max] = spec.positional ?? [0, 0];
  if (positional.length < min || positional.length > max) {
    throw new CliError(`${positional.length < min ? 'missing' : 'too many'} arguments${positional.length > max ? `: ${positional.slice(max).join(' ')}` : ''}\n\n${spec.usage}`);
  }
  return { positional, values, repeated, switches };
}

/** Flags' bounds (the config's own, docs/config.md); any other whole-number flag: at most 1e9. */
const INT_FLAG_MAX: Record<string, number> = {
  gpus: 1_000_000,
  'gpus-per-node': 1024,
  nodes: 1_000_000,
  tp: 65_536,
  pp: 10_000,
  vpp: 10_000,
  dp: 1_000_000,
  'micro-batch': 1_000_000,
  'seq-len': 16_777_216,
  threads: 256,
};

// eslint-disable-next-line no-control-regex -- control characters are what it matches
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** Text for a terminal: control characters (ESC, CR, BEL, C1…) spelled as \xNN; newlines and tabs kept. */
export function sanitizeForTerminal(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Errors of the runtime that carry a complete sentence for the user (printed without a stack). */
const USER_FACING = new Set([
  'CommTimeoutError',
  'CommAbortedError',
  'CommMismatchError',
  'CommError',
  'FileReadError',
  'RunDirError',
  'CheckpointError',
  'SafetensorsError',
  'ConfigError',
  'DataError',
  'TrainError',
  'ParallelError',
  'BackendError',
  'DeviceOutOfMemoryError',
  'ModelShapeError',
]);
export const isUserFacingError = (e: unknown): e is Error => e instanceof Error && USER_FACING.has(e.name);

export { describeSystemError } from '../files';

/** A flag's value as a whole number in range, or a CliError naming the flag and the range. */
export function intFlag(args: ParsedArgs, name: string, min = 1, max = Object.hasOwn(INT_FLAG_MAX, name) ? INT_FLAG_MAX[name]! : 1_000_000_000): number | undefined {
  const raw = args.values.get(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`--${name} must be a whole number from ${min} to ${max}, got "${raw.slice(0, 40)}"`);
  return n;
}
