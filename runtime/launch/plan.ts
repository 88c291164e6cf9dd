// `scalelm launch --plan CONFIG`, and the plan of a launched run from what its script reports: the planner
// runs once, in the coordinator, and its bytes per category ride on every rank's memory message as
// `predicted` (the measured categories' names: params, grads, optimizer, activations, buffers), so the memory
// panels show prediction beside measurement as for ScaleLM's own runs.
//
// Where the model and layout come from, in order: a *.scalelm.json given with --plan (model and layout,
// planned before the command starts); else the model from --plan's HuggingFace config.json or from the
// HuggingFace config the script's model carries, with the layout the Monitor detected (the `shape` line,
// runtime/parallel/shape-report.ts). What neither says is assumed, and the log says which.
import { formatBytes } from '../../common/units';
import { CliError } from '../commands/args';
import { loadPlanInput } from '../commands/plan-input';
import { hfActivationModel, modelFromHuggingFace } from '../config/huggingface';
import { parseConfig } from '../config/parse';
import type { RunConfig } from '../config/types';
import { describeLayout, estimate } from '../planner/estimate';
import { planTarget } from '../planner/target';
import type { ConventionName, HfActivations } from '../planner/types';
import type { ShapeLine } from '../parallel/shape-report';

/** A --plan file, read and checked before the command starts. */
export interface PlanFile {
  file: string;
  source: 'scalelm' | 'huggingface';
  config: RunConfig;
  notes: string[];
  /** A HuggingFace config.json as read (its dropouts and activation choose the activation model). */
  hf?: Record<string, unknown>;
}

export interface LaunchPrediction {
  predicted: Record<string, number>;
  /** What the log says: the plan, what was assumed. */
  lines: string[];
}

/** The device memory the planner is given when the run's own is not known: predictions per category do not depend on it. */
const PLACEHOLDER_MEMORY = 2 ** 44;
const NO_ARGS = { positional: [], values: new Map<string, string>(), repeated: new Map<string, string[]>(), switches: new Set<string>() };

/** Reads --plan FILE; one CliError (exit 1) naming the file and what is wrong when it cannot be planned. */
export function readPlanFile(file: string): { plan: PlanFile; prediction?: LaunchPrediction } {
  const loaded = loadPlanInput(file, NO_ARGS, 'estimate');
  const plan: PlanFile = { file, source: loaded.source, config: loaded.config, notes: loaded.source === 'huggingface' ? [] : loaded.notes };
  if (plan.source === 'huggingface') return { plan: { ...plan, hf: loaded.hf } };
  const r = predict(plan.config, `${file}`);
  if ('error' in r) throw new CliError(`--plan ${file}: ${r.error}`, 1);
  return { plan, prediction: r };
}

function conventionFor(config: RunConfig, hf?: unknown, autocast = true): ConventionName {
  // The torch convention counts what the Monitor counts (its own tensors, autograd's saved tensors): in fp32,
  // and in bf16-mixed as torch.autocast runs ScaleLM's own model (fp32 states, bf16 matmul inputs saved). A
  // HuggingFace model in bf16 is planned in the scalelm convention: its modeling code under autocast is not
  // modelled (planner/torch-model.ts), nor are bf16 parameters without autocast. fp16-mixed: scalelm.
  if (config.train.precision === 'fp32') return 'torch';
  return config.train.precision === 'bf16-mixed' && !hf && autocast ? 'torch' : 'scalelm';
}

/**
 * A HuggingFace model planned in the torch convention counts what the HF implementation saves for backward
 * (planner/torch-model.ts hfActivationTerms), not what ScaleLM's own model saves; the log says which.
 */
function hfActivationsFor(config: RunConfig, hf: { config: Record<string, unknown>; attention?: string } | undefined): { model?: HfActivations; line?: string } {
  if (!hf || conventionFor(config, hf) !== 'torch') return {};
  const r = hfActivationModel(hf.config, hf.attention, { tp: config.parallel.tp, recompute: config.train.recompute, precision: config.train.precision });
  if (r.ok) return { model: r.model };
  return { line: `plan: activations as ScaleLM's own model saves them, not the HuggingFace implementation's (${r.why})` };
}

function predict(config: RunConfig, from: string, hf?: { config: Record<string, unknown>; attention?: string }, autocast = true): LaunchPrediction | { error: string } {
  const target = planTarget(config);
  const convention = conventionFor(config, hf, autocast);
  const act = hfActivationsFor(config, hf);
  const r = estimate(target.input, { convention, ...(act.model ? { hfActivations: act.model } : {}) });
  if (!r.ok) return { error: `the planner cannot predict this layout:\n${r.issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}` };
  const p = r.memory.perDevice;
  const predicted = { params: p.params, grads: p.grads, optimizer: p.optimizer, activations: p.activations, buffers: p.buffers };
  const m = config.model;
  const line =
    `plan (${from}, ${convention} convention${act.model ? `, ${act.model.impl} activations` : ''}): ${m.name} ${m.layers}×${m.hidden}, seq ${m.seqLen}, ${describeLayout(r.layout)}, ${config.train.precision} ${config.train.optimizer} → per rank ` +
    Object.entries(predicted)
      .filter(([, b]) => b > 0)
      .map(([k, b]) => `${k} ${formatBytes(b)}`)
      .join(', ');
  return { predicted, lines: act.line ? [line, act.line] : [line] };
}

/**
 * The plan from rank 0's report (and --plan's HuggingFace config.json when given), or the log lines that say
 * why there is none.
 */
