// Protocol v1: the messages between the runtime and its clients (extension host, webview, browser, tools).
// One JSON object per WebSocket text frame and per metrics.jsonl line. Pure: no Node or DOM APIs, so the
// runtime, the extension and the webview bundle share it.
//
// Every message crossing a boundary goes through a validator here, built from the combinators in
// common/validate.ts. A validator either returns a fresh, fully checked copy (unknown keys rejected, limits
// enforced) or a reason naming the offending path; it never hands back a half-checked object.
//
// Floats that may be non-finite (loss, gradNorm, …) travel as the strings "NaN", "Infinity", "-Infinity"
// because JSON has no spelling for them; encodeMessage/decodeMessage convert at the edge, so in memory a
// diverged loss is the number NaN.

import {
  array,
  bool,
  byteRecord,
  bytes,
  categoryRecord,
  finite,
  ID,
  int,
  Invalid,
  isPlainObject,
  join,
  jsonObject,
  LIMITS,
  literal,
  metric,
  nonEmpty,
  nullable,
  object,
  oneOf,
  opt,
  str,
  time,
  validateWith,
  describe,
  type Check,
  type JsonObject,
  type Result,
} from './validate';
export { LIMITS } from './validate';

export const PROTOCOL_VERSION = 1 as const;
/** The WebSocket subprotocol a client must offer and the server selects. */
export const SUBPROTOCOL = 'scalelm.v1';
/** Browsers cannot set headers on a WebSocket: they send the token as a subprotocol entry with this prefix. */
export const TOKEN_PROTOCOL_PREFIX = 'scalelm.token.';
/** Path of the WebSocket endpoint on the runtime's server. */
export const WS_PATH = '/ws';

// ---------------------------------------------------------------------------------------------- types

export type { JsonObject, JsonValue } from './validate';

/**
 * The run lifecycle (common/lifecycle.ts gives each state its label and look):
 *   starting → running (⇄ checkpointing) → stopping → stopped | finished, or → failed from anywhere.
 * "crashed" is never written by a runtime: a reader concludes it when metrics.jsonl has no final status and
 * the process that wrote it is gone. Older runtimes wrote "done" for both finished and stopped runs; the
 * validator reads it as "finished", or "stopped" when its reason starts with "stopped" ("stopped at step N").
 */
export type RunState = 'starting' | 'running' | 'checkpointing' | 'stopping' | 'finished' | 'stopped' | 'failed' | 'crashed';
export const RUN_STATES: readonly RunState[] = ['starting', 'running', 'checkpointing', 'stopping', 'finished', 'stopped', 'failed', 'crashed'];
/** States after which nothing more happens to the run (a resumed run starts again with "starting"). */
export const ENDED_STATES: readonly RunState[] = ['finished', 'stopped', 'failed', 'crashed'];
export const isEnded = (state: RunState | 'unknown' | undefined | null): boolean => state !== undefined && state !== null && (ENDED_STATES as readonly string[]).includes(state);

/** First message of a run (first line of metrics.jsonl): what is running and what the planner predicted. */
export interface HelloMessage {
  type: 'hello';
  protocol: typeof PROTOCOL_VERSION;
  runId: string;
  name: string;
  /** ms since the epoch. */
  startedAt: number;
  /** Number of ranks. */
  world: number;
  /** The resolved run config (RunConfig as JSON). */
  config: JsonObject;
  /**
   * The planner's prediction for this layout. Written as a PlanSummary; read it with planSummary(hello),
   * which checks it (runs recorded by other tools may hold other JSON here).
   */
  plan?: JsonObject;
  /** Which engine trains the run and why it was chosen ("devices.engine is auto: torch 2.6.0 sees 8 CUDA GPUs"). */
  engine?: RunEngine;
  /** The backend the ranks actually train on (absent in runs recorded before it was announced). */
  backend?: RunBackend;
  t?: number;
}

/** What the planner predicted for a run's layout, as its hello carries it (one shape for every producer). */
export interface PlanSummary {
  /** The memory convention of the bytes ("runtime", "torch", "scalelm", …). */
  convention: string;
  /** What it was planned for ("2 × cpu (devices.memory 1 GiB)", "8 × H100-SXM"). */
  target?: string;
  /** Bytes one device has on that target. */
  capacity?: number;
  /** Predicted bytes per device by category (params, grads, optimizer, activations, buffers, overhead, total). */
  perDevice: Record<string, number>;
  stepMs?: number;
  tokensPerSec?: number;
  mfu?: number;
}

