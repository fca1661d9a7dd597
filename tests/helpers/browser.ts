/**
 * @module
 * A real browser for end-to-end tests: Debian's Chromium at `/usr/bin/chromium` driven by
 * playwright-core (never a downloaded browser; `.ci/run` installs the package when missing).
 */

import { type Browser, chromium } from "playwright-core";

/** Where the browser is expected. */
export const CHROMIUM = "/usr/bin/chromium";

/** Whether {@linkcode CHROMIUM} is there (tests are ignored without it). */
export const hasChromium: boolean = await Deno.stat(CHROMIUM).then(() => true, () => false);

/**
 * Starts a headless Chromium; close it in a `finally`.
 * @param args extra command-line switches
 * @returns the browser
 */
export function launchChromium(args: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", ...args],
    timeout: 30_000,
  });
}

/**
 * The path of a test artifact (a screenshot) under `tests/artifacts/`, creating the folder.
 * @param name the file name
 * @returns the absolute path
 */
export function artifactPath(name: string): string {
  const dir = new URL("../artifacts/", import.meta.url);
  Deno.mkdirSync(dir, { recursive: true });
  return new URL(name, dir).pathname;
}
