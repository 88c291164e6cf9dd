// Cross-field rules: what makes a layout impossible (as opposed to merely not fitting in memory, which
// is the planner's job). Each issue names the field and what to choose instead. Pure.
import type { ConfigIssue } from './dsl';
import type { RunConfigInput } from './schema';
import type { RunConfig } from './types';

/** Largest n divisorsOf answers for (every caller passes schema-bounded values far below it). */
export const MAX_DIVISOR_INPUT = 2 ** 40;

/**
 * The divisors of n in ascending order, in O(√n) (at most 2^20 trial divisions). n must be a whole number
 * from 1 to MAX_DIVISOR_INPUT; anything else gives [] (so hints built from it are empty, never a hang).
 */
export function divisorsOf(n: number): number[] {
  if (!Number.isInteger(n) || n < 1 || n > MAX_DIVISOR_INPUT) return [];
  const small: number[] = [];
  const large: number[] = [];
  for (let i = 1; i * i <= n; i++) {
    if (n % i !== 0) continue;
    small.push(i);
    if (i * i !== n) large.push(n / i);
  }
  return small.concat(large.reverse());
}

/** "1, 2, 4 or 8" */
export function listChoices(values: number[]): string {
  const shown = values.length > 12 ? [...values.slice(0, 11), '…'] : values;
  return shown.length === 1 ? String(shown[0]) : `${shown.slice(0, -1).join(', ')} or ${shown[shown.length - 1]}`;
}

/** Layout rules that depend only on the model and the parallel degrees; shared with the planner's search. */
export function layoutIssues(
  model: RunConfig['model'],
  parallel: Pick<RunConfig['parallel'], 'tp' | 'pp' | 'vpp' | 'zero' | 'sequenceParallel' | 'offloadOptimizer' | 'offloadParams'>,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const { tp, pp, vpp, zero } = parallel;
  const validTp = divisorsOf(model.heads).filter((t) => model.kvHeads % t === 0 && model.ffnHidden % t === 0);
  if (model.heads % tp !== 0) issues.push({ path: 'parallel.tp', message: `parallel.tp=${tp} must divide model.heads=${model.heads}; choose ${listChoices(validTp)}` });
  else if (model.kvHeads % tp !== 0) issues.push({ path: 'parallel.tp', message: `parallel.tp=${tp} must divide model.kvHeads=${model.kvHeads}; choose ${listChoices(validTp)}` });
  else if (model.ffnHidden % tp !== 0) issues.push({ path: 'parallel.tp', message: `parallel.tp=${tp} must divide model.ffnHidden=${model.ffnHidden}; choose ${listChoices(validTp)}` });
  if (model.layers % (pp * vpp) !== 0) {
    const what = vpp > 1 ? `parallel.pp·parallel.vpp=${pp}·${vpp}=${pp * vpp}` : `parallel.pp=${pp}`;
    issues.push({
      path: 'parallel.pp',
      message: `${what} must divide model.layers=${model.layers}; choose pp in ${listChoices(divisorsOf(model.layers).filter((p) => (model.layers / p) % vpp === 0))}`,
    });
  }
  if (vpp > 1 && pp === 1) issues.push({ path: 'parallel.vpp', message: `parallel.vpp=${vpp} needs pipeline parallelism (parallel.pp > 1); set vpp to 1 or pp to 2 or more` });
  if (zero >= 2 && pp > 1)
    issues.push({
      path: 'parallel.zero',
      message: `parallel.zero=${zero} cannot be combined with parallel.pp=${pp}: ZeRO-2/3 partition gradients that pipeline stages accumulate across micro-batches (DeepSpeed refuses it too); use zero 0 or 1 with pipelining, or pp=1`,
    });
  if (parallel.sequenceParallel && tp === 1)
    issues.push({ path: 'parallel.sequenceParallel', message: 'parallel.sequenceParallel needs parallel.tp > 1: it splits the sequence over the tensor-parallel group' });
  if (parallel.offloadOptimizer && zero === 0)
    issues.push({ path: 'parallel.offloadOptimizer', message: 'parallel.offloadOptimizer needs parallel.zero >= 1 (ZeRO-Offload moves the partitioned optimizer states)' });
  if (parallel.offloadParams && zero !== 3)
    issues.push({ path: 'parallel.offloadParams', message: `parallel.offloadParams needs parallel.zero=3 (only stage 3 partitions parameters); got zero=${zero}` });
  return issues;
}

