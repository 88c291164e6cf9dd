// `scalelm estimate <file> [--convention NAME] [--json] [layout flags]`: memory per GPU (heaviest rank) and
// step time of the layout in the file — or why that layout cannot exist.
import { CONVENTIONS, type ConventionName, type EstimateOptions, type EstimateResult } from '../planner/types';
import { hfActivationModel } from '../config/huggingface';
import { describeLayout, estimate } from '../planner/estimate';
import { formatBytes } from '../../common/units';
import { CliError, parseArgs, type Command } from './args';
import { loadPlanInput, PLAN_FLAGS_HELP, PLAN_SWITCHES, PLAN_VALUE_FLAGS } from './plan-input';
import type { RunConfig } from '../config/types';
import { planTarget } from '../planner/target';

const USAGE = `usage: scalelm estimate <file> [--convention NAME] [--json] [--detail] [flags]

<file> is a *.scalelm.json, or a HuggingFace config.json (then the layout and cluster come from the flags).
--convention   ${CONVENTIONS.join(' | ')} (default scalelm; see docs/planner.md)
--json         one JSON object, bytes as integers
--detail       list every term of the estimate

${PLAN_FLAGS_HELP}`;

const GiB = 2 ** 30;
/** The table's unit: GiB, or MiB when everything is under 1 GiB (a tiny local model would read 0.00 GiB). */
let unit = { name: 'GiB', bytes: GiB };
const gib = (b: number) => (b / unit.bytes).toFixed(2);
/** 8.03 B, 124.44 M, 800 k */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(Math.round(n));
}
/** Seconds as s, ms or µs. */
export function formatSeconds(x: number): string {
  if (x >= 1) return `${x.toFixed(2)} s`;
  if (x >= 1e-3) return `${(x * 1e3).toFixed(1)} ms`;
  return `${(x * 1e6).toFixed(1)} µs`;
}