export type EngineName = 'local' | 'torch' | 'monitor';
export const ENGINE_NAMES: readonly EngineName[] = ['local', 'torch', 'monitor'];

export interface RunEngine {
  name: EngineName;
  reason: string;
}

export interface RunBackend {
  /** What runs the math: "wasm", "cpu", "tensorflow", "webgpu" (local engine); "cuda", "cpu" (torch). */
  name: string;
  /** What a person reads: "wasm (SIMD, 2 threads)", "cuda (NVIDIA H200) nccl". */
  label: string;
  /** Why this one: requested, or what was tried first. */
  reason?: string;
}

export interface StatusMessage {
  type: 'status';
  state: RunState;
  t: number;
  step?: number;
  /** Present exactly when state is "failed". `rank`: the rank whose error ended the run, when known. */
  error?: { message: string; kind?: string; rank?: number };
  /** Why the state changed when it was not the run's own doing ("stop requested by a client"). */
  reason?: string;
  /** Who asked for a stop ("Ctrl-C", "VS Code", "the browser dashboard"), on stopping/stopped. */
  by?: string;
}

/**
 * Bytes per category on the reporting rank for the step (each category's maximum during the step); `peak`
 * is the step's high-water mark of all live bytes. Further categories (temporaries, comm, …) may be added
 * as byte counts.
 */
export interface StepMemory {
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  peak: number;
  [category: string]: number;
}

/** One optimizer step, exactly as written to metrics.jsonl by the trainer's recorder. */
export interface StepMessage {
  type: 'step';
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  stepMs: number;
  memory: StepMemory;
  /** Tokens trained on so far. */
  tokens?: number;
  /** ms since the epoch; stamped by the bus when the trainer leaves it out. */
  t?: number;
}

export interface EvalMessage {
  type: 'eval';
  step: number;
  loss: number;
  t?: number;
}

/** Per-rank memory (a gauge): measured bytes by category, the step's peak, the device capacity, the plan. */
export interface MemoryMessage {
  type: 'memory';
  rank: number;
  t: number;
  step?: number;
  /** Bytes by category (params, grads, optimizer, activations, comm, other, …). */
  categories: Record<string, number>;
  stepPeak: number;
  capacity: number;
  /** The planner's bytes for the same categories (and `peak`). */
  predicted?: Record<string, number>;
  /** The machine this rank runs on (multi-node runs; absent = the coordinator's own machine). */
  node?: NodeRef;
  /** Device the rank runs on: a GPU UUID or "cpu:N". */
  device?: string;
}

export interface GpuProcess {
  pid: number;
  /** Bytes, null when the driver does not say. */
  memory: number | null;
  name?: string;
  /** The rank this process is, when it is one of ours. */
  rank?: number;
}

/** One device as nvidia-smi reports it. Bytes and SI units; null where the driver said N/A. */
export interface GpuDevice {
  index: number;
  uuid: string;
  name: string;
  memoryUsed: number | null;
  memoryTotal: number | null;
  /** Memory the driver keeps for itself: usable = total − reserved. */
  memoryReserved: number | null;
  utilPercent: number | null;
  temperatureC: number | null;
  powerW: number | null;
  powerLimitW: number | null;
  smClockMHz: number | null;
  /** The driver reported "GPU is lost" for this device. */
  lost?: boolean;
  processes: GpuProcess[];
  /** Ranks of this run placed on the device. */
  ranks?: number[];
}

/** A gauge: one sample of every device. */
/** One machine of a multi-node run: its node rank (torchrun's --node-rank) and host name. */
export interface NodeRef {
  rank: number;
  host: string;
}

export interface GpuMessage {
  type: 'gpu';
  t: number;
  devices: GpuDevice[];
  /** Whose GPUs these are (multi-node runs; absent = the coordinator's own machine). */
  node?: NodeRef;
}

/** Totals since the start of the run for one collective kind on one rank. */
export interface CommStat {
  kind: string;
  calls: number;
  bytes: number;
  ms: number;
}

