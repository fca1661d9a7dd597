/**
 * @module
 * The plugin API: everything a strategy, probe or middleware plugin needs, exported from one
 * module. A plugin is a value with a `kind` and a unique `name`; write it as
 * `export default { kind: "strategy", name: "mine", create() {...} } satisfies StrategyPlugin`.
 */

import type { CandidateState } from "./state_store.ts";
import type {
  AuthStyle,
  ClientKeyConfig,
  Config,
  PathMode,
  QuotaConfig,
  UpstreamConfig,
} from "./config/types.ts";
import type { Clock } from "./clock.ts";
import type { AttemptClass } from "./health/classify.ts";
import type { Logger } from "./logger.ts";
import type { Middleware as GenericMiddleware } from "./compose.ts";
import type { Usage } from "./proxy/usage.ts";
import type { RateDecision } from "./rate_limiter.ts";
import type { DashboardData } from "./admin/dashboard_types.ts";

export type { CandidateState } from "./state_store.ts";
export type { Clock } from "./clock.ts";
export type { AttemptClass } from "./health/classify.ts";
export type { Logger } from "./logger.ts";
export type { Usage } from "./proxy/usage.ts";
export type { RateDecision } from "./rate_limiter.ts";
export type { DashboardData } from "./admin/dashboard_types.ts";
export { latencySample, PeakEwma } from "./routing/peak_ewma.ts";

/** A secret that prints as its mask: logging or serializing it never reveals the value. */
export class Secret {
  readonly #value: string;
  /** The masked form, safe to show anywhere. */
  readonly mask: string;

  /**
   * @param value the secret
   * @param mask how it is shown
   */
  constructor(value: string, mask: string) {
    this.#value = value;
    this.mask = mask;
  }

  /** Returns the secret itself: only for the request sent upstream. */
  reveal(): string {
    return this.#value;
  }

  /** Returns the mask. */
  toString(): string {
    return this.mask;
  }

  /** Returns the mask. */
  toJSON(): string {
    return this.mask;
  }

