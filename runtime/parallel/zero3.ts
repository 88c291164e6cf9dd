// ZeRO-3 parameters: each rank keeps only its partition of the flat parameters (registered memory, the
// all-gather's input). A unit (a block, ln_f, the embedding) is all-gathered just before it is used — in
// forward, and again in backward — turned into tensors, and freed after use. While one unit computes, the
// next one in the pass's schedule is prefetched asynchronously; at most `cap` units are gathered or in
// flight at once. After a step nothing stays gathered.
import type * as tf from '@tensorflow/tfjs-core';
import type { Comm, ProcessGroup, Work } from '../comm/comm';
import type { MemoryTracker } from '../model/memory';
import type { ParamSource } from '../model/params';
import type { FlatLayout, Unit } from './flat';
import type { UnitHooks } from '../model/gpt';
import type { CommTimer } from './grads';
import { tensorFromHost } from './tensor-io';

type UnitState = { kind: 'idle' } | { kind: 'inflight'; staging: Float32Array; work: Work } | { kind: 'alive'; tensors: Map<string, tf.Tensor> };

export class Zero3Params implements ParamSource, UnitHooks {
  private readonly state = new Map<string, UnitState>();
  private readonly byName = new Map<string, Unit>();
  private schedule: string[] = [];
  private cursor = -1;
  /** Most gathered or in-flight units at once in this run (for the tests and the memory model). */
  maxLive = 0;
  gathers = 0;

  constructor(
    private readonly comm: Comm,
    private readonly dp: ProcessGroup,
    private readonly flat: FlatLayout,
    /** This rank's partition of the parameters. */
    readonly owned: Float32Array,
    private readonly tracker: MemoryTracker,
    private readonly timer: CommTimer,
    readonly cap = 2,
  ) {
    for (const u of flat.units) {
      this.byName.set(u.name, u);
      this.state.set(u.name, { kind: 'idle' });
    }
  }

  /** Starts a pass (forward, or forward + backward) that acquires units in this order. */
  begin(schedule: string[]): void {
    this.schedule = schedule;
    this.cursor = -1;
  }

  get(name: string): tf.Tensor {
    const unit = this.flat.units[this.flat.slot(name).unit]!;
    const s = this.state.get(unit.name)!;
    if (s.kind !== 'alive') throw new Error(`ZeRO-3: ${name} was used while its unit ${unit.name} is not gathered`);
    return s.tensors.get(name)!;
  }

  /** Units whose parameters are gathered or being gathered now. */
  live(): string[] {
    return [...this.state].filter(([, s]) => s.kind !== 'idle').map(([n]) => n);
  }

  acquire(name: string): void {
    this.cursor++;
    if (this.schedule[this.cursor] !== name) throw new Error(`ZeRO-3: acquired ${name} where the schedule has ${this.schedule[this.cursor] ?? 'nothing'}`);
    const s = this.state.get(name)!;
    if (s.kind === 'alive') throw new Error(`ZeRO-3: ${name} acquired twice`);
    const unit = this.byName.get(name)!;
    if (s.kind === 'inflight') {
      const t0 = performance.now();
      s.work.wait();
      this.timer.exposedMs += performance.now() - t0;
      this.unpack(unit, s.staging);
    } else {
      const staging = this.issue(unit, false);
      this.unpack(unit, staging);
    }
    this.prefetch();
  }

  release(name: string): void {
    const s = this.state.get(name)!;
    if (s.kind !== 'alive') throw new Error(`ZeRO-3: ${name} released while not gathered`);
    for (const t of s.tensors.values()) t.dispose();
    this.state.set(name, { kind: 'idle' });
  }

  private prefetch(): void {
    const next = this.schedule[this.cursor + 1];
    if (next === undefined || this.state.get(next)!.kind !== 'idle') return;
    if (this.live().length >= this.cap) return;
    this.issue(this.byName.get(next)!, true);
  }

  /** All-gathers a unit into fresh staging; async (prefetch) or blocking. */
  private issue(unit: Unit, async: boolean): Float32Array {
    const staging = this.comm.alloc(unit.padded);
    this.tracker.hold('buffers', 4 * unit.padded);
    const mine = this.owned.subarray(unit.partOffset, unit.partOffset + unit.part);
    this.gathers++;
    if (async) {
      this.state.set(unit.name, { kind: 'inflight', staging, work: this.dp.allGatherAsync(staging, mine) });
      this.maxLive = Math.max(this.maxLive, this.live().length);
    } else {
      const t0 = performance.now();
      this.dp.allGather(staging, mine);
      this.timer.exposedMs += performance.now() - t0;
    }
    return staging;
  }

  private unpack(unit: Unit, staging: Float32Array): void {
    const tensors = new Map<string, tf.Tensor>();
    for (const slot of unit.slots) {
      const t = tensorFromHost(staging.subarray(slot.offset, slot.offset + slot.numel), slot.shape);
      this.tracker.tag(t, 'gathered');
      tensors.set(slot.name, t);
    }
    this.comm.free(staging);
    this.tracker.hold('buffers', -4 * unit.padded);
    this.state.set(unit.name, { kind: 'alive', tensors });
    this.maxLive = Math.max(this.maxLive, this.live().length);
  }

  dispose(): void {
    for (const [name, s] of this.state) {
      if (s.kind === 'alive') for (const t of s.tensors.values()) t.dispose();
      if (s.kind === 'inflight') {
        try {
          s.work.wait();
        } catch {
          // the world is failing; the memory goes with it
        }
        this.comm.free(s.staging);
      }
      this.state.set(name, { kind: 'idle' });
    }
  }
}
