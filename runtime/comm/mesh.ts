// Device mesh in Megatron's order: tensor-parallel ranks vary fastest, then data-parallel, then pipeline.
// rank = pp * (tp * dp) + dp * tp + tp. Pure: no Node APIs, so the planner could share it.
// 16 ranks, tp=2, pp=4, dp=2 -> TP [0,1],[2,3],...; DP [0,2],[1,3],[4,6],...; PP [0,4,8,12],[1,5,9,13],...

export interface MeshShape {
  tp: number;
  pp: number;
  dp: number;
}
export interface MeshCoords {
  tp: number;
  dp: number;
  pp: number;
}
export interface MeshGroups {
  tp: number[][];
  dp: number[][];
  pp: number[][];
}

/** Fills in a missing dp (world / (tp * pp)) and checks the shape against the world size. */
export function resolveMesh(worldSize: number, shape: Partial<MeshShape>): MeshShape {
  const tp = shape.tp ?? 1;
  const pp = shape.pp ?? 1;
  for (const [name, v] of [
    ['tp', tp],
    ['pp', pp],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`mesh: ${name}=${v} must be a positive whole number`);
  }
  const dp = shape.dp ?? worldSize / (tp * pp);
  if (!Number.isInteger(dp) || dp < 1 || tp * pp * dp !== worldSize) {
    throw new Error(`mesh: tp=${tp} * pp=${pp} * dp=${shape.dp ?? '?'} must equal the world size ${worldSize}`);
  }
  return { tp, pp, dp };
}

export function meshCoords(rank: number, shape: MeshShape): MeshCoords {
  return { tp: rank % shape.tp, dp: Math.floor(rank / shape.tp) % shape.dp, pp: Math.floor(rank / (shape.tp * shape.dp)) };
}

export function meshRank(c: MeshCoords, shape: MeshShape): number {
  return c.pp * shape.tp * shape.dp + c.dp * shape.tp + c.tp;
}

/** Every TP, DP and PP group of the mesh, each as sorted global ranks, in a fixed order. */
export function meshGroups(shape: MeshShape): MeshGroups {
  const { tp, pp, dp } = shape;
  const groups: MeshGroups = { tp: [], dp: [], pp: [] };
  for (let p = 0; p < pp; p++)
    for (let d = 0; d < dp; d++) {
      groups.tp.push(Array.from({ length: tp }, (_, t) => meshRank({ tp: t, dp: d, pp: p }, shape)));
    }
  for (let p = 0; p < pp; p++)
    for (let t = 0; t < tp; t++) {
      groups.dp.push(Array.from({ length: dp }, (_, d) => meshRank({ tp: t, dp: d, pp: p }, shape)));
    }
  for (let d = 0; d < dp; d++)
    for (let t = 0; t < tp; t++) {
      groups.pp.push(Array.from({ length: pp }, (_, p) => meshRank({ tp: t, dp: d, pp: p }, shape)));
    }
  groups.pp.sort((a, b) => a[0]! - b[0]!);
  return groups;
}
