// Measured memory: every data buffer the tfjs engine creates or frees is recorded here once (a reshape or a
// tensor sharing a buffer is not new memory), tagged with a category, and the step's high-water mark is kept
// with the breakdown at that moment. A device capacity turns allocations past it into an out-of-memory error
// naming the step, the layer and the breakdown, as a GPU allocator would.
import * as tf from '@tensorflow/tfjs-core';
import { formatBytes } from '../../common/units';

export const MEMORY_CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'temporaries'] as const;
/** Only a parallel rank has these: communication buffers (buckets, staging) and ZeRO-3's gathered parameters. */
export const PARALLEL_MEMORY_CATEGORIES = ['buffers', 'gathered'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number] | (typeof PARALLEL_MEMORY_CATEGORIES)[number];
export type MemoryBreakdown = Record<MemoryCategory, number>;

/** One step's memory: each category's maximum during the step, the peak of all live bytes, and the breakdown at that peak. */
export interface StepMemory extends MemoryBreakdown {
  peak: number;
  atPeak: MemoryBreakdown;
  /** Where the peak was reached. */
  peakAt: MemoryLocation;
}

/** Where the model is, so an out-of-memory error can say it. */
export interface MemoryLocation {
  step: number;
  phase: 'forward' | 'backward' | 'optimizer' | 'eval' | 'setup';
  layer: string;
}

export class DeviceOutOfMemoryError extends Error {
  constructor(
    readonly where: MemoryLocation,
    readonly requested: number,
    readonly live: number,
    readonly capacity: number,
    readonly breakdown: MemoryBreakdown,
    readonly device: string,
  ) {
    const shown = [...MEMORY_CATEGORIES, ...PARALLEL_MEMORY_CATEGORIES.filter((c) => breakdown[c] > 0)];
    const parts = shown.map((c) => `${c} ${formatBytes(breakdown[c])}`).join(', ');
    super(
      `${device}: out of memory at step ${where.step}, ${where.phase} of ${where.layer || '(model)'}: tried to allocate ${formatBytes(requested)} ` +
        `with ${formatBytes(live - requested)} in use of ${formatBytes(capacity)} (${parts}). ` +
        'Lower train.microBatch, set train.recompute to "full", shorten model.seqLen, or raise devices.memory.',
    );
    this.name = 'DeviceOutOfMemoryError';
  }
}

const zero = (): MemoryBreakdown => ({ params: 0, grads: 0, optimizer: 0, activations: 0, temporaries: 0, buffers: 0, gathered: 0 });

interface Buffer {
  bytes: number;
  category: MemoryCategory;
}

type DataId = object;
interface EngineInternals {
  state: { tensorInfo: WeakMap<DataId, { backend: unknown }> };
  trackTensor(t: tf.Tensor, backend: unknown): void;
  removeDataId(dataId: DataId, backend: unknown): void;
}

/**
 * Accounts every engine data buffer by category. Install once per engine (per thread); buffers that existed
 * before install are not counted. Not reentrant across engines.
 */
export class MemoryTracker {
  private readonly buffers = new Map<DataId, Buffer>();
  private readonly live: MemoryBreakdown = zero();
  private liveTotal = 0;
  private stepMax: MemoryBreakdown = zero();
  private stepPeak = 0;
  private stepAtPeak: MemoryBreakdown = zero();
  private stepPeakAt: MemoryLocation = { step: 0, phase: 'setup', layer: '' };
  private uninstall?: () => void;
  /** Bytes one device may hold; Infinity for none. */
  capacity = Infinity;
  device = 'device 0';
  where: MemoryLocation = { step: 0, phase: 'setup', layer: '' };

