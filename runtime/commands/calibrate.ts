// `scalelm calibrate <run-dir> [--out FILE]`: fits the planner's GPU efficiency constants (large-GEMM
// efficiency, allocator slack, CUDA context) to a run ScaleLM recorded, and writes a cluster profile that
// configs use with `cluster.profile`.
import { join } from 'node:path';
import type { HelloMessage, Message } from '../../common/protocol';
import { formatBytes } from '../../common/units';
import { readResolvedConfig } from '../config/resolved';
import { writeFileSynced } from '../files';
import { calibrate, type ClusterProfile, type RunMeasurement } from '../planner/calibrate';
import type { PlanInput } from '../planner/types';
import { hasMetrics, streamMessages } from '../telemetry/run-store';
import { CliError, parseArgs, type Command } from './args';

const USAGE = `usage: scalelm calibrate <run-dir> [--out FILE] [--json]

Reads <run-dir>/metrics.jsonl (hello, step, memory and gpu messages) of a run on GPUs and fits:
  efficiency      fraction of peak FLOP/s large GEMMs reached (from the median step time)
  allocatorSlack  reserved / allocated − 1 (when the engine reported reserved memory)
  cudaContext     nvidia-smi's used memory − reserved − NCCL buffers (from the gpu samples)
It writes them as a cluster profile (default <run-dir>/cluster-profile.json). Point a config at it with
"cluster": { "profile": "path/to/cluster-profile.json" } (or --profile FILE) and estimate/plan use it.`;

/**
 * Whether to offer "Calibrate Planner from this Run": a finished run whose gpu messages (nvidia-smi samples)
 * show devices. Other runs can still be asked, and get calibrateRun's refusal saying why.
 */
export function offersCalibration(state: string, messages: readonly Message[]): boolean {
  return state === 'finished' && messages.some((m) => m.type === 'gpu' && m.devices.length > 0);
}

/** The run's measurement: median step time after the warm-up, the heaviest rank's memory figures. */
export function measure(messages: Message[]): { hello: HelloMessage; measured: RunMeasurement; steps: number; gpuSamples: number } {
  const hello = messages.find((m): m is HelloMessage => m.type === 'hello');
  if (!hello) throw new CliError('the run has no hello message: metrics.jsonl does not start like a ScaleLM run', 1);
  const stepMs = messages.flatMap((m) => (m.type === 'step' && Number.isFinite(m.stepMs) && m.stepMs > 0 ? [m.stepMs] : []));
  if (stepMs.length < 3) throw new CliError(`the run has ${stepMs.length} timed step${stepMs.length === 1 ? '' : 's'}: calibration needs at least 3 (the first ones are warm-up)`, 1);
  // The first 10% of steps (at least one) are warm-up: compilation, allocator growth, NCCL set-up.
  const timed = stepMs.slice(Math.max(1, Math.floor(stepMs.length / 10))).sort((a, b) => a - b);
  const median = timed[Math.floor(timed.length / 2)]!;
  let allocated = 0;
  let reserved: number | undefined;
  for (const m of messages) {
    if (m.type === 'memory') {
      allocated = Math.max(allocated, m.stepPeak);
      const r = m.categories.reserved;
      if (typeof r === 'number') reserved = Math.max(reserved ?? 0, r);
    } else if (m.type === 'step') allocated = Math.max(allocated, m.memory.peak);
  }
  if (!(allocated > 0)) throw new CliError('the run reported no memory (no memory messages, no step peaks): nothing to calibrate the memory figures against', 1);
  const gpus = messages.filter((m) => m.type === 'gpu');
  if (!gpus.length) throw new CliError("the run has no gpu messages (nvidia-smi samples): it did not run on GPUs, and the planner's GPU model cannot be calibrated from it", 1);
  let device: number | undefined;
  for (const g of gpus) {
    for (const d of g.devices) {
      // The rank's own process memory when the driver says it, else the device's used memory (ranks placed on it).
      const ours = d.processes.filter((p) => p.rank !== undefined && p.memory !== null);
      const used = ours.length ? Math.max(...ours.map((p) => p.memory!)) : d.ranks?.length && d.memoryUsed !== null ? d.memoryUsed : undefined;
      if (used !== undefined) device = Math.max(device ?? 0, used);
    }
  }
  return {
    hello,
    measured: { stepMs: median, allocated, ...(reserved !== undefined ? { reserved } : {}), ...(device !== undefined ? { device } : {}) },
    steps: stepMs.length,
    gpuSamples: gpus.length,
  };
}

