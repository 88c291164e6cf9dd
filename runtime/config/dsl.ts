// A tiny schema language: one declaration gives the TypeScript type (via Infer), the JSON Schema shipped
// to VS Code (toJsonSchema) and the structural validation with JSON paths (checkShape). Cross-field rules
// live in rules.ts. Pure: no Node APIs (the webview bundles it).
import { formatBytes, parseBytes } from '../../common/units';

export interface ConfigIssue {
  /** JSON path like `parallel.tp` or `model.layers` ("" for the root). */
  path: string;
  message: string;
}

interface Base<T> {
  readonly _type?: T; // phantom, for Infer
  description: string;
}
export interface NumberNode extends Base<number> {
  kind: 'number';
  integer: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  default?: number;
}
export interface StringNode extends Base<string> {
  kind: 'string';
  default?: string;
  pattern?: string;
  examples?: string[];
}
export interface BooleanNode extends Base<boolean> {
  kind: 'boolean';
  default?: boolean;
}
export interface EnumNode<E extends string | number> extends Base<E> {
  kind: 'enum';
  values: readonly E[];
  default?: E;
}
/** A size in bytes written as a number or a string like "80GiB", "512MB". */
export interface BytesNode extends Base<number | string> {
  kind: 'bytes';
  default?: string;
  /** Upper bound in bytes (the lower bound is always 1 byte). */
  maximum?: number;
}
/** A list of strings (a command line as argv). */
export interface StringListNode extends Base<string[]> {
  kind: 'strings';
  minItems: number;
  maxItems: number;
}
/** An object whose every value is a string, keys matching `keyPattern` (environment variables). */
export interface StringMapNode extends Base<Record<string, string>> {
  kind: 'stringMap';
  keyPattern: string;
  maxKeys: number;
}
export interface ObjectNode<P extends Record<string, AnyNode>> extends Base<unknown> {
  kind: 'object';
  properties: P;
  /** Keys that must be present in the file. */
  required: readonly (keyof P & string)[];
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any object schema (its properties' types are irrelevant here)
export type AnyNode = NumberNode | StringNode | BooleanNode | EnumNode<string | number> | BytesNode | StringListNode | StringMapNode | ObjectNode<any>;

type Opt<N> = Omit<N, 'kind' | '_type'>;
export const num = (o: Omit<Opt<NumberNode>, 'integer'>): NumberNode => ({ kind: 'number', integer: false, ...o });
export const int = (o: Omit<Opt<NumberNode>, 'integer'>): NumberNode => ({ kind: 'number', integer: true, ...o });
export const str = (o: Opt<StringNode>): StringNode => ({ kind: 'string', ...o });
export const bool = (o: Opt<BooleanNode>): BooleanNode => ({ kind: 'boolean', ...o });
export const bytes = (o: Opt<BytesNode>): BytesNode => ({ kind: 'bytes', ...o });
export const strings = (o: Opt<StringListNode>): StringListNode => ({ kind: 'strings', ...o });
export const stringMap = (o: Opt<StringMapNode>): StringMapNode => ({ kind: 'stringMap', ...o });

/** Longest string a list or map item may be (a command-line argument, an environment value). */
const MAX_ITEM_LENGTH = 32_768;
export function oneOf<const E extends string | number>(values: readonly E[], o: Omit<Opt<EnumNode<E>>, 'values'>): EnumNode<E> {
  return { kind: 'enum', values, ...o };
}
export function obj<const P extends Record<string, AnyNode>>(description: string, properties: P, required: readonly (keyof P & string)[] = []): ObjectNode<P> {
  return { kind: 'object', description, properties, required };
}

/** The type of a value as written in a file: every key optional unless required. */
export type InferInput<N> = N extends ObjectNode<infer P> ? { -readonly [K in keyof P]?: InferInput<P[K]> } : N extends Base<infer T> ? T : never;

export function toJsonSchema(node: AnyNode): Record<string, unknown> {
  const common: Record<string, unknown> = { description: node.description, markdownDescription: node.description };
  switch (node.kind) {
    case 'number': {
      const s: Record<string, unknown> = { ...common, type: node.integer ? 'integer' : 'number' };
      if (node.minimum !== undefined) s.minimum = node.minimum;
      if (node.maximum !== undefined) s.maximum = node.maximum;
      if (node.exclusiveMinimum !== undefined) s.exclusiveMinimum = node.exclusiveMinimum;
      if (node.default !== undefined) s.default = node.default;
      return s;
    }
    case 'string': {
      const s: Record<string, unknown> = { ...common, type: 'string' };
      if (node.default !== undefined) s.default = node.default;
      if (node.pattern !== undefined) s.pattern = node.pattern;
      if (node.examples) s.examples = node.examples;
      return s;
    }
    case 'boolean':
      return node.default === undefined ? { ...common, type: 'boolean' } : { ...common, type: 'boolean', default: node.default };
    case 'enum': {
      const s: Record<string, unknown> = { ...common, enum: [...node.values] };
      if (node.default !== undefined) s.default = node.default;
      return s;
    }
    case 'bytes': {
      const s: Record<string, unknown> = {
        ...common,
        anyOf: [
          { type: 'integer', minimum: 1, ...(node.maximum !== undefined ? { maximum: node.maximum } : {}), description: 'bytes' },
          { type: 'string', pattern: BYTES_PATTERN, description: 'a size such as "80GiB", "40GB" or "512MiB"' },
        ],
      };
      if (node.default !== undefined) s.default = node.default;
      return s;
    }
    case 'strings':
      return { ...common, type: 'array', items: { type: 'string', maxLength: MAX_ITEM_LENGTH }, minItems: node.minItems, maxItems: node.maxItems };
    case 'stringMap':
      return { ...common, type: 'object', propertyNames: { pattern: node.keyPattern }, additionalProperties: { type: 'string', maxLength: MAX_ITEM_LENGTH }, maxProperties: node.maxKeys };
    case 'object': {
      const properties: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(node.properties as Record<string, AnyNode>)) properties[k] = toJsonSchema(v);
      const s: Record<string, unknown> = { ...common, type: 'object', properties, additionalProperties: false };
      if (node.required.length) s.required = [...node.required];
      return s;
    }
  }
}

export const BYTES_PATTERN = '^\\s*[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B|B)?\\s*$';

/** Checks types, ranges, enums, required and unknown keys. Returns every issue found (not just the first). */
export function checkShape(node: AnyNode, value: unknown, path: string, issues: ConfigIssue[]): void {
  const at = path || '(root)';
  switch (node.kind) {
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        issues.push({ path, message: `${at} must be a ${node.integer ? 'whole number' : 'number'}, got ${describe(value)}` });
        return;
      }
      if (node.integer && !Number.isInteger(value)) issues.push({ path, message: `${at}=${value} must be a whole number` });
      if (node.minimum !== undefined && value < node.minimum) issues.push({ path, message: `${at}=${value} must be at least ${node.minimum}` });
      if (node.exclusiveMinimum !== undefined && value <= node.exclusiveMinimum) issues.push({ path, message: `${at}=${value} must be greater than ${node.exclusiveMinimum}` });
      if (node.maximum !== undefined && value > node.maximum) issues.push({ path, message: `${at}=${value} must be at most ${node.maximum}` });
      return;
    }
    case 'string':
      if (typeof value !== 'string') issues.push({ path, message: `${at} must be a string, got ${describe(value)}` });
      else if (node.pattern && !new RegExp(node.pattern).test(value)) issues.push({ path, message: `${at}="${value}" does not match the expected form ${node.pattern}` });
      return;
    case 'boolean':
      if (typeof value !== 'boolean') issues.push({ path, message: `${at} must be true or false, got ${describe(value)}` });
      return;
    case 'enum':
      if (!(node.values as readonly unknown[]).includes(value)) {
        const hint = typeof value === 'string' ? closest(value, node.values.map(String)) : undefined;
        issues.push({ path, message: `${at}=${JSON.stringify(value)} is not one of ${node.values.map((v) => JSON.stringify(v)).join(', ')}${hint ? `; did you mean "${hint}"?` : ''}` });
      }
      return;
    case 'bytes': {
      if (typeof value === 'number' ? !(Number.isInteger(value) && value > 0) : typeof value !== 'string' || value.length > 64 || !new RegExp(BYTES_PATTERN).test(value)) {
        issues.push({ path, message: `${at} must be a size like "80GiB", "40GB", "512MiB" or a positive number of bytes, got ${describe(value)}` });
        return;
      }
      let n: number;
      try {
        n = parseBytes(value as number | string);
      } catch (e) {
        issues.push({ path, message: `${at}: ${(e as Error).message}` });
        return;
      }
      if (n < 1) issues.push({ path, message: `${at}=${JSON.stringify(value)} must be at least 1 byte` });
      else if (node.maximum !== undefined && n > node.maximum) issues.push({ path, message: `${at}=${JSON.stringify(value)} must be at most ${formatBytes(node.maximum)}` });
      return;
    }
    case 'strings': {
      if (!Array.isArray(value)) {
        issues.push({ path, message: `${at} must be an array of strings, got ${describe(value)}` });
        return;
      }
      if (value.length < node.minItems) issues.push({ path, message: `${at} must have at least ${node.minItems} item${node.minItems === 1 ? '' : 's'}` });
      if (value.length > node.maxItems) issues.push({ path, message: `${at} has ${value.length} items; at most ${node.maxItems}` });
      value.slice(0, node.maxItems).forEach((item: unknown, i) => {
        if (typeof item !== 'string') issues.push({ path: `${path}[${i}]`, message: `${path}[${i}] must be a string, got ${describe(item)}` });
        else if (item.length > MAX_ITEM_LENGTH) issues.push({ path: `${path}[${i}]`, message: `${path}[${i}] is ${item.length} characters long; at most ${MAX_ITEM_LENGTH}` });
      });
      return;
    }
    case 'stringMap': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        issues.push({ path, message: `${at} must be an object of string values, got ${describe(value)}` });
        return;
      }
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length > node.maxKeys) issues.push({ path, message: `${at} has ${entries.length} keys; at most ${node.maxKeys}` });
      for (const [k, v] of entries.slice(0, node.maxKeys)) {
        if (!new RegExp(node.keyPattern).test(k)) issues.push({ path: `${path}.${k}`, message: `${path}: ${JSON.stringify(k)} is not a valid name (${node.keyPattern})` });
        else if (typeof v !== 'string') issues.push({ path: `${path}.${k}`, message: `${path}.${k} must be a string, got ${describe(v)}` });
        else if (v.length > MAX_ITEM_LENGTH) issues.push({ path: `${path}.${k}`, message: `${path}.${k} is ${v.length} characters long; at most ${MAX_ITEM_LENGTH}` });
      }
      return;
    }
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        issues.push({ path, message: `${at} must be an object, got ${describe(value)}` });
        return;
      }
      const props = node.properties as Record<string, AnyNode>;
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        const child = path ? `${path}.${key}` : key;
        // Own keys only: `key in props` would accept "constructor", "toString", "__proto__".
        if (!Object.hasOwn(props, key)) {
          if (key === '$schema' && !path) {
            if (typeof record[key] !== 'string') issues.push({ path: key, message: `$schema must be a string (the schema's URL or path), got ${describe(record[key])}` });
            continue;
          }
          const hint = closest(key, Object.keys(props));
          issues.push({ path: child, message: `unknown key "${child}"${hint ? `; did you mean "${path ? `${path}.` : ''}${hint}"?` : `; allowed keys: ${Object.keys(props).join(', ')}`}` });
          continue;
        }
        checkShape(props[key]!, record[key], child, issues);
      }
      for (const key of node.required) {
        if (!Object.hasOwn(record, key)) issues.push({ path: path ? `${path}.${key}` : key, message: `${path ? `${path}.` : ''}${key} is required: ${props[key]!.description}` });
      }
      return;
    }
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** The candidate nearest to `word` by edit distance, if it is plausibly a typo of it. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  // A truncated or extended name ("bf16" for "bf16-mixed") is a likelier slip than any near spelling.
  const prefixed = candidates.filter((c) => c.toLowerCase().startsWith(lower) || lower.startsWith(c.toLowerCase()));
  if (prefixed.length === 1 && lower.length >= 2) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}