export function predictFromReport(report: ShapeLine, file?: PlanFile): LaunchPrediction | { lines: string[] } {
  const l = report.layout;
  let model: Record<string, unknown>;
  let from: string;
  let hfConfig: Record<string, unknown> | undefined;
  if (file) {
    hfConfig = file.hf;
    model = { ...file.config.model };
    from = `model from ${file.file}`;
  } else {
    if (!report.model) return { lines: ["no memory prediction: the script's model has no HuggingFace config (give the model with --plan CONFIG)"] };
    const hf = modelFromHuggingFace(report.model);
    if (!hf.ok) return { lines: [`no memory prediction: the script's HuggingFace config cannot be planned: ${hf.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`] };
    model = hf.model;
    hfConfig = report.model;
    from = `the script's HuggingFace ${hf.family} config`;
  }
  const assumed: string[] = [];
  const tp = l.tp ?? 1;
  if (l.tp === undefined && l.world > 1) assumed.push('tp 1 (no tensor-parallel mesh seen)');
  if (l.world % tp !== 0) return { lines: [`no memory prediction: tp ${tp} does not divide the world of ${l.world}`] };
  const dp = l.world / tp;
  const zero = l.zero ?? 0;
  if (l.zero === undefined && l.world > 1) assumed.push('ZeRO-0: replicated data-parallel ranks (wrap the model in DDP/FSDP before giving it to the Monitor to have it detected)');
  const microBatch = l.microBatch ?? 1;
  if (l.microBatch === undefined) assumed.push('micro-batch 1 (give Monitor(micro_batch=…))');
  if (l.seqLen !== undefined) model.seqLen = l.seqLen;
  else assumed.push(`sequence length ${String(model.seqLen)}, the model's longest (give Monitor(seq_len=…))`);
  let precision = l.precision;
  if (!precision) {
    precision = l.paramDtype === 'bf16' ? 'bf16-mixed' : l.paramDtype === 'fp16' ? 'fp16-mixed' : 'fp32';
    assumed.push(l.paramDtype && l.paramDtype !== 'fp32' ? `${precision} for ${l.paramDtype} parameters without autocast (the planner models fp32 or mixed precision)` : 'fp32 (no autocast seen)');
  }
  const optimizer = l.optimizer ?? 'adamw';
  if (!l.optimizer) assumed.push('AdamW (no optimizer given to the Monitor, or not Adam/AdamW/SGD)');
  const recompute = l.recompute ?? 'none';
  const gradAccum = l.gradAccum ?? 1;
  const raw: Record<string, unknown> = {
    name: typeof model.name === 'string' ? model.name : 'model',
    model,
    train: {
      microBatch,
      globalBatch: microBatch * dp * gradAccum,
      precision,
      optimizer,
      recompute,
      flashAttention: l.attention !== undefined && l.attention !== 'eager',
      ...(optimizer === 'sgd' ? { beta1: l.momentum ?? 0 } : {}),
    },
    parallel: { dp, tp, zero },
    ...(precision === 'fp32' ? { devices: { count: l.world, memory: PLACEHOLDER_MEMORY } } : { cluster: { gpusPerNode: l.world, nodes: 1, gpuMemory: PLACEHOLDER_MEMORY, headroom: 0 } }),
  };
  const parsed = parseConfig(raw);
  if (!parsed.ok) return { lines: [`no memory prediction: the reported layout is not plannable: ${parsed.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`] };
  const r = predict(parsed.config, from, hfConfig ? { config: hfConfig, attention: l.attention } : undefined, l.precision !== undefined);
  if ('error' in r) return { lines: [`no memory prediction: ${r.error}`] };
  if (assumed.length) r.lines.push(`plan assumed: ${assumed.join('; ')}`);
  return r;
}

/** The launched run's plan: set up from --plan, completed by rank 0's report; holds the run's length. */
export class LaunchPlan {
  predicted?: Record<string, number>;
  totalSteps?: number;
  private reported = false;

  constructor(
    private readonly file?: PlanFile,
    prediction?: LaunchPrediction,
    private readonly startLines: string[] = prediction?.lines ?? [],
  ) {
    if (prediction) this.predicted = prediction.predicted;
  }

  /** Log lines for the run's start (a *.scalelm.json's plan). */
  atStart(): string[] {
    return this.startLines;
  }

  /** Rank 0's report: the plan (when not already made from a *.scalelm.json) and the run's length. */
  onReport(report: ShapeLine): string[] {
    if (this.reported) return [];
    this.reported = true;
    this.totalSteps = report.totalSteps;
    const lines: string[] = [];
    if (report.totalSteps === undefined) lines.push("the run's length is unknown (Monitor(total_steps=…)): no out-of-memory forecast");
    if (this.predicted && this.file) {
      const p = this.file.config.parallel;
      const world = p.dp * p.tp * p.pp;
      if (world !== report.layout.world) lines.push(`${this.file.file} plans ${world} ranks (dp·tp·pp); the script runs ${report.layout.world}: the prediction is for the file's layout`);
      return lines;
    }
    const r = predictFromReport(report, this.file);
    if ('predicted' in r) this.predicted = r.predicted;
    return [...r.lines, ...lines];
  }
}

/** The run's plan for `scalelm launch [--plan FILE]`; throws CliError for a file that cannot be planned. */
export function launchPlan(file: string | undefined): LaunchPlan {
  if (file === undefined) return new LaunchPlan();
  let read: ReturnType<typeof readPlanFile>;
  try {
    read = readPlanFile(file);
  } catch (e) {
    if (e instanceof CliError && !e.message.startsWith('--plan')) throw new CliError(`--plan: ${e.message}`, e.exitCode);
    throw e;
  }
  const { plan, prediction } = read;
  return new LaunchPlan(plan, prediction, prediction?.lines ?? [`plan: the model from ${file} (${plan.config.model.name}); the layout as the script reports it`]);
}