  install(): this {
    if (this.uninstall) return this;
    const engine = tf.engine() as unknown as EngineInternals;
    const track = engine.trackTensor.bind(engine);
    const remove = engine.removeDataId.bind(engine);
    engine.trackTensor = (t, backend) => {
      const isNew = !engine.state.tensorInfo.has(t.dataId);
      track(t, backend);
      if (isNew && t.dtype !== 'string' && t.dtype !== 'complex64') this.allocated(t.dataId, t.size * bytesPerElement(t.dtype));
    };
    engine.removeDataId = (dataId, backend) => {
      const info = engine.state.tensorInfo.get(dataId);
      remove(dataId, backend);
      if (info && info.backend === backend) this.freed(dataId);
    };
    this.uninstall = () => {
      engine.trackTensor = track;
      engine.removeDataId = remove;
    };
    return this;
  }

  dispose(): void {
    this.uninstall?.();
    this.uninstall = undefined;
    this.buffers.clear();
  }

  /** Moves a tensor's buffer into a category (a buffer has one category: the last one given). */
  tag(t: tf.Tensor, category: MemoryCategory): void {
    const b = this.buffers.get(t.dataId);
    if (!b || b.category === category) return;
    this.live[b.category] -= b.bytes;
    b.category = category;
    this.live[category] += b.bytes;
    if (this.live[category] > this.stepMax[category]) this.stepMax[category] = this.live[category];
  }

  tagAll(ts: Iterable<tf.Tensor>, category: MemoryCategory): void {
    for (const t of ts) this.tag(t, category);
  }

  /**
   * Bytes held outside the tfjs engine (registered communication buffers, a host-side optimizer partition),
   * counted in `category` like a buffer and against the capacity; a negative count releases them.
   */
  hold(category: MemoryCategory, bytes: number): void {
    if (bytes <= 0) {
      this.live[category] += bytes;
      this.liveTotal += bytes;
      return;
    }
    if (this.liveTotal + bytes > this.capacity) {
      throw new DeviceOutOfMemoryError({ ...this.where }, bytes, this.liveTotal + bytes, this.capacity, { ...this.live }, this.device);
    }
    this.live[category] += bytes;
    this.liveTotal += bytes;
    if (this.live[category] > this.stepMax[category]) this.stepMax[category] = this.live[category];
    if (this.liveTotal > this.stepPeak) {
      this.stepPeak = this.liveTotal;
      this.stepAtPeak = { ...this.live };
      this.stepPeakAt = { ...this.where };
    }
  }

  /** Live bytes per category now. */
  current(): MemoryBreakdown & { total: number } {
    return { ...this.live, total: this.liveTotal };
  }

  /** Starts a new measurement window (a step): maxima restart from what is live now. */
  beginStep(step: number): void {
    this.where = { step, phase: 'forward', layer: '' };
    this.stepMax = { ...this.live };
    this.stepPeak = this.liveTotal;
    this.stepAtPeak = { ...this.live };
    this.stepPeakAt = { ...this.where };
  }

  /** The window's figures so far. */
  stepMemory(): StepMemory {
    return { ...this.stepMax, peak: this.stepPeak, atPeak: { ...this.stepAtPeak }, peakAt: { ...this.stepPeakAt } };
  }

  private allocated(id: DataId, bytes: number): void {
    this.buffers.set(id, { bytes, category: 'temporaries' });
    this.live.temporaries += bytes;
    this.liveTotal += bytes;
    if (this.live.temporaries > this.stepMax.temporaries) this.stepMax.temporaries = this.live.temporaries;
    if (this.liveTotal > this.stepPeak) {
      this.stepPeak = this.liveTotal;
      this.stepAtPeak = { ...this.live };
      this.stepPeakAt = { ...this.where };
    }
    if (this.liveTotal > this.capacity) {
      // The buffer exists (the engine tracks it, so tidy() will free it); the step cannot continue.
      throw new DeviceOutOfMemoryError({ ...this.where }, bytes, this.liveTotal, this.capacity, { ...this.live }, this.device);
    }
  }

  private freed(id: DataId): void {
    const b = this.buffers.get(id);
    if (!b) return;
    this.buffers.delete(id);
    this.live[b.category] -= b.bytes;
    this.liveTotal -= b.bytes;
  }
}

function bytesPerElement(dtype: tf.DataType): number {
  return dtype === 'bool' ? 1 : 4;
}
