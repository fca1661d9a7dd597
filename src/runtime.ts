/**
 * @module
 * The {@linkcode Runtime}: everything built from one configuration (upstreams, candidates in
 * their pools with their strategies, client keys, the request chain). A reload builds a new
 * one; candidate state stays in the application's state store, keyed by stable ids.
 */

import type { ClientKeyConfig, Config } from "./config/types.ts";
import type { Middleware, RequestContext } from "./context.ts";
import type { App } from "./app.ts";
import { compose } from "./compose.ts";
import { maskAll, shortHash } from "./mask.ts";
import {
  type Candidate,
  Secret,
  type Strategy,
  type StrategyPlugin,
  type Upstream,
} from "./plugin.ts";
import { Pool } from "./pool.ts";
import type { Registry } from "./registry.ts";

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
  /** Every secret of the config (upstream, client and admin keys) → its mask. */
  readonly masks: ReadonlyMap<string, string>;
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
  // one set of masks for every secret: stats, logs and scrubbed text all show the same mask
  const masks = secretMasks(config);
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
        // ids and masks use only URL-safe characters: they name keys in admin URLs as they are
        const id = kc === undefined ? `${u.name}:nokey` : `${u.name}:${shortHash(kc.key)}`;
        const mask = kc === undefined ? `${u.name}:no-key` : masks.get(kc.key)!;
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
    masks,
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
    const mw = plugin.create(config, app);
    if (mw !== undefined) mws.push(mw);
  }
  return compose(mws);
}
