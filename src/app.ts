/**
 * @module
 * The application: the long-lived parts (state store, health board, logger, clock, watchdog,
 * HTTP client, plugin registry, probes) and the {@linkcode Runtime} built from one
 * configuration, which a reload replaces without touching candidate state. The application
 * hands each runtime's middleware their {@linkcode Services}; it never imports a plugin: the
 * commands hand it the built-in ones.
 */

import type { Config } from "./config/types.ts";
import { HealthBoard } from "./health/board.ts";
import { Logger, resolveFormat } from "./logger.ts";
import { importPlugins, Registry } from "./registry.ts";
import { buildRuntime, type Runtime } from "./runtime.ts";
import { MemoryStateStore, type StateStore } from "./state_store.ts";
import { ActiveHealth } from "./health/active.ts";
import { Metrics } from "./admin/metrics.ts";
import { LatencyTracker } from "./admin/latency.ts";
import { health, keyStats, loadBalancers, modelList, poolView } from "./admin/stats.ts";
import { adminAction } from "./admin/actions.ts";
import { entryOf, Timeline } from "./admin/timeline.ts";
import { EventLog } from "./admin/events.ts";
import { dashboardData } from "./admin/dashboard_view.ts";
import { RateLimiter } from "./rate_limiter.ts";
import type { Cluster } from "./shared/cluster.ts";
import { clusterSnapshot } from "./admin/cluster_view.ts";
import type { SharedRateLimiter } from "./shared/rate_bank.ts";
import { OpenAttempts } from "./proxy/attempt_control.ts";
import { Http1Client } from "./proxy/http1/mod.ts";
import { type Clock, systemClock } from "./clock.ts";
import { Watchdog } from "./proxy/watchdog.ts";
import { forward, type ForwardDeps } from "./proxy/forward.ts";
import type { LeaseLedger } from "./proxy/lease.ts";
import { errorHandler } from "./errors.ts";
import { Budgets } from "./budget/book.ts";
import { WaitQueues } from "./proxy/wait_queue.ts";
import type { Pool } from "./pool.ts";
import type { Services } from "./plugin.ts";

export { buildRuntime, CHAIN, type Runtime, secretMasks } from "./runtime.ts";

/** Injected dependencies of an {@linkcode App}. */
export interface AppOptions {
  /**
   * The plugins every configuration may use (the built-ins: `plugins/mod.ts`'s `builtins`);
   * a configuration's `plugins:` add to them. @default none
   */
  plugins?: readonly unknown[];
  /** @default a MemoryStateStore */
  store?: StateStore;
  /** @default a logger built from the config's log section */
  logger?: Logger;
  /** The clock. @default the system's (`Date.now`, `performance.now`) */
  clock?: Clock;
  /** Wall-clock time only (monotonic time stays the system's), when no `clock` is given. */
  now?: () => number;
  /** @default Math.random */
  random?: () => number;
  /** @default an {@linkcode Http1Client}'s (which hands what it does not take to `fetch`) */
  fetch?: typeof fetch;
  /** Start active health probes. @default true */
  probes?: boolean;
  /**
   * State shared with other instances through Redis (`state.redis`): its store, budget bank
   * and rate limits are used (pass its store as `store`). Started by the caller; closed by
   * {@linkcode App.close}.
   * @default none
   */
  cluster?: Cluster | undefined;
}

/** The running application. */
export class App {
  readonly logger: Logger;
  readonly store: StateStore;
  readonly board: HealthBoard;
  readonly clock: Clock;
  /** Wall-clock time, epoch ms (the clock's `now`). */
  readonly now: () => number;
  /** Checks the deadlines of this application's upstream attempts. */
  readonly watchdog: Watchdog;
  readonly random: () => number;
  readonly fetch: typeof fetch;
  readonly httpClient: Deno.HttpClient;
  /** The upstream client, unless a fetch was injected. */
  readonly http1: Http1Client | undefined;
  readonly metrics: Metrics;
  readonly latency: LatencyTracker;
  readonly limiter: RateLimiter | SharedRateLimiter;
  /** State shared with other instances, when `state.redis` is set. */
  readonly cluster: Cluster | undefined;
  readonly startedAt: number;
  /** Attempts in flight or being relayed to a client. */
  readonly open = new OpenAttempts();
  /** Where every attempt's lease writes its end. */
  readonly ledger: LeaseLedger;
  /** Every key's budgets. */
  readonly budgets: Budgets;
  /** Requests waiting for a key, per pool. */
  readonly queues: WaitQueues<Pool> = new WaitQueues();
  /** Requests and errors over the last 15 minutes, per pool (the dashboard's). */
  readonly timeline: Timeline;
  /** The last state changes, from the log (the dashboard's). */
  readonly events: EventLog;
  #unlisten: () => void;
  #rt: Runtime;
  #plugins: readonly unknown[];
  #active: ActiveHealth | undefined;
  #probes: boolean;
  /** Whether the logger was built from the config (so reloads may change its format). */
  #ownLogger = false;

