/**
 * @module
 * Starts llm-balance in-process on 127.0.0.1 with a free port, from config text, capturing
 * its log lines. For end-to-end tests.
 */

import { builtins } from "../../plugins/mod.ts";
import { App, type AppOptions } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import type { Config } from "../../src/config/types.ts";
import { Logger } from "../../src/logger.ts";
import { type RunningServer, startServer } from "../../src/server.ts";

/** A running proxy for a test. */
export interface TestProxy extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  app: App;
  server: RunningServer;
  config: Config;
  /** Every log line written so far (JSON). */
  logs: string[];
  /** Parsed log lines. */
  logRecords(): Record<string, unknown>[];
  close(): Promise<void>;
}

/** Options of {@linkcode startProxy}. */
export interface StartProxyOptions extends Omit<AppOptions, "logger"> {
  /** Environment for `${VAR}` references. @default {} */
  env?: Record<string, string>;
  /** @default "debug" */
  level?: "debug" | "info" | "warn" | "error";
  /** File name used in messages. @default "test.yaml" */
  source?: string;
}

/**
 * Starts a proxy from config text (any format).
 * @param text the config (native YAML, Seed A JSON or Seed B YAML)
 * @param options environment, injected clock/randomness/fetch, probes (default off)
 * @returns the running proxy; close it (or `await using`)
 */
export async function startProxy(
  text: string,
  options: StartProxyOptions = {},
): Promise<TestProxy> {
  const env = options.env ?? {};
  const config = parseConfigText(text, options.source ?? "test.yaml", { env: (n) => env[n] });
  const logs: string[] = [];
  const loggerOpts: ConstructorParameters<typeof Logger>[0] = {
    level: options.level ?? "debug",
    format: "json",
    sink: (line) => logs.push(line),
  };
  if (options.now) loggerOpts.now = options.now;
  const logger = new Logger(loggerOpts);
  const { env: _e, level: _l, source: _s, ...appOptions } = options;
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    ...appOptions,
    logger,
  });
  const server = await startServer(app, { hostname: "127.0.0.1", port: 0 });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.shutdown(2000);
    await app.close();
  };
  return {
    url: server.url,
    app,
    server,
    config,
    logs,
    logRecords: () => logs.map((l) => JSON.parse(l) as Record<string, unknown>),
    close,
    [Symbol.asyncDispose]: close,
  };
}
