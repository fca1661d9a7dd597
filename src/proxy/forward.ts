/**
 * @module
 * The forwarding engine, the heart of llm-balance: routes a request to its model's pool, then
 * tries candidates until one answers. Each attempt holds a lease from the pool (which ends it
 * exactly once) and goes to a candidate not yet tried for this request while one exists,
 * preferring other upstreams after a server-side failure; the body is replayed byte-identical;
 * backoff with jitter applies only when a tried upstream must be reused. Nothing reaches the
 * client until an upstream has sent its first bytes, so streams fail over exactly like other
 * requests until then. Depends only on what {@linkcode ForwardDeps} names, so it is tested
 * without a server.
 */

import type { Clock } from "../clock.ts";
import type { QueueConfig, RetryConfig } from "../config/types.ts";
import { sharedStateDown, shuttingDown } from "../errors.ts";
import { isRetryable } from "../health/classify.ts";
import type { Logger } from "../logger.ts";
import type { PickContext, RequestContext } from "../plugin.ts";
import type { Pool } from "../pool.ts";
import { attempt, type AttemptResult } from "./attempt.ts";
import type { Watchdog } from "./watchdog.ts";
import { applyAuth, forwardRequestHeaders } from "./headers.ts";
import {
  affinityKey,
  ALLOW,
  isForwarded,
  notAllowed,
  notProxied,
  readInbound,
  unserved,
  withModel,
} from "./inbound.ts";
import type { Lease } from "./lease.ts";
import { bodyFor } from "./request_body.ts";
import { commit, finalResponse } from "./respond.ts";
import { learnedBudgets } from "../budget/headers.ts";
import { isModelScope } from "../config/defaults.ts";
import { emptyAnswer, type ErrorMeaning, errorMeaning } from "../budget/meaning.ts";
import { type Acquired, fallbackLease, firstLease, withFallbacks } from "./acquire.ts";
import type { WaitQueues } from "./wait_queue.ts";

import { backoffMs, upstreamUrl } from "./routing.ts";

const encoder = new TextEncoder();

/** How attempts reach upstreams. */
export interface Transport {
  /** `fetch`'s signature: llm-balance's HTTP/1.1 client, or an injected fake in tests. */
  readonly fetch: typeof fetch;
  /** Deno's client for what goes through `fetch` itself. */
  readonly client: Deno.HttpClient | undefined;
}

/** The settings the engine reads, from the configuration in force. */
export interface ForwardSettings {
  readonly retry: RetryConfig;
  /** Largest request body accepted, in bytes. */
  readonly maxBodyBytes: number;
  /** Whether streamed chat completions get `stream_options.include_usage`. */
  readonly injectStreamUsage: boolean;
  /** Whether answers carry `x-llm-balance-overhead-ms`. */
  readonly overheadHeader: boolean;
  /** How long and how many requests may wait for a key. */
  readonly queue: QueueConfig;
}

/** What the engine depends on, and nothing more. */
export interface ForwardDeps {
  /**
   * Finds the pool for a model.
   * @returns the named pool, else the default pool, else undefined
   */
  poolFor(model: string | undefined): Pool | undefined;
  readonly transport: Transport;
  readonly clock: Clock;
  /** Returns a number in [0, 1) (backoff jitter). */
  readonly random: () => number;
  /** Checks the attempts' deadlines. */
  readonly watchdog: Watchdog;
  readonly logger: Logger;
  readonly settings: ForwardSettings;
  /** The wait queues, by pool and model. */
  readonly queues: WaitQueues<Pool>;
  /** Whether llm-balance is shutting down: no new attempt starts. */
  stopping(): boolean;
  /**
   * Whether traffic is refused because the shared state cannot be reached
   * (`state.redis_required`). @default never
   */
  readonly refusing?: (() => boolean) | undefined;
}

/** Whether every upstream of a pool takes only /v1 paths (computed once per pool). */
const v1OnlyPools = new WeakMap<Pool, boolean>();

function v1Only(pool: Pool): boolean {
  let v = v1OnlyPools.get(pool);
  if (v === undefined) {
    v = pool.candidates.every((c) => c.upstream.pathMode === "v1");
    v1OnlyPools.set(pool, v);
  }
  return v;
}

/**
 * Forwards one request and sets `ctx.res` (and `ctx.done` for a relayed body).
 * @param deps pools, transport, clock, logger and settings
 * @param ctx the request
 * @throws {ProxyError} 405 for a method that is not forwarded, 400/403/404/413 for a request
 *   that cannot be, and llm-balance's own answer when no attempt succeeded (see
 *   {@linkcode finalResponse}); 503 when shutting down
 */
