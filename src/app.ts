/**
 * @module
 * The application: the long-lived parts (state store, health board, logger, HTTP client,
 * plugin registry, probes) and the {@linkcode Runtime} built from one configuration, which a
 * reload replaces without touching candidate state.
 */

import type { ClientKeyConfig, Config } from "./config/types.ts";
import type { Middleware, RequestContext } from "./context.ts";
import { compose } from "./compose.ts";
import { HealthBoard } from "./health/board.ts";
import { Logger, resolveFormat } from "./logger.ts";
import { maskAll, shortHash } from "./mask.ts";
import {
  type Candidate,
  Secret,
  type Strategy,
  type StrategyPlugin,
  type Upstream,
} from "./plugin.ts";
import { Pool } from "./pool.ts";
import { importPlugins, Registry } from "./registry.ts";
import { MemoryStateStore, type StateStore } from "./state_store.ts";
import { builtins } from "../plugins/mod.ts";
import { ActiveHealth } from "./health/active.ts";
import { Metrics } from "./admin/metrics.ts";
import { LatencyTracker } from "./admin/latency.ts";
import { RateLimiter } from "./rate_limiter.ts";
import type { AttemptControl } from "./proxy/attempt_control.ts";

/** Everything built from one configuration. */
export interface Runtime {
  readonly config: Config;
  readonly registry: Registry;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** Named pools by model. */
  readonly pools: ReadonlyMap<string, Pool>;
  /** The pool for every other model, if configured. */
  readonly defaultPool: Pool | undefined;
  /** Every distinct candidate (the first pool's view of each key), by id. */
  readonly candidates: ReadonlyMap<string, Candidate>;
  /** Client keys by secret. */
  readonly clientKeys: ReadonlyMap<string, ClientKeyConfig>;
  /** The request chain. */
  readonly chain: (ctx: RequestContext) => Promise<void>;
  /**
   * Finds the pool for a model.
   * @returns the named pool, else the default pool, else undefined
   */
  poolFor(model: string | undefined): Pool | undefined;
}

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
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Start active health probes. @default true */
  probes?: boolean;
}

/** The order of the built-in request chain; plugin middleware goes before `proxy`. */
export const CHAIN = [
  "request_log",
  "cors",
  "endpoints",
  "client_auth",
  "rate_limit",
  "models",
  "proxy",
];