  private constructor(rt: Runtime, parts: {
    logger: Logger;
    store: StateStore;
    board: HealthBoard;
    clock: Clock;
    random: () => number;
    fetch: typeof fetch | undefined;
    probes: boolean;
    plugins: readonly unknown[];
    cluster: Cluster | undefined;
  }) {
    this.#rt = rt;
    this.logger = parts.logger;
    this.store = parts.store;
    this.board = parts.board;
    this.clock = parts.clock;
    this.now = parts.clock.now;
    this.watchdog = new Watchdog({ clock: parts.clock });
    this.random = parts.random;
    this.#probes = parts.probes;
    this.#plugins = parts.plugins;
    this.httpClient = Deno.createHttpClient({ poolIdleTimeout: 60_000 });
    const logger = parts.logger;
    const http1 = parts.fetch === undefined
      ? new Http1Client({
        clock: parts.clock,
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
    const cluster = parts.cluster;
    this.cluster = cluster;
    this.limiter = cluster?.limiter ?? new RateLimiter(this.now);
    this.startedAt = this.now();
    this.timeline = new Timeline({ now: this.now });
    this.events = new EventLog({ now: this.now, redact: (t) => logger.redact(t) });
    this.#unlisten = logger.listen(this.events.listener);
    const board = this.board;
    this.budgets = new Budgets({
      onChange: () => board.epoch++,
      bank: cluster?.bank,
      store: parts.store,
      logger,
    });
    const queues = this.queues;
    // another instance changed a key (rested, disabled, spent, brought back): pools rebuild,
    // and requests waiting for a key try again
    // pins other instances placed or moved: applied to the pools in force
    cluster?.pins.listen((model, hash, id, kind) => {
      const rt = this.#rt;
      const pool = model === "*" ? rt.defaultPool : rt.pools?.get(model);
      pool?.affinity?.apply(hash, id, this.now(), kind);
    });
    cluster?.store.onRemote(() => {
      board.epoch++;
      queues.wakeAll();
    });
    this.ledger = {
      board,
      open: this.open,
      latency: this.latency,
      budgets: this.budgets,
      clock: this.clock,
      logger,
      released: () => queues.wakeOne(),
    };
  }

  /**
   * Builds an application from a configuration, loading the plugins it names.
   * @param config a validated configuration
   * @param options injected store, logger, clock, randomness and fetch
   * @throws {Error} when a plugin cannot be loaded or a pool names an unknown strategy
   */
  static async create(config: Config, options: AppOptions = {}): Promise<App> {
    const clock = options.clock ??
      (options.now === undefined ? systemClock : { now: options.now, mono: systemClock.mono });
    const now = clock.now;
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
    const plugins = options.plugins ?? [];
    const registry = await registryFor(config, plugins);
    const placeholder = {} as Runtime;
    const app = new App(placeholder, {
      logger,
      store,
      board,
      clock,
      random,
      fetch: options.fetch,
      probes: options.probes ?? true,
      plugins,
      cluster: options.cluster,
    });
    app.budgets.configure(config.health.quotaRestMs);
    app.#rt = app.#build(config, registry);
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
    const registry = await registryFor(config, this.#plugins);
    const rt = this.#build(config, registry, this.#rt);
    this.#rt = rt;
    this.board.configure(config.health);
    this.budgets.configure(config.health.quotaRestMs);
    this.logger.setLevel(config.log.level);
    if (this.#ownLogger) this.logger.setFormat(resolveFormat(config.log.format));
    this.logger.setSecrets(rt.masks);
    this.board.epoch++;
    // figures of pools the new runtime no longer has go once nobody waits in them
    this.queues.prune((pool) => rt.defaultPool === pool || [...rt.pools.values()].includes(pool));
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
    // requests waiting for a key stop waiting: they get the shutdown 503
    this.queues.wakeAll();
    for (const c of this.open.toArray()) c.shutdown();
  }

  /** Wakes every request waiting for a key (an operator enabled or reset keys). */
  wake(): void {
    this.queues.wakeAll();
  }

  /** Stops probes and closes connections and the store. */
  async close(): Promise<void> {
    this.#unlisten();
    await this.#active?.stop();
    this.#active = undefined;
    this.httpClient.close();
    this.http1?.close();
    // the cluster closes its store (after giving back its grants)
    if (this.cluster !== undefined) await this.cluster.close();
    else await this.store.close();
  }

  #build(config: Config, registry: Registry, previous?: Runtime): Runtime {
    const rt = this.#runtime(config, registry, previous);
    // a saved probe verdict on a key no probe checks any more would keep it out forever
    for (const c of rt.candidates.values()) {
      if (!c.state.healthy && c.upstream.config.healthCheck === undefined) this.board.unprobed(c);
    }
    return rt;
  }

  #runtime(config: Config, registry: Registry, previous?: Runtime): Runtime {
    const pins = this.cluster?.pins;
    return buildRuntime(config, registry, {
      previous,
      pinned: pins === undefined
        ? undefined
        : (pool, hash, id, kind) => pins.publish(pool, hash, id, kind),
      store: this.store,
      board: this.board,
      ledger: this.ledger,
      clock: this.clock,
      random: this.random,
      logger: this.logger,
      services: (rt) => this.services(rt),
      onError: errorHandler(this.logger),
    });
  }

  /**
   * What the middleware of one runtime may use.
   * @param rt the runtime @default the runtime in force
   */
  services(rt: Runtime = this.#rt): Services {
    const config = rt.config;
    const deps: ForwardDeps = {
      poolFor: (model) => rt.poolFor(model),
      transport: { fetch: this.fetch, client: this.httpClient },
      clock: this.clock,
      random: this.random,
      watchdog: this.watchdog,
      logger: this.logger,
      settings: {
        retry: config.retry,
        maxBodyBytes: config.server.maxBodyBytes,
        injectStreamUsage: config.usage.injectStreamUsage,
        overheadHeader: config.server.overheadHeader,
        queue: config.queue,
      },
      queues: this.queues,
      stopping: () => this.stopping,
      refusing: this.cluster?.required === true ? () => !this.cluster!.up : undefined,
    };
    const metrics = this.metrics;
    const timeline = this.timeline;
    return {
      logger: this.logger,
      clock: this.clock,
      random: this.random,
      pools: {
        has: (model) => rt.pools.has(model),
        hasDefault: rt.defaultPool !== undefined,
      },
      stats: {
        health: () => health(this),
        keys: () => {
          const cluster = this.cluster;
          if (cluster === undefined) return keyStats(this);
          return clusterSnapshot(cluster, rt.candidates.values()).then((s) => keyStats(this, s));
        },
        metrics: () => {
          const cluster = this.cluster;
          if (cluster === undefined) return metrics.render(this);
          return clusterSnapshot(cluster, rt.candidates.values()).then((s) =>
            metrics.render(this, s)
          );
        },
        loadBalancers: () => loadBalancers(this),
        pool: (model) => {
          // a named pool, else the pool that serves the model (the default pool serves the rest)
          const pool = rt.pools.get(model) ?? rt.defaultPool;
          return pool === undefined ? undefined : poolView(this, pool);
        },
        models: (allowed) => modelList(this, { rt, allowed }),
        observe: (ctx, durationMs) => {
          metrics.observe(ctx, rt, durationMs);
          const entry = entryOf(ctx, deps.poolFor);
          if (entry !== undefined) timeline.record(entry.pool, entry.error);
        },
        dashboard: (caller) => dashboardData(this, caller),
      },
      admin: (method, parts) => adminAction(this, rt, method, parts),
      rateLimit: (key, perMinute) => this.limiter.take(key, perMinute),
      forward: (ctx) => forward(deps, ctx),
    };
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

async function registryFor(config: Config, plugins: readonly unknown[]): Promise<Registry> {
  const registry = new Registry();
  registry.register(...plugins);
  for (const path of config.plugins) registry.register(...await importPlugins(path));
  return registry;
}
