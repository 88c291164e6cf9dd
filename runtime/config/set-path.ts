// `--set parallel.zero=3`: write one value into a raw config object by its dotted path. Pure.

/** Parses the value as JSON when it is JSON (numbers, booleans, quoted strings), else keeps the text. */
export function setPath(target: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new Error(`--set needs path=value (like parallel.zero=3), got "${assignment}"`);
  const path = assignment.slice(0, eq).trim();
  const text = assignment.slice(eq + 1).trim();
  const keys = path.split('.');
  if (keys.some((k) => k === '' || k === '__proto__' || k === 'constructor' || k === 'prototype')) throw new Error(`--set: "${path}" is not a valid config path`);
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch {
    // a bare word such as gpt2 or bf16-mixed stays a string
  }
  let node: Record<string, unknown> = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (next === undefined) node[key] = {};
    else if (typeof next !== 'object' || next === null || Array.isArray(next)) throw new Error(`--set ${path}: "${key}" is not an object in the config`);
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}
