// Refusals: a layout that cannot exist (or that a convention has no terms for) gets a reason, never a number.
// The parallel-degree rules are the config's own (layoutIssues); the planner adds the cluster, the batch and
// the conventions' scopes. Pure.
import { divisorsOf, layoutIssues, listChoices } from '../config/rules';
import { countParams, ParamCountError } from './params';
import { runtimeIssues } from './runtime-model';
import { torchIssues } from './torch-model';
import type { ConventionName, Layout, PlanInput, PlanIssue, PlanModel } from './types';

/** The config's rules take a resolved model; they read only its shape. */
export function asConfigModel(model: PlanModel) {
  return { ...model, name: model.name ?? 'model', dropout: model.dropout ?? 0 };
}

export function modelIssues(model: PlanModel): PlanIssue[] {
  const issues: PlanIssue[] = [];
  for (const key of ['layers', 'hidden', 'heads', 'kvHeads', 'ffnHidden', 'vocab', 'seqLen'] as const) {
    if (!Number.isInteger(model[key]) || model[key] < 1) issues.push({ path: `model.${key}`, message: `model.${key} must be a positive whole number, got ${model[key]}` });
  }
  if (issues.length) return issues;
  if (model.hidden % model.heads !== 0) issues.push({ path: 'model.heads', message: `model.heads=${model.heads} must divide model.hidden=${model.hidden}` });
  if (model.heads % model.kvHeads !== 0) issues.push({ path: 'model.kvHeads', message: `model.kvHeads=${model.kvHeads} must divide model.heads=${model.heads}` });
  if (model.totalParams !== undefined) {
    try {
      countParams(model);
    } catch (e) {
      if (e instanceof ParamCountError) issues.push({ path: 'model.totalParams', message: e.message });
      else throw e;
    }
  }
  return issues;
}

/** Why this layout cannot run on this cluster with this batch; empty when it can. */
export function planIssues(input: PlanInput, layout: Layout, convention: ConventionName = 'scalelm'): PlanIssue[] {
  const issues = modelIssues(input.model);
  if (issues.length) return issues;
  const { dp, tp, pp, microBatch } = layout;
  for (const [key, v] of [
    ['dp', dp],
    ['tp', tp],
    ['pp', pp],
    ['vpp', layout.vpp],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) issues.push({ path: `parallel.${key}`, message: `parallel.${key} must be a positive whole number, got ${v}` });
  }
  if (!Number.isInteger(microBatch) || microBatch < 1) issues.push({ path: 'train.microBatch', message: `train.microBatch must be a positive whole number, got ${microBatch}` });
  if (issues.length) return issues;
  issues.push(...layoutIssues(asConfigModel(input.model), layout));
  const { gpusPerNode, nodes } = input.cluster;
  const gpus = gpusPerNode * nodes;
  const world = dp * tp * pp;
  if (world !== gpus) {
    const choices = gpus % (tp * pp) === 0 ? `; with tp·pp=${tp * pp} use dp=${gpus / (tp * pp)}` : '';
    issues.push({ path: 'parallel.dp', message: `dp·tp·pp = ${dp}·${tp}·${pp} = ${world} must equal the cluster's ${gpus} GPUs (${nodes} node${nodes > 1 ? 's' : ''} × ${gpusPerNode})${choices}` });
  }
  const G = input.train.globalBatch;
  if (!Number.isInteger(G) || G < 1) issues.push({ path: 'train.globalBatch', message: `train.globalBatch must be a positive whole number, got ${G}` });
  else if (G % (microBatch * dp) !== 0) {
    const ok = divisorsOf(G / gcd(G, dp)).filter((b) => G % (b * dp) === 0);
    issues.push({
      path: 'train.globalBatch',
      message: `train.globalBatch=${G} must be a multiple of microBatch·dp = ${microBatch}·${dp} = ${microBatch * dp}${ok.length ? `; with dp=${dp} choose microBatch ${listChoices(ok)}` : `; dp=${dp} does not divide it, change dp`}`,
    });
  } else if (layout.vpp > 1 && (G / (microBatch * dp)) % pp !== 0) {
    issues.push({
      path: 'parallel.vpp',
      message: `the interleaved schedule (vpp=${layout.vpp}) needs the micro-batches per step (${G / (microBatch * dp)}) to be a multiple of pp=${pp} (Megatron's rule); change the micro-batch or set vpp to 1`,
    });
  }
  if (!(input.cluster.spec.memory > 0)) issues.push({ path: 'cluster.gpuMemory', message: 'the GPU memory must be positive' });
  issues.push(...conventionIssues(convention, input, layout));
  return issues;
}

/** What a convention does not cover: its anchor has no number for it. */
export function conventionIssues(convention: ConventionName, input: PlanInput, layout: Layout): PlanIssue[] {
  const out: PlanIssue[] = [];
  const refuse = (path: string, message: string) => out.push({ path, message: `--convention ${convention}: ${message}` });
  const offload = layout.offloadOptimizer || layout.offloadParams;
  switch (convention) {
    case 'runtime':
      return runtimeIssues(input, layout).map((i) => ({ path: i.path, message: `--convention runtime: ${i.message}` }));
    case 'torch':
      return torchIssues(input, layout).map((i) => ({ path: i.path, message: `--convention torch: ${i.message}` }));
    case 'zero-paper':
      if (offload) refuse('parallel.offloadOptimizer', 'the ZeRO paper has no offload (that is ZeRO-Offload/Infinity); use --convention deepspeed or scalelm');
      break;
    case 'deepspeed':
      if (layout.zero < 2) refuse('parallel.zero', `DeepSpeed's estimators cover ZeRO-2 and ZeRO-3 only, got zero=${layout.zero}; use --convention zero-paper or scalelm`);
      if (layout.tp > 1 || layout.pp > 1) refuse('parallel.tp', `DeepSpeed's estimators know no tensor or pipeline parallelism (tp=${layout.tp}, pp=${layout.pp}); use --convention scalelm`);
      break;
    case 'megatron':
      if (layout.zero >= 2) refuse('parallel.zero', `Megatron-LM has no ZeRO-${layout.zero} (zero=1 is its distributed optimizer); use --convention deepspeed or scalelm`);
      if (offload) refuse('parallel.offloadOptimizer', "Megatron-LM's formula has no offload; use --convention scalelm");
      break;
    case 'accelerate':
      if (layout.tp > 1 || layout.pp > 1 || layout.zero > 0 || offload) refuse('parallel', "accelerate's estimate-memory sizes the whole model on one device: no tp, pp, ZeRO or offload");
      if (input.train.optimizer === 'sgd') refuse('train.optimizer', 'accelerate\'s "Training using Adam" assumes Adam');
      break;
    case 'korthikanti':
    case 'scalelm':
      break;
  }
  return out;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
