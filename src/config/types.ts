/**
 * @module
 * The normalized configuration every config format (native YAML, Seed A JSON, Seed B YAML) is
 * turned into. The rest of llm-balance only ever sees these types.
 */

/** How the chosen key is sent to an upstream. */
export type AuthStyle = "bearer" | "x-api-key" | "api-key";

/**
 * How the client's path maps onto an upstream's base URL.
 * - `v1`: the base URL includes `/v1` (as in OpenAI SDKs); `/v1/chat/completions` is sent to
 *   `base_url + /chat/completions`. Paths outside `/v1` are not forwarded to this upstream.
 * - `full`: the client's path is appended as is (Seed A's `target_url`).
 */
export type PathMode = "v1" | "full";

/** Per-attempt time limits, in milliseconds; 0 disables a limit. */
export interface Timeouts {
  /** Time to establish the connection. @default 10000 */
  connectMs: number;
  /** Time until the response headers and the first body bytes arrive. @default 120000 */
  firstByteMs: number;
  /** Longest gap between two body chunks. @default 120000 */
  idleMs: number;
  /** Whole attempt, body included. @default 600000 */
  totalMs: number;
}

/** Active health checking of each key of an upstream. */
export interface HealthCheckConfig {
  /** Probe plugin name. @default "http" */
  probe: string;
  /** Path probed, appended to the upstream's base URL. @default "/models" (`/v1/models` in `full` path mode) */
  path: string;
  /** Milliseconds between two probes of the same key. @default 30000 */
  intervalMs: number;
  /** Probe timeout. @default 5000 */
  timeoutMs: number;
  /**
   * Whether the probe really checks the key (the upstream refuses a bad key on the probed
   * path). Only then may a successful probe bring back a key refused with 401/403; otherwise
   * (ModelScope's `/v1/models` answers 200 to any token) such a key rests for
   * `health.authRestMs` and comes back through a real request, or an operator. @default false
   */
  validatesKey?: boolean;
}

/**
 * A key's budgets (native `quota`), per key: each key of an upstream has its own. 0 means no
 * limit. The daily counters start again at `reset` local time in `timeZone`.
 */
export interface QuotaConfig {
  /** Requests a day, all models together. @default 0 */
  requestsPerDay: number;
  /** Requests a day for each model on its own. @default 0 */
  modelRequestsPerDay: number;
  /** Tokens a day (the usage answers report). @default 0 */
  tokensPerDay: number;
  /** Requests in any minute window. @default 0 */
  requestsPerMinute: number;
  /** Tokens in any minute window. @default 0 */
  tokensPerMinute: number;
  /** Requests in flight at once; more wait (with a queue) or go to another key. @default 0 */
  maxConcurrency: number;
  /** Local time of the daily reset. @default 00:00 */
  reset: { hour: number; minute: number };
  /** IANA time zone of the reset. @default "UTC" ("Asia/Shanghai" for ModelScope upstreams) */
  timeZone: string;
}

/** One upstream key. */
export interface KeyConfig {
  /** The secret itself (after `${ENV}` substitution). */
  key: string;
  /** Optional human name shown in stats beside the mask. */
  name?: string;
  /** Weight of this key; overrides the upstream's. */
  weight?: number;
  /** Priority tier of this key; overrides the upstream's (0 is the first tier). */
  priority?: number;
  /** Budgets of this key, overriding the upstream's field by field. */
  quota?: Partial<QuotaConfig>;
}

/** One named upstream server with its keys. */
export interface UpstreamConfig {
  /** Unique name, used in logs, stats and metrics. */
  name: string;
  /** Base URL without a trailing slash. */
  baseUrl: string;
  /** @default "v1" */
  pathMode: PathMode;
  /** @default "bearer" */
  auth: AuthStyle;
  /** Keys to balance over; an upstream without keys sends no credentials (e.g. a local server). */
  keys: KeyConfig[];
  /**
   * Extra headers sent with every request (e.g. `anthropic-version`), names in lower case:
   * defaults, which the client's header of the same name overrides. @default {}
   */
  headers: Record<string, string>;
  /** Headers that replace the client's of the same name (native `force_headers`). @default {} */
  forceHeaders: Record<string, string>;
  /** Client model name → model name this upstream expects. @default {} */
  models: Record<string, string>;
  /** Weight of each key of this upstream. @default 1 */
  weight: number;
  /** Priority tier; lower tiers serve only while every candidate of higher tiers is unusable. @default 0 */
  priority: number;
  timeouts: Timeouts;
  /** Consecutive server/network/timeout failures that eject a key. @default 3 */
  maxFailures: number;
  /** Active health checks; undefined when disabled. */
  healthCheck?: HealthCheckConfig;
  /** Budgets of each key of this upstream. */
  quota: QuotaConfig;
}

