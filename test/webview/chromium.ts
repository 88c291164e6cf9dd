// Headless Chromium for the browser test layers (webview alone, and the VS Code workbench in e2e).
// We never download a browser: Debian's /usr/bin/chromium is driven through playwright-core.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.SCALELM_CHROMIUM ?? '/usr/bin/chromium';

/** Quiet, offline, sandbox-free (tests run as root in CI) headless Chromium. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install the Debian package "chromium" (or set SCALELM_CHROMIUM)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** Closes the browser, and does not wait forever for a wedged one (playwright kills it on exit anyway). */
export async function closeChromium(browser: Browser | undefined, timeoutMs = 10_000): Promise<void> {
  if (!browser) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    browser.close().catch(() => undefined),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
  ]);
  clearTimeout(timer);
}
