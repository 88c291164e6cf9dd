// Exports for DeepSpeed, Megatron-LM, torchrun and Slurm: consistent, and checked.
import * as assert from 'node:assert/strict';
import { MODEL_PRESETS } from '../../runtime/config/presets';
import { checkDeepspeedConfig, checkMegatronArguments, checkSlurmScript, checkTorchrunCommand, deepspeedConfig, exportLayout, megatronArguments, shellWords } from '../../runtime/planner/export';
import { planInputFor, type PlanInputOptions } from '../../runtime/planner/input';
import { layoutOf } from '../../runtime/planner/memory';
import type { ExportResult } from '../../runtime/planner/export';

const llama = { ...MODEL_PRESETS['llama-2-70b'], name: 'llama-2-70b' };
const input = (o: PlanInputOptions) => planInputFor(llama, { gpusPerNode: 8, flashAttention: true, ...o });
const text = (r: ExportResult) => {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r.text;
};

describe('planner: exports', () => {
  describe('DeepSpeed config JSON', () => {
    it('batch sizes satisfy train_batch_size = micro · accumulation · dp', () => {
      const i = input({ dp: 16, zero: 3, microBatch: 2, globalBatch: 512 });
      const cfg = JSON.parse(text(exportLayout(i, layoutOf(i), 'deepspeed'))) as Record<string, number>;
      assert.equal(cfg.train_batch_size, 512);
      assert.equal(cfg.train_micro_batch_size_per_gpu, 2);
      assert.equal(cfg.gradient_accumulation_steps, 16);
      assert.equal(cfg.train_batch_size, cfg.train_micro_batch_size_per_gpu! * cfg.gradient_accumulation_steps! * 16);
    });

    it('zero_optimization carries the stage, buckets, ZeRO-3 limits and offload; precision and optimizer follow the run', () => {
      const i = input({ dp: 16, zero: 3, offloadOptimizer: true, offloadParams: true, globalBatch: 16 });
      const cfg = deepspeedConfig(i, layoutOf(i)) as Record<string, any>;
      assert.equal(cfg.zero_optimization.stage, 3);
      assert.deepEqual(cfg.zero_optimization.offload_optimizer, { device: 'cpu', pin_memory: true });
      assert.deepEqual(cfg.zero_optimization.offload_param, { device: 'cpu', pin_memory: true });
      assert.equal(cfg.zero_optimization.stage3_max_live_parameters, 1e9);
      assert.equal(cfg.zero_optimization.reduce_bucket_size, 5e8);
      assert.deepEqual(cfg.bf16, { enabled: true });
      assert.equal(cfg.optimizer.type, 'AdamW');
      const fp16 = input({ dp: 16, zero: 2, precision: 'fp16-mixed', globalBatch: 16 });
      const f = deepspeedConfig(fp16, layoutOf(fp16), { overheads: { reduceBucketElements: 2e8 } }) as Record<string, any>;
      assert.equal(f.fp16.enabled, true);
      assert.equal(f.bf16, undefined);
      assert.equal(f.zero_optimization.allgather_bucket_size, 5e8);
      assert.equal(f.zero_optimization.reduce_bucket_size, 2e8);
      assert.equal(f.zero_optimization.offload_optimizer, undefined);
    });

    it('the consistency check catches a tampered config', () => {
      const i = input({ dp: 16, zero: 2, globalBatch: 64 });
      const cfg = deepspeedConfig(i, layoutOf(i));
      assert.deepEqual(checkDeepspeedConfig(cfg, 16), []);
      assert.match(checkDeepspeedConfig({ ...cfg, gradient_accumulation_steps: 3 }, 16)[0]!.message, /train_batch_size=64 must equal .* = 1·3·16 = 48/);
      assert.match(checkDeepspeedConfig({ ...cfg, zero_optimization: { stage: 2, offload_param: { device: 'cpu' } } }, 16)[0]!.message, /offload_param needs ZeRO stage 3/);
    });
  });

  describe('Megatron-LM arguments', () => {
    it("names the layout, the model and the training with Megatron's flags", () => {
      const i = input({ dp: 4, tp: 8, pp: 4, vpp: 5, zero: 1, sequenceParallel: true, recompute: 'selective', globalBatch: 512 });
      const args = text(exportLayout(i, layoutOf(i), 'megatron'));
      for (const f of [
        '--tensor-model-parallel-size 8',
        '--pipeline-model-parallel-size 4',
        '--num-layers-per-virtual-pipeline-stage 4',
        '--micro-batch-size 1',
        '--global-batch-size 512',
        '--sequence-parallel',
        '--recompute-granularity selective',
        '--use-distributed-optimizer',
        '--use-flash-attn',
        '--bf16',
        '--num-layers 80',
        '--hidden-size 8192',
        '--num-attention-heads 64',
        '--group-query-attention',
        '--num-query-groups 8',
        '--ffn-hidden-size 28672',
        '--swiglu',
        '--normalization RMSNorm',
        '--position-embedding-type rope',
        '--untie-embeddings-and-output-weights',
        '--disable-bias-linear',
      ]) {
        assert.ok(args.includes(f), `missing ${f} in ${args}`);
      }
      const full = input({ dp: 64, recompute: 'full', globalBatch: 64 });
      assert.match(megatronArguments(full, layoutOf(full)).join(' '), /--recompute-granularity full --recompute-method uniform --recompute-num-layers 1/);
    });

    it('refuses what Megatron-LM does not have: ZeRO-2/3 and offload', () => {
      const i = input({ dp: 64, zero: 3, globalBatch: 64 });
      const r = exportLayout(i, layoutOf(i), 'megatron');
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.issues[0]!.message : '', /Megatron-LM has no ZeRO-3 .*--to deepspeed/);
    });

    it('the consistency check catches a global batch that micro · dp does not divide', () => {
      const i = input({ dp: 4, tp: 8, pp: 2, globalBatch: 64 });
      const args = megatronArguments(i, layoutOf(i));
      assert.deepEqual(checkMegatronArguments(args, 64, 80), []);
      const bad = args.map((a, k) => (args[k - 1] === '--global-batch-size' ? '66' : a));
      assert.match(checkMegatronArguments(bad, 64, 80)[0]!.message, /--global-batch-size 66 must be a multiple of --micro-batch-size · dp = 1·4 = 4/);
      assert.match(checkMegatronArguments(['--tensor-model-parallel-size', '3'], 64, 80)[0]!.message, /must divide the world size 64/);
    });
  });

  describe('torchrun command', () => {
    it('launches Megatron-LM on every node with world = nnodes · nproc-per-node = dp·tp·pp', () => {
      const i = input({ dp: 4, tp: 8, pp: 4, zero: 1, sequenceParallel: true, globalBatch: 512 });
      const cmd = text(exportLayout(i, layoutOf(i), 'torchrun'));
      assert.match(cmd, /torchrun --nnodes 16 --nproc-per-node 8 --node-rank "\$NODE_RANK" --master-addr "\$MASTER_ADDR" --master-port 29500/);
      assert.match(cmd, /pretrain_gpt\.py/);
      assert.match(cmd, /--tensor-model-parallel-size 8 \\/);
      assert.match(cmd, /CUDA_DEVICE_MAX_CONNECTIONS=1/);
    });

    it('launches the DeepSpeed script with its config when the layout needs DeepSpeed', () => {
      const i = input({ dp: 16, zero: 3, globalBatch: 16 });
      const r = exportLayout(i, layoutOf(i), 'torchrun', { script: 'my train.py' });
      assert.match(text(r), /'my train\.py' --deepspeed --deepspeed_config ds_config\.json/);
      assert.ok(r.ok && r.notes.some((n) => n.includes('--to deepspeed')));
    });

    it('the consistency check catches a world size that is not dp·tp·pp', () => {
      const i = input({ dp: 4, tp: 8, pp: 2, globalBatch: 64 });
      const cmd = text(exportLayout(i, layoutOf(i), 'torchrun'));
      assert.deepEqual(checkTorchrunCommand(cmd, layoutOf(i)), []);
      assert.match(checkTorchrunCommand(cmd.replace('--nnodes 8', '--nnodes 4'), layoutOf(i))[0]!.message, /4·8 = 32 must equal dp·tp·pp = 64/);
    });
  });

  describe('Slurm script', () => {
    it('the consistency check catches a node count, GPUs per node or ranks per node that disagree', () => {
      const i = input({ dp: 8, tp: 8, pp: 1, globalBatch: 64 });
      const script = text(exportLayout(i, layoutOf(i), 'slurm', { slurm: { name: 'j', entry: ['train.py'] } }));
      assert.deepEqual(checkSlurmScript(script, layoutOf(i)), []);
      assert.match(
        checkSlurmScript(script.replace('#SBATCH --nodes=8', '#SBATCH --nodes=4'), layoutOf(i))
          .map((x) => x.message)
          .join('; '),
        /checks for 8 nodes but asks for 4.*4·8 = 32 must equal dp·tp·pp = 64/,
      );
      assert.match(checkSlurmScript(script.replace('--nproc-per-node 8', '--nproc-per-node 4'), layoutOf(i))[0]!.message, /--nproc-per-node 4 must be the 8 GPUs per node/);
      assert.match(checkSlurmScript(script.replace('--ntasks-per-node=1', '--ntasks-per-node=8'), layoutOf(i))[0]!.message, /one scalelm launch per node/);
    });

    it("needs something to train: the built-in trainer's config or an entry", () => {
      const i = input({ dp: 8, tp: 8, pp: 1, globalBatch: 64 });
      const r = exportLayout(i, layoutOf(i), 'slurm', { slurm: { name: 'j' } });
      assert.ok(!r.ok && /needs what to train/.test(r.issues[0]!.message));
    });

    it('reads an entry as a shell would split it, without expansions or operators', () => {
      assert.deepEqual(shellWords(`train.py  --a 'x y' "q\\"z" b\\ c ''`), ['train.py', '--a', 'x y', 'q"z', 'b c', '']);
      assert.deepEqual(shellWords('-m pkg.train --lr=3e-4'), ['-m', 'pkg.train', '--lr=3e-4']);
      for (const bad of ['a | b', 'a && b', 'a `b`', 'a $(b)', 'a "x', 'a\nb']) assert.throws(() => shellWords(bad), Error, bad);
    });
  });

  it('an impossible layout exports nothing, with the reason', () => {
    const i = input({ tp: 3, dp: 1 });
    const r = exportLayout(i, layoutOf(i), 'deepspeed');
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.issues[0]!.message : '', /parallel\.tp=3 must divide model\.heads=64/);
  });
});
