// The messages between the dashboard webview and its host: the extension host inside VS Code (postMessage),
// or, in a plain browser, the WebSocket adapter in browser-host.ts that plays the same part against the
// runtime's server. Pure (no DOM, no Node, no vscode): the extension imports this module too.
//
// Host -> webview
//   any protocol v1 Message        one live message of the shown run (validated here with validateMessage)
//   SnapshotMessage                the shown run so far; replaces what the dashboard holds (first thing after
//                                  'ready', after selectRun, after a reconnect, when the panel becomes visible)
//   BatchMessage                   the live messages of ~250 ms in one postMessage: {type:'batch', runId, messages}
//   ControlResultMessage           the runtime's answer to a 'control' request, passed through
//   RunsMessage                    the runs the host knows (live and past), for the Runs tab
//   RunHistoryMessage              another run's snapshot, drawn as the overlay: the answer to 'compareRun',
//                                  or sent unasked when the user picks "Compare Runs" in the host's Runs view
//   PlannerInputMessage            the open *.scalelm.json (or HF config.json) for the Planner tab
//   ShowTabMessage                 bring a tab to the front (Curves on launch, Planner on "Suggest Parallel Layouts")
//   ConnectionMessage              the state of the host's link to the runtime
//   PingMessage / InspectMessage   health check and test probe: answered with 'pong' / 'inspectResult'
//
// Webview -> host
//   ReadyMessage                   posted once on load: send a snapshot (and runs, plannerInput) now
//   PongMessage, InspectResult     answers, echoing `id`
//   SelectRunMessage               show this run instead (host answers with its snapshot, then its live batches)
//   CompareRunMessage              send this run's history for an overlay (host answers with RunHistoryMessage)
//   ControlRequest                 stop the run / checkpoint now (host forwards a protocol ControlMessage)
//   ChooseLayoutMessage            the user picked a planner layout: the host edits the config with `configPatch`
//   RequestPlannerInputMessage     the Planner tab opened: send the open config (if any)
//
// postMessage inside VS Code is JSON: NaN and ±Infinity would arrive as null and fail validation. Send
// protocol messages in their wire form (non-finite floats as "NaN"/"Infinity"/"-Infinity"): toWebview().
import {
  ALERT_KINDS,
  CONTROL_ACTIONS,
  validateMessage,
  validateRunSummary,
  validateServerMessage,
  type ControlAction,
  type ControlResultMessage,
  type JsonObject,
  type Message,
  type RejectedMessage,
  type Result,
  type RunSummary,
  type ServerMessage,
  type SnapshotMessage,
} from '../common/protocol';
import {
  array,
  bool,
  finite,
  fromValidator,
  ID,
  int,
  Invalid,
  isPlainObject,
  join,
  jsonObject,
  LIMITS,
  literal,
  nullable,
  object,
  oneOf,
  opt,
  record,
  str,
  validateWith,
  type Check,
} from '../common/validate';
import type { Layout, ZeroStage } from '../runtime/planner/types';
import { TABS, type Tab } from './ui-state';

// ------------------------------------------------------------------------------------------ host -> webview

export interface BatchMessage {
  type: 'batch';
  runId: string;
  messages: Message[];
}

export interface RunsMessage {
  type: 'runs';
  runs: RunSummary[];
  /** The run the dashboard is showing (or should show), when the host knows. */
  current?: string | null;
  /** Runs that are training right now. */
  live?: string[];
}

export interface RunHistoryMessage {
  type: 'runHistory';
  runId: string;
  snapshot: SnapshotMessage;
}

export interface PlannerInputMessage {
  type: 'plannerInput';
  /** Where it came from, shown to the user: a workspace-relative path. */
  source: string;
  /** The file as the user wrote it (JSON, comments stripped): a *.scalelm.json or a HuggingFace config.json. */
  config: JsonObject;
}

/** Brings a tab to the front: Curves when a run is launched, Planner for "Suggest Parallel Layouts". */
export interface ShowTabMessage {
  type: 'showTab';
  tab: Tab;
}

/** "ended": the run is over and its server went away with it (not an error). */
export type ConnectionState = 'connecting' | 'open' | 'waiting' | 'closed' | 'ended';
export interface ConnectionMessage {
  type: 'connection';
  state: ConnectionState;
  detail?: string;
}