/** The hello's resolved config as a PlanInput: checked by the config parser (a run directory can say anything), or the reason it is not one. */
function planInputOf(config: unknown): PlanInput {
  const r = readResolvedConfig(config);
  if (!r.ok) {
    const first = r.errors[0];
    throw new CliError(`the hello message's config is not a resolved ScaleLM config${first ? ` (${first.path || '(root)'}: ${first.message})` : ''}`, 1);
  }
  return r.config;
}

export interface Calibration {
  out: string;
  profile: ClusterProfile;
  hello: HelloMessage;
  measured: RunMeasurement;
  steps: number;
  gpuSamples: number;
  /** Damaged metrics.jsonl lines skipped. */
  problems: number;
  input: PlanInput;
}

/**
 * Reads a run directory, fits the profile and writes it (default <dir>/cluster-profile.json). Throws
 * CliError with the reason when the run cannot be calibrated from (no GPUs, too few steps, ...). The CLI and
 * the extension's "Calibrate Planner from this Run" both call this.
 */
export async function calibrateRun(dir: string, out = join(dir, 'cluster-profile.json')): Promise<Calibration> {
  if (!hasMetrics(dir)) throw new CliError(`${dir} is not a run directory (no metrics.jsonl)`, 1);
  const messages: Message[] = [];
  let problems = 0;
  await streamMessages(
    dir,
    (m) => void messages.push(m),
    () => void problems++,
  );
  const { hello, measured, steps, gpuSamples } = measure(messages);
  const input = planInputOf(hello.config);
  const profile = calibrate(input, measured, hello.runId);
  // Not writeFileSync: a symbolic link planted as <run>/cluster-profile.json must not be followed (openRunFile).
  writeFileSynced(out, `${JSON.stringify(profile, null, 2)}\n`);
  return { out, profile, hello, measured, steps, gpuSamples, problems, input };
}

export const calibrateCommand: Command = async (argv) => {
  const args = parseArgs(argv, { values: ['out'], switches: ['json'], positional: [1, 1], usage: USAGE });
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const { out, profile, hello, measured, steps, gpuSamples, problems, input } = await calibrateRun(args.positional[0]!, args.values.get('out'));
  if (args.switches.has('json')) {
    console.log(JSON.stringify({ out, profile }));
    return 0;
  }
  const before = profile.fittedFrom.predictedBefore;
  console.log(`${hello.runId}: ${steps} steps, ${gpuSamples} GPU samples${problems ? `, ${problems} damaged line${problems === 1 ? '' : 's'} skipped` : ''}`);
  console.log(
    `  step time      measured ${measured.stepMs.toFixed(0)} ms (median after warm-up), model ${before.stepMs.toFixed(0)} ms at efficiency ${input.cluster.efficiency} → efficiency ${profile.efficiency.toFixed(3)}`,
  );
  console.log(`  allocated      measured ${formatBytes(measured.allocated)} (step peak / max_memory_allocated), estimate ${formatBytes(before.allocated)}`);
  if (measured.reserved !== undefined) console.log(`  reserved       measured ${formatBytes(measured.reserved)} → allocator slack ${(100 * (profile.overheads.allocatorSlack ?? 0)).toFixed(1)}%`);
  if (measured.device !== undefined)
    console.log(`  device         measured ${formatBytes(measured.device)} (nvidia-smi), estimate ${formatBytes(before.device)} → CUDA context ${formatBytes(profile.overheads.cudaContext ?? 0)}`);
  for (const n of profile.fittedFrom.notes) console.log(`  note: ${n}`);
  console.log(`wrote ${out}; use it with "cluster": { "profile": "${out}" } or --profile ${out}`);
  return 0;
};
