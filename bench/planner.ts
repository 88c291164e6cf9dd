// How long the full layout search takes. `npm run bench -- planner [--repeat 7]`
//
// For GPT-3 175B and Megatron's 1T model on 1024 and 3072 A100-80GB GPUs (8 per node), every valid
// (dp, tp, pp, vpp, ZeRO, micro-batch, recompute, sequence parallel, offload) is enumerated, sized, timed and
// ranked — what `scalelm plan` does. Reports the median and fastest of --repeat runs, how many layouts were
// considered and fit, and the best one. Also ranks Megatron-LM's published Table 1 layouts (Narayanan et al.
// 2021) among the search's results. Ends with `RESULT {json}`.
import { MODEL_PRESETS } from '../runtime/config/presets';
import { describeLayout } from '../runtime/planner/estimate';
import { megatronGpt, planInputFor } from '../runtime/planner/input';
import { countParams } from '../runtime/planner/params';
import { searchLayouts } from '../runtime/planner/search';
import type { PlanModel } from '../runtime/planner/types';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const repeat = arg('repeat', 7);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const gpt3: PlanModel = { ...MODEL_PRESETS['gpt3-175b'], name: 'gpt3-175b', dropout: 0.1 };
const oneT: PlanModel = { ...megatronGpt(128, 25600, 160), name: 'megatron-1t' };
const cases: { model: PlanModel; gpus: number; globalBatch: number }[] = [
  { model: gpt3, gpus: 1024, globalBatch: 1536 },
  { model: gpt3, gpus: 3072, globalBatch: 1536 },
  { model: oneT, gpus: 1024, globalBatch: 3072 },
  { model: oneT, gpus: 3072, globalBatch: 3072 },
];

console.log(`full layout search, A100-80GB × 8 per node, ${repeat} runs each (median / fastest)\n`);
console.log('model          GPUs  batch   considered    fit   median ms  fastest ms  best layout (est. tokens/s, MFU)');
const results: Record<string, unknown>[] = [];
for (const c of cases) {
  const input = planInputFor(c.model, { gpus: c.gpus, gpusPerNode: 8, gpu: 'A100-80GB', globalBatch: c.globalBatch, dp: c.gpus });
  const times: number[] = [];
  let last: ReturnType<typeof searchLayouts> | undefined;
  searchLayouts(input, { top: 10 }); // warm-up (JIT)
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    last = searchLayouts(input, { top: 10 });
    times.push(performance.now() - t0);
  }
  const r = last!;
  const best = r.candidates[0];
  const name = `${c.model.name} (${(countParams(c.model).total / 1e9).toFixed(0)}B)`;
  console.log(
    `${name.padEnd(14)} ${String(c.gpus).padStart(5)} ${String(c.globalBatch).padStart(6)} ${String(r.stats.enumerated).padStart(12)} ${String(r.stats.fits).padStart(6)} ${median(times).toFixed(1).padStart(11)} ${Math.min(
      ...times,
    )
      .toFixed(1)
      .padStart(11)}  ` + (best ? `${describeLayout(best.layout)} (${Math.round(best.time.tokensPerSec)}, ${(best.time.mfu * 100).toFixed(1)}%)` : 'none fits'),
  );
  results.push({
    model: c.model.name,
    gpus: c.gpus,
    globalBatch: c.globalBatch,
    considered: r.stats.enumerated,
    fits: r.stats.fits,
    medianMs: +median(times).toFixed(2),
    fastestMs: +Math.min(...times).toFixed(2),
    best: best ? describeLayout(best.layout) : null,
  });
}

// Megatron-LM Table 1: where the published (tp, pp) ranks among the layouts that fit.
const TABLE1: [number, number, number, number, number, number, number][] = [
  [24, 2304, 24, 1, 1, 32, 512],
  [30, 3072, 32, 2, 1, 64, 512],
  [36, 4096, 32, 4, 1, 128, 512],
  [40, 6144, 48, 8, 1, 256, 1024],
  [48, 8192, 64, 8, 2, 512, 1536],
  [60, 10240, 80, 8, 4, 1024, 1792],
  [80, 12288, 96, 8, 8, 1536, 2304],
  [96, 16384, 128, 8, 16, 1920, 2160],
  [105, 20480, 128, 8, 35, 2520, 2520],
  [128, 25600, 160, 8, 64, 3072, 3072],
];
console.log('\nMegatron-LM Table 1 (published tp, pp): rank of its best variant among fitting layouts, its (tp, pp) rank, throughput vs the top');
console.log('params   GPUs  tp  pp  fits  layout rank   (tp,pp) rank   vs top   est. TFLOP/s/GPU   search ms');
const table: Record<string, unknown>[] = [];
for (const [L, h, a, tp, pp, gpus, batch] of TABLE1) {
  const model = megatronGpt(L, h, a);
  const input = planInputFor(model, { gpus, gpusPerNode: 8, gpu: 'A100-80GB', globalBatch: batch, dp: gpus });
  const t0 = performance.now();
  const r = searchLayouts(input, { top: 1 });
  const ms = performance.now() - t0;
  const idx = r.ranking.findIndex((x) => x.layout.tp === tp && x.layout.pp === pp);
  const groups: string[] = [];
  for (const x of r.ranking) if (!groups.includes(`${x.layout.tp}/${x.layout.pp}`)) groups.push(`${x.layout.tp}/${x.layout.pp}`);
  const group = groups.indexOf(`${tp}/${pp}`) + 1;
  const ratio = idx >= 0 ? r.ranking[idx]!.tokensPerSec / r.ranking[0]!.tokensPerSec : 0;
  // Hardware FLOP/s per GPU (with recompute) of the published layout's best variant; the paper measured 137-163.
  const tflops = idx >= 0 ? r.ranking[idx]!.tflopsPerGpu : 0;
  const billions = (countParams(model).total / 1e9).toFixed(1);
  console.log(
    `${billions.padStart(6)}B ${String(gpus).padStart(5)} ${String(tp).padStart(3)} ${String(pp).padStart(3)}  ${idx >= 0 ? 'yes' : ' no'}  ${`${idx + 1} of ${r.ranking.length}`.padStart(12)}   ${`${group} of ${groups.length}`.padStart(12)}   ${ratio.toFixed(3)}   ${tflops.toFixed(0).padStart(16)}   ${ms.toFixed(0).padStart(9)}`,
  );
  table.push({
    params: +billions,
    gpus,
    tp,
    pp,
    fits: idx >= 0,
    published: idx >= 0 ? describeLayout(r.ranking[idx]!.layout) : null,
    estTflopsPerGpu: +tflops.toFixed(1),
    layoutRank: idx + 1,
    fitting: r.ranking.length,
    tpPpRank: group,
    tpPpChoices: groups.length,
    vsTop: +ratio.toFixed(3),
  });
}

console.log(`RESULT ${JSON.stringify({ bench: 'planner', repeat, search: results, megatronTable1: table })}`);
