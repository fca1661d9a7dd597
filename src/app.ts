/**
 * @module
 * The application: the long-lived parts (state store, health board, logger, HTTP client,
 * plugin registry, probes) and the {@linkcode Runtime} built from one configuration, which a
 * reload replaces without touching candidate state.
 */

import type { Config } from "./config/types.ts";
import { HealthBoard } from "./health/board.ts";
import { Logger, resolveFormat } from "./logger.ts";
import { importPlugins, Registry } from "./registry.ts";
import { buildRuntime, type Runtime } from "./runtime.ts";
import { MemoryStateStore, type StateStore } from "./state_store.ts";
import { builtins } from "../plugins/mod.ts";
import { ActiveHealth } from "./health/active.ts";
import { Metrics } from "./admin/metrics.ts";
import { LatencyTracker } from "./admin/latency.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { OpenAttempts } from "./proxy/attempt_control.ts";
import { Http1Client } from "./proxy/http1/mod.ts";

export { buildRuntime, CHAIN, type Runtime, secretMasks } from "./runtime.ts";

/** Injected dependencies of an {@linkcode App}. */
export interface AppOptions {
  /** @default a MemoryStateStore */
  store?: StateStore;
  /** @default a logger built from the config's log section */
  logger?: Logger;
  /** @default Date.now */
  now?: () => number;
  /** @default Math.random */
  random?: () => number;
  /** @default an {@linkcode Http1Client}'s (which hands what it does not take to `fetch`) */
  fetch?: typeof fetch;
  /** Start active health probes. @default true */
  probes?: boolean;
}

/** The running application. */
export class App {
  readonly logger: Logger;
  readonly store: StateStore;
  readonly board: HealthBoard;
  readonly now: () => number;
  readonly random: () => number;
  readonly fetch: typeof fetch;
  readonly httpClient: Deno.HttpClient;
  /** The upstream client, unless a fetch was injected. */
  readonly http1: Http1Client | undefined;
  readonly metrics: Metrics;
  readonly latency: LatencyTracker;
  readonly limiter: RateLimiter;
  readonly startedAt: number;
  /** Attempts whose response is being relayed to a client. */
  readonly open = new OpenAttempts();
  #rt: Runtime;
  #active: ActiveHealth | undefined;
  #probes: boolean;
  /** Whether the logger was built from the config (so reloads may change its format). */
  #ownLogger = false;

  private constructor(rt: Runtime, parts: {
    logger: Logger;
    store: StateStore;
    board: HealthBoard;
    now: () => number;
    random: () => number;
    fetch: typeof fetch | undefined;
    probes: boolean;
  }) {
    this.#rt = rt;
    this.logger = parts.logger;
    this.store = parts.store;
    this.board = parts.board;
    this.now = parts.now;
    this.random = parts.random;
    this.#probes = parts.probes;
    this.httpClient = Deno.createHttpClient({ poolIdleTimeout: 60_000 });
    const logger = parts.logger;
    const http1 = parts.fetch === undefined
      ? new Http1Client({
        onFallback: (origin, reason, forMs) =>
          logger.warn("upstream client: origin handed to fetch", {
            origin: origin.replace(/^[a-z]+:\/\//i, ""),
            reason,
            for_ms: forMs,
          }),
      })
      : undefined;
    this.http1 = http1;
    this.fetch = parts.fetch ?? http1?.fetch ?? globalThis.fetch;
    this.metrics = new Metrics();
    this.latency = new LatencyTracker();
    this.limiter = new RateLimiter(parts.now);
    this.startedAt = parts.now();
  }

  /**
   * Builds an application from a configuration, loading the plugins it names.
   * @param config a validated configuration
   * @param options injected store, logger, clock, randomness and fetch
   * @throws {Error} when a plugin cannot be loaded or a pool names an unknown strategy
   */
  static async create(config: Config, options: AppOptions = {}): Promise<App> {
    const now = options.now ?? Date.now;
    const logger = options.logger ??
      new Logger({ level: config.log.level, format: resolveFormat(config.log.format), now });
    const store = options.store ?? new MemoryStateStore();
    const board = new HealthBoard({
      store,
      logger,
      config: config.health,
      now,
      probes: options.probes ?? true,
    });
    const random = options.random ?? Math.random;
    const registry = await registryFor(config);
    const placeholder = {} as Runtime;
    const app = new App(placeholder, {
      logger,
      store,
      board,
      now,
      random,
      fetch: options.fetch,
      probes: options.probes ?? true,
    });
    app.#rt = buildRuntime(config, registry, app);
    app.#ownLogger = options.logger === undefined;
    logger.setSecrets(app.#rt.masks);
    app.#startProbes();
    return app;
  }

  /** The runtime in force. */
  get rt(): Runtime {
    return this.#rt;
  }

  /**
   * Swaps in a new configuration. Candidates that still exist keep their state; in-flight
   * requests finish on the runtime they started with.
   * @param config the new, validated configuration
   * @throws {Error} when it cannot be built; the old runtime keeps serving
   */
  async reload(config: Config): Promise<void> {
    const registry = await registryFor(config);
    const rt = buildRuntime(config, registry, this);
    this.#rt = rt;
    this.board.configure(config.health);
    this.logger.setLevel(config.log.level);
    if (this.#ownLogger) this.logger.setFormat(resolveFormat(config.log.format));
    this.logger.setSecrets(rt.masks);
    this.board.epoch++;
    const old = this.#active;
    this.#startProbes();
    await old?.stop();
  }

  /** Set once the drain time is over: no new upstream attempt starts. */
  stopping = false;

  /**
   * Cuts every attempt still open (drain time over): relayed streams end with an error event,
   * requests still waiting for an upstream get a 503, and no new attempt starts.
   */
  cutAll(): void {
    this.stopping = true;
    for (const c of this.open.toArray()) c.shutdown();
  }

  /** Stops probes and closes connections and the store. */
  async close(): Promise<void> {
    await this.#active?.stop();
    this.#active = undefined;
    this.httpClient.close();
    this.http1?.close();
    await this.store.close();
  }

  #startProbes(): void {
    if (!this.#probes) return;
    this.#active = new ActiveHealth({
      candidates: [...this.#rt.candidates.values()],
      registry: this.#rt.registry,
      board: this.board,
      logger: this.logger,
      fetch: this.fetch,
      client: this.httpClient,
      random: this.random,
    });
    this.#active.start();
  }
}

async function registryFor(config: Config): Promise<Registry> {
  const registry = new Registry();
  registry.register(...builtins);
  for (const path of config.plugins) registry.register(...await importPlugins(path));
  return registry;
}
