// Headless Chromium for the browser test layers (webview alone, and the VS Code workbench in e2e).
// We never download a browser: Debian's /usr/bin/chromium is driven through playwright-core.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.SCALELM_CHROMIUM ?? '/usr/bin/chromium';

/** Quiet, offline, sandbox-free (tests run as root in CI) headless Chromium. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install the Debian package "chromium" (or set SCALELM_CHROMIUM)`);
  }
  // Chromium keeps crash-report folders under $XDG_CONFIG_HOME/chromium even with a temporary profile, and
  // its own temp folders in $TMPDIR: point both at one scratch folder so tests leave nothing behind.
  const scratch = mkdtempSync(join(tmpdir(), 'scalelm-chromium-'));
  scratchDirs.add(scratch);
  mkdirSync(join(scratch, 'tmp'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    env: { ...process.env, XDG_CONFIG_HOME: join(scratch, 'config'), XDG_CACHE_HOME: join(scratch, 'cache'), TMPDIR: join(scratch, 'tmp') } as Record<string, string>,
    headless: true,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  browser.on('disconnected', () => {
    rmSync(scratch, { recursive: true, force: true });
    scratchDirs.delete(scratch);
  });
  return browser;
}

// Also when the test process is stopped (Ctrl-C) and the browser never said goodbye.
const scratchDirs = new Set<string>();
process.once('exit', () => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/** Closes the browser, and does not wait forever for a wedged one (playwright kills it on exit anyway). */
export async function closeChromium(browser: Browser | undefined, timeoutMs = 10_000): Promise<void> {
  if (!browser) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([browser.close().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
}