/** A member of a pool: an upstream, with pool-specific weight and priority. */
export interface PoolMemberConfig {
  upstream: string;
  weight?: number;
  priority?: number;
}

/** The candidates that serve one model (or every other model, for the default pool). */
export interface PoolConfig {
  /** The model name, or `*` for the default pool. */
  model: string;
  /** Strategy plugin name. @default "round_robin" */
  strategy: string;
  members: PoolMemberConfig[];
  /**
   * Where a request's affinity key comes from (strategies see it as `PickContext.affinityKey`),
   * the first present wins: `prompt_cache_key` and `user` (top-level fields of a JSON body),
   * `header:<name>` (a request header, lower-cased name).
   * @default ["prompt_cache_key", "user"]
   */
  affinityBy: AffinitySource[];
  /**
   * Affinity routing (native `affinity`): requests with the same affinity key go to the same
   * key while it can serve (consistent hashing with bounded loads). Undefined when the pool has
   * no `affinity` block, or it says `pin: false`: its strategy picks every request (and sees
   * the affinity key).
   */
  affinity?: AffinityRouting;
  /**
   * Milliseconds over which a key back from an ejection, rest or disable grows from no share to
   * its full share of new requests (native `slow_start`, seconds). @default 0 (off)
   */
  slowStartMs?: number;
  /** What the pool's strategy is told (native `strategy_options`). @default {} */
  strategyOptions?: Record<string, unknown>;
  /**
   * Models whose pools serve a request this pool cannot (every key spent, resting or down), in
   * order; the body's `model` is rewritten to the one that serves. @default []
   */
  fallbacks: string[];
}

/**
 * A source of a request's affinity key (see {@linkcode PoolConfig.affinityBy}): `prefix` is a
 * hash of the prompt's first characters (its system prompt and first messages).
 */
export type AffinitySource = "prompt_cache_key" | "user" | "prefix" | `header:${string}`;

/** How a pool pins requests to keys (see {@linkcode PoolConfig.affinity}). */
export interface AffinityRouting {
  /** Milliseconds a pin lives after its last use. @default 600000 */
  ttlMs: number;
  /** The most pins a key holds, as a multiple of its fair share (>= 1). @default 1.25 */
  maxLoad: number;
  /** Characters of the prompt the `prefix` source hashes. @default 2048 */
  prefixChars: number;
}

/** Affinity routing's settings when the pool's `affinity` block leaves them out. */
export const DEFAULT_AFFINITY_ROUTING: Readonly<AffinityRouting> = {
  ttlMs: 600_000,
  maxLoad: 1.25,
  prefixChars: 2048,
};

/** Where affinity keys come from when a pool does not say. */
export const DEFAULT_AFFINITY: readonly AffinitySource[] = ["prompt_cache_key", "user"];

/** A client key accepted by the gateway. */
export interface ClientKeyConfig {
  key: string;
  /** @default "client-<n>" */
  name: string;
  /** Models this key may use; undefined means all. */
  models?: string[];
  /** Requests per minute; undefined means unlimited. */
  rateLimitPerMinute?: number;
}

export interface RetryConfig {
  /** Attempts per request, the first included. @default 3 */
  maxAttempts: number;
  /** Backoff before reusing an already tried upstream. @default 100 */
  backoffBaseMs: number;
  /** @default 2000 */
  backoffMaxMs: number;
  /** Overall deadline of one request across attempts; 0 disables. @default 600000 */
  deadlineMs: number;
}

