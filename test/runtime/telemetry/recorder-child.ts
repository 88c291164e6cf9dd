// A stand-in runtime for the kill -9 test: records steps as fast as it can (with the server up and a
// TensorBoard sink, as in a real run) and prints "step K" after each step has been published, until it
// is killed. Bounded, in case nobody kills it.
import { RunRecorder } from '../../../runtime/telemetry/recorder';
import { startMonitor } from '../../../runtime/server/monitor';

async function main(): Promise<void> {
  const runDir = process.argv[2]!;
  const rec = RunRecorder.open({ runDir, runId: 'killed-run', config: { devices: { memory: 2 ** 30 } }, world: 1, gpu: false });
  await startMonitor([rec.bus], { monitor: { host: '127.0.0.1', port: 0, allowRemote: false }, heartbeatMs: 0 });
  rec.status('running');
  for (let k = 0; k < 200_000; k++) {
    rec.step({ step: k, loss: 5 / (1 + k / 100), lr: 1e-3, gradNorm: 1, tokensPerSec: 1000, stepMs: 1, memory: { params: 1, grads: 1, optimizer: 2, activations: 3, peak: 7 } });
    if (k % 10 === 0) rec.memory({ rank: 0, step: k, categories: { params: 1, grads: 1 }, stepPeak: 7, capacity: 2 ** 30 });
    process.stdout.write(`step ${k}\n`);
    if (k % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  await rec.close({ state: 'finished' });
  process.exit(0);
}

void main();
