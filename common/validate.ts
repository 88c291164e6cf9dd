// The validation combinators every message boundary uses (common/protocol.ts's runtime <-> client messages,
// webview/messages.ts's host <-> webview messages). A check either returns a fresh, fully checked copy
// (unknown keys rejected, limits enforced) or throws Invalid naming the offending path; validateWith turns
// that into a Result. Pure: no Node or DOM APIs.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

export type Result<T> = { ok: true; value: T } | { ok: false; reason: string };

// ---------------------------------------------------------------------------------------------- limits

export const LIMITS = {
  /** Longest log or alert text. */
  text: 16_384,
  /** Ids, names, kinds, paths. */
  name: 512,
  devices: 1024,
  processes: 4096,
  collectives: 64,
  categories: 64,
  jsonDepth: 32,
  jsonNodes: 200_000,
  snapshotItems: 100_000,
  runs: 10_000,
} as const;

// ---------------------------------------------------------------------------------------------- checks

export class Invalid extends Error {
  constructor(
    readonly path: string,
    readonly why: string,
  ) {
    super(`${path || '(message)'}: ${why}`);
  }
}

export type Check<T> = (v: unknown, path: string) => T;
export interface Optional<T> {
  optional: true;
  check: Check<T>;
}
export const opt = <T>(check: Check<T>): Optional<T> => ({ optional: true, check });
export type Shape<T> = { [K in keyof T]-?: undefined extends T[K] ? Optional<Exclude<T[K], undefined>> : Check<T[K]> };

export const describe = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? `"${v.length > 40 ? v.slice(0, 40) + '…' : v}"` : typeof v === 'object' ? 'an object' : String(v);

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function object<T>(shape: Shape<T>): Check<T> {
  const keys = Object.keys(shape) as (keyof T & string)[];
  return (v, path) => {
    if (!isPlainObject(v)) throw new Invalid(path, `must be an object, got ${describe(v)}`);
    // Own keys only: `k in shape` would accept "constructor", "toString", "__proto__" (Object.prototype's).
    for (const k of Object.keys(v)) if (!Object.hasOwn(shape, k)) throw new Invalid(join(path, k), 'is not a field of this message');
    const out: Record<string, unknown> = {};
    for (const k of keys) {
      const spec = shape[k] as Check<unknown> | Optional<unknown>;
      const value = v[k];
      if (typeof spec === 'function') {
        if (value === undefined) throw new Invalid(join(path, k), 'is required');
        out[k] = spec(value, join(path, k));
      } else if (value !== undefined) out[k] = spec.check(value, join(path, k));
    }
    return out as T;
  };
}

export const join = (path: string, key: string | number): string => (typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key);

export const literal =
  <T extends string | number>(value: T): Check<T> =>
  (v, path) => {
    if (v !== value) throw new Invalid(path, `must be ${JSON.stringify(value)}, got ${describe(v)}`);
    return value;
  };

export function oneOf<T extends string>(values: readonly T[]): Check<T> {
  return (v, path) => {
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw new Invalid(path, `must be one of ${values.join(', ')}; got ${describe(v)}`);
    return v as T;
  };
}

export function str(max: number = LIMITS.name, pattern?: RegExp): Check<string> {
  return (v, path) => {
    if (typeof v !== 'string') throw new Invalid(path, `must be a string, got ${describe(v)}`);
    if (v.length > max) throw new Invalid(path, `is longer than ${max} characters`);
    if (pattern && !pattern.test(v)) throw new Invalid(path, `does not match ${pattern}`);
    return v;
  };
}
export const nonEmpty = (max: number = LIMITS.name): Check<string> => str(max, /\S/);
export const ID = /^[A-Za-z0-9][A-Za-z0-9._:@+-]*$/;

/** A whole number in [min, max] (counts, steps, bytes, ranks, pids). */
export function int(min = 0, max = Number.MAX_SAFE_INTEGER): Check<number> {
  return (v, path) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new Invalid(path, `must be a whole number, got ${describe(v)}`);
    if (v < min || v > max) throw new Invalid(path, `must be between ${min} and ${max}, got ${v}`);
    return v;
  };
}
export const bytes = int(0);
export const time = int(0);

/** A finite number in [min, max]. */
export function finite(min = -Infinity, max = Infinity): Check<number> {
  return (v, path) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Invalid(path, `must be a finite number, got ${describe(v)}`);
    if (v < min) throw new Invalid(path, `must be ≥ ${min}, got ${v}`);
    if (v > max) throw new Invalid(path, `must be ≤ ${max}, got ${v}`);
    return v;
  };
}

