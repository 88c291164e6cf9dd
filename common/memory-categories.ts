// The memory categories: one vocabulary for the planner, both runtimes (TypeScript and the Python package),
// the protocol and the dashboard. Every producer may measure or plan finer names (the local runtime's
// `temporaries` and `gathered`, the planner's `overhead`); each is declared here once with the category it
// belongs to, and test/unit/memory-categories.test.ts fails when a producer uses a name that is not.
// Adding a category: one entry in MEMORY_CATEGORIES (shown and stacked in this order) or in FINER_CATEGORIES.

/** The categories a device's memory is split into, in stacking order. */
export const MEMORY_CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'buffers', 'other'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];

/** Finer names that producers report, and the category each counts under. */
export const FINER_CATEGORIES: Readonly<Record<string, MemoryCategory>> = {
  // local runtime: workspace freed within the step; ZeRO-3's gathered full parameters
  temporaries: 'other',
  gathered: 'buffers',
  // planner: CUDA context, allocator slack and the like
  overhead: 'other',
  // communication buffers under the names other tools use
  buffer: 'buffers',
  comm: 'buffers',
  bucket: 'buffers',
  buckets: 'buffers',
  nccl: 'buffers',
  gather: 'buffers',
  collective: 'buffers',
  collectives: 'buffers',
};

/** Names that are totals, not categories: never added into one. */
export const MEMORY_TOTALS = ['peak', 'total'] as const;

/** The category a reported name counts under; a name nobody declared counts as "other". */
export function categoryOf(name: string): MemoryCategory {
  const n = name.toLowerCase();
  if ((MEMORY_CATEGORIES as readonly string[]).includes(n)) return n as MemoryCategory;
  return Object.prototype.hasOwnProperty.call(FINER_CATEGORIES, n) ? FINER_CATEGORIES[n]! : 'other';
}

/** Whether a name is declared (a category or a finer name), i.e. not silently lumped into "other". */
export function isDeclaredCategory(name: string): boolean {
  const n = name.toLowerCase();
  return (MEMORY_CATEGORIES as readonly string[]).includes(n) || Object.prototype.hasOwnProperty.call(FINER_CATEGORIES, n);
}