export interface PingMessage {
  type: 'ping';
  id: number | string;
}

export interface InspectMessage {
  type: 'inspect';
  id: number | string;
}

export type HostToWebview =
  Message | SnapshotMessage | BatchMessage | ControlResultMessage | RunsMessage | RunHistoryMessage | PlannerInputMessage | ShowTabMessage | ConnectionMessage | PingMessage | InspectMessage;

// ------------------------------------------------------------------------------------------ webview -> host

export interface ReadyMessage {
  type: 'ready';
  /** The page's viewport in CSS pixels when it loaded: the host maximises a dashboard opened too small to read. */
  viewport?: Viewport;
}

export interface Viewport {
  width: number;
  height: number;
}

export interface PongMessage {
  type: 'pong';
  id: number | string;
  /** Custom element tags rendered with shadow roots. */
  components: string[];
  /** Non-transparent pixels in the main loss chart's canvas. */
  chartInk: number;
}

/** What a chart shows right now: enough for a test to check the data, not just that a canvas exists. */
export interface ChartInspection {
  id: string;
  visible: boolean;
  xMin: number | null;
  xMax: number | null;
  yScale: 'linear' | 'logarithmic';
  datasets: { label: string; points: number; first: { x: number; y: number } | null; last: { x: number; y: number } | null; minY: number | null; maxY: number | null; color: string }[];
}

export interface MemoryPanelInspection {
  rank: number;
  device: string | null;
  capacity: number;
  stepPeak: number;
  maxPeak: number;
  level: 'ok' | 'warn' | 'critical';
  measured: Record<string, number>;
  predicted: Record<string, number> | null;
  predictionSource: string | null;
  historyPoints: number;
  gpu: { name: string; memoryUsed: number | null; memoryTotal: number | null; utilPercent: number | null } | null;
  /** The machine the rank reported from (null: the coordinator's own). */
  node: { rank: number; host: string } | null;
}

/** The Memory tab as drawn: cards or the many-rank view (heatmap + table), grouped by node in a multi-node run. */
export interface MemoryLayoutInspection {
  mode: 'empty' | 'cards' | 'compact';
  /** Node groups in the order drawn (card sections, or the table's node rows), with their ranks as drawn. */
  groups: { key: string; header: string; ranks: number[] }[];
  /** Ranks of the cards, in order (card mode). */
  cards: number[];
  /** Ranks of the table's rows, in order (compact mode). */
  rows: number[];
  /** The heatmap's rows (one per node) and their cells' ranks (compact mode). */
  heatmap: { key: string; label: string; ranks: number[] }[];
  worst: number | null;
  /** The rank whose detailed card is shown (compact mode), and the card's title. */
  selected: number | null;
  detail: string | null;
  sort: 'rank' | 'peak';
}

export interface Inspection {
  host: 'vscode' | 'browser' | 'detached';
  tab: string;
  runId: string | null;
  header: Record<string, string>;
  charts: ChartInspection[];
  memory: MemoryPanelInspection[];
  memoryLayout: MemoryLayoutInspection;
  runs: { runId: string; name: string; shown: boolean; compared: boolean }[];
  /** The Runs tab's table as drawn (run id and each cell's text), and the overlays' labels on the curves. */
  table: { runId: string; cells: string[] }[];
  overlays: string[];
  planner: { source: string | null; candidates: number; chosen: string | null; error: string | null };
  theme: { kind: string; foreground: string; series: string[] };
  /** Messages the dashboard refused (validation), with the reason of the last one. */
  rejected: { count: number; last: string | null };
  /** Cost of the last redraw, ms. */
  lastRenderMs: number;
  stepsShown: number;
  /** The page's viewport now, CSS pixels. */
  viewport: Viewport;
}

export interface InspectResultMessage extends Inspection {
  type: 'inspectResult';
  id: number | string;
}

export interface SelectRunMessage {
  type: 'selectRun';
  runId: string;
}

export interface CompareRunMessage {
  type: 'compareRun';
  runId: string;
}

export interface ControlRequest {
  type: 'control';
  id: string;
  action: ControlAction;
}

/** "Resume from step N" on a stopped or crashed run: the host runs `scalelm train --resume <its folder>`. */
export interface ResumeRunMessage {
  type: 'resumeRun';
  runId: string;
}