export const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
/** A measured float that may have gone non-finite (a diverged loss): a number or its string spelling. */
export const metric: Check<number> = (v, path) => {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && Object.hasOwn(NON_FINITE, v)) return NON_FINITE[v]!;
  throw new Invalid(path, `must be a number (or "NaN", "Infinity", "-Infinity"), got ${describe(v)}`);
};

export function nullable<T>(check: Check<T>): Check<T | null> {
  return (v, path) => (v === null ? null : check(v, path));
}

export function array<T>(item: Check<T>, max: number): Check<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) throw new Invalid(path, `must be an array, got ${describe(v)}`);
    if (v.length > max) throw new Invalid(path, `has ${v.length} items; at most ${max} are allowed`);
    return v.map((x, i) => item(x, join(path, i)));
  };
}

export const bool: Check<boolean> = (v, path) => {
  if (typeof v !== 'boolean') throw new Invalid(path, `must be true or false, got ${describe(v)}`);
  return v;
};

export const CATEGORY = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
/** Amounts by memory category (at most LIMITS.categories, names like "params" or "comm.nccl"). */
export function categoryRecord(amount: Check<number>): Check<Record<string, number>> {
  return (v, path) => {
    if (!isPlainObject(v)) throw new Invalid(path, `must be an object of byte counts, got ${describe(v)}`);
    const keys = Object.keys(v);
    if (keys.length > LIMITS.categories) throw new Invalid(path, `has ${keys.length} categories; at most ${LIMITS.categories}`);
    const out: Record<string, number> = {};
    for (const k of keys) {
      if (!CATEGORY.test(k)) throw new Invalid(join(path, k), 'is not a valid category name (letters, digits, _ . -)');
      out[k] = amount(v[k], join(path, k));
    }
    return out;
  };
}
/** Whole bytes by category (measured memory). */
export const byteRecord = categoryRecord(bytes);

/** Opaque JSON (config, plan): plain data only, bounded depth and size. */
export function jsonObject(v: unknown, path: string): JsonObject {
  let nodes = 0;
  const copy = (x: unknown, p: string, depth: number): JsonValue => {
    if (++nodes > LIMITS.jsonNodes) throw new Invalid(path, `has more than ${LIMITS.jsonNodes} values`);
    if (depth > LIMITS.jsonDepth) throw new Invalid(p, `nests deeper than ${LIMITS.jsonDepth}`);
    if (x === null || typeof x === 'boolean' || typeof x === 'string') return x;
    if (typeof x === 'number') {
      if (!Number.isFinite(x)) throw new Invalid(p, 'must be a finite number');
      return x;
    }
    if (Array.isArray(x)) return x.map((y, i) => copy(y, join(p, i), depth + 1));
    if (isPlainObject(x)) {
      const o: JsonObject = {};
      for (const k of Object.keys(x)) {
        // JSON.parse makes "__proto__" an own key; assigning it would replace the copy's prototype.
        if (k === '__proto__') throw new Invalid(join(p, k), 'is not allowed as a key');
        if (x[k] !== undefined) o[k] = copy(x[k], join(p, k), depth + 1);
      }
      return o;
    }
    throw new Invalid(p, `is not JSON data (${typeof x})`);
  };
  if (!isPlainObject(v)) throw new Invalid(path, `must be an object, got ${describe(v)}`);
  return copy(v, path, 0) as JsonObject;
}

/** Runs a check on a value: the checked copy, or the reason naming the path. */
/** A string-keyed record of checked values (keys: identifiers of at most 128 characters). */
export function record<T>(value: Check<T>, max: number): Check<Record<string, T>> {
  return (v, path) => {
    if (!isPlainObject(v)) throw new Invalid(path, `must be an object, got ${describe(v)}`);
    const keys = Object.keys(v);
    if (keys.length > max) throw new Invalid(path, `has ${keys.length} entries; at most ${max}`);
    const out: Record<string, T> = {};
    for (const k of keys) {
      if (k === '__proto__' || k.length > 128) throw new Invalid(join(path, k), 'is not allowed as a key');
      out[k] = value(v[k], join(path, k));
    }
    return out;
  };
}

/** A check from a validator that returns a Result (the protocol's, to nest its messages in others). */
export function fromValidator<T>(validate: (v: unknown) => Result<T>): Check<T> {
  return (v, path) => {
    const r = validate(v);
    if (!r.ok) throw new Invalid(path, r.reason);
    return r.value;
  };
}

export function validateWith<T>(check: Check<T>, v: unknown): Result<T> {
  try {
    return { ok: true, value: check(v, '') };
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, reason: e.message };
    throw e;
  }
}