/** A gauge of cumulative totals, so keeping only the latest loses nothing. */
export interface CommMessage {
  type: 'comm';
  rank: number;
  t: number;
  step?: number;
  collectives: CommStat[];
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export interface LogMessage {
  type: 'log';
  level: LogLevel;
  message: string;
  t: number;
  rank?: number;
  source?: string;
}

export type AlertKind = 'memory-high' | 'memory-leak' | 'loss-nan' | 'loss-diverging' | 'collector-down' | 'gpu-lost';
export const ALERT_KINDS: readonly AlertKind[] = ['memory-high', 'memory-leak', 'loss-nan', 'loss-diverging', 'collector-down', 'gpu-lost'];
export type AlertSeverity = 'info' | 'warning' | 'critical';

export interface AlertMessage {
  type: 'alert';
  /** Stable for one condition ("memory-high:rank0"), so a client can pair raised and cleared. */
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  state: 'raised' | 'cleared';
  message: string;
  t: number;
  step?: number;
  rank?: number;
  /** GPU UUID or "cpu:N". */
  device?: string;
  /** The machine the rank or GPU is on (multi-node runs). */
  node?: NodeRef;
  /** Seconds until the memory is full at the current trend (memory-high; memory-leak's out-of-memory forecast). */
  timeToFullSec?: number;
}

export interface CheckpointMessage {
  type: 'checkpoint';
  step: number;
  /** Relative to the run directory. */
  path: string;
  bytes?: number;
  t: number;
}

/** What a run publishes: the lines of metrics.jsonl and the live stream. */
export type Message = HelloMessage | StatusMessage | StepMessage | EvalMessage | MemoryMessage | GpuMessage | CommMessage | LogMessage | AlertMessage | CheckpointMessage;
export type MessageType = Message['type'];
export const MESSAGE_TYPES: readonly MessageType[] = ['hello', 'status', 'step', 'eval', 'memory', 'gpu', 'comm', 'log', 'alert', 'checkpoint'];

/** A run the server can show (serve DIR may hold several). */
export interface RunSummary {
  runId: string;
  name: string;
  startedAt: number;
  state: RunState | 'unknown';
  steps: number;
  /** Time of the final status (or of the last message of a crashed run): duration = endedAt − startedAt. */
  endedAt?: number;
  /** One line on how it ended: "stopped at step 40 by VS Code", "failed on rank 1 at step 7: …". */
  detail?: string;
  finalLoss?: number;
  bestLoss?: number;
  /** The latest held-out loss. */
  evalLoss?: number;
  /** Mean over the last steps. */
  tokensPerSec?: number;
  /** "dp2 × tp1", from the config. */
  layout?: string;
  /** The engine that trained it (hello.engine.name: local, torch, monitor); a run recorded before the hello
   *  named its engine shows its backend here instead. */
  engine?: string;
  /** The engine's detail: the backend it trained on (hello.backend.label, "wasm (SIMD, 2 threads)"). */
  engineDetail?: string;
  /** "cpu", "4 × H100", … from the config. */
  device?: string;
}

/** The first thing a client receives: the run so far (downsampled), then live messages follow. */
export interface SnapshotMessage {
  type: 'snapshot';
  protocol: typeof PROTOCOL_VERSION;
  runId: string;
  /** True for a replayed run or when no control handler is attached: control messages are refused. */
  readOnly: boolean;
  hello: HelloMessage | null;
  status: StatusMessage | null;
  /** Downsampled per bucket to first, last, min and max loss (spikes and NaN kept). */
  steps: StepMessage[];
  /** How many steps the run has published; steps.length is less when downsampled. */
  stepsTotal: number;
  evals: EvalMessage[];
  /** Downsampled history per rank (min/max of the step peak kept). */
  memory: MemoryMessage[];
  gpu: GpuMessage[];
  /** Latest per rank. */
  comm: CommMessage[];
  /** The most recent log lines, alerts and checkpoints. */
  logs: LogMessage[];
  alerts: AlertMessage[];
  checkpoints: CheckpointMessage[];
  runs?: RunSummary[];
  t: number;
}

export type ControlAction = 'stop' | 'checkpoint';
export const CONTROL_ACTIONS: readonly ControlAction[] = ['stop', 'checkpoint'];

/** Client -> server: stop the run or save a checkpoint now. Needs the token and this exact shape. */
export interface ControlMessage {
  type: 'control';
  id: string;
  action: ControlAction;
  /** Who asks, as the stopped status will name it ("VS Code", "the browser dashboard"). */
  by?: string;
}

export interface ControlResultMessage {
  type: 'control-result';
  id: string;
  ok: boolean;
  error?: string;
}

/** The server refused a client message; the connection stays open. */
export interface RejectedMessage {
  type: 'rejected';
  reason: string;
  id?: string;
}

export type ServerMessage = Message | SnapshotMessage | ControlResultMessage | RejectedMessage;
export type ClientMessage = ControlMessage;

export type { Result } from './validate';

// ---------------------------------------------------------------------------------------------- messages

const planSummaryCheck = object<PlanSummary>({
  convention: str(64),
  target: opt(str()),
  capacity: opt(finite(0)),
  // Bytes as the planner gives them: fractional overheads are allowed.
  perDevice: categoryRecord(finite(0)),
  stepMs: opt(finite(0)),
  tokensPerSec: opt(finite(0)),
  mfu: opt(finite(0)),
});

const hello = object<HelloMessage>({
  type: literal('hello'),
  protocol: literal(PROTOCOL_VERSION),
  runId: str(LIMITS.name, ID),
  name: nonEmpty(),
  startedAt: time,
  world: int(1, 1 << 20),
  config: jsonObject,
  plan: opt(jsonObject),
  engine: opt(object<RunEngine>({ name: oneOf(ENGINE_NAMES), reason: str(LIMITS.text) })),
  backend: opt(object<RunBackend>({ name: nonEmpty(), label: nonEmpty(), reason: opt(str(LIMITS.text)) })),
  t: opt(time),
});

const statusShape = object<StatusMessage>({
  type: literal('status'),
  state: oneOf(RUN_STATES),
  t: time,
  step: opt(int()),
  error: opt(object<{ message: string; kind?: string; rank?: number }>({ message: nonEmpty(LIMITS.text), kind: opt(str()), rank: opt(int(0, 1 << 20)) })),
  reason: opt(str(LIMITS.text)),
  by: opt(str(128)),
});
/** metrics.jsonl written before "finished"/"stopped" existed said "done" for both. */
function legacyState(v: unknown): unknown {
  if (!isPlainObject(v) || v.state !== 'done') return v;
  const stopped = typeof v.reason === 'string' && /^stopped\b/.test(v.reason);
  return { ...v, state: stopped ? 'stopped' : 'finished' };
}
const status: Check<StatusMessage> = (v, path) => {
  const s = statusShape(legacyState(v), path);
  if (s.state === 'failed' && !s.error) throw new Invalid(join(path, 'error'), 'is required when state is "failed"');
  if (s.state !== 'failed' && s.error) throw new Invalid(join(path, 'error'), `is only allowed when state is "failed" (state is "${s.state}")`);
  return s;
};

const STEP_MEMORY_REQUIRED = ['params', 'grads', 'optimizer', 'activations', 'peak'] as const;
const stepMemory: Check<StepMemory> = (v, path) => {
  const m = byteRecord(v, path);
  for (const k of STEP_MEMORY_REQUIRED) if (m[k] === undefined) throw new Invalid(join(path, k), 'is required');
  return m as StepMemory;
};

const step = object<StepMessage>({
  type: literal('step'),
  step: int(),
  loss: metric,
  lr: metric,
  gradNorm: metric,
  tokensPerSec: metric,
  stepMs: metric,
  memory: stepMemory,
  tokens: opt(int()),
  t: opt(time),
});

const evalMsg = object<EvalMessage>({ type: literal('eval'), step: int(), loss: metric, t: opt(time) });

const nodeRef = object<NodeRef>({ rank: int(0, 1 << 16), host: str(255) });

const memory = object<MemoryMessage>({
  type: literal('memory'),
  rank: int(0, 1 << 20),
  t: time,
  step: opt(int()),
  categories: byteRecord,
  stepPeak: bytes,
  capacity: bytes,
  predicted: opt(byteRecord),
  device: opt(str()),
  node: opt(nodeRef),
});

const gpuProcess = object<GpuProcess>({ pid: int(0), memory: nullable(bytes), name: opt(str(4096)), rank: opt(int(0, 1 << 20)) });
const gpuDevice = object<GpuDevice>({
  index: int(0, 65535),
  uuid: str(),
  name: str(),
  memoryUsed: nullable(bytes),
  memoryTotal: nullable(bytes),
  memoryReserved: nullable(bytes),
  utilPercent: nullable(finite(0)),
  temperatureC: nullable(finite()),
  powerW: nullable(finite(0)),
  powerLimitW: nullable(finite(0)),
  smClockMHz: nullable(finite(0)),
  lost: opt(bool),
  processes: array(gpuProcess, LIMITS.processes),
  ranks: opt(array(int(0, 1 << 20), LIMITS.processes)),
});
const gpu = object<GpuMessage>({ type: literal('gpu'), t: time, devices: array(gpuDevice, LIMITS.devices), node: opt(nodeRef) });

const commStat = object<CommStat>({ kind: str(64, /^[a-z][a-z0-9-]*$/), calls: int(), bytes: bytes, ms: finite(0) });
const comm = object<CommMessage>({ type: literal('comm'), rank: int(0, 1 << 20), t: time, step: opt(int()), collectives: array(commStat, LIMITS.collectives) });

const log = object<LogMessage>({
  type: literal('log'),
  level: oneOf(['debug', 'info', 'warn', 'error'] as const),
  message: str(LIMITS.text),
  t: time,
  rank: opt(int(0, 1 << 20)),
  source: opt(str()),
});

const alert = object<AlertMessage>({
  type: literal('alert'),
  id: str(LIMITS.name, ID),
  kind: oneOf(ALERT_KINDS),
  severity: oneOf(['info', 'warning', 'critical'] as const),
  state: oneOf(['raised', 'cleared'] as const),
  message: nonEmpty(LIMITS.text),
  t: time,
  step: opt(int()),
  rank: opt(int(0, 1 << 20)),
  device: opt(str()),
  node: opt(nodeRef),
  timeToFullSec: opt(finite(0)),
});

const checkpoint = object<CheckpointMessage>({
  type: literal('checkpoint'),
  step: int(),
  path: str(4096, /^(?!\/)(?!.*(^|\/)\.\.(\/|$)).+$/),
  bytes: opt(bytes),
  t: time,
});

const MESSAGE_CHECKS: { [K in MessageType]: Check<Extract<Message, { type: K }>> } = {
  hello,
  status,
  step,
  eval: evalMsg,
  memory,
  gpu,
  comm,
  log,
  alert,
  checkpoint,
};

const message: Check<Message> = (v, path) => {
  if (!isPlainObject(v)) throw new Invalid(path, `must be an object, got ${describe(v)}`);
  const type = v.type;
  if (typeof type !== 'string' || !(MESSAGE_TYPES as readonly string[]).includes(type)) throw new Invalid(join(path, 'type'), `must be one of ${MESSAGE_TYPES.join(', ')}; got ${describe(type)}`);
  return MESSAGE_CHECKS[type as MessageType](v, path);
};

function only<T extends Message>(type: T['type']): Check<T> {
  return (v, path) => {
    const m = message(v, path);
    if (m.type !== type) throw new Invalid(join(path, 'type'), `must be "${type}", got "${m.type}"`);
    return m as T;
  };
}

const runSummary = object<RunSummary>({
  runId: str(LIMITS.name, ID),
  name: str(),
  startedAt: time,
  state: (v, path) => oneOf([...RUN_STATES, 'unknown'] as const)(v === 'done' ? 'finished' : v, path),
  steps: int(),
  endedAt: opt(time),
  detail: opt(str(LIMITS.text)),
  finalLoss: opt(finite()),
  bestLoss: opt(finite()),
  evalLoss: opt(finite()),
  tokensPerSec: opt(finite()),
  layout: opt(str()),
  engine: opt(str()),
  engineDetail: opt(str(LIMITS.text)),
  device: opt(str()),
});

const snapshot = object<SnapshotMessage>({
  type: literal('snapshot'),
  protocol: literal(PROTOCOL_VERSION),
  runId: str(LIMITS.name, ID),
  readOnly: bool,
  hello: nullable(only<HelloMessage>('hello')),
  status: nullable(only<StatusMessage>('status')),
  steps: array(only<StepMessage>('step'), LIMITS.snapshotItems),
  stepsTotal: int(),
  evals: array(only<EvalMessage>('eval'), LIMITS.snapshotItems),
  memory: array(only<MemoryMessage>('memory'), LIMITS.snapshotItems),
  gpu: array(only<GpuMessage>('gpu'), LIMITS.snapshotItems),
  comm: array(only<CommMessage>('comm'), LIMITS.snapshotItems),
  logs: array(only<LogMessage>('log'), LIMITS.snapshotItems),
  alerts: array(only<AlertMessage>('alert'), LIMITS.snapshotItems),
  checkpoints: array(only<CheckpointMessage>('checkpoint'), LIMITS.snapshotItems),
  runs: opt(array(runSummary, LIMITS.runs)),
  t: time,
});

const controlResult = object<ControlResultMessage>({ type: literal('control-result'), id: str(), ok: bool, error: opt(str(LIMITS.text)) });
const rejected = object<RejectedMessage>({ type: literal('rejected'), reason: str(LIMITS.text), id: opt(str()) });

const serverMessage: Check<ServerMessage> = (v, path) => {
  if (isPlainObject(v)) {
    if (v.type === 'snapshot') return snapshot(v, path);
    if (v.type === 'control-result') return controlResult(v, path);
    if (v.type === 'rejected') return rejected(v, path);
  }
  return message(v, path);
};

const control = object<ControlMessage>({ type: literal('control'), id: str(128, ID), action: oneOf(CONTROL_ACTIONS), by: opt(nonEmpty(64)) });

/** A message the runtime publishes (or a metrics.jsonl line, already JSON-parsed). */
export const validateMessage = (v: unknown): Result<Message> => validateWith(message, v);
/** Anything a client may receive from the server. */
export const validateServerMessage = (v: unknown): Result<ServerMessage> => validateWith(serverMessage, v);
/** One entry of a runs list (the Runs tab, `scalelm serve DIR`). */
export const validateRunSummary = (v: unknown): Result<RunSummary> => validateWith(runSummary, v);
/** A hello's plan as the one PlanSummary shape, or why it is not one. */
export const validatePlanSummary = (v: unknown): Result<PlanSummary> => validateWith(planSummaryCheck, v);
/** The plan a run announced, when it is a PlanSummary (runs recorded by other tools may carry other JSON). */
export function planSummary(hello: HelloMessage): PlanSummary | undefined {
  if (hello.plan === undefined) return undefined;
  const r = validatePlanSummary(hello.plan);
  return r.ok ? r.value : undefined;
}
/** Anything the server accepts from a client. */
export const validateClientMessage = (v: unknown): Result<ClientMessage> => validateWith(control, v);

// ---------------------------------------------------------------------------------------------- wire

const replacer = (_key: string, value: unknown): unknown => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value);