export async function forward(deps: ForwardDeps, ctx: RequestContext): Promise<void> {
  const req = ctx.req;
  const method = req.method;
  if (!isForwarded(method)) {
    // nothing is read or forwarded: a TRACE echoed upstream would show the upstream's key
    if (method !== "OPTIONS") throw notAllowed(method);
    // a preflight was answered by the cors step; any other OPTIONS is answered here
    ctx.res = new Response(null, { status: 204, headers: { allow: ALLOW } });
    return;
  }
  const { settings, clock } = deps;
  if (deps.refusing?.() === true) throw sharedStateDown();
  const inbound = await readInbound(ctx, settings);
  let { body, text, model } = inbound;
  let pool = deps.poolFor(model);
  if (pool === undefined) throw unserved(model);
  const path = ctx.path;
  if (path !== "/v1" && !path.startsWith("/v1/") && v1Only(pool)) throw notProxied(path);
  const retry = settings.retry;
  const deadline = retry.deadlineMs > 0 ? clock.now() + retry.deadlineMs : Infinity;
  const client = ctx.client?.name;
  const affinity = affinityKey(inbound, req.headers, pool.affinityBy, pool.prefixChars);
  // made on the first retry: most requests never need them
  let tried: Set<string> | undefined;
  let failedUpstreams: Set<string> | undefined;
  let bodies: Map<string, Uint8Array<ArrayBuffer> | null> | undefined;
  let last: AttemptResult | undefined;
  let lastLease: Lease | undefined;
  /** Keys the shared budgets refused before an attempt (see `Lease.reserved`). */
  let refused: Set<string> | undefined;
  const exclude = (k: { id: string; upstream: { name: string } }) =>
    tried?.has(k.id) === true || failedUpstreams?.has(k.upstream.name) === true;
  /** Keys already tried (upstreams that failed may be used again after a backoff). */
  const triedKey = (k: { id: string }) => tried?.has(k.id) === true;
  /** A fallback model's pool serves: the body names that model from now on. */
  const switchTo = (to: Acquired) => {
    pool = to.pool;
    model = to.model;
    ctx.log.servedModel = model;
    const renamed = text === undefined ? undefined : withModel(text, model);
    if (renamed !== undefined) {
      text = renamed;
      body = encoder.encode(renamed);
      bodies = undefined;
    }
  };
  for (let n = 1; n <= retry.maxAttempts; n++) {
    if (deps.stopping()) throw shuttingDown();
    if (n > 1 && clock.now() >= deadline) break;
    const pick: PickContext = {
      model,
      attempt: n,
      client,
      affinityKey: affinity,
      headers: req.headers,
    };
    // a stale keep-alive connection is not the key's fault: it may be picked again
    const stale = last?.cls === "stale";
    if (lastLease !== undefined && !stale) (tried ??= new Set()).add(lastLease.candidate.id);
    if (deps.stopping()) throw shuttingDown();
    let lease: Lease | undefined;
    // keys the budgets refused before an attempt are not asked again in this request
    const firstTry = n === 1 && refused === undefined;
    if (firstTry) {
      // at once, unless others wait for a key of this pool (then behind them)
      lease = deps.queues.waiting(pool, model) === 0 ? pool.lease(pick) : undefined;
    } else lease = pool.lease(pick, exclude);
    if (lease === undefined && firstTry) {
      const first = await firstLease(
        {
          poolFor: deps.poolFor,
          queues: deps.queues,
          clock,
          queue: settings.queue,
          stopping: deps.stopping,
        },
        pool,
        pick,
        () => req.signal,
        true,
      );
      lease = first.lease;
      if (deps.stopping()) {
        // the drain ended while it waited: nothing is sent any more
        lease?.done({ cls: "client_abort" });
        throw shuttingDown();
      }
      if (first.pool !== pool) switchTo(first);
      if (lease === undefined && req.signal.aborted) {
        // the client left while waiting for a key: nothing was sent upstream
        ctx.log.outcome = "client_abort";
        ctx.log.status = 499;
        ctx.res = new Response(null, { status: 499 });
        return;
      }
    }
    // whether a key of the pool may still serve (asked once; again after a backoff)
    let usable = lease === undefined && n > 1 ? pool.any(undefined, model) : undefined;
    if (usable === true) {
      // only upstreams that already failed (or only tried keys) are left: back off first
      const wait = Math.min(
        backoffMs(n - 1, retry.backoffBaseMs, retry.backoffMaxMs, deps.random),
        Math.max(0, deadline - clock.now()),
      );
      if (wait > 0) await sleep(wait, req.signal);
      if (req.signal.aborted) break;
      if (deps.stopping()) throw shuttingDown();
      lease = pool.lease(pick, triedKey) ?? pool.lease(pick);
      usable = undefined;
    }
    if (lease === undefined && n > 1 && !(usable ?? pool.any(undefined, model))) {
      // the pool's keys turned out spent, resting or down during this request: a fallback
      const next = deps.stopping() ? undefined : fallbackLease(deps, pool, pick);
      if (next !== undefined) {
        switchTo(next);
        lease = next.lease;
        tried = failedUpstreams = undefined;
      }
    }
    if (lease === undefined) break;
    if (lease.reserved !== true) {
      // made before the wait: a signal made only after the client left says so only later
      const signal = req.signal;
      const granted = await lease.reserved;
      // while it waited for Redis: the client left, the drain ended, or Redis went away and is
      // required; nothing was sent, and what the budgets took is given back
      if (signal.aborted || deps.stopping() || deps.refusing?.() === true) {
        lease.withdraw(granted);
        if (deps.stopping()) throw shuttingDown();
        if (!signal.aborted) throw sharedStateDown();
        ctx.log.outcome = "client_abort";
        ctx.log.status = 499;
        ctx.res = new Response(null, { status: 499 });
        return;
      }
      if (!granted) {
        // the cluster's budget of this key turned out spent (the key is out now): another
        // key, without counting an attempt; a key refused this way cannot come back in this
        // request
        lease.withdraw();
        (refused ??= new Set()).add(lease.candidate.id);
        (tried ??= new Set()).add(lease.candidate.id);
        if (refused.size <= pool.candidates.length) n--;
        continue;
      }
    }
    lastLease = lease;
    const c = lease.candidate;
    const log = ctx.log;
    log.attempts = n;
    log.upstream = c.upstream.name;
    log.key = c.mask;
    log.affinity = lease.affinity;
    const up = c.upstream.config;
    let result: AttemptResult;
    try {
      const headers = forwardRequestHeaders(req.headers, up.headers, up.forceHeaders);
      if (c.key !== undefined) applyAuth(headers, c.upstream.auth, c.key.reveal());
      result = await attempt({
        url: upstreamUrl(c.upstream, path, ctx.search),
        method,
        headers,
        body: bodyFor(c, body, text, model, n > 1 ? (bodies ??= new Map()) : undefined),
        timeouts: up.timeouts,
        deadline,
        clientSignal: () => req.signal,
        fetch: deps.transport.fetch,
        client: deps.transport.client,
        clock,
        watchdog: deps.watchdog,
        onControl: (control) => lease!.hold(control),
        startedAt: lease.startedAt,
        fresh: stale,
      });
    } catch (err) {
      // attempt() never throws; whatever did (a header the runtime refused) ends the lease
      lease.done({ cls: "bad_request" });
      throw err;
    }
    const t1 = clock.mono();
    log.upstreamMs += t1 - lease.startedAt;
    const now = clock.now();
    const learned = result.kind === "failure"
      ? undefined
      : learnedBudgets(result.response.headers, now);
    if (result.kind === "response") {
      if (!emptyAnswer(path, result.body)) {
        commit(ctx, lease, result, {
          injected: inbound.injected,
          now: t1,
          overheadHeader: settings.overheadHeader,
          logger: deps.logger,
          learned,
        });
        return;
      }
      // a 200 without choices (ModelScope under load) is a failed call: another key may answer
      const status = result.response.status;
      result = {
        kind: "failure",
        cls: "server",
        error: new Error(`answered ${status} with a chat completion without choices`),
      };
    }
    let status: number | undefined;
    let meaning: ErrorMeaning | undefined;
    if (result.kind === "error_response") {
      status = result.response.status;
      meaning = errorMeaning(result, learned, model, now, isModelScope(up.baseUrl));
      if (meaning.cls !== result.cls) result = { ...result, cls: meaning.cls };
    }
    lease.done({
      cls: result.cls,
      status,
      retryAt: meaning?.resetAt,
      at: t1,
      learned,
      scope: meaning?.scope,
    });
    last = result;
    deps.logger.info("upstream attempt failed", {
      request_id: ctx.requestId,
      upstream: c.upstream.name,
      key: c.mask,
      attempt: n,
      max_attempts: retry.maxAttempts,
      class: result.cls,
      status,
      consecutive_failures: c.state.consecutiveFailures,
    });
    if (result.kind === "failure" && result.shutdown) throw shuttingDown();
    if (result.cls === "client_abort" || !isRetryable(result.cls)) break;
    if (result.cls === "server" || result.cls === "connect" || result.cls === "timeout") {
      (failedUpstreams ??= new Set()).add(c.upstream.name);
    }
  }
  ctx.res = finalResponse(ctx, pool, last, lastLease?.candidate, {
    model,
    alsoPools: pool.fallbacks.length === 0 ? undefined : withFallbacks(deps, pool).slice(1),
    clock,
    logger: deps.logger,
    retries: retry.maxAttempts > 1,
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