export interface ChooseLayoutMessage {
  type: 'chooseLayout';
  layout: Layout;
  /** The planner input's source (PlannerInputMessage.source), or null for a preset / pasted HF config. */
  source: string | null;
  /** Merge into the config file: {parallel: {dp, tp, pp, vpp, zero, sequenceParallel, offload…}, train: {microBatch, recompute}, cluster: {...}}. */
  configPatch: JsonObject;
  /** One line for a notification: "dp8·tp1·pp1 · ZeRO-1 · mb 4 · recompute none — 61.2 GiB, 412k tokens/s". */
  summary: string;
}

export interface RequestPlannerInputMessage {
  type: 'requestPlannerInput';
}

export type WebviewToHost =
  ReadyMessage | PongMessage | InspectResultMessage | SelectRunMessage | CompareRunMessage | ControlRequest | ResumeRunMessage | ChooseLayoutMessage | RequestPlannerInputMessage;

// ------------------------------------------------------------------------------------------ validation
// One mechanism for every message, both directions: the combinators of common/validate.ts (the protocol's
// own), each message a fresh, fully checked copy with unknown keys refused.

/** The most messages one batch may carry (a 250 ms batch of a fast run is hundreds). */
export const MAX_BATCH = 100_000;

const runId = str(LIMITS.name, ID);
const requestId: Check<number | string> = (v, path) => (typeof v === 'number' ? finite()(v, path) : str(128)(v, path));
const count = int(0);
const nullableNumber = nullable(finite());
const point = nullable(object<{ x: number; y: number }>({ x: finite(), y: finite() }));
const type = <T extends string>(t: T) => literal(t);

const CONNECTION_STATES: readonly ConnectionState[] = ['connecting', 'open', 'waiting', 'closed', 'ended'];

/** Any protocol message the runtime's server may send (a "rejected" answer is refused: nothing to show). */
const fromServer: Check<Exclude<ServerMessage, RejectedMessage>> = (v, path) => {
  const m = fromValidator(validateServerMessage)(v, path);
  if (m.type === 'rejected') throw new Invalid(path, `the runtime rejected a request: ${m.reason}`);
  return m;
};

const snapshotOnly: Check<SnapshotMessage> = (v, path) => {
  const m = fromValidator(validateServerMessage)(v, path);
  if (m.type !== 'snapshot') throw new Invalid(path, 'must be a snapshot');
  return m;
};

const HOST_CHECKS: { [K in Exclude<HostToWebview['type'], ServerMessage['type'] | 'batch'>]: Check<Extract<HostToWebview, { type: K }>> } = {
  ping: object<PingMessage>({ type: type('ping'), id: requestId }),
  inspect: object<InspectMessage>({ type: type('inspect'), id: requestId }),
  runs: object<RunsMessage>({ type: type('runs'), runs: array(fromValidator(validateRunSummary), LIMITS.runs), current: opt(nullable(runId)), live: opt(array(runId, LIMITS.runs)) }),
  runHistory: object<RunHistoryMessage>({ type: type('runHistory'), runId, snapshot: snapshotOnly }),
  plannerInput: object<PlannerInputMessage>({ type: type('plannerInput'), source: str(4096), config: jsonObject }),
  showTab: object<ShowTabMessage>({ type: type('showTab'), tab: oneOf(TABS) }),
  connection: object<ConnectionMessage>({ type: type('connection'), state: oneOf(CONNECTION_STATES), detail: opt((v, path) => str(LIMITS.text)(v, path).slice(0, 1000)) }),
};

/** A batch's frame; its messages are checked one by one (the invalid ones dropped and reported). */
const batchFrame = object<{ type: 'batch'; runId: string; messages: unknown[] }>({ type: type('batch'), runId, messages: array((v) => v, MAX_BATCH) });

/**
 * Everything the webview accepts from its host, checked whole: protocol messages by the protocol's own
 * validators, batches message by message (the invalid ones are reported in `dropped`, the rest kept).
 */
