// Bytes are bytes inside the code; these convert at the edges (config files, CLI, UI). Pure.

const UNIT: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/** "80GiB" -> 85899345920, "40GB" -> 4e10, 1024 -> 1024. Throws on anything else. */
export function parseBytes(value: number | string): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value > 0) return value;
    throw new Error(`a size in bytes must be a whole number from 1 to 2^53-1, got ${value}`);
  }
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(value);
  if (!m) throw new Error(`"${value}" is not a size; write it like "80GiB", "40GB" or "512MiB"`);
  const unit = (m[2] ?? 'B').toUpperCase();
  const bytes = Math.round(Number(m[1]) * UNIT[unit]!);
  // Exact or refused: a size past 2^53 bytes (8 PiB) cannot be counted exactly in a double.
  if (!Number.isSafeInteger(bytes)) throw new Error(`"${value.trim().slice(0, 40)}" is too large a size (at most 8 PiB)`);
  return bytes;
}

/** 1.5 * 2**30 -> "1.50 GiB". Binary units, since that is what nvidia-smi and allocators report. */
export function formatBytes(bytes: number, digits = 2): string {
  const abs = Math.abs(bytes);
  if (abs >= 2 ** 40) return `${(bytes / 2 ** 40).toFixed(digits)} TiB`;
  if (abs >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(digits)} GiB`;
  if (abs >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(digits)} MiB`;
  if (abs >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(digits)} KiB`;
  return `${bytes} B`;
}

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;
