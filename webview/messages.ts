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
  RUN_STATES,
  validateMessage,
  validateServerMessage,
  type ControlAction,
  type ControlResultMessage,
  type JsonObject,
  type Message,
  type Result,
  type RunSummary,
  validateRunSummary,
  type SnapshotMessage,
} from '../common/protocol';
import type { Layout } from '../runtime/planner/types';
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
  | Message
  | SnapshotMessage
  | BatchMessage
  | ControlResultMessage
  | RunsMessage
  | RunHistoryMessage
  | PlannerInputMessage
  | ShowTabMessage
  | ConnectionMessage
  | PingMessage
  | InspectMessage;

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
}

export interface Inspection {
  host: 'vscode' | 'browser' | 'detached';
  tab: string;
  runId: string | null;
  header: Record<string, string>;
  charts: ChartInspection[];
  memory: MemoryPanelInspection[];
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
  | ReadyMessage
  | PongMessage
  | InspectResultMessage
  | SelectRunMessage
  | CompareRunMessage
  | ControlRequest
  | ResumeRunMessage
  | ChooseLayoutMessage
  | RequestPlannerInputMessage;

// ------------------------------------------------------------------------------------------ validation

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });
const ID = /^[A-Za-z0-9][A-Za-z0-9._:@+-]*$/;
const isRunId = (v: unknown): v is string => typeof v === 'string' && v.length <= 512 && ID.test(v);
const isRequestId = (v: unknown): v is number | string => (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length <= 128);
/** The most messages one batch may carry (a 250 ms batch of a fast run is hundreds). */
export const MAX_BATCH = 100_000;

function runSummary(v: unknown, path: string): Result<RunSummary> {
  const r = validateRunSummary(v);
  return r.ok ? r : fail(`${path}.${r.reason}`);
}

/**
 * Everything the webview accepts from its host, checked whole: protocol messages by the protocol's own
 * validators, batches message by message (the invalid ones are reported in `dropped`, the rest kept).
 */
export function validateHostMessage(v: unknown): Result<HostToWebview> & { dropped?: string[] } {
  if (!isObject(v) || typeof v.type !== 'string') return fail('a host message must be an object with a "type"');
  switch (v.type) {
    case 'ping':
    case 'inspect':
      return isRequestId(v.id) ? { ok: true, value: { type: v.type, id: v.id } } : fail(`${v.type}.id must be a number or a short string`);
    case 'batch': {
      if (!isRunId(v.runId)) return fail('batch.runId must be a run id');
      if (!Array.isArray(v.messages)) return fail('batch.messages must be an array');
      if (v.messages.length > MAX_BATCH) return fail(`batch.messages has ${v.messages.length} items; at most ${MAX_BATCH}`);
      const messages: Message[] = [];
      const dropped: string[] = [];
      v.messages.forEach((m, i) => {
        const r = validateMessage(m);
        if (r.ok) messages.push(r.value);
        else dropped.push(`batch.messages[${i}]: ${r.reason}`);
      });
      return { ok: true, value: { type: 'batch', runId: v.runId, messages }, dropped };
    }
    case 'runs': {
      if (!Array.isArray(v.runs) || v.runs.length > 10_000) return fail('runs.runs must be an array of run summaries');
      const runs: RunSummary[] = [];
      for (let i = 0; i < v.runs.length; i++) {
        const r = runSummary(v.runs[i], `runs.runs[${i}]`);
        if (!r.ok) return r;
        runs.push(r.value);
      }
      const out: RunsMessage = { type: 'runs', runs };
      if (v.current !== undefined) {
        if (v.current !== null && !isRunId(v.current)) return fail('runs.current must be a run id or null');
        out.current = v.current;
      }
      if (v.live !== undefined) {
        if (!Array.isArray(v.live) || !v.live.every(isRunId)) return fail('runs.live must be a list of run ids');
        out.live = v.live as string[];
      }
      return { ok: true, value: out };
    }
    case 'runHistory': {
      if (!isRunId(v.runId)) return fail('runHistory.runId must be a run id');
      const s = validateServerMessage(v.snapshot);
      if (!s.ok) return fail(`runHistory.snapshot: ${s.reason}`);
      if (s.value.type !== 'snapshot') return fail('runHistory.snapshot must be a snapshot');
      return { ok: true, value: { type: 'runHistory', runId: v.runId, snapshot: s.value } };
    }
    case 'plannerInput': {
      if (typeof v.source !== 'string' || v.source.length > 4096) return fail('plannerInput.source must be a string');
      if (!isObject(v.config)) return fail('plannerInput.config must be a JSON object (the config file as written)');
      let config: JsonObject;
      try {
        config = JSON.parse(JSON.stringify(v.config)) as JsonObject;
      } catch {
        return fail('plannerInput.config must be plain JSON');
      }
      return { ok: true, value: { type: 'plannerInput', source: v.source, config } };
    }
    case 'showTab': {
      if (!(TABS as readonly unknown[]).includes(v.tab)) return fail(`showTab.tab must be one of ${TABS.join(', ')}`);
      return { ok: true, value: { type: 'showTab', tab: v.tab as Tab } };
    }
    case 'connection': {
      const states: ConnectionState[] = ['connecting', 'open', 'waiting', 'closed', 'ended'];
      if (!states.includes(v.state as ConnectionState)) return fail(`connection.state must be one of ${states.join(', ')}`);
      const out: ConnectionMessage = { type: 'connection', state: v.state as ConnectionState };
      if (v.detail !== undefined) {
        if (typeof v.detail !== 'string') return fail('connection.detail must be a string');
        out.detail = v.detail.slice(0, 1000);
      }
      return { ok: true, value: out };
    }
    default: {
      // snapshot, control-result, rejected and the ten protocol messages
      const r = validateServerMessage(v);
      if (!r.ok) return r;
      if (r.value.type === 'rejected') return fail(`the runtime rejected a request: ${r.value.reason}`);
      return { ok: true, value: r.value };
    }
  }
}

