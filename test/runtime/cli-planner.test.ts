import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
      assert.match(scalelm('estimate', LLAMA70, '--convention', 'nope').err, /--convention must be one of scalelm, runtime, torch, zero-paper/);
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
    it("says where the file's own layout ranks and how far it is from #1, and shows the sequence length and global batch it assumed", () => {
      const r = scalelm('plan', LLAMA70, '--top', '3');
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^sequence length 4096 \(the config\) · global batch 512 sequences = 2,097,152 tokens per step \(the config\)$/m);
      assert.match(r.out, /^your layout dp4·tp8·pp4 v5 · ZeRO-1 · mb 1 · recompute selective · SP ranks #\d+ of \d+: [\d,]+ tokens\/s, [\d.]+ GiB\/GPU — (\d+% slower than #1|.*tie)/m);
      const o = json('plan', LLAMA70, '--top', '3');
      assert.equal(o.current.layout.tp, 8);
      assert.ok(o.current.rank >= 1 && o.current.vsBest > 0 && o.current.vsBest <= 1);
      const hf = scalelm('plan', HF8B, '--gpus', '16', '--top', '1');
      assert.match(
        hf.out,
        /sequence length 8192 \(the model config's max_position_embeddings; set --seq-len\) · global batch \d+ sequences = [\d,]+ tokens per step \(default ≈1M tokens; set --global-batch\)/,
      );
      assert.doesNotMatch(hf.out, /your layout/, 'a config.json has no layout of its own');
    });

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
        // Throughput falls down the list, except within a tie (the model's error), where headroom decides.
        if (i > 0)
          assert.ok(
            l.time.tokensPerSec <= o.layouts[i - 1].time.tokensPerSec ||
              (l.tiesFirst && o.layouts[i - 1].perDevice.total <= l.perDevice.total) ||
              l.time.tokensPerSec <= o.layouts[i - 1].time.tokensPerSec / (1 - o.tieTolerance),
          );
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
      // The LR schedule (warm-up, then cosine to minLr = lr/10), checkpointing, and what it cannot express.
      assert.deepEqual(cfg.scheduler, { type: 'WarmupCosineLR', params: { total_num_steps: 500000, warmup_min_ratio: 0, warmup_num_steps: 2000, cos_min_ratio: 0.1 } });
      assert.equal(typeof cfg.activation_checkpointing, 'object');
      assert.match(r.err, /cannot express: interleaved pipeline stages \(vpp=5\)/);
      assert.match(r.err, /cannot express: sequence parallelism/);
      assert.match(r.err, /cannot express: selective recompute/);
      assert.match(r.err, /batch arithmetic for 128 GPUs: train_batch_size 512 = micro 1 × accumulation 128 × dp 4/);
    });

    it('--write puts the export next to the config under the names the editor uses; torchrun points at that DeepSpeed file', () => {
      const cfg = write('job.scalelm.json', {
        model: { preset: 'llama-2-7b' },
        train: { globalBatch: 64, steps: 1000, warmupSteps: 10 },
        parallel: { dp: 16, zero: 3 },
        cluster: { gpu: 'A100-80GB', gpusPerNode: 8, nodes: 2 },
      });
      for (const [to, name] of [
        ['deepspeed', 'job.ds_config.json'],
        ['torchrun', 'job.torchrun.sh'],
      ] as const) {
        const r = scalelm('export', cfg, '--to', to, '--write');
        assert.equal(r.code, 0, r.err);
        assert.equal(r.out.trim(), join(dir, name));
      }
      assert.equal(JSON.parse(readFileSync(join(dir, 'job.ds_config.json'), 'utf8')).zero_optimization.stage, 3);
      assert.match(readFileSync(join(dir, 'job.torchrun.sh'), 'utf8'), /--deepspeed_config job\.ds_config\.json/);
    });

    it('--to megatron writes a runnable script that checks its variables first; --to torchrun a launch command', () => {
      const m = scalelm('export', LLAMA70, '--to', 'megatron');
      assert.equal(m.code, 0, m.err);
      assert.match(m.out, /^#!\/usr\/bin\/env bash\nset -euo pipefail|^#!\/usr\/bin\/env bash\n#.*\nset -euo pipefail/);
      assert.match(m.out, /--tensor-model-parallel-size 8 \\\n {2}--pipeline-model-parallel-size 4 \\\n {2}--num-layers-per-virtual-pipeline-stage 4 \\/);
      assert.match(m.out, /--sequence-parallel/);
      for (const v of ['MEGATRON_LM', 'DATA_PATH', 'TOKENIZER_MODEL', 'CHECKPOINT_DIR', 'MASTER_ADDR', 'NODE_RANK']) assert.match(m.out, new RegExp(`^: "\\$\\{${v}:\\?set ${v} to `, 'm'));
      const script = write('megatron.sh', null);
      writeFileSync(script, m.out);
      assert.equal(spawnSync('bash', ['-n', script]).status, 0, 'bash parses it');
      // Run without its variables: bash stops at the first check, names it, and launches nothing.
      const run = spawnSync('bash', [script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
      assert.notEqual(run.status, 0);
      assert.match(run.stderr, /MEGATRON_LM: set MEGATRON_LM to the Megatron-LM checkout/);
      const partial = spawnSync('bash', [script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', MEGATRON_LM: '/x' } });
      assert.match(partial.stderr, /DATA_PATH: set DATA_PATH to the preprocessed data prefix/);
      const t = scalelm('export', LLAMA70, '--to', 'torchrun');
      assert.match(t.out, /torchrun --nnodes 16 --nproc-per-node 8/);
    });

    describe('--to slurm', () => {
      // 4 nodes × 8 GPUs, dp16·tp2: the script must ask Slurm for exactly that and start 8 ranks per node.
      const job = {
        name: 'big job',
        model: { preset: 'llama-2-7b' },
        train: { globalBatch: 64, steps: 100 },
        parallel: { dp: 16, tp: 2, zero: 1 },
        cluster: { gpu: 'H100-SXM', gpusPerNode: 8, nodes: 4 },
      };
      const bashWith = (script: string, env: Record<string, string>) => spawnSync('bash', [script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } });

      it("an sbatch script that agrees with the config, parses, and checks Slurm's variables before anything runs", () => {
        const cfg = write('job.scalelm.json', job);
        const r = scalelm('export', cfg, '--to', 'slurm', '--write');
        assert.equal(r.code, 0, r.err);
        const file = r.out.trim();
        assert.equal(file, join(dir, 'job.slurm.sh'));
        const text = readFileSync(file, 'utf8');
        assert.equal(spawnSync('bash', ['-n', file]).status, 0, 'bash parses it');
        for (const line of ['#SBATCH --job-name=big-job', '#SBATCH --nodes=4', '#SBATCH --ntasks-per-node=1', '#SBATCH --gpus-per-node=8', '#SBATCH --cpus-per-task=64'])
          assert.ok(text.split('\n').includes(line), line);
        assert.match(
          text,
          /exec "\$SCALELM" launch --name big-job --run-dir "\$SCALELM_JOB_DIR\/run" \\\n {4}--nnodes "\$SLURM_NNODES" --node-rank "\$SLURM_NODEID" --master "\$MASTER_ADDR:\$SCALELM_PORT" -- \\\n {4}torchrun --nnodes "\$SLURM_NNODES" --node-rank "\$SLURM_NODEID" --nproc-per-node 8 \\/,
        );
        assert.match(text, /-m scalelm\.train --args "\$SCALELM_ARGS"\n\}/);
        assert.match(text, /^MASTER_NODE=\$\(scontrol show hostnames "\$SLURM_JOB_NODELIST" \| head -n 1\)$/m);
        // The trainer's args hold the config as resolved (its layout), written by the job.
        const args = JSON.parse(`{"device": "cuda",\n${/<<'SCALELM_ARGS_JSON'\n([\s\S]*?)\nSCALELM_ARGS_JSON/.exec(text)![1]}`) as {
          config: { parallel: { dp: number; tp: number }; cluster: { nodes: number } };
          baseDir: string;
        };
        assert.deepEqual([args.config.parallel.dp, args.config.parallel.tp, args.config.cluster.nodes, args.baseDir], [16, 2, 4, dir]);
        // The token is made in the job and only ever exported: never a command's argument.
        const tokenLines = text.split('\n').filter((l) => l.includes('SCALELM_RUN_TOKEN') && !l.startsWith('#'));
        assert.equal(tokenLines.length, 3, tokenLines.join('\n'));
        assert.match(tokenLines[0]!, /^SCALELM_RUN_TOKEN=\$\(od -vAn -N32 -tx1 \/dev\/urandom \| tr -d ' \\n'\)$/);
        assert.match(tokenLines[1]!, /^\[ \$\{#SCALELM_RUN_TOKEN\} -eq 64 \] \|\| /);
        assert.equal(tokenLines[2], 'export SCALELM_RUN_TOKEN');
        assert.doesNotMatch(text, /--token/);
        // Outside Slurm it stops at the first check and starts nothing; on a job of the wrong size it says so.
        const outside = bashWith(file, {});
        assert.notEqual(outside.status, 0);
        assert.match(outside.stderr, /SLURM_JOB_ID: submit this script with sbatch/);
        const wrong = bashWith(file, { SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'gpu[1-3]', SLURM_NNODES: '3' });
        assert.notEqual(wrong.status, 0);
        assert.match(wrong.stderr, /laid out for 4 nodes × 8 GPUs \(dp·tp·pp = 32\) but the job has 3 nodes/);
        const noCli = bashWith(file, { SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'gpu[1-4]', SLURM_NNODES: '4', SCALELM: '/nonexistent/scalelm' });
        assert.match(noCli.stderr, /\/nonexistent\/scalelm \(the ScaleLM CLI\) is not on PATH/);
        assert.ok(!existsSync(join(dir, 'runs')), 'nothing was made');
      });

      it('--entry runs your own script under torchrun instead, quoted as given', () => {
        const cfg = write('own.scalelm.json', job);
        const r = scalelm('export', cfg, '--to', 'slurm', '--entry', `train.py --lr 3e-4 --tag 'a b' "it's"`);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /--master-addr "\$MASTER_ADDR" --master-port "\$MASTER_PORT" --max-restarts 0 \\\n {4}train\.py --lr 3e-4 --tag 'a b' 'it'\\''s'\n\}/);
        assert.doesNotMatch(r.out, /SCALELM_ARGS_JSON|scalelm\.train/);
        const file = join(dir, 'own.sh');
        writeFileSync(file, r.out);
        assert.equal(spawnSync('bash', ['-n', file]).status, 0, 'bash parses it');
        // Pipelines run with pp > 1 need a script of the user's; the built-in trainer refuses them.
        assert.equal(scalelm('export', LLAMA70, '--to', 'slurm', '--entry', 'pretrain.py').code, 0);
        const builtIn = scalelm('export', LLAMA70, '--to', 'slurm');
        assert.equal(builtIn.code, 1);
        assert.match(builtIn.err, /the built-in torch trainer has no pipeline parallelism \(pp=4, vpp=5\).*--entry/);
        assert.match(builtIn.err, /the built-in torch trainer has no sequence parallelism/);
      });

      it('one node is a one-machine launch (no multi-node flags), and says where its shape came from', () => {
        const r = scalelm('export', 'examples/tiny-parallel.scalelm.json', '--to', 'slurm', '--set', 'parallel.dp=2', '--set', 'devices.count=2');
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=1\n#SBATCH --gpus-per-node=2\n/);
        assert.match(r.out, /launch --name tiny-parallel --run-dir "\$SCALELM_JOB_DIR\/run" \\\n {4}-- \\\n {4}torchrun --nnodes "\$SLURM_NNODES" --node-rank "\$SLURM_NODEID" --nproc-per-node 2 \\/);
        assert.match(r.err, /no "cluster" section: the script asks for 1 node × 2 GPUs, from its layout/);
        const file = join(dir, 'one.sh');
        writeFileSync(file, r.out);
        assert.equal(spawnSync('bash', ['-n', file]).status, 0, 'bash parses it');
      });

      it('refuses an entry that is a launcher, not one command, or for another target', () => {
        const cfg = write('bad.scalelm.json', job);
        // exit 2: an --entry that cannot be read as words; 1: words the export cannot use.
        for (const [entry, why, code] of [
          ['torchrun train.py', /--entry is what torchrun runs on each node .*not a launcher.*got "torchrun"/, 1],
          ['   ', /--entry is empty/, 1],
          ['train.py; rm -rf /', /";" is not allowed outside quotes/, 2],
          ['train.py --x "$HOME"', /no \$ or ` expansion/, 2],
          ["train.py 'open", /unclosed ' in the entry/, 2],
        ] as const) {
          const r = scalelm('export', cfg, '--to', 'slurm', '--entry', entry);
          assert.equal(r.code, code, entry);
          assert.match(r.err, why, entry);
          assert.equal(r.out, '');
        }
        assert.match(scalelm('export', cfg, '--to', 'torchrun', '--entry', 'train.py').err, /--entry is for --to slurm/);
      });
    });

    it("refuses a target that lacks the layout's features, and an unknown target", () => {
      const r = scalelm('export', LLAMA70, '--to', 'megatron', '--pp', '1', '--vpp', '1', '--dp', '16', '--zero', '3');
      assert.equal(r.code, 1);
      assert.match(r.err, /Megatron-LM has no ZeRO-3/);
      assert.match(scalelm('export', LLAMA70, '--to', 'kubernetes').err, /--to must be one of deepspeed, megatron, torchrun, slurm/);
      assert.match(scalelm('export', LLAMA70).err, /--to is required/);
    });
  });
});
