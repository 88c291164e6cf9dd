// What a test running inside the VS Code extension host can ask the e2e runner (test/e2e/run.ts), which
// holds the browser page with the workbench. Extension code cannot see the workbench DOM; the runner can.
// Transport: JSON over HTTP on 127.0.0.1; the runner passes its URL to code-server (and so to the extension
// host) in the environment variable below.

export const BRIDGE_ENV = 'SCALELM_E2E_BRIDGE';

export interface Counts {
  passes: number;
  failures: number;
  pending: number;
}

export interface StatusBarItem {
  /** The DOM id; VS Code derives it from the extension id and the item id, e.g. "scalelm.scalelm.scalelm.status". */
  id: string;
  text: string;
  ariaLabel: string;
}

/** Requests (POST /<op> with the JSON body) and what each answers. */
export interface BridgeOps {
  /** Items of the workbench status bar as drawn. */
  statusBar: { request: Record<string, never>; reply: { items: StatusBarItem[] } };
  /** Right-clicks a file in the Explorer and reads the context menu (entries as drawn, separators dropped). */
  explorerContextMenu: { request: { file: string }; reply: { entries: string[] } };
  /** Resizes the browser window that holds the workbench (CSS pixels). */
  viewport: { request: { width: number; height: number }; reply: Record<string, never> };
  /** Which parts of the workbench are drawn: the primary side bar and the bottom panel. */
  layout: { request: Record<string, never>; reply: { sidebarVisible: boolean; panelVisible: boolean } };
  /** The actions drawn in the active editor group's title bar, with whether each is greyed out. */
  editorActions: { request: Record<string, never>; reply: { actions: { label: string; disabled: boolean }[] } };
  /**
   * Waits for the quick input box (showInputBox) and reads the value it offers; then types `value` into it
   * and presses Enter, or presses Escape when value is null.
   */
  quickInput: { request: { value: string | null }; reply: { title: string; offered: string } };
  /** Saves a PNG of the workbench to test-artifacts/e2e-<name>.png. */
  screenshot: { request: { name: string }; reply: { path: string } };
  /** The suite's final counts (the runner also sees the exit code). */
  result: { request: Counts; reply: Record<string, never> };
}

export type BridgeOp = keyof BridgeOps;
