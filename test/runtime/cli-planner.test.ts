import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..', '..');
const cli = join(root, 'dist', 'cli.js');

function scalelm(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
function json(...args: string[]) {
  const r = scalelm(...args, '--json');
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as Record<string, any>;
}

const LLAMA70 = 'examples/llama-2-70b-h100.scalelm.json';
const HF8B = 'examples/hf/llama-3-8b.config.json';

describe('scalelm estimate / plan / export (the built CLI, as a child process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scalelm-planner-'));
  const write = (name: string, value: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify(value));
    return p;
  };

  describe('estimate', () => {
    it('--json prints one object with params, perDevice, host and time; bytes as integers', () => {
      const o = json('estimate', LLAMA70);
      assert.deepEqual(Object.keys(o.params), ['total', 'perDevice']);
      assert.deepEqual(Object.keys(o.perDevice), ['params', 'grads', 'optimizer', 'activations', 'buffers', 'overhead', 'total']);
      for (const v of [...Object.values(o.params), ...Object.values(o.perDevice), o.host.perNode]) assert.ok(Number.isInteger(v), String(v));
      assert.equal(o.params.total, 68_976_648_192);
      const d = o.perDevice;
      assert.ok(Math.abs(d.params + d.grads + d.optimizer + d.activations + d.buffers + d.overhead - d.total) <= 6);
      assert.ok(o.time.stepMs > 0 && o.time.tokensPerSec > 0 && o.time.mfu > 0 && o.time.mfu < 1);
      assert.equal(o.fits, true);
      // Which measured figure each number is: total = nvidia-smi's device memory, beside PyTorch's allocated and reserved.
      assert.equal(o.totalIs, 'device');
      assert.equal(o.figures.device, d.total);
      assert.ok(o.figures.allocated < o.figures.reserved && o.figures.reserved < o.figures.device);
      assert.deepEqual(Object.keys(o.figures.allocatedBy), ['params', 'grads', 'optimizer', 'activations', 'buffers']);
    });

    it('prints a readable table in GiB without --json', () => {
      const r = scalelm('estimate', LLAMA70);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /memory per GPU +GiB/);
      assert.match(r.out, /^ {2}params +\d+\.\d\d$/m);
      assert.match(r.out, /^ {2}total +\d+\.\d\d {2}of \d+\.\d\d usable .* — fits$/m);
      assert.match(r.out, /tokens\/s · MFU \d+\.\d%/);
      assert.match(r.out, /as measured: allocated \d+\.\d\d \(torch max_memory_allocated.*reserved \d+\.\d\d \(max_memory_reserved.*device \d+\.\d\d \(nvidia-smi/);
    });

    it('reads a HuggingFace config.json, with the layout and cluster from flags', () => {
      const o = json('estimate', HF8B, '--gpus', '8', '--tp', '2', '--zero', '1', '--seq-len', '8192', '--recompute', 'selective', '--flash-attention', '--sequence-parallel');
      assert.equal(o.params.total, 8_030_261_248);
      assert.deepEqual([o.layout.dp, o.layout.tp, o.layout.zero], [4, 2, 1]);
      assert.equal(o.fits, true);
      const text = scalelm('estimate', HF8B, '--gpus', '8');
      assert.match(text.out, /note: read .* as a HuggingFace llama config/);
      assert.match(text.out, /note: precision bf16-mixed assumed/);
    });

    it('a flag overrides the file, and --set overrides any key', () => {
      const base = json('estimate', LLAMA70);
      const tp2 = json('estimate', LLAMA70, '--tp', '2', '--dp', '16');
      assert.ok(tp2.perDevice.params > base.perDevice.params);
      const z0 = json('estimate', LLAMA70, '--set', 'parallel.zero=0');
      assert.ok(z0.perDevice.optimizer > base.perDevice.optimizer);
      const fp32 = json('estimate', LLAMA70, '--precision', 'fp32');
      assert.equal(fp32.perDevice.params, 2 * base.perDevice.params);
    });

    it('--convention reproduces an anchor in its own terms and marks what it does not cover', () => {
      const zp = json('estimate', LLAMA70, '--convention', 'zero-paper');
      assert.equal(zp.convention, 'zero-paper');
      assert.deepEqual(zp.notCovered, ['activations', 'buffers', 'overhead', 'host']);
      assert.equal(zp.perDevice.activations, 0);
      const text = scalelm('estimate', LLAMA70, '--convention', 'megatron');
      assert.equal(text.code, 0, text.err);
      assert.match(text.out, /buffers +— {2}\(not in this convention\)/);
    });

    it('refuses a layout that cannot exist with the reason, exit 1, no numbers', () => {
      const r = scalelm('estimate', LLAMA70, '--tp', '3');
      assert.equal(r.code, 1);
      assert.match(r.err, /parallel\.tp=3 must divide model\.heads=64/);
      assert.equal(r.out, '');
      const conv = scalelm('estimate', LLAMA70, '--convention', 'deepspeed');
      assert.equal(conv.code, 1);
      assert.match(conv.err, /cover ZeRO-2 and ZeRO-3 only/);
    });

    it('says which flag is wrong', () => {
      assert.match(scalelm('estimate', LLAMA70, '--convention', 'nope').err, /--convention must be one of scalelm, runtime, zero-paper/);
      assert.match(scalelm('estimate', LLAMA70, '--recompute', 'some').err, /--recompute must be one of none, selective, full/);
      assert.match(scalelm('estimate', HF8B, '--gpus', '12').err, /--gpus 12 is not a whole number of nodes of 8 GPUs/);
      assert.equal(scalelm('estimate', LLAMA70, '--tpp', '2').code, 2);
    });

    it('estimates the runtime convention on a local fp32 config', () => {
      const cfg = write('gpt2.scalelm.json', { model: { preset: 'gpt2' }, train: { microBatch: 2 }, parallel: { dp: 2, zero: 1 } });
      const o = json('estimate', cfg, '--convention', 'runtime');
      assert.equal(o.perDevice.params, 4 * 124_439_808);
      // The runtime's only overhead term: the loss's transient logits (micro-batch 2 × 1024 tokens × vocab).
      assert.equal(o.perDevice.overhead, 4 * 2 * 1024 * 50257);
    });
  });

  describe('plan', () => {
    it('--json lists the ranked layouts with memory, time and explanation', () => {
      const o = json('plan', LLAMA70, '--top', '3');
      assert.equal(o.ok, true);
      assert.equal(o.layouts.length, 3);
      for (let i = 0; i < 3; i++) {
        const l = o.layouts[i];
        assert.equal(l.rank, i + 1);
        assert.equal(l.layout.dp * l.layout.tp * l.layout.pp, 128);
        assert.ok(l.perDevice.total <= o.usable);
        assert.ok(Number.isInteger(l.perDevice.total));
        assert.equal(typeof l.explanation, 'string');
        if (i > 0) assert.ok(l.time.tokensPerSec <= o.layouts[i - 1].time.tokensPerSec);
      }
    });

    it('plans a HuggingFace config for a cluster given by flags; layout flags fix that dimension', () => {
      const o = json('plan', HF8B, '--gpus', '64', '--tp', '2', '--flash-attention', '--top', '5');
      assert.ok(o.layouts.every((l: any) => l.layout.tp === 2));
      assert.equal(o.globalBatch, 128, 'about 1M tokens of 8192');
      const text = scalelm('plan', HF8B, '--gpus', '64', '--top', '2');
      assert.equal(text.code, 0, text.err);
      assert.match(text.out, /searched [\d,]+ layouts in \d+\.\d\d s: [\d,]+ fit/);
      assert.match(text.out, /^ {2}1\. dp\d+·tp\d+·pp\d+/m);
      assert.match(text.out, /default ≈1M tokens; set --global-batch/);
    });

    it('when nothing fits, exits 1 and says what binds', () => {
      const r = scalelm('plan', LLAMA70, '--gpus', '8', '--gpu', 'L4', '--host-mem', '64GiB');
      assert.equal(r.code, 1);
      assert.match(r.err, /no layout fits/);
    });
  });

  describe('export', () => {
    it('--to deepspeed prints a DeepSpeed config whose batch sizes agree', () => {
      const r = scalelm('export', LLAMA70, '--to', 'deepspeed');
      assert.equal(r.code, 0, r.err);
      const cfg = JSON.parse(r.out);
      assert.equal(cfg.train_batch_size, cfg.train_micro_batch_size_per_gpu * cfg.gradient_accumulation_steps * 4);
      assert.equal(cfg.zero_optimization.stage, 1);
      assert.match(r.err, /tp=8 and pp=4 are not DeepSpeed config keys/);
    });

    it('--to megatron prints pretrain_gpt.py arguments; --to torchrun a launch command', () => {
      const m = scalelm('export', LLAMA70, '--to', 'megatron');
      assert.equal(m.code, 0, m.err);
      assert.match(m.out, /--tensor-model-parallel-size 8 --pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 4/);
      assert.match(m.out, /--sequence-parallel/);
      const t = scalelm('export', LLAMA70, '--to', 'torchrun');
      assert.match(t.out, /torchrun --nnodes 16 --nproc-per-node 8/);
    });

    it('refuses a target that lacks the layout\'s features, and an unknown target', () => {
      const r = scalelm('export', LLAMA70, '--to', 'megatron', '--pp', '1', '--vpp', '1', '--dp', '16', '--zero', '3');
      assert.equal(r.code, 1);
      assert.match(r.err, /Megatron-LM has no ZeRO-3/);
      assert.match(scalelm('export', LLAMA70, '--to', 'slurm').err, /--to must be one of deepspeed, megatron, torchrun/);
      assert.match(scalelm('export', LLAMA70).err, /--to is required/);
    });
  });
});
