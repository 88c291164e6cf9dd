// Used by tests inside the extension host: asks the e2e runner about the workbench as drawn in the browser.
import { BRIDGE_ENV, type BridgeOp, type BridgeOps, type StatusBarItem } from './bridge';

export function bridgeAvailable(): boolean {
  return Boolean(process.env[BRIDGE_ENV]);
}

export async function ask<K extends BridgeOp>(op: K, request: BridgeOps[K]['request']): Promise<BridgeOps[K]['reply']> {
  const base = process.env[BRIDGE_ENV];
  if (!base) throw new Error(`${BRIDGE_ENV} is not set: run the e2e suites through test/e2e/run.ts`);
  const response = await fetch(`${base}/${op}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
  const body = (await response.json()) as BridgeOps[K]['reply'] | { error: string };
  if (!response.ok || (typeof body === 'object' && body !== null && 'error' in body)) {
    throw new Error(`workbench "${op}" failed: ${(body as { error?: string }).error ?? response.status}`);
  }
  return body as BridgeOps[K]['reply'];
}

export const workbench = {
  statusBar: async (): Promise<StatusBarItem[]> => (await ask('statusBar', {})).items,
  explorerContextMenu: async (file: string): Promise<string[]> => (await ask('explorerContextMenu', { file })).entries,
  quickInput: async (value: string | null): Promise<{ title: string; offered: string }> => ask('quickInput', { value }),
  screenshot: async (name: string): Promise<string> => (await ask('screenshot', { name })).path,
  editorActions: async (): Promise<{ label: string; disabled: boolean }[]> => (await ask('editorActions', {})).actions,
  viewport: async (width: number, height: number): Promise<void> => void (await ask('viewport', { width, height })),
  layout: async (): Promise<{ sidebarVisible: boolean; panelVisible: boolean }> => ask('layout', {}),
};

/** Polls `probe` until it returns something truthy, or fails with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