export function validateHostMessage(v: unknown): Result<HostToWebview> & { dropped?: string[] } {
  if (!isPlainObject(v) || typeof v.type !== 'string') return { ok: false, reason: 'a host message must be an object with a "type"' };
  if (v.type === 'batch') {
    const frame = validateWith(batchFrame, v);
    if (!frame.ok) return frame;
    const messages: Message[] = [];
    const dropped: string[] = [];
    frame.value.messages.forEach((m, i) => {
      const r = validateMessage(m);
      if (r.ok) messages.push(r.value);
      else dropped.push(`batch.messages[${i}]: ${r.reason}`);
    });
    return { ok: true, value: { type: 'batch', runId: frame.value.runId, messages }, dropped };
  }
  const check = Object.hasOwn(HOST_CHECKS, v.type) ? (HOST_CHECKS[v.type as keyof typeof HOST_CHECKS] as Check<HostToWebview>) : fromServer;
  return validateWith(check, v);
}

const size = (v: unknown, path: string): number => {
  const n = finite(0)(v, path);
  if (n >= 1e6) throw new Invalid(path, `must be below 1e6 CSS pixels, got ${n}`);
  return n;
};
const viewport = object<Viewport>({ width: size, height: size });
const readyFrame = object<{ type: 'ready'; viewport?: unknown }>({ type: type('ready'), viewport: opt((v) => v) });

const rankedColor = str(64);
const chartInspection = object<ChartInspection>({
  id: str(128),
  visible: bool,
  xMin: nullableNumber,
  xMax: nullableNumber,
  yScale: oneOf(['linear', 'logarithmic'] as const),
  datasets: array(object<ChartInspection['datasets'][number]>({ label: str(), points: count, first: point, last: point, minY: nullableNumber, maxY: nullableNumber, color: rankedColor }), 4096),
});
const memoryInspection = object<MemoryPanelInspection>({
  rank: count,
  device: nullable(str()),
  capacity: finite(0),
  stepPeak: finite(0),
  maxPeak: finite(0),
  level: oneOf(['ok', 'warn', 'critical'] as const),
  measured: record(finite(), LIMITS.categories),
  predicted: nullable(record(finite(), LIMITS.categories)),
  predictionSource: nullable(str()),
  historyPoints: count,
  gpu: nullable(object<NonNullable<MemoryPanelInspection['gpu']>>({ name: str(), memoryUsed: nullableNumber, memoryTotal: nullableNumber, utilPercent: nullableNumber })),
  node: nullable(object<{ rank: number; host: string }>({ rank: count, host: str(255) })),
});
const ranks = array(count, 1 << 16);
const memoryLayout = object<MemoryLayoutInspection>({
  mode: oneOf(['empty', 'cards', 'compact'] as const),
  groups: array(object<MemoryLayoutInspection['groups'][number]>({ key: str(), header: str(LIMITS.text), ranks }), 1 << 16),
  cards: ranks,
  rows: ranks,
  heatmap: array(object<MemoryLayoutInspection['heatmap'][number]>({ key: str(), label: str(LIMITS.text), ranks }), 1 << 16),
  worst: nullable(count),
  selected: nullable(count),
  detail: nullable(str(LIMITS.text)),
  sort: oneOf(['rank', 'peak'] as const),
});
const inspectResult = object<InspectResultMessage>({
  type: type('inspectResult'),
  id: requestId,
  host: oneOf(['vscode', 'browser', 'detached'] as const),
  tab: str(64),
  runId: nullable(str()),
  header: record(str(LIMITS.text), 256),
  charts: array(chartInspection, 256),
  memory: array(memoryInspection, 1 << 16),
  memoryLayout,
  runs: array(object<Inspection['runs'][number]>({ runId: str(), name: str(), shown: bool, compared: bool }), LIMITS.runs),
  table: array(object<Inspection['table'][number]>({ runId: str(), cells: array(str(LIMITS.text), 64) }), LIMITS.runs),
  overlays: array(str(), 1024),
  planner: object<Inspection['planner']>({ source: nullable(str(4096)), candidates: count, chosen: nullable(str(LIMITS.text)), error: nullable(str(LIMITS.text)) }),
  theme: object<Inspection['theme']>({ kind: str(64), foreground: str(64), series: array(str(64), 256) }),
  rejected: object<Inspection['rejected']>({ count, last: nullable(str(LIMITS.text)) }),
  lastRenderMs: finite(0),
  stepsShown: count,
  viewport,
});