  /** Shows the mask in `Deno.inspect` and `console.log`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Secret(${this.mask})`;
  }
}

/** An upstream as the proxy uses it at run time. */
export interface Upstream {
  readonly name: string;
  readonly baseUrl: string;
  readonly pathMode: PathMode;
  readonly auth: AuthStyle;
  readonly config: Readonly<UpstreamConfig>;
}

/**
 * One key of one upstream, as a member of a pool. Strategies read candidates and never
 * change them; `state` is the live record from the state store.
 */
export interface Candidate {
  /** Stable id: `<upstream>:<hash of the key>`; never the key itself. */
  readonly id: string;
  /** Position in the pool's stable order (0-based). */
  readonly index: number;
  readonly upstream: Upstream;
  /** The key (prints as its mask); undefined for an upstream without keys. */
  readonly key: Secret | undefined;
  /** The key's mask, or `<upstream>:no-key`. */
  readonly mask: string;
  /** Optional human name of the key. */
  readonly name: string | undefined;
  readonly weight: number;
  readonly priority: number;
  /** The key's budgets (the upstream's `quota`, with the key's own fields over it). */
  readonly quota: Readonly<QuotaConfig>;
  readonly state: Readonly<CandidateState>;
}

/** Read access to a request's headers (names are case-insensitive). */
export interface ReadonlyHeaders {
  get(name: string): string | null;
  has(name: string): boolean;
}

/** What a strategy knows about the request it picks for. */
export interface PickContext {
  /** The model the client asked for, if any. */
  readonly model: string | undefined;
  /** The attempt number, 1-based. */
  readonly attempt: number;
  /** The name of the client key that sent the request, when client keys are configured. */
  readonly client: string | undefined;
  /**
   * What ties this request to earlier ones (a conversation, a user): the first of the pool's
   * `affinity.by` sources the request carries (default: the body's `prompt_cache_key`, then
   * OpenAI's `user` field; a `header:<name>` source reads that header). Undefined when none.
   */
  readonly affinityKey: string | undefined;
  /** The client's request headers (read only). */
  readonly headers: ReadonlyHeaders;
}

/** How one upstream attempt ended, as a strategy's {@linkcode Strategy.done} hook sees it. */
export interface AttemptOutcome {
  /**
   * The attempt's class: `ok`, `client_abort`, `bad_request`, `auth`, `quota`, `rate_limited`,
   * `server`, `connect`, `stale` or `timeout`. A stream that broke mid-body ends with the class of
   * the break.
   */
  readonly cls: AttemptClass;
  /** The upstream's HTTP status, when it answered. */
  readonly status: number | undefined;
  /**
   * Milliseconds from the attempt's start to its end: the whole body relayed for a success
   * (the end of a stream), the failure otherwise.
   */
  readonly latencyMs: number;
  /** Milliseconds from the attempt's start to the first body bytes, when they came. */
  readonly ttfbMs: number | undefined;
  /** Tokens the upstream reported for this attempt, when it did. */
  readonly usage: Usage | undefined;
  /** Whether the answer was an event stream (its `ttfbMs` is the time to the first event). */
  readonly stream: boolean;
  /**
   * Whether the outcome says something about the key or its upstream: false for a client that
   * left, a request the upstream refused as malformed (400-class) and a stale kept-alive
   * connection, which would have happened on any key.
   */
  readonly telling: boolean;
}

/**
 * A key-selection strategy: picks one of the available candidates. It must be synchronous,
 * never block, and never mutate candidates; it may keep its own state (cursors, weights).
 */
export interface Strategy {
  /**
   * @param available the usable candidates, in the pool's stable order; never empty
   * @param ctx the request
   * @returns the chosen candidate, one of `available`; or undefined when none of them may serve
   *   (the weighted strategy never chooses weight 0): the pool then tries the next priority tier
   */
  pick(available: readonly Candidate[], ctx: PickContext): Candidate | undefined;
  /**
   * Optional: told once per attempt, when it has ended, how a candidate this strategy's pool
   * picked did (whichever strategy picked it). Synchronous and cheap: it runs on the data path.
   * An exception it throws is logged and otherwise ignored.
   * @param candidate the candidate the attempt went to
   * @param outcome its class, status, latency, time to first byte and tokens
   * @param ctx what the strategy was told when the candidate was picked (model, attempt, ...)
   */
  done?(candidate: Candidate, outcome: AttemptOutcome, ctx: PickContext): void;
}

/** What a strategy factory receives. */
export interface StrategyOptions {
  /** Every candidate of the pool, in stable order (`candidates[i].index === i`). */
  readonly candidates: readonly Candidate[];
  /** Returns a number in [0, 1); injected so tests are deterministic. */
  readonly random: () => number;
  /**
   * Returns the time in epoch milliseconds, the clock of the candidates' state (`lastUsed`,
   * `restUntil`, ...); injected so tests are deterministic.
   */
  readonly now: () => number;
  /**
   * What share of a key's tightest budget for a model is left (today's requests, the model's
   * requests, today's tokens; counted, or the provider's word when lower): a number in [0, 1],
   * 1 for a key without budgets. Pass `now` (from `now()`, read once per pick) when asking for
   * many keys at once.
   */
  readonly budgetLeft: (candidate: Candidate, model: string | undefined, now?: number) => number;
  /**
   * The pool's `strategy_options` from the configuration (llm-balance always passes it, `{}`
   * when none; optional so tests written before it still build options without it): the
   * strategy reads and checks its own (throw an `Error` naming the option to refuse a bad
   * value; llm-balance then refuses the configuration, naming the pool).
   */
  readonly settings?: Readonly<Record<string, unknown>>;
}

/** A strategy plugin: builds one strategy instance per pool, living as long as the pool. */
export interface StrategyPlugin {
  readonly kind: "strategy";
  readonly name: string;
  readonly description?: string;
  /**
   * The `strategy_options` it reads: when given, llm-balance refuses any other option of a
   * pool using it (`[]`: it takes none); when left out, the strategy checks its own.
   */
  readonly options?: readonly string[];
  create(options: StrategyOptions): Strategy;
}

/** The outcome of one health probe. */
export interface ProbeResult {
  /** `healthy`, or why not. */
  readonly outcome: "healthy" | "server_error" | "auth" | "rate_limited" | "network" | "timeout";
  /** HTTP status if a response came. */
  readonly status?: number;
  readonly latencyMs: number;
  /** For `rate_limited`: when the key may be used again (epoch ms). */
  readonly retryAt?: number;
  /** A short description, secrets masked. */
  readonly detail?: string;
}

/** What a probe plugin probes. */
export interface ProbeTarget {
  readonly candidate: Candidate;
  /** Full URL to probe. */
  readonly url: string;
  /** Headers to send: the key in the upstream's auth style, plus its extra headers. */
  readonly headers: Headers;
  readonly signal: AbortSignal;
  readonly fetch: typeof fetch;
  readonly now: () => number;
}

/** A health probe plugin. */
export interface ProbePlugin {
  readonly kind: "probe";
  readonly name: string;
  readonly description?: string;
  probe(target: ProbeTarget): Promise<ProbeResult>;
}

/** What the request log line says; filled in as the request goes. */
export interface RequestLog {
  model?: string | undefined;
  upstream?: string | undefined;
  /** The masked key that served (or last failed). */
  key?: string | undefined;
  status: number;
  attempts: number;
  stream: boolean;
  /** Response body bytes sent. */
  bytes: number;
  /** How the response ended: `complete`, `client_abort` or the failure class. */
  outcome?: string | undefined;
  error?: string | undefined;
  /** Milliseconds until the first body bytes were ready for the client. */
  ttfbMs?: number | undefined;
  /** Milliseconds spent waiting on upstreams before the response was ready. */
  upstreamMs: number;
  usage?: Usage | undefined;
  /** The model that served, when a fallback pool served the request. */
  servedModel?: string | undefined;
  /**
   * How affinity routing chose the key: `hit` (followed the request's pin), `new` (pinned it),
   * `moved` (its key was out; the pin moved), `detour` (its key was busy or tried; pin kept).
   * Undefined when the pool's strategy chose.
   */
  affinity?: string | undefined;
}

/** One request in flight, as it goes through the middleware chain. */
export interface RequestContext {
  readonly req: Request;
  /** The request's URL (parsed when first read). */
  readonly url: URL;
  /** The URL's path, as `url.pathname` has it (routing reads this, not `url`). */
  readonly path: string;
  /** The URL's query with its `?`, as `url.search` has it ("" when none). */
  readonly search: string;
  /** The clock's `mono()` at arrival. */
  readonly startedAt: number;
  readonly remoteAddr: string;
  requestId: string;
  /** The authenticated client key, if client keys are configured. */
  client: ClientKeyConfig | undefined;
  /** The response, once a middleware produced it (or an error handler made one). */
  res: Response | undefined;
  log: RequestLog;
  /** Resolves when the response body has been sent, cancelled or has failed. */
  done: Promise<void> | undefined;
}

/** A step of the request chain. */
export type Middleware = GenericMiddleware<RequestContext>;

/** The models a configuration serves. */
export interface PoolDirectory {
  /** Whether a pool is named after this model. */
  has(model: string): boolean;
  /** Whether a default pool serves every other model. */
  readonly hasDefault: boolean;
}

/** One entry of OpenAI's model list. */
export interface ModelEntry {
  id: string;
  object: "model";
  /** Unix seconds: when llm-balance started. */
  created: number;
  owned_by: string;
}

/** The model list OpenAI's `GET /v1/models` returns. */
export interface ModelList {
  object: "list";
  data: ModelEntry[];
}

/** What llm-balance reports about itself (the views behind its own endpoints). */
export interface StatsService {
  /** `/health`: ok when at least one candidate is usable. */
  health(): { ok: boolean; body: Record<string, unknown> };
  /**
   * `/stats`: every key's counters and state (with `state.redis`, the cluster's budgets read
   * from Redis too: then a promise).
   */
  keys(): Record<string, unknown> | Promise<Record<string, unknown>>;
  /** `/metrics`: the Prometheus text exposition (a promise with `state.redis`). */
  metrics(): string | Promise<string>;
  /** `/v1/stats/load_balancers`. */
  loadBalancers(): Record<string, unknown>;
  /** `/v1/stats/models/{model}`: the pool serving the model, or undefined when none does. */
  pool(model: string): Record<string, unknown> | undefined;
  /** The configured named models, only the allowed ones when a list is given. */
  models(allowed?: readonly string[]): ModelList;
  /** Records a finished request in the metrics and the dashboard's timeline. */
  observe(ctx: RequestContext, durationMs: number): void;
  /**
   * `/dashboard/data`: every pool and key, the last 15 minutes and the last state changes
   * (keys only by id, mask and name).
   * @param caller whether the caller may act (the page shows action buttons then)
   */
  dashboard(caller: { canAct: boolean }): DashboardData;
}

/**
 * What a middleware plugin may use: built once per configuration (again on every reload), over
 * that configuration's pools. Narrow on purpose: a plugin reaches the data path only through
 * `forward`, and state only through `stats` and `admin`.
 */
export interface Services {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Returns a number in [0, 1). */
  readonly random: () => number;
  readonly pools: PoolDirectory;
  readonly stats: StatsService;
  /**
   * Operator actions on keys and upstreams (`/admin/...` paths split into segments).
   * @throws {ProxyError} 404 or 405 for an unknown target or action
   */
  admin(method: string, parts: readonly string[]): unknown;
  /**
   * Takes one request from a client key's per-minute budget. The decision comes at once, or as
   * a promise when it needs a round trip to the shared Redis (await it only then).
   */
  rateLimit(clientKey: string, perMinute: number): RateDecision | Promise<RateDecision>;
  /**
   * Forwards the request to its model's pool (retries, failover, relay) and sets `ctx.res`.
   * @throws {ProxyError} for a request it cannot forward, or when no attempt succeeded
   */
  forward(ctx: RequestContext): Promise<void>;
}

/** A middleware plugin: builds its middleware once per configuration. */
export interface MiddlewarePlugin {
  readonly kind: "middleware";
  readonly name: string;
  readonly description?: string;
  /**
   * Builds the middleware for one configuration (again on every reload).
   * @param config the configuration in force
   * @param services what the middleware may use (logger, clock, pools, stats, forwarding)
   * @returns the middleware, or undefined when it has nothing to do under this configuration
   *   (it then stays out of the chain, and requests skip it entirely)
   */
  create(config: Config, services: Services): Middleware | undefined;
}

/** Any plugin. */
export type Plugin = StrategyPlugin | ProbePlugin | MiddlewarePlugin;
