// Reading a config file from disk for the CLI: the raw JSON with --set overrides applied, then parsed.
import { READ_LIMITS, readTextBounded } from '../files';
import { parseJsonText } from '../config/parse';
import { setPath } from '../config/set-path';
import { CliError } from './args';

/** Reads and JSON-parses `file`, then applies each `--set path=value`. Throws CliError (exit 1) on failure. */
export function readRawConfig(file: string, sets: string[] = []): Record<string, unknown> {
  let text: string;
  try {
    text = readTextBounded(file, READ_LIMITS.config);
  } catch (e) {
    throw new CliError(`cannot read ${(e as Error).message}`, 1);
  }
  const parsed = parseJsonText(text);
  if (!parsed.ok) throw new CliError(`${file}: ${parsed.error.message}`, 1);
  if (typeof parsed.value !== 'object' || parsed.value === null || Array.isArray(parsed.value)) throw new CliError(`${file}: the config must be a JSON object`, 1);
  const raw = parsed.value as Record<string, unknown>;
  for (const s of sets) {
    try {
      setPath(raw, s);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  }
  return raw;
}
