// The resolved run config: presets expanded, defaults applied, sizes in bytes. Derived from the schema's
// inferred input type so the two cannot drift apart.
import type { RunConfigInput } from './schema';
import type { GpuPresetName, GpuSpec, ModelShape } from './presets';

type Section<K extends keyof RunConfigInput> = NonNullable<RunConfigInput[K]>;

export interface ModelSpec extends ModelShape {
  name: string;
  dropout: number;
  /** Only when the user gave the parameter count instead of (or on top of) the shape. */
  totalParams?: number;
}

export type TrainConfig = Required<Section<'train'>>;
export type ParallelConfig = Required<Section<'parallel'>>;

export interface ClusterConfig {
  gpu: GpuPresetName;
  gpusPerNode: number;
  nodes: number;
  /** The GPU preset with the config's overrides applied (bytes, FLOP/s, bytes/s). */
  spec: GpuSpec;
  efficiency: number;
  headroom: number;
  /** False when the config had no `cluster` section and this one was derived from the layout. */
  explicit: boolean;
}

export interface DevicesConfig {
  engine: NonNullable<Section<'devices'>['engine']>;
  backend: NonNullable<Section<'devices'>['backend']>;
  count: number;
  /** Capacity per device in bytes. */
  memory: number;
  transport: NonNullable<Section<'devices'>['transport']>;
}

export interface DataConfig {
  source: NonNullable<Section<'data'>['source']>;
  path?: string;
  valFraction: number;
}

export type MonitorConfig = Required<Section<'monitor'>>;

/** Your own command, run under `scalelm launch` instead of the built-in trainer (docs/launch.md). */
export interface LaunchConfig {
  command: string[];
  /** Relative to the config file. */
  cwd?: string;
  env: Record<string, string>;
}

export interface RunConfig {
  name: string;
  model: ModelSpec;
  train: TrainConfig;
  parallel: ParallelConfig;
  cluster: ClusterConfig;
  devices: DevicesConfig;
  data: DataConfig;
  monitor: MonitorConfig;
  /** Only when the config has a `launch` section. */
  launch?: LaunchConfig;
}