const layout = object<Layout>({
  dp: int(1),
  tp: int(1),
  pp: int(1),
  vpp: int(1),
  zero: (v, path) => int(0, 3)(v, path) as ZeroStage,
  microBatch: int(1),
  recompute: oneOf(['none', 'selective', 'full'] as const),
  sequenceParallel: bool,
  offloadOptimizer: bool,
  offloadParams: bool,
});

/** The config sections a planner layout may change, and the shape of a patch's keys (dotted paths when written). */
export const PATCH_SECTIONS = ['parallel', 'train', 'cluster', 'model', 'devices'] as const;
const PATCH_KEY = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const configPatch: Check<JsonObject> = (v, path) => {
  const patch = jsonObject(v, path);
  const keys = (o: JsonObject, p: string): void => {
    for (const [k, child] of Object.entries(o)) {
      if (!PATCH_KEY.test(k)) throw new Invalid(join(p, k), 'is not a config field name');
      if (typeof child === 'object' && child !== null && !Array.isArray(child)) keys(child, join(p, k));
    }
  };
  for (const k of Object.keys(patch)) if (!(PATCH_SECTIONS as readonly string[]).includes(k)) throw new Invalid(join(path, k), `is not a section a layout changes (${PATCH_SECTIONS.join(', ')})`);
  keys(patch, path);
  return patch;
};

const WEBVIEW_CHECKS: { [K in WebviewToHost['type']]: Check<Extract<WebviewToHost, { type: K }>> } = {
  ready: (v, path) => {
    const m = readyFrame(v, path);
    // An unreadable viewport is dropped (the host then leaves the layout alone), the ready still counts.
    const vp = m.viewport === undefined ? undefined : validateWith(viewport, m.viewport);
    return vp?.ok ? { type: 'ready', viewport: vp.value } : { type: 'ready' };
  },
  requestPlannerInput: object<RequestPlannerInputMessage>({ type: type('requestPlannerInput') }),
  pong: object<PongMessage>({ type: type('pong'), id: requestId, components: array(str(128), 1024), chartInk: finite(0) }),
  inspectResult,
  selectRun: object<SelectRunMessage>({ type: type('selectRun'), runId }),
  compareRun: object<CompareRunMessage>({ type: type('compareRun'), runId }),
  resumeRun: object<ResumeRunMessage>({ type: type('resumeRun'), runId }),
  control: object<ControlRequest>({ type: type('control'), id: str(128, ID), action: oneOf(CONTROL_ACTIONS) }),
  chooseLayout: object<ChooseLayoutMessage>({ type: type('chooseLayout'), layout, source: nullable(str(4096)), configPatch, summary: str(LIMITS.text) }),
};

/** For the extension host (and the browser host): checks what the webview posted before acting on it. */
export function validateWebviewMessage(v: unknown): Result<WebviewToHost> {
  if (!isPlainObject(v) || typeof v.type !== 'string') return { ok: false, reason: 'a webview message must be an object with a "type"' };
  if (!Object.hasOwn(WEBVIEW_CHECKS, v.type)) return { ok: false, reason: `unknown webview message type "${v.type.slice(0, 64)}"` };
  return validateWith(WEBVIEW_CHECKS[v.type as WebviewToHost['type']] as Check<WebviewToHost>, v);
}

/** The answer each request gets (it echoes the request's `id` where there is one). */
export interface HostRequests {
  ping: PongMessage;
  inspect: InspectResultMessage;
}
export interface WebviewRequests {
  compareRun: RunHistoryMessage;
  control: ControlResultMessage;
  requestPlannerInput: PlannerInputMessage;
}
/** A request the host sends the webview, without the id the host adds. */
export type HostRequest<K extends keyof HostRequests = keyof HostRequests> = Omit<Extract<HostToWebview, { type: K }>, 'id'>;

// ------------------------------------------------------------------------------------------ wire form

const wire = (_key: string, value: unknown): unknown => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value);

/**
 * A message as it must travel through VS Code's postMessage (JSON): non-finite floats spelled as the
 * protocol's strings, which validateMessage turns back into numbers. Use it for every HostToWebview.
 */
export function toWebview<T extends HostToWebview>(message: T): T {
  return JSON.parse(JSON.stringify(message, wire)) as T;
}

/** The alert kinds the header knows how to describe (re-exported for the extension's status bar). */
export { ALERT_KINDS };
