// Text samples for a parallel run, as the single-device trainer prints them (before training, and after it
// completes): the full weights — initial, or consolidated from the final checkpoint — continue the held-out
// text's first bytes on the coordinator's own backend. Sampling is the single device's (runtime/train).
import * as tf from '@tensorflow/tfjs-core';
import type { RunConfig } from '../config/types';
import { activeBackend, initBackend } from '../model/backend';
import { Gpt, gptShape } from '../model/gpt';
import { initialValues, ParamStore } from '../model/params';
import { Rng, sampleToken } from '../model/rng';
import { byteTokenizer } from '../train/data';

/** The weights' continuation of `prompt` (temperature 0.8, deterministic for the seed and step), decoded for printing. */
export async function sampleText(config: RunConfig, params: Map<string, Float32Array> | 'initial', prompt: Uint16Array<ArrayBufferLike>, count: number, step: number): Promise<string> {
  if (!activeBackend()) await initBackend(config.devices.backend === 'webgpu' ? 'wasm' : config.devices.backend, { threads: 1 });
  const model = new Gpt(gptShape(config.model));
  const store = new ParamStore(model.paramSpecs());
  try {
    for (const s of store.specs) store.setValues(s.name, params === 'initial' ? initialValues(s, config.train.seed) : params.get(s.name)!);
    const rng = new Rng(config.train.seed, `sample/${step}`);
    const out = Array.from(prompt);
    if (!out.length) out.push(0);
    for (let i = 0; i < count; i++) {
      const window = out.slice(-model.shape.positions);
      const tokens = tf.tensor1d(window, 'int32');
      const logits = model.nextTokenLogits({ params: store, seq: window.length, dropout: 0, dropoutSeed: 0 }, tokens);
      tokens.dispose();
      const values = (await logits.data()) as Float32Array;
      logits.dispose();
      out.push(sampleToken(values, 0.8, rng));
    }
    // No terminal control bytes.
    // eslint-disable-next-line no-control-regex -- control characters are what it replaces
    return byteTokenizer.decode(out.slice(prompt.length || 1)).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\uFFFD]/g, '?');
  } finally {
    store.dispose();
  }
}
