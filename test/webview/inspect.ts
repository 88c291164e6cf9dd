// Polling the dashboard page's own inspection (window.scalelmDashboard.inspect()) until a condition holds.
import type { Page } from 'playwright-core';
import type { Inspection } from '../../webview/messages';

export const inspect = (page: Page): Promise<Inspection> => page.evaluate(() => (window as unknown as { scalelmDashboard: { inspect(): Inspection } }).scalelmDashboard.inspect());

/** The probe's first truthy value; on timeout, an error with what was asked and the last inspection's gist. */
export async function until<T>(page: Page, what: string, probe: (i: Inspection) => T | false | null | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const i = await inspect(page);
    const v = probe(i);
    if (v) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last inspection: ${JSON.stringify({ runId: i.runId, header: i.header, runs: i.runs, table: i.table, overlays: i.overlays })}`);
    await page.waitForTimeout(100);
  }
}