/** For the extension host: checks what the webview posted before acting on it. */
export function validateWebviewMessage(v: unknown): Result<WebviewToHost> {
  if (!isObject(v) || typeof v.type !== 'string') return fail('a webview message must be an object with a "type"');
  switch (v.type) {
    case 'ready': {
      const vp = v.viewport;
      const size = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0 && n < 1e6;
      // An unreadable viewport is dropped (the host then leaves the layout alone), the ready still counts.
      return { ok: true, value: isObject(vp) && size(vp.width) && size(vp.height) ? { type: 'ready', viewport: { width: vp.width, height: vp.height } } : { type: 'ready' } };
    }
    case 'requestPlannerInput':
      return { ok: true, value: { type: v.type } };
    case 'pong':
      if (!isRequestId(v.id) || !Array.isArray(v.components) || typeof v.chartInk !== 'number') return fail('pong needs id, components and chartInk');
      return { ok: true, value: { type: 'pong', id: v.id, components: v.components.filter((c): c is string => typeof c === 'string'), chartInk: v.chartInk } };
    case 'inspectResult':
      if (!isRequestId(v.id)) return fail('inspectResult.id must be a number or a short string');
      return { ok: true, value: v as unknown as InspectResultMessage };
    case 'selectRun':
    case 'compareRun':
    case 'resumeRun':
      return isRunId(v.runId) ? { ok: true, value: { type: v.type, runId: v.runId } } : fail(`${v.type}.runId must be a run id`);
    case 'control':
      if (typeof v.id !== 'string' || !ID.test(v.id) || v.id.length > 128) return fail('control.id must be a short id');
      if (!(CONTROL_ACTIONS as readonly unknown[]).includes(v.action)) return fail(`control.action must be one of ${CONTROL_ACTIONS.join(', ')}`);
      return { ok: true, value: { type: 'control', id: v.id, action: v.action as ControlAction } };
    case 'chooseLayout': {
      if (!isObject(v.layout) || !isObject(v.configPatch) || typeof v.summary !== 'string') return fail('chooseLayout needs layout, configPatch and summary');
      if (v.source !== null && typeof v.source !== 'string') return fail('chooseLayout.source must be a string or null');
      const l = v.layout;
      const whole = (k: string) => typeof l[k] === 'number' && Number.isInteger(l[k]) && (l[k] as number) >= 1;
      if (!['dp', 'tp', 'pp', 'vpp', 'microBatch'].every(whole)) return fail('chooseLayout.layout needs whole dp, tp, pp, vpp and microBatch');
      if (![0, 1, 2, 3].includes(l.zero as number)) return fail('chooseLayout.layout.zero must be 0–3');
      return { ok: true, value: v as unknown as ChooseLayoutMessage };
    }
    default:
      return fail(`unknown webview message type "${v.type}"`);
  }
}

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