export const estimateCommand: Command = async (argv) => {
  const args = parseArgs(argv, { values: [...PLAN_VALUE_FLAGS, 'convention'], repeatable: ['set'], switches: [...PLAN_SWITCHES, 'json', 'detail'], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const file = args.positional[0]!;
  const loaded = loadPlanInput(file, args, 'estimate');
  // A *.scalelm.json without a cluster (and no cluster flags) is a local run: plan it against its own
  // devices (devices.memory) in the runtime convention, as `scalelm train` and the editor do.
  const local = loaded.source === 'scalelm' && !loaded.config.cluster.explicit && !CLUSTER_FLAGS.some((f) => args.values.has(f)) ? planTarget(loaded.config) : undefined;
  const convention = (args.values.get('convention') ?? local?.convention ?? 'scalelm') as ConventionName;
  if (!CONVENTIONS.includes(convention)) throw new CliError(`--convention must be one of ${CONVENTIONS.join(', ')}, got "${convention}"`);
  const config = local ? (local.input as RunConfig) : loaded.config;
  // A HuggingFace config.json in the torch convention: count what the HF implementation saves (the file's
  // _attn_implementation, else transformers' default, sdpa), where it is modelled; the notes say which.
  const hfOptions: EstimateOptions = {};
  if (loaded.hf && convention === 'torch') {
    const attention = typeof loaded.hf._attn_implementation === 'string' ? loaded.hf._attn_implementation : 'sdpa';
    const act = hfActivationModel(loaded.hf, attention, { tp: config.parallel.tp, recompute: config.train.recompute, precision: config.train.precision });
    if (act.ok) hfOptions.hfActivations = act.model;
    loaded.notes.push(
      act.ok ? `activations as HuggingFace's ${act.model.impl.slice(3)} ${act.model.family} saves them (${act.model.impl})` : `activations as ScaleLM's own model saves them (${act.why})`,
    );
  }
  const result = estimate(config, { ...loaded.options, ...hfOptions, convention });
  if (!result.ok) {
    console.error(`${file}: this layout cannot be estimated:`);
    for (const i of result.issues) console.error(`  ${i.path}: ${i.message}`);
    return 1;
  }
  if (args.switches.has('json')) {
    console.log(JSON.stringify({ ...estimateJson(result, convention), profile: loaded.profile ?? null }));
    return 0;
  }
  for (const n of loaded.notes) console.log(`note: ${n}`);
  console.log(renderEstimate(config, result, args.switches.has('detail'), local?.label));
  return 0;
};

/** Flags that say "plan for a cluster", not for this machine's devices. */
const CLUSTER_FLAGS = ['gpus', 'gpus-per-node', 'nodes', 'gpu', 'gpu-mem', 'headroom', 'efficiency'];

type Ok = Extract<EstimateResult, { ok: true }>;

/** The --json object: bytes as integers. */
export function estimateJson(r: Ok, convention: ConventionName): Record<string, unknown> {
  const d = r.memory.perDevice;
  const int = Math.round;
  return {
    params: { total: int(r.memory.params.total), perDevice: int(r.memory.params.perDevice) },
    perDevice: { params: int(d.params), grads: int(d.grads), optimizer: int(d.optimizer), activations: int(d.activations), buffers: int(d.buffers), overhead: int(d.overhead), total: int(d.total) },
    // Which measured figure each number predicts: allocated = torch.cuda.max_memory_allocated, reserved =
    // max_memory_reserved, device = nvidia-smi's used memory; perDevice.total is `totalIs`.
    totalIs: r.memory.totalIs,
    ...(r.memory.figures
      ? {
          figures: {
            allocated: int(r.memory.figures.allocated),
            reserved: int(r.memory.figures.reserved),
            device: int(r.memory.figures.device),
            allocatedBy: Object.fromEntries(Object.entries(r.memory.figures.allocatedBy).map(([k, v]) => [k, int(v)])),
          },
        }
      : {}),
    host: { perNode: int(r.memory.host.perNode) },
    time: { stepMs: r.time.stepMs, tokensPerSec: r.time.tokensPerSec, mfu: r.time.mfu },
    convention,
    fits: r.fits,
    usable: int(r.usable),
    layout: r.layout,
    heaviestStage: r.memory.heaviestStage,
    notCovered: r.memory.hostCovered ? r.memory.notCovered : [...r.memory.notCovered, 'host'],
    notes: r.memory.notes,
  };
}

/** `localDevices`: the label of this machine's devices when the run is local (no GPU cluster, no step-time model). */
export function renderEstimate(config: RunConfig, r: Ok, detail: boolean, localDevices?: string): string {
  const { model, cluster, train } = config;
  const m = r.memory;
  const d = m.perDevice;
  const gpus = cluster.gpusPerNode * cluster.nodes;
  unit = d.total < GiB ? { name: 'MiB', bytes: 2 ** 20 } : { name: 'GiB', bytes: GiB };
  const lines: string[] = [];
  lines.push(
    `${model.name}: ${model.layers} layers, hidden ${model.hidden}, ${model.heads} heads${model.kvHeads !== model.heads ? ` (${model.kvHeads} KV)` : ''}, seq ${model.seqLen} — ${formatCount(m.params.total)} parameters`,
  );
  const where = localDevices ?? `${gpus} × ${cluster.gpu} (${cluster.nodes} node${cluster.nodes > 1 ? 's' : ''} × ${cluster.gpusPerNode}), ${formatBytes(cluster.spec.memory)} each`;
  lines.push(`${where} · ${describeLayout(r.layout)} · ${train.precision} · global batch ${train.globalBatch}`);
  lines.push(`convention ${m.convention}: heaviest rank is ${m.stages > 1 ? `pipeline stage ${m.heaviestStage} of ${m.stages}` : 'any rank'}, ${formatCount(m.params.perDevice)} parameters on it`);
  if (detail && m.params.perStage && m.params.perStage.length > 1) {
    const stages = m.params.perStage;
    const shown = stages.length > 4 ? [stages[0]!, stages[1]!, stages[stages.length - 1]!] : stages;
    for (const st of shown)
      lines.push(
        `  stage ${st.stage}: ${st.layers} layers, ${formatCount(st.params)} parameters per tensor-parallel rank${st.embedding ? ' (embedding)' : ''}${st.output ? ' (final norm, output layer)' : ''}`,
      );
    if (stages.length > 4) lines.push(`  (stages 2..${stages.length - 2} as stage 1)`);
  }
  lines.push('');
  lines.push(`memory per ${localDevices ? 'device' : 'GPU   '}     ${unit.name}`);
  for (const c of ['params', 'grads', 'optimizer', 'activations', 'buffers', 'overhead'] as const) {
    const covered = !m.notCovered.includes(c);
    lines.push(`  ${c.padEnd(12)} ${covered ? gib(d[c]).padStart(9) : '        —'}${covered ? '' : '  (not in this convention)'}`);
    if (detail) for (const t of m.terms.filter((x) => x.category === c)) lines.push(`      ${gib(t.bytes).padStart(9)}  ${t.label}`);
  }
  const verdict = r.fits ? 'fits' : 'DOES NOT FIT';
  lines.push(
    `  ${'total'.padEnd(12)} ${gib(d.total).padStart(9)}  of ${gib(r.usable)} usable (${gib(cluster.spec.memory)} ${unit.name}, ${Math.round(cluster.headroom * 100)}% headroom) — ${verdict}${m.totalIs === 'device' ? '' : '  (a partial PyTorch allocated figure)'}`,
  );
  if (m.figures) {
    lines.push(
      `  as measured: allocated ${gib(m.figures.allocated)} (torch max_memory_allocated: params … buffers) · reserved ${gib(m.figures.reserved)} (max_memory_reserved: + allocator slack) · device ${gib(m.figures.device)} (nvidia-smi: + CUDA context, NCCL) ${unit.name}`,
    );
  }
  if (!m.hostCovered) lines.push('host memory per node         —  (not in this convention)');
  else lines.push(`host memory per node ${gib(m.host.perNode).padStart(9)}${m.host.perRank > 0 && m.host.perRank !== m.host.perNode ? `  (${gib(m.host.perRank)} per rank)` : ''}`);
  if (detail) for (const t of m.terms.filter((x) => x.category === 'host')) lines.push(`      ${gib(t.bytes).padStart(9)}  ${t.label}${m.convention === 'scalelm' ? ' (per rank)' : ''}`);
  for (const n of m.notes) lines.push(`note: ${n}`);
  if (localDevices) {
    lines.push('', 'step time: not estimated for a local run (the time model describes GPUs); `scalelm train` measures it');
    if (!r.fits) lines.push('\nIt does not fit: raise devices.memory, or shrink the batch or the model.');
    return lines.join('\n');
  }
  const t = r.time;
  const b = t.breakdown;
  const s = formatSeconds;
  lines.push('');
  lines.push(
    `step ${s(t.stepMs / 1e3)} · ${Math.round(t.tokensPerSec).toLocaleString('en-US')} tokens/s · MFU ${(t.mfu * 100).toFixed(1)}% · ${t.tflopsPerGpu.toFixed(0)} TFLOP/s per GPU (with recompute) · ${t.microBatches} micro-batch${t.microBatches === 1 ? '' : 'es'} per step`,
  );
  const parts: [string, number][] = [
    ['compute', b.compute],
    ['recompute', b.recompute],
    ['TP comm', b.tensorParallelComm],
    ['bubble', b.bubble],
    ['pipeline sends', b.pipelineComm],
    ['DP/ZeRO comm exposed', b.dataParallelExposed],
    ['optimizer', b.optimizer],
    ['offload', b.offload],
  ];
  lines.push(
    `  ${parts
      .filter(([, v]) => v > 0)
      .map(([k, v]) => `${k} ${s(v)}`)
      .join(' · ')}${b.dataParallelTotal > 0 ? ` (DP/ZeRO comm ${s(b.dataParallelTotal)} in all)` : ''}`,
  );
  if (!r.fits) lines.push(`\nIt does not fit: \`scalelm plan\` searches the layouts that do (give the cluster with --gpus N).`);
  if (t.tensorParallelAcrossNodes) lines.push('  warning: the tensor-parallel group spans nodes; its all-reduces run at inter-node bandwidth');
  return lines.join('\n');
}
