// Seeded, platform-independent random numbers. Every stream is named (a parameter name, "data", "dropout/…"),
// so what one tensor gets does not depend on the order others were drawn in — a tensor-parallel rank can
// draw the full tensor and slice it, and a resumed run draws exactly what an uninterrupted one would.

/** 32-bit string hash (FNV-1a), for naming streams. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Mixes any number of 32-bit words into one well-spread 32-bit word (murmur3 finaliser over a running state). */
export function mix(...words: number[]): number {
  let h = 0x9e3779b9;
  for (const w of words) {
    h ^= w >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A uniform in [0, 1) that is a pure function of its words (53 random bits). */
export function uniformAt(...words: number[]): number {
  const hi = mix(...words, 0x68e31da4) >>> 5;
  const lo = mix(...words, 0xb5297a4d) >>> 6;
  return (hi * 67108864 + lo) / 9007199254740992;
}

/** xoshiro128** seeded through splitmix32: fast, small state, good enough for initialisation and sampling. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  constructor(seed: number, stream = '') {
    let x = mix(seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0, hashString(stream));
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits. */
  uniform(): number {
    return ((this.nextUint32() >>> 5) * 67108864 + (this.nextUint32() >>> 6)) / 9007199254740992;
  }

  /** Standard normal (Box–Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** n draws from N(0, std²) as float32. */
  normals(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * std;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Draws a token from next-token logits at `temperature` (softmax sampling with the run's own Rng). */
export function sampleToken(logits: Float32Array, temperature: number, rng: Rng): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const weights = Array.from(logits, (v) => Math.exp((v - max) / temperature));
  let u = rng.uniform() * weights.reduce((a, b) => a + b, 0);
  for (let k = 0; k < weights.length; k++) {
    u -= weights[k]!;
    if (u <= 0) return k;
  }
  return weights.length - 1;
}