/** Only these messages may hold non-finite numbers (validated messages; everything else is finite). */
function mayHoldNonFinite(msg: ServerMessage | ClientMessage): boolean {
  if (msg.type === 'step') return !(Number.isFinite(msg.loss) && Number.isFinite(msg.lr) && Number.isFinite(msg.gradNorm) && Number.isFinite(msg.tokensPerSec) && Number.isFinite(msg.stepMs));
  if (msg.type === 'eval') return !Number.isFinite(msg.loss);
  return msg.type === 'snapshot';
}

/** JSON text for the wire or a metrics.jsonl line; non-finite numbers become "NaN"/"Infinity"/"-Infinity". */
export function encodeMessage(msg: ServerMessage | ClientMessage): string {
  // The replacer is several times slower than plain stringify: use it only where it can matter.
  return mayHoldNonFinite(msg) ? JSON.stringify(msg, replacer) : JSON.stringify(msg);
}

function decodeWith<T>(text: string, validate: (v: unknown) => Result<T>): Result<T> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `not valid JSON: ${(e as Error).message}` };
  }
  return validate(parsed);
}

export const decodeMessage = (text: string): Result<Message> => decodeWith(text, validateMessage);
export const decodeServerMessage = (text: string): Result<ServerMessage> => decodeWith(text, validateServerMessage);
export const decodeClientMessage = (text: string): Result<ClientMessage> => decodeWith(text, validateClientMessage);

// ---------------------------------------------------------------------------------------------- helpers

/** Gauges may be coalesced ("latest wins") for a slow client; everything else is delivered in order. */
export function isGauge(msg: Message): msg is GpuMessage | MemoryMessage | CommMessage {
  return msg.type === 'gpu' || msg.type === 'memory' || msg.type === 'comm';
}

/** Two gauges with the same key replace each other. */
export function gaugeKey(msg: GpuMessage | MemoryMessage | CommMessage): string {
  return msg.type === 'gpu' ? 'gpu' : `${msg.type}:${msg.rank}`;
}

/** A run token: 256 bits as 64 lowercase hex digits. */
export function isToken(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

/** The subprotocol list a browser passes to `new WebSocket(url, protocols)`. */
export function webSocketProtocols(token: string): string[] {
  return [SUBPROTOCOL, TOKEN_PROTOCOL_PREFIX + token];
}

/**
 * The token from a dashboard URL's fragment (`#token=…`). The fragment never reaches the server; the page
 * should read it once and remove it (history.replaceState) so it does not linger in the address bar.
 */
export function tokenFromFragment(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const token = params.get('token');
  return token !== null && isToken(token) ? token : null;
}
