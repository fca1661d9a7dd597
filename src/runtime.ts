/**
 * @module
 * The {@linkcode Runtime}: everything built from one configuration (upstreams, candidates in
 * their pools with their strategies, client keys, the request chain). A reload builds a new
 * one; candidate state stays in the application's state store, keyed by stable ids.
 */

import type { ClientKeyConfig, Config, PoolConfig } from "./config/types.ts";
import { AffinityRouter, type PinKind } from "./routing/affinity.ts";
import { SlowStart } from "./routing/slow_start.ts";
import type { Middleware, RequestContext, Services } from "./plugin.ts";
import type { Clock } from "./clock.ts";
import type { HealthBoard } from "./health/board.ts";
import type { Logger } from "./logger.ts";
import type { LeaseLedger } from "./proxy/lease.ts";
import type { StateStore } from "./state_store.ts";
import { compose, type ErrorHandler } from "./compose.ts";
import { maskAll, shortHash } from "./mask.ts";
import {
  type Candidate,
  Secret,
  type Strategy,
  type StrategyOptions,
  type StrategyPlugin,
  type Upstream,
} from "./plugin.ts";
import { Pool } from "./pool.ts";
import { shareLeft } from "./budget/views.ts";
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

/** The long-lived parts a runtime is built over (they outlive reloads). */
export interface RuntimeParts {
  readonly store: StateStore;
  readonly board: HealthBoard;
  /** Where the pools' leases write an attempt's end. */
  readonly ledger: LeaseLedger;
  readonly clock: Clock;
  /** Returns a number in [0, 1). */
  readonly random: () => number;
  readonly logger: Logger;
  /**
   * Builds the services this runtime's middleware use.
   * @param rt the runtime (its chain not yet built)
   */
  services(rt: Runtime): Services;
  /** Turns an error thrown in the chain into the response (see {@linkcode compose}). */
  readonly onError: ErrorHandler<RequestContext>;
  /** The runtime this one replaces (a reload): its pools' affinity pins carry over. */
  readonly previous?: Runtime | undefined;
  /**
   * Told where a pool placed or moved an affinity pin (with `state.redis`: published to the
   * other instances). @default none
   */
  readonly pinned?:
    | ((pool: string, hash: number, id: string, kind: PinKind) => void)
    | undefined;
}

/** The order of the built-in request chain; plugin middleware goes before `proxy`. */
export const CHAIN = [
  "request_log",
  "cors",
  "endpoints",
  "dashboard",
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
 * @param parts the state store, board, ledger, clock, randomness, logger and services
 * @returns the runtime
 * @throws {Error} naming the field when a pool's strategy or a probe is unknown
 */
export function buildRuntime(config: Config, registry: Registry, parts: RuntimeParts): Runtime {
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
  const { random, clock } = parts;
  const now = clock.now;
  const budgetLeft = (c: Candidate, model: string | undefined, at = now()) =>
    shareLeft(c, model, at);
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
          quota: kc?.quota === undefined ? u.config.quota : { ...u.config.quota, ...kc.quota },
          state: parts.store.record(id),
        };
        list.push(cand);
        if (!candidates.has(id)) candidates.set(id, cand);
      }
    }
    const settings = pc.strategyOptions ?? {};
    const pool = new Pool({
      model: pc.model,
      strategyName: pc.strategy,
      candidates: list,
      strategy: createStrategy(
        plugin,
        { candidates: list, random, now, budgetLeft, settings },
        where,
      ),
      fallback: fallbackPlugin.create({ candidates: list, random, now, budgetLeft, settings: {} }),
      board: parts.board,
      ledger: parts.ledger,
      affinityBy: pc.affinityBy,
      ...(pc.affinity === undefined ? {} : { prefixChars: pc.affinity.prefixChars }),
      fallbacks: pc.fallbacks,
      affinity: affinityRouter(pc, list, random, parts.previous, parts.pinned),
      slowStart: pc.slowStartMs ? new SlowStart(list.length, pc.slowStartMs) : undefined,
      onStrategyError: (err) =>
        parts.logger.error("strategy failed; fell back to round_robin", {
          strategy: pc.strategy,
          pool: where,
          error: parts.logger.redact(err instanceof Error ? err.message : String(err)),
        }),
    });
    if (pc.model === "*") defaultPool = pool;
    else pools.set(pc.model, pool);
  }
  const clientKeys = new Map(config.clientKeys.map((c) => [c.key, c]));
  const rt: { -readonly [K in keyof Runtime]: Runtime[K] } = {
    config,
    masks,
    registry,
    upstreams,
    pools,
    defaultPool,
    candidates,
    clientKeys,
    chain: () => Promise.reject(new Error("the request chain is not built yet")),
    poolFor(model) {
      return (model === undefined ? undefined : pools.get(model)) ?? defaultPool;
    },
  };
  rt.chain = buildChain(config, registry, parts.services(rt), parts.onError);
  return rt;
}

/** A pool's affinity router, with the pins of the pool it replaces. */
function affinityRouter(
  pc: PoolConfig,
  candidates: readonly Candidate[],
  random: () => number,
  previous: Runtime | undefined,
  pinned: RuntimeParts["pinned"],
): AffinityRouter | undefined {
  if (pc.affinity === undefined) return undefined;
  const router = new AffinityRouter({
    candidates,
    ttlMs: pc.affinity.ttlMs,
    maxLoad: pc.affinity.maxLoad,
    random,
    onPlaced: pinned === undefined
      ? undefined
      : (hash, c, kind) => pinned(pc.model, hash, c.id, kind),
  });
  const before = previous === undefined
    ? undefined
    : pc.model === "*"
    ? previous.defaultPool
    : previous.pools.get(pc.model);
  if (before?.affinity !== undefined) router.adopt(before.affinity);
  return router;
}

function createStrategy(
  plugin: StrategyPlugin,
  options: StrategyOptions,
  pool: string,
): Strategy {
  const unknown = unknownOptions(plugin, options.settings ?? {});
  if (unknown !== undefined) {
    throw new Error(`Cannot start: pools.${pool}.strategy_options: ${unknown}`);
  }
  try {
    return plugin.create(options);
  } catch (err) {
    throw new Error(
      `Cannot start: pools.${pool}.strategy: strategy "${plugin.name}" failed to start: ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  }
}

/**
 * Says which of a pool's `strategy_options` its strategy does not take, when the strategy
 * lists the options it reads.
 * @param plugin the strategy
 * @param settings the pool's options
 * @returns the problem, or undefined when there is none
 */
export function unknownOptions(
  plugin: StrategyPlugin,
  settings: Readonly<Record<string, unknown>>,
): string | undefined {
  const known = plugin.options;
  if (known === undefined) return undefined;
  const unknown = Object.keys(settings).filter((name) => !known.includes(name));
  if (unknown.length === 0) return undefined;
  return `${unknown.map((n) => `"${n}"`).join(", ")}: strategy "${plugin.name}" takes ${
    known.length === 0 ? "no options" : `only ${known.join(", ")}`
  }`;
}

function buildChain(
  config: Config,
  registry: Registry,
  services: Services,
  onError: ErrorHandler<RequestContext>,
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
    const mw = plugin.create(config, services);
    if (mw !== undefined) mws.push(mw);
  }
  return compose(mws, onError);
}
