// A tensor-parallel rank for the layer tests: builds one TP layer from the full (seeded) weights sliced to
// its shard, runs forward and backward on the seeded input, and returns what it computed. The test compares
// with the tp = 1 layer in its own thread.
import * as tf from '@tensorflow/tfjs-core';
import type { Comm } from '../../../runtime/comm/comm';
import { initBackend } from '../../../runtime/model/backend';
import { Block, gpt2BlockLayers } from '../../../runtime/model/gpt';
import type { Layer, LayerContext } from '../../../runtime/model/layers';
import { MemoryTracker } from '../../../runtime/model/memory';
import { ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding, VocabParallelHeadLoss } from '../../../runtime/model/tp-layers';
import { CommTensorGroup } from '../../../runtime/parallel/tensor-group';
import { sliceShard } from '../../../runtime/parallel/shards';
import { colSlice, layerCase, type LayerCase } from './layer-cases';

export interface LayerResult {
  y?: number[];
  dx?: number[];
  loss?: number;
  grads: Record<string, number[]>;
}

class Source {
  constructor(readonly values: Map<string, tf.Tensor>) {}
  get(name: string): tf.Tensor {
    const t = this.values.get(name);
    if (!t) throw new Error(`no ${name}`);
    return t;
  }
}

export async function main(comm: Comm, args: { name: string; tp: number }): Promise<LayerResult> {
  tf.enableProdMode();
  await initBackend('wasm', { threads: 1 });
  const c: LayerCase = layerCase(args.name, args.tp);
  const tracker = new MemoryTracker();
  const group = new CommTensorGroup(comm, comm.world, tracker, { exposedMs: 0 });
  const rank = comm.rank;
  const tp = comm.size;
  const shard = (name: string) => {
    // The full spec carries the split its layer declared.
    const spec = c.specs.find((s) => s.name === name)!;
    return sliceShard(spec.tp, spec.shape, c.params.get(name)!, tp, rank, c.paddedVocab);
  };
  const out: LayerResult = { grads: {} };
  const keep = (grads: [string, tf.Tensor][]) => {
    for (const [n, g] of grads) out.grads[n] = [...(g.dataSync() as Float32Array)];
  };
  if (c.kind === 'column' || c.kind === 'row' || c.kind === 'block') {
    let layer: Layer | Block;
    if (c.kind === 'column') layer = new ColumnParallelLinear('lin', c.inFeatures!, c.outFeatures!, group);
    else if (c.kind === 'row') layer = new RowParallelLinear('lin', c.inFeatures!, c.outFeatures!, group);
    else layer = new Block('h.0', gpt2BlockLayers(0, c.shape!, 'none', group));
    const params = new Map(layer.paramSpecs().map((s) => [s.name, tf.tensor(shard(s.name), s.shape)] as [string, tf.Tensor]));
    const ctx: LayerContext = { params: new Source(params), seq: c.seq, dropout: 0, dropoutSeed: 0 };
    // Row-parallel: the input arrives split along its features, like a column-parallel output.
    const xFull = c.x!;
    const xCols = c.kind === 'row' ? c.inFeatures! : c.shape ? c.shape.hidden : c.inFeatures!;
    const xRows = xFull.length / xCols;
    const x = c.kind === 'row' ? tf.tensor(colSlice(xFull, xCols, tp, rank), [xRows, xCols / tp]) : tf.tensor(xFull, [xRows, xCols]);
    const f = layer.forward(ctx, x, true);
    out.y = [...(f.y.dataSync() as Float32Array)];
    const dy = tf.tensor(c.kind === 'column' ? colSlice(c.dy!, c.outFeatures!, tp, rank) : c.dy!, c.kind === 'column' ? [xRows, c.outFeatures! / tp] : f.y.shape);
    if (c.kind === 'block') {
      const grads: [string, tf.Tensor][] = [];
      const dx = (layer as Block).backward(ctx, dy, f.saved as never, (n, g) => grads.push([n, g]));
      out.dx = [...(dx.dataSync() as Float32Array)];
      keep(grads);
    } else {
      const b = (layer as Layer).backward(ctx, dy, f.saved);
      out.dx = [...(b.dx.dataSync() as Float32Array)];
      keep(b.grads);
    }
  } else if (c.kind === 'embedding') {
    const layer = new VocabParallelEmbedding(c.paddedVocab!, c.seq, c.hidden!, group);
    const params = new Map(layer.paramSpecs().map((s) => [s.name, tf.tensor(shard(s.name), s.shape)] as [string, tf.Tensor]));
    const ctx: LayerContext = { params: new Source(params), seq: c.seq, dropout: 0, dropoutSeed: 0 };
    const f = layer.forward(ctx, tf.tensor1d(c.ids!, 'int32'), true);
    out.y = [...(f.y.dataSync() as Float32Array)];
    keep(layer.backward(ctx, tf.tensor(c.dy!, f.y.shape), f.saved!));
  } else {
    // Cross entropy straight from logits: this rank's columns of the padded vocabulary.
    const head = new VocabParallelHeadLoss(c.vocab!, c.paddedVocab!, group);
    const N = c.ids!.length;
    const full = new Float32Array(N * c.paddedVocab!);
    for (let i = 0; i < N; i++) full.set(c.logits!.subarray(i * c.vocab!, (i + 1) * c.vocab!), i * c.paddedVocab!);
    const mine = colSlice(full, c.paddedVocab!, tp, rank);
    const r = head.lossFromLogits(tf.tensor2d(mine, [N, c.paddedVocab! / tp]), Int32Array.from(c.ids!));
    out.loss = (r.loss.dataSync() as Float32Array)[0]!;
    out.y = [...(r.probs.dataSync() as Float32Array)];
  }
  return out;
}
