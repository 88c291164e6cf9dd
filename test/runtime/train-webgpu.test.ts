import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES, REPO, tempDir } from './train/fixtures';

// The WebGPU code path (portable kernels, asynchronous reads only) on Dawn. Without a GPU it runs on Dawn's
// OpenGL backend over Mesa's llvmpipe (Debian: libegl1, libegl-mesa0, libgl1-mesa-dri), with the optional
// npm packages webgpu and @tensorflow/tfjs-backend-webgpu. Each backend is per process, so both runs go
// through the CLI; the losses must agree with wasm's.
describe('train: the webgpu backend (Dawn) trains to the same losses as wasm', function () {
  this.timeout(300_000);

  it('three steps of a small GPT-2, step by step', function () {
    const dir = tempDir();
    try {
      const cfg = join(dir.path, 'small.scalelm.json');
      writeFileSync(
        cfg,
        JSON.stringify({
          name: 'small',
          model: { layers: 2, hidden: 32, heads: 2, vocab: 256, seqLen: 16 },
          train: { microBatch: 4, globalBatch: 8, steps: 3, warmupSteps: 1, seed: 5 },
          devices: { memory: '512MiB' },
          data: { source: 'text', path: join(EXAMPLES, 'data', 'tiny.txt') },
        }),
      );
      const env = {
        ...process.env,
        EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless',
        SCALELM_DAWN_OPTIONS: process.env.SCALELM_DAWN_OPTIONS ?? (process.env.SCALELM_WEBGPU_NATIVE ? '' : 'backend=opengl'),
      };
      const run = (backend: string): ReturnType<typeof spawnSync> =>
        spawnSync(process.execPath, [join(REPO, 'out', 'runtime', 'cli.js'), 'train', cfg, '--set', `devices.backend=${backend}`, '--run-dir', join(dir.path, backend)], {
          encoding: 'utf8',
          env,
          timeout: 280_000,
        });
      const gpu = run('webgpu');
      if (gpu.status !== 0 && /devices\.backend="webgpu" but /.test(String(gpu.stderr))) {
        console.log(`      NOTICE: skipping the WebGPU test: ${String(gpu.stderr).trim().split('\n').pop()}`);
        this.skip();
      }
      assert.equal(gpu.status, 0, String(gpu.stderr));
      assert.match(String(gpu.stdout), /backend: webgpu \(Dawn/);
      const cpu = run('wasm');
      assert.equal(cpu.status, 0, String(cpu.stderr));
      const losses = (b: string): number[] =>
        readFileSync(join(dir.path, b, 'metrics.jsonl'), 'utf8')
          .split('\n')
          .filter((l) => l.includes('"type":"step"'))
          .map((l) => (JSON.parse(l) as { loss: number }).loss);
      const [g, c] = [losses('webgpu'), losses('wasm')];
      assert.equal(g.length, 3);
      g.forEach((x, i) => assert.ok(Math.abs(x - c[i]!) / c[i]! < 1e-5, `step ${i + 1}: webgpu ${x} vs wasm ${c[i]}`));
    } finally {
      dir.remove();
    }
  });
});
