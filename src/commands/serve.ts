/**
 * @module
 * `llm-balance serve`: starts the proxy and prints its base URL alone as the first line of
 * stdout. SIGHUP (and file changes with `server.watch_config`) reloads the config;
 * SIGTERM/SIGINT stop accepting, drain requests in flight for up to `server.drain_timeout`,
 * cut the rest with an honest error, stop the probes and return 0. A second signal cuts at once.
 */

import { App } from "../app.ts";
import { builtins } from "../../plugins/mod.ts";
import type { Config } from "../config/types.ts";
import { type RunningServer, startServer } from "../server.ts";
import { Reloader } from "./reloader.ts";
import { openStateStore } from "../state/open.ts";
import { Cluster } from "../shared/cluster.ts";
import { Logger, resolveFormat } from "../logger.ts";
import { describeError, out, say } from "./_io.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** Loads and verifies the config again, for reloads (flags and environment applied). */
  reload: () => Promise<Config>;
  /** Signals that stop the server. @default SIGINT and SIGTERM (SIGINT and SIGBREAK on Windows) */
  stopSignals?: Deno.Signal[];
}

/** A stop signal this soon after the first is the same signal delivered twice. */
const DUPLICATE_SIGNAL_MS = 300;

/**
 * Serves until a stop signal arrives and the drain is over.
 * @param config the verified config
 * @param options how to reload
 * @returns 0 after a clean stop, 1 when the address cannot be bound, 2 when the app cannot be built
 */
export async function serve(config: Config, options: ServeOptions): Promise<number> {
  let app: App;
  let statePath: string | undefined;
  try {
    // the state file's own lines (opened, set aside) follow the config's log settings
    const logger = new Logger({
      level: config.log.level,
      format: resolveFormat(config.log.format),
    });
    const opened = openStateStore(config, logger);
    statePath = opened.path;
    const redis = config.state.redis;
    const cluster = redis === undefined
      ? undefined
      : Cluster.open(redis, { local: opened.store, logger });
    app = await App.create(config, {
      plugins: builtins,
      probes: true,
      store: cluster?.store ?? opened.store,
      cluster,
    });
    // after the keys' records exist: their shared state is read as soon as Redis answers (a
    // Redis that cannot be reached now is no reason not to start, unless it is required)
    if (cluster !== undefined && !await cluster.start() && cluster.required) {
      const why = cluster.link.lastError;
      say(
        `Cannot start: state.redis_required is set and Redis at ${cluster.link.display} ` +
          `cannot be reached${why === undefined ? "" : `: ${why}`}`,
      );
      await app.close();
      return 1;
    }
  } catch (err) {
    say(describeError(err, `Cannot start with config "${config.source}"`));
    return 2;
  }
  const host = config.server.host;
  let server: RunningServer;
  try {
    server = await startServer(app, { hostname: host, port: config.server.port });
  } catch (err) {
    say(`Cannot listen on ${host}:${config.server.port}: ${(err as Error).message}`);
    await app.close();
    return 1;
  }
  const reloader = new Reloader(app, { load: options.reload });
  if (config.server.watchConfig) reloader.watch(config.source);

  let stopped: Promise<void> | undefined;
  let stopRequested!: () => void;
  const stopping = new Promise<void>((r) => stopRequested = r);
  let firstSignalAt = 0;
  const stop = (signal: string): Promise<void> => {
    if (stopped !== undefined) {
      // `deno task` and a terminal's Ctrl-C deliver the same signal twice at once (to the task
      // runner, which forwards it, and to the whole process group): only a later one cuts
      if (performance.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return stopped;
      app.logger.warn("second stop signal: cutting the requests still open", { signal });
      server.cutNow();
      return stopped;
    }
    firstSignalAt = performance.now();
    stopped = (async () => {
      const drainMs = app.rt.config.server.drainTimeoutMs;
      app.logger.info("shutting down: no new connections, draining requests in flight", {
        signal,
        in_flight: server.inFlight(),
        drain_ms: drainMs,
      });
      const reloading = reloader.close();
      const report = await server.shutdown(drainMs);
      await reloading;
      await app.close();
      app.logger.info("stopped", { drained: report.drained, cut: report.cut });
    })();
    stopRequested();
    return stopped;
  };

  const listeners: [Deno.Signal, () => void][] = [];
  const stopSignals = options.stopSignals ??
    (Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"]);
  for (const s of stopSignals) listeners.push([s, () => void stop(s)]);
  if (Deno.build.os !== "windows") {
    listeners.push(["SIGHUP", () => void reloader.reload("SIGHUP")]);
  }
  for (const [s, fn] of listeners) Deno.addSignalListener(s, fn);
  // Only now: a script may signal as soon as it has read the URL line.
  out(server.url);
  app.logger.info("listening", {
    url: server.url,
    config: config.source,
    format: config.format,
    upstreams: app.rt.upstreams.size,
    keys: app.rt.candidates.size,
    state: statePath ?? "memory",
    redis: app.cluster?.status().redis,
    redis_up: app.cluster?.up,
  });
  try {
    // The server only finishes after a stop signal (or if Deno's server loop fails).
    await Promise.race([server.finished, stopping]);
    if (stopped === undefined) await stop("server stopped");
    await stopped;
  } finally {
    for (const [s, fn] of listeners) Deno.removeSignalListener(s, fn);
  }
  return 0;
}