export interface HealthConfig {
  /** First ejection length; each further ejection multiplies it. @default 30000 */
  ejectionBaseMs: number;
  /** @default 300000 */
  ejectionMaxMs: number;
  /** Rest of a key after a 429 without any reset header. @default 60000 */
  rateLimitRestMs: number;
  /**
   * The longest a key stays out after the provider said its quota is exhausted without saying
   * until when; 0: until the key's next daily reset (its `quota.reset` in `quota.time_zone`).
   * @default 0
   */
  quotaRestMs: number;
  /**
   * Rest of a key refused with 401/403 when no probe that validates keys can restore it; the
   * first request after it is the key's trial. @default 600000
   */
  authRestMs: number;
}

export interface CorsConfig {
  enabled: boolean;
  /** @default ["*"] */
  origins: string[];
}

export interface ServerConfig {
  /** @default "127.0.0.1" */
  host: string;
  /** @default 8080 */
  port: number;
  /** Allow binding a non-loopback address without client keys. @default false */
  allowUnauthenticatedRemote: boolean;
  cors: CorsConfig;
  /** Largest request body accepted. @default 52428800 */
  maxBodyBytes: number;
  /** Drain time on shutdown. @default 10000 */
  drainTimeoutMs: number;
  /** Reload when the config file changes. @default false */
  watchConfig: boolean;
  /** Add `x-llm-balance-overhead-ms` to responses. @default false */
  overheadHeader: boolean;
  /**
   * Host names (lowercase, no port, no trailing dot) the admin and stats endpoints answer to
   * when no key guards them, besides `localhost`, IP literals and `host`. @default []
   */
  adminHosts: string[];
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogConfig {
  /** @default "info" */
  level: LogLevel;
  /** `auto` is `pretty` on a terminal and `json` otherwise. @default "auto" */
  format: "auto" | "json" | "pretty";
}

/** Requests that find no usable key wait for one (native `queue`). */
export interface QueueConfig {
  /** Longest wait for a key; 0 answers at once. @default 0 */
  maxWaitMs: number;
  /** Requests waiting at most (per pool); beyond it, 503 at once. @default 1000 */
  maxLength: number;
}

/**
 * Where key state (rests, budgets spent, disables) is kept (native `state`): `memory` keeps
 * nothing across restarts; `file` keeps it in a local database file.
 */
export type StateConfig =
  | { kind: "memory"; redis?: RedisStateConfig }
  | {
    kind: "file";
    /** The database file; undefined: the platform's place for application state. */
    path: string | undefined;
    redis?: RedisStateConfig;
  };

/**
 * State shared by instances through Redis (native `state.redis`): rests, disables, ejections,
 * budgets and client rate limits. The local store (`kind`) keeps this instance's view.
 */
export interface RedisStateConfig {
  /** `redis://…` or `rediss://…`; may hold a password: never shown (see `redisDisplay`). */
  url: string;
  /** Prepended to every Redis key and channel. @default "llm-balance:" */
  prefix: string;
  /** Refuse traffic (503) while Redis cannot be reached. @default false */
  required: boolean;
}

export interface UsageConfig {
  /** Add `stream_options.include_usage` to OpenAI-style streams and strip the extra chunk. @default false */
  injectStreamUsage: boolean;
}

/** The normalized configuration. */
export interface Config {
  /** Where it came from, for messages. */
  source: string;
  /** Which format the file was in. */
  format: "native" | "seed-a" | "seed-b";
  server: ServerConfig;
  log: LogConfig;
  /** The admin key; undefined means admin endpoints are open (loopback only). */
  adminKey?: string;
  clientKeys: ClientKeyConfig[];
  /** Seed B compatibility: client keys may read the stats endpoints. @default false */
  clientKeysReadStats: boolean;
  upstreams: UpstreamConfig[];
  pools: PoolConfig[];
  retry: RetryConfig;
  health: HealthConfig;
  usage: UsageConfig;
  queue: QueueConfig;
  /** @default a file at the platform's place for application state */
  state: StateConfig;
  /** Plugin module paths, resolved against the config file's folder. */
  plugins: string[];
}
