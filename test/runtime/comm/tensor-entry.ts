// A rank that runs the tensor wrappers on tfjs's cpu backend and returns what it got.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { Comm } from '../../../runtime/comm/comm';
import { allGatherTensor, allReduceTensor, broadcastTensor, reduceScatterTensor, reduceTensor } from '../../../runtime/comm/tensor';

export async function main(comm: Comm): Promise<Record<string, { shape: number[]; data: number[] }>> {
  tf.enableProdMode(); // quiet: no "install tfjs-node" banner
  await tf.setBackend('cpu');
  const g = comm.world;
  const r = comm.rank;
  // rank r holds [[r, 10r], [100r, 1000r]] + 1
  const t = tf.tensor2d([
    [r + 1, 10 * r + 1],
    [100 * r + 1, 1000 * r + 1],
  ]);
  const out = (x: tf.Tensor) => ({ shape: x.shape, data: [...x.dataSync()] });
  const result = {
    allReduce: out(allReduceTensor(g, t, 'sum')),
    avg: out(allReduceTensor(g, t, 'avg')),
    broadcast: out(broadcastTensor(g, t, 1)),
    reduce: out(reduceTensor(g, t, 0, 'max')),
    gatherRows: out(allGatherTensor(g, t, 0)),
    gatherCols: out(allGatherTensor(g, t, -1)),
    scatterRows: out(reduceScatterTensor(g, t, 'sum', 0)),
    scatterCols: out(reduceScatterTensor(g, t, 'sum', -1)),
    inputUnchanged: out(t),
  };
  return result;
}