/** The running application. */
export class App {
  readonly logger: Logger;
  readonly store: StateStore;
  readonly board: HealthBoard;
  readonly now: () => number;
  readonly random: () => number;
  readonly fetch: typeof fetch;
  readonly httpClient: Deno.HttpClient;
  readonly metrics: Metrics;
  readonly latency: LatencyTracker;
  readonly limiter: RateLimiter;
  readonly startedAt: number;
  /** Attempts whose response is being relayed to a client. */
  readonly open = new Set<AttemptControl>();
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
    fetch: typeof fetch;
    probes: boolean;
  }) {
    this.#rt = rt;
    this.logger = parts.logger;
    this.store = parts.store;
    this.board = parts.board;
    this.now = parts.now;
    this.random = parts.random;
    this.fetch = parts.fetch;
    this.#probes = parts.probes;
    this.httpClient = Deno.createHttpClient({ poolIdleTimeout: 60_000 });
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
      fetch: options.fetch ?? globalThis.fetch,
      probes: options.probes ?? true,
    });
    app.#rt = buildRuntime(config, registry, app);
    app.#ownLogger = options.logger === undefined;
    logger.setSecrets(secretMasks(config));
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
    this.logger.setSecrets(secretMasks(config));
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
    for (const c of this.open) c.shutdown();
  }

  /** Stops probes and closes connections and the store. */
  async close(): Promise<void> {
    await this.#active?.stop();
    this.#active = undefined;
    this.httpClient.close();
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

/** Maps every secret in a config (upstream keys, client keys, admin key) to its mask. */
export function secretMasks(config: Config): Map<string, string> {
  const secrets: string[] = [];
  for (const u of config.upstreams) for (const k of u.keys) secrets.push(k.key);
  for (const c of config.clientKeys) secrets.push(c.key);
  if (config.adminKey) secrets.push(config.adminKey);
  return maskAll(secrets);
}

/**
 * Builds the runtime of one configuration.
 * @param config the configuration
 * @param registry plugins available to it
 * @param app the application (state store, board, randomness)
 * @returns the runtime
 * @throws {Error} naming the field when a pool's strategy or a probe is unknown
 */
export function buildRuntime(config: Config, registry: Registry, app: App): Runtime {
  const masks = maskAll(config.upstreams.flatMap((u) => u.keys.map((k) => k.key)));
  const upstreams = new Map<string, Upstream>();
  for (const u of config.upstreams) {
    upstreams.set(u.name, {
      name: u.name,
      baseUrl: u.baseUrl,
      pathMode: u.pathMode,
      auth: u.auth,
      config: u,
    });
    const probe = u.healthCheck?.probe;
    if (probe !== undefined && registry.probe(probe) === undefined) {
      throw new Error(
        `Cannot start: upstreams.${u.name}.health_check.probe: unknown probe "${probe}" (known: ${
          registry.names("probe").join(", ")
        })`,
      );
    }
  }
  const fallbackPlugin = registry.strategy("round_robin");
  if (fallbackPlugin === undefined) throw new Error("Cannot start: round_robin is not registered");
  const pools = new Map<string, Pool>();
  const candidates = new Map<string, Candidate>();
  let defaultPool: Pool | undefined;
  for (const pc of config.pools) {
    const plugin = registry.strategy(pc.strategy);
    const where = pc.model === "*" ? "default" : pc.model;
    if (plugin === undefined) {
      throw new Error(
        `Cannot start: pools.${where}.strategy: unknown strategy "${pc.strategy}" (known: ${
          registry.names("strategy").join(", ")
        })`,
      );
    }
    const list: Candidate[] = [];
    const members = pc.members.map((m) => ({ m, u: upstreams.get(m.upstream)! }));
    const most = Math.max(0, ...members.map(({ u }) => Math.max(1, u.config.keys.length)));
    // interleave upstreams: u1k1, u2k1, u1k2, u2k2, ... so strict order spreads over upstreams
    for (let k = 0; k < most; k++) {
      for (const { m, u } of members) {
        const keys = u.config.keys;
        if (keys.length === 0 && k > 0) continue;
        if (keys.length > 0 && k >= keys.length) continue;
        const kc = keys[k];
        const id = kc === undefined ? `${u.name}#nokey` : `${u.name}#${shortHash(kc.key)}`;
        const mask = kc === undefined ? `${u.name}/no-key` : masks.get(kc.key)!;
        const cand: Candidate = {
          id,
          index: list.length,
          upstream: u,
          key: kc === undefined ? undefined : new Secret(kc.key, mask),
          mask,
          name: kc?.name,
          weight: kc?.weight ?? m.weight ?? u.config.weight,
          priority: kc?.priority ?? m.priority ?? u.config.priority,
          state: app.store.record(id),
        };
        list.push(cand);
        if (!candidates.has(id)) candidates.set(id, cand);
      }
    }
    const pool = new Pool({
      model: pc.model,
      strategyName: pc.strategy,
      candidates: list,
      strategy: createStrategy(plugin, list, app.random, where),
      fallback: fallbackPlugin.create({ candidates: list, random: app.random }),
      board: app.board,
      onStrategyError: (err) =>
        app.logger.error("strategy failed; fell back to round_robin", {
          strategy: pc.strategy,
          pool: where,
          error: app.logger.redact(err instanceof Error ? err.message : String(err)),
        }),
    });
    if (pc.model === "*") defaultPool = pool;
    else pools.set(pc.model, pool);
  }
  const clientKeys = new Map(config.clientKeys.map((c) => [c.key, c]));
  const chain = buildChain(config, registry, app);
  return {
    config,
    registry,
    upstreams,
    pools,
    defaultPool,
    candidates,
    clientKeys,
    chain,
    poolFor(model) {
      return (model === undefined ? undefined : pools.get(model)) ?? defaultPool;
    },
  };
}

function createStrategy(
  plugin: StrategyPlugin,
  candidates: Candidate[],
  random: () => number,
  pool: string,
): Strategy {
  try {
    return plugin.create({ candidates, random });
  } catch (err) {
    throw new Error(
      `Cannot start: pools.${pool}.strategy: strategy "${plugin.name}" failed to start: ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  }
}

function buildChain(
  config: Config,
  registry: Registry,
  app: App,
): (ctx: RequestContext) => Promise<void> {
  const names = [...CHAIN];
  const builtinNames = new Set(CHAIN);
  for (const n of registry.names("middleware")) {
    if (!builtinNames.has(n)) names.splice(names.length - 1, 0, n);
  }
  const mws: Middleware[] = [];
  for (const n of names) {
    const plugin = registry.middleware(n);
    if (plugin === undefined) throw new Error(`Cannot start: middleware "${n}" is not registered`);
    mws.push(plugin.create(config, app));
  }
  return compose(mws);
}
