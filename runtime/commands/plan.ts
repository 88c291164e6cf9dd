// `scalelm plan <file> [flags] [--top N] [--json]`: every valid layout for the model, cluster and global batch,
// the ones that fit ranked by estimated throughput, each with its memory, time and a one-line explanation.
// Layout flags (--tp 8, --zero 1, ...) fix that dimension; the rest are searched.
import { describeLayout } from '../planner/estimate';
import { currentLayoutText, searchLayouts, type SearchResult } from '../planner/search';
import { formatBytes, parseBytes } from '../../common/units';
import { CliError, parseArgs, intFlag, type Command } from './args';
import { formatSeconds } from './estimate';
import { loadPlanInput, PLAN_FLAGS_HELP, PLAN_SWITCHES, PLAN_VALUE_FLAGS } from './plan-input';

const USAGE = `usage: scalelm plan <file> [--top N] [--json] [flags]

Searches dp, tp, pp, vpp, ZeRO stage, micro-batch, recompute, sequence parallelism and offload for the
cluster and global batch; a layout flag fixes that dimension. Fits are judged with the scalelm convention.
--top N        how many layouts to show (default 10)
--host-mem SIZE  host memory per node for offloaded states (default 1TiB)
--json         one JSON object, bytes as integers

${PLAN_FLAGS_HELP}`;

const gib = (b: number) => (b / 2 ** 30).toFixed(1);

export const planCommand: Command = async (argv) => {
  const args = parseArgs(argv, { values: [...PLAN_VALUE_FLAGS, 'top', 'host-mem'], repeatable: ['set'], switches: [...PLAN_SWITCHES, 'json'], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const file = args.positional[0]!;
  const top = intFlag(args, 'top') ?? 10;
  const hostMem = args.values.get('host-mem');
  let hostMemoryPerNode: number | undefined;
  try {
    if (hostMem !== undefined) hostMemoryPerNode = parseBytes(/^\d+$/.test(hostMem) ? Number(hostMem) : hostMem);
  } catch (e) {
    throw new CliError(`--host-mem: ${(e as Error).message}`);
  }
  const loaded = loadPlanInput(file, args, 'plan');
  const { config } = loaded;
  const started = performance.now();
  const result = searchLayouts(config, {
    ...loaded.options,
    top,
    fixed: loaded.fixed,
    ...(loaded.current ? { current: loaded.current } : {}),
    ...(hostMemoryPerNode !== undefined ? { hostMemoryPerNode } : {}),
  });
  const seconds = (performance.now() - started) / 1e3;
  if (args.switches.has('json')) {
    console.log(JSON.stringify({ ...planJson(result, config.train.globalBatch, seconds), profile: loaded.profile ?? null }));
    return result.ok ? 0 : 1;
  }
  const { model, cluster, train } = config;
  const gpus = cluster.gpusPerNode * cluster.nodes;
  for (const n of loaded.notes) console.log(`note: ${n}`);
  console.log(
    `${model.name} on ${gpus} × ${cluster.gpu} (${cluster.nodes} node${cluster.nodes > 1 ? 's' : ''} × ${cluster.gpusPerNode}, ${formatBytes(cluster.spec.memory)} each) · ${train.precision}${train.flashAttention ? ' · FlashAttention' : ''}`,
  );
  // The two numbers every throughput here depends on, and where they came from.
  const seqFrom = args.values.has('seq-len') ? '--seq-len' : loaded.source === 'huggingface' ? "the model config's max_position_embeddings; set --seq-len" : 'the config';
  console.log(
    `sequence length ${model.seqLen} (${seqFrom}) · global batch ${train.globalBatch} sequences = ${(train.globalBatch * model.seqLen).toLocaleString('en-US')} tokens per step (${loaded.defaultGlobalBatch ? 'default ≈1M tokens; set --global-batch' : args.values.has('global-batch') ? '--global-batch' : 'the config'})`,
  );
  if (loaded.profile) console.log(`step times from the ${loaded.profile}`);
  const st = result.stats;
  console.log(
    `searched ${st.enumerated.toLocaleString('en-US')} layouts in ${seconds.toFixed(2)} s: ${st.fits.toLocaleString('en-US')} fit, ${st.tooBig.toLocaleString('en-US')} need more than ${gib(result.usable)} GiB (${Math.round(cluster.headroom * 100)}% headroom kept), ${st.invalid.toLocaleString('en-US')} break a rule`,
  );
  if (!result.ok) {
    for (const i of result.issues) console.error(i.message);
    return 1;
  }
  const where = currentLayoutText(result);
  if (where) console.log(where);
  for (const w of result.warnings) console.log(`warning: ${w}`);
  console.log('');
  for (const c of result.candidates) {
    const t = c.time;
    console.log(
      `${String(c.rank).padStart(3)}. ${describeLayout(c.layout)}${c.rank > 1 && c.tiesFirst ? `   (tie with #1: within ${Math.round(result.tieTolerance * 100)}%, the model's error; more headroom ranks first)` : ''}`,
    );
    console.log(`     ${gib(c.memory.total)} GiB/GPU · step ${formatSeconds(t.stepMs / 1e3)} · ${Math.round(t.tokensPerSec).toLocaleString('en-US')} tokens/s · MFU ${(t.mfu * 100).toFixed(1)}%`);
    console.log(`     ${c.explanation}`);
    const m = c.memory;
    console.log(
      `     params ${gib(m.params)} · grads ${gib(m.grads)} · optimizer ${gib(m.optimizer)} · activations ${gib(m.activations)} · buffers ${gib(m.buffers)} · overhead ${gib(m.overhead)} GiB`,
    );
  }
  return 0;
};

export function planJson(r: SearchResult, globalBatch: number, seconds: number): Record<string, unknown> {
  const int = Math.round;
  return {
    ok: r.ok,
    globalBatch,
    usable: int(r.usable),
    hostLimit: int(r.hostLimit),
    stats: r.stats,
    searchSeconds: seconds,
    issues: r.issues,
    warnings: r.warnings,
    tieTolerance: r.tieTolerance,
    current: r.current ?? null,
    layouts: r.candidates.map((c) => ({
      rank: c.rank,
      layout: c.layout,
      perDevice: {
        params: int(c.memory.params),
        grads: int(c.memory.grads),
        optimizer: int(c.memory.optimizer),
        activations: int(c.memory.activations),
        buffers: int(c.memory.buffers),
        overhead: int(c.memory.overhead),
        total: int(c.memory.total),
      },
      host: { perNode: int(c.detail?.host.perNode ?? 0) },
      time: { stepMs: c.time.stepMs, tokensPerSec: c.time.tokensPerSec, mfu: c.time.mfu },
      explanation: c.explanation,
      tiesFirst: c.tiesFirst,
    })),
  };
}
