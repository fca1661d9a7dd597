/**
 * @module
 * Hot reload for `serve`: on SIGHUP, and on changes of the config file when
 * `server.watch_config` is on, the file is loaded and verified again and swapped in with
 * `App.reload`. Requests in flight finish on the config they started with; candidates that
 * still exist keep their state. A broken config is logged and kept out: the old one keeps
 * serving. Reloads never overlap.
 */

import { basename, dirname, resolve } from "node:path";
import type { App } from "../app.ts";
import { redisDisplay } from "../shared/link.ts";
import type { Config } from "../config/types.ts";
import { describeError } from "./_io.ts";

/** Options of {@linkcode Reloader}. */
export interface ReloaderOptions {
  /** Loads and verifies the config again; throws when it is broken. */
  load: () => Promise<Config>;
  /** Quiet time after the last file change before reloading. @default 200 */
  debounceMs?: number;
}

/** Reloads an application's config on demand or when its file changes. */
export class Reloader {
  readonly #app: App;
  readonly #load: () => Promise<Config>;
  readonly #debounceMs: number;
  #queue: Promise<unknown> = Promise.resolve();
  #watcher: Deno.FsWatcher | undefined;
  #watched: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * @param app the application whose config is replaced
   * @param options how to load the config, and the file-change debounce
   */
  /** The config the instance started with (where its key state is). */
  readonly #started: Config;

  constructor(app: App, options: ReloaderOptions) {
    this.#app = app;
    this.#started = app.rt.config;
    this.#load = options.load;
    this.#debounceMs = options.debounceMs ?? 200;
  }

  /** Whether the config file is being watched. */
  get watching(): boolean {
    return this.#watcher !== undefined;
  }

  /**
   * Loads, verifies and swaps in the config; waits for a reload already running first.
   * @param trigger why (`SIGHUP`, `file change`), for the log
   * @returns whether the new config is now in force (false: rejected, or closed); never rejects
   */
  reload(trigger: string): Promise<boolean> {
    const run = this.#queue.then(() => this.#reloadNow(trigger)).catch((err) => {
      this.#app.logger.error("reload failed unexpectedly", {
        trigger,
        error: this.#app.logger.redact(describeError(err)),
      });
      return false;
    });
    this.#queue = run;
    return run;
  }

  async #reloadNow(trigger: string): Promise<boolean> {
    if (this.#closed) return false;
    const log = this.#app.logger;
    const old = this.#app.rt.config;
    let next: Config;
    try {
      next = await this.#load();
      if (this.#closed) return false;
      await this.#app.reload(next);
    } catch (err) {
      log.error("reload rejected: the old config keeps serving", {
        trigger,
        error: log.redact(describeError(err, "Cannot apply the new config")),
      });
      return false;
    }
    if (next.server.host !== old.server.host || next.server.port !== old.server.port) {
      log.warn("server.host and server.port changes need a restart; the address is unchanged", {
        listening: `${old.server.host}:${old.server.port}`,
      });
    }
    // `state` is read at start only: compared with the config the instance started with
    if (stateChanged(this.#started, next)) {
      log.warn("state changes need a restart; key state stays where it is", {
        state: describeState(this.#started),
      });
    }
    log.info("config reloaded", {
      trigger,
      config: next.source,
      upstreams: this.#app.rt.upstreams.size,
      keys: this.#app.rt.candidates.size,
      pools: this.#app.rt.pools.size + (this.#app.rt.defaultPool ? 1 : 0),
    });
    if (next.server.watchConfig && !this.watching) this.watch(next.source);
    if (!next.server.watchConfig && this.watching) this.#unwatch();
    return true;
  }

  /**
   * Reloads whenever the config file changes. Watches the file's folder, so editors that
   * replace the file (write a copy, then rename it over) are seen too.
   * @param path the config file
   */
  watch(path: string): void {
    if (this.#closed || this.#watcher !== undefined) return;
    const file = resolve(path);
    try {
      this.#watcher = Deno.watchFs(dirname(file), { recursive: false });
    } catch (err) {
      this.#app.logger.warn("cannot watch the config file; reload with SIGHUP instead", {
        config: path,
        error: err instanceof Error ? err.message : String(err),
      });
      return;
    }
    this.#watched = file;
    this.#app.logger.info("watching the config file", { config: path });
    const watcher = this.#watcher;
    (async () => {
      for await (const event of watcher) {
        if (event.kind === "access" || event.kind === "other") continue;
        if (!event.paths.some((p) => p === file || basename(p) === basename(file))) continue;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          void this.reload("file change");
        }, this.#debounceMs);
      }
    })().catch(() => {});
  }

  #unwatch(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      this.#watcher?.close();
    } catch {
      // already closed
    }
    this.#watcher = undefined;
    if (this.#watched !== undefined) {
      this.#app.logger.info("stopped watching the config file", { config: this.#watched });
    }
    this.#watched = undefined;
  }

  /** Stops watching and refuses further reloads; waits for a reload in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unwatch();
    await this.#queue;
  }
}

/** Whether two configs keep key state in different places (`state` is read at start only). */
function stateChanged(a: Config, b: Config): boolean {
  const ra = a.state.redis;
  const rb = b.state.redis;
  const pa = a.state.kind === "file" ? a.state.path : undefined;
  const pb = b.state.kind === "file" ? b.state.path : undefined;
  return a.state.kind !== b.state.kind || pa !== pb || ra?.url !== rb?.url ||
    ra?.prefix !== rb?.prefix || ra?.required !== rb?.required;
}

/** Where a config keeps key state, as a log may say it (never a Redis password). */
function describeState(c: Config): string {
  const local = c.state.kind === "file" ? c.state.path ?? "file" : "memory";
  const r = c.state.redis;
  return r === undefined ? local : `${local}, ${redisDisplay(r.url)} (prefix "${r.prefix}")`;
}
