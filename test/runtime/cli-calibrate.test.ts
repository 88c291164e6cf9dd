// `scalelm calibrate RUN_DIR`: a recorded GPU run made from the planner's own formulas with known constants
// (efficiency 0.55, CUDA context 1.7 GiB, allocator slack 8%); the fit must recover them, and the profile
// must change later estimates (and say so). A CPU run is refused: there is no GPU model to calibrate.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Message } from '../../common/protocol';
import { calibrateRun, measure, offersCalibration } from '../../runtime/commands/calibrate';
import { parseConfig } from '../../runtime/config/parse';
import { calibrate } from '../../runtime/planner/calibrate';
import { estimateMemory, layoutOf } from '../../runtime/planner/memory';
import { commOf, estimateTime } from '../../runtime/planner/time';
import { overheadsOf } from '../../runtime/planner/memory';

const root = join(__dirname, '..', '..', '..');
const cli = join(root, 'dist', 'cli.js');
const scalelm = (...args: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const GiB = 2 ** 30;

describe('scalelm calibrate (the built CLI, as a child process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scalelm-calibrate-'));
  const rawConfig = {
    name: 'llama-7b-8xh100',
    model: { preset: 'llama-2-7b' },
    train: { microBatch: 2, globalBatch: 64, flashAttention: true, precision: 'bf16-mixed' },
    parallel: { dp: 8, zero: 1 },
    cluster: { gpu: 'H100-SXM', gpusPerNode: 8, nodes: 1 },
  };
  const parsed = parseConfig(rawConfig);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const config = parsed.config;
  const truth = { efficiency: 0.55, cudaContext: 1.7 * GiB, allocatorSlack: 0.08 };
  const input = { ...config, cluster: { ...config.cluster, efficiency: truth.efficiency } };
  const overheads = overheadsOf({ overheads: { cudaContext: truth.cudaContext, allocatorSlack: truth.allocatorSlack } });
  const stepMs = estimateTime(input, layoutOf(input), overheads, commOf()).stepMs;
  const figures = estimateMemory(input, layoutOf(input), { overheads }).figures!;
  const runDir = join(dir, 'run');
  mkdirSync(runDir);
  const lines: unknown[] = [{ type: 'hello', protocol: 1, runId: 'synthetic-h100', name: 'synthetic', startedAt: 0, world: 8, config }];
  for (let step = 1; step <= 40; step++) {
    // Warm-up steps are 3× slower; the rest jitter ±2% around the true step time (deterministically).
    const ms = stepMs * (step <= 3 ? 3 : 1 + 0.02 * Math.sin(step * 1.7));
    lines.push({
      type: 'step',
      step,
      loss: 3,
      lr: 1e-4,
      gradNorm: 1,
      tokensPerSec: 1,
      stepMs: ms,
      memory: { params: 0, grads: 0, optimizer: 0, activations: 0, peak: Math.round(figures.allocated * 0.99) },
      t: step,
    });
    for (let rank = 0; rank < 8; rank++) {
      const scale = rank === 0 ? 1 : 0.98;
      lines.push({
        type: 'memory',
        rank,
        t: step,
        step,
        categories: { ...Object.fromEntries(Object.entries(figures.allocatedBy).map(([k, v]) => [k, Math.round(v)])), reserved: Math.round(figures.reserved * scale) },
        stepPeak: Math.round(figures.allocated * scale),
        capacity: config.cluster.spec.memory,
      });
    }
    lines.push({
      type: 'gpu',
      t: step,
      devices: Array.from({ length: 8 }, (_, i) => ({
        index: i,
        uuid: `GPU-${i}`,
        name: 'NVIDIA H100 80GB HBM3',
        memoryUsed: Math.round(figures.device * (i === 0 ? 1 : 0.98) + 5e6),
        memoryTotal: config.cluster.spec.memory,
        memoryReserved: null,
        utilPercent: 90,
        temperatureC: 60,
        powerW: 600,
        powerLimitW: 700,
        smClockMHz: 1980,
        processes: [{ pid: 100 + i, memory: Math.round(figures.device * (i === 0 ? 1 : 0.98)), rank: i }],
        ranks: [i],
      })),
    });
  }
  writeFileSync(join(runDir, 'metrics.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');

  it('recovers the efficiency, allocator slack and CUDA context it was generated with', () => {
    const r = scalelm('calibrate', runDir, '--json');
    assert.equal(r.code, 0, r.err);
    const { out, profile } = JSON.parse(r.out);
    assert.equal(out, join(runDir, 'cluster-profile.json'));
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), profile);
    assert.ok(Math.abs(profile.efficiency / truth.efficiency - 1) < 0.02, `efficiency ${profile.efficiency}`);
    assert.ok(Math.abs(profile.overheads.allocatorSlack - truth.allocatorSlack) < 1e-6, `slack ${profile.overheads.allocatorSlack}`);
    assert.ok(Math.abs(profile.overheads.cudaContext - truth.cudaContext) < 2 ** 20, `context ${profile.overheads.cudaContext / GiB} GiB`);
    assert.equal(profile.fittedFrom.run, 'synthetic-h100');
  });

  it('prints what it measured against what the model said, and where it wrote the profile', () => {
    const r = scalelm('calibrate', runDir, '--out', join(dir, 'h100.json'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /step time +measured \d+ ms \(median after warm-up\), model \d+ ms at efficiency 0\.7 → efficiency 0\.5\d\d/);
    assert.match(r.out, /device +measured .*nvidia-smi.*→ CUDA context 1\.70 GiB/);
    assert.match(r.out, /wrote .*h100\.json/);
  });

  it('a config with cluster.profile uses it, and estimate says so', () => {
    const cfg = join(dir, 'run.scalelm.json');
    writeFileSync(cfg, JSON.stringify({ ...rawConfig, cluster: { ...rawConfig.cluster, profile: 'h100.json' } }));
    const withProfile = scalelm('estimate', cfg, '--json');
    assert.equal(withProfile.code, 0, withProfile.err);
    const o = JSON.parse(withProfile.out);
    assert.match(o.profile, /calibrated profile .*h100\.json \(fitted from run synthetic-h100: efficiency 0\.5\d\d\)/);
    assert.ok(Math.abs(o.time.stepMs / stepMs - 1) < 0.03, `${o.time.stepMs} vs ${stepMs}`);
    assert.ok(Math.abs(o.figures.device - figures.device) < 2 ** 21, `${o.figures.device} vs ${figures.device}`);
    const text = scalelm('estimate', cfg);
    assert.match(text.out, /note: using the calibrated profile/);
  });

  it('refuses a missing or foreign profile with one clear error', () => {
    const cfg = join(dir, 'bad.scalelm.json');
    writeFileSync(cfg, JSON.stringify(rawConfig));
    const missing = scalelm('estimate', cfg, '--profile', join(dir, 'nope.json'));
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cluster profile .*nope\.json: no such file/);
    writeFileSync(join(dir, 'foreign.json'), JSON.stringify({ efficiency: 2 }));
    const foreign = scalelm('estimate', cfg, '--profile', join(dir, 'foreign.json'));
    assert.equal(foreign.code, 1);
    assert.match(foreign.err, /not a ScaleLM cluster profile/);
  });

  it('refuses a CPU run: no nvidia-smi samples, no GPU model to fit', () => {
    const r = scalelm('calibrate', join(root, 'test', 'fixtures', 'streams', 'tiny-cpu'));
    assert.equal(r.code, 1);
    assert.match(r.err, /no gpu messages .* did not run on GPUs/);
  });

  it('the Runs view offers calibration on a finished GPU run only; calibrateRun writes what calibrate computes', async () => {
    const messages = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Message);
    assert.equal(offersCalibration('finished', messages), true);
    assert.equal(offersCalibration('stopped', messages), false, 'a stopped run is resumed, not calibrated from');
    assert.equal(
      offersCalibration(
        'finished',
        messages.filter((m) => m.type !== 'gpu'),
      ),
      false,
      'no nvidia-smi samples: a CPU run',
    );
    const cpu = readFileSync(join(root, 'test', 'fixtures', 'streams', 'tiny-cpu', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Message);
    assert.equal(offersCalibration('finished', cpu), false);
    // What the extension's "Calibrate Planner from this Run" calls: the same profile as calibrate() on the measurement.
    const out = join(dir, 'from-extension.json');
    const c = await calibrateRun(runDir, out);
    assert.equal(c.out, out);
    const expected = calibrate(c.input, measure(messages).measured, 'synthetic-h100');
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), JSON.parse(JSON.stringify(expected)));
    await assert.rejects(calibrateRun(join(root, 'test', 'fixtures', 'streams', 'tiny-cpu'), join(dir, 'cpu.json')), /no gpu messages .* did not run on GPUs/);
    assert.ok(!existsSync(join(dir, 'cpu.json')), 'a refused run writes nothing');
  });
});