export function crossFieldIssues(config: RunConfig, input: RunConfigInput): ConfigIssue[] {
  const { model, parallel, train, devices, cluster } = config;
  const issues: ConfigIssue[] = [];
  if (model.hidden % model.heads !== 0)
    issues.push({ path: 'model.heads', message: `model.heads=${model.heads} must divide model.hidden=${model.hidden}; choose ${listChoices(divisorsOf(model.hidden).filter((a) => a <= 256))}` });
  if (model.heads % model.kvHeads !== 0)
    issues.push({ path: 'model.kvHeads', message: `model.kvHeads=${model.kvHeads} must divide model.heads=${model.heads}; choose ${listChoices(divisorsOf(model.heads))}` });
  if (model.positionEmbedding === 'rope' && (model.hidden / model.heads) % 2 !== 0)
    issues.push({ path: 'model.positionEmbedding', message: `rotary positions need an even head size; hidden/heads = ${model.hidden / model.heads}` });
  issues.push(...layoutIssues(model, parallel));

  const world = parallel.dp * parallel.tp * parallel.pp;
  if (devices.count !== world) {
    issues.push({
      path: 'devices.count',
      message: `parallel.dp·tp·pp = ${parallel.dp}·${parallel.tp}·${parallel.pp} = ${world} must equal devices.count=${devices.count}; change the degrees or set devices.count to ${world}`,
    });
  }
  const gpus = cluster.nodes * cluster.gpusPerNode;
  if (input.cluster && gpus !== world) {
    issues.push({
      path: 'cluster',
      message: `parallel.dp·tp·pp = ${world} must equal the cluster's GPUs, cluster.nodes·gpusPerNode = ${cluster.nodes}·${cluster.gpusPerNode} = ${gpus}; change the degrees (or use \`scalelm plan\` to search layouts for this cluster)`,
    });
  }
  const perStep = train.microBatch * parallel.dp;
  if (train.globalBatch % perStep !== 0) {
    const lower = Math.max(perStep, Math.floor(train.globalBatch / perStep) * perStep);
    issues.push({
      path: 'train.globalBatch',
      message: `train.globalBatch=${train.globalBatch} must be divisible by train.microBatch·parallel.dp = ${train.microBatch}·${parallel.dp} = ${perStep}; choose ${lower} or ${lower + perStep}`,
    });
  }
  if (train.minLr > train.lr) issues.push({ path: 'train.minLr', message: `train.minLr=${train.minLr} must not exceed train.lr=${train.lr}` });
  if (config.data.source !== 'synthetic' && !config.data.path)
    issues.push({ path: 'data.path', message: `data.source="${config.data.source}" needs data.path (a local file, relative to the config)` });
  if (config.data.source === 'text' && model.vocab < 256) issues.push({ path: 'model.vocab', message: `data.source="text" uses byte-level tokens: model.vocab=${model.vocab} must be at least 256` });
  const host = config.monitor.host;
  if (!isLoopback(host) && !config.monitor.allowRemote)
    issues.push({
      path: 'monitor.host',
      message: `monitor.host="${host}" is not a loopback address; the metrics stream would be reachable from the network. Use 127.0.0.1, or set monitor.allowRemote=true if you mean it`,
    });
  if (config.launch) issues.push(...launchIssues(config.launch));
  return issues;
}

/** The `launch` section beyond its shape: a program to run, and a cwd that stays with the config. */
function launchIssues(launch: NonNullable<RunConfig['launch']>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  if (!launch.command[0]?.trim()) issues.push({ path: 'launch.command[0]', message: 'launch.command[0] must name the program to run (e.g. "torchrun" or "python"), got an empty string' });
  const bad = launch.command.findIndex((a) => a.includes('\0'));
  if (bad >= 0) issues.push({ path: `launch.command[${bad}]`, message: `launch.command[${bad}] contains a NUL character, which no argument can carry` });
  if (launch.cwd !== undefined) {
    // Pure (no node:path): an absolute path in any of its spellings is refused; the config's folder is the base.
    if (/^([/\\]|[A-Za-z]:)/.test(launch.cwd))
      issues.push({ path: 'launch.cwd', message: `launch.cwd="${launch.cwd}" must be relative to the config file (so the config works wherever the workspace is), e.g. "." or "scripts"` });
    else if (launch.cwd.includes('\0')) issues.push({ path: 'launch.cwd', message: 'launch.cwd contains a NUL character' });
  }
  for (const [k, v] of Object.entries(launch.env))
    if (v.includes('\0')) issues.push({ path: `launch.env.${k}`, message: `launch.env.${k} contains a NUL character, which no environment value can carry` });
  return issues;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}
