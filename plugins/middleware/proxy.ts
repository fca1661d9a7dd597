/**
 * @module
 * The forwarding step, last in the chain: routes the request to its model's pool, then tries
 * candidates until one answers. Each attempt goes to a candidate not yet tried for this request
 * while one exists (preferring other upstreams after a server-side failure); the body is
 * replayed byte-identical; backoff with jitter applies only when a tried upstream must be
 * reused. Nothing reaches the client until an upstream has sent its first bytes, so streams
 * fail over exactly like other requests until then.
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/context.ts";
import type { Config } from "../../src/config/types.ts";
import type { App } from "../../src/app.ts";
import { ProxyError } from "../../src/errors.ts";
import { isRetryable } from "../../src/health/classify.ts";
import { retryAt } from "../../src/health/retry_after.ts";
import type { Candidate } from "../../src/plugin.ts";
import type { Pool } from "../../src/pool.ts";
import { attempt, type AttemptResult } from "../../src/proxy/attempt.ts";
import type { AttemptControl } from "../../src/proxy/attempt_control.ts";
import { applyAuth, forwardRequestHeaders } from "../../src/proxy/headers.ts";
import { type FieldSpan, findTopLevelFields, stringOf } from "../../src/proxy/json_scan.ts";
import { acceptsStreamOptions, injectIncludeUsage } from "../../src/proxy/stream_usage.ts";
import { backoffMs, upstreamUrl } from "../../src/proxy/routing.ts";
import { bodyFor, isJson, readBody } from "../../src/proxy/request_body.ts";
import { limitedModel } from "../../src/proxy/model_limit.ts";
import { commit, finalResponse, shuttingDown } from "../../src/proxy/respond.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const BODY_FIELDS = ["model", "stream", "stream_options"];
/** The methods an API uses; OPTIONS is answered here, never forwarded. */
const ALLOW = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

/** Whether a method is forwarded upstream (methods are case-sensitive: `get` is not `GET`). */
function isForwarded(method: string): boolean {
  return method === "POST" || method === "GET" || method === "DELETE" || method === "PUT" ||
    method === "PATCH" || method === "HEAD";
}

function notAllowed(method: string): ProxyError {
  return new ProxyError(
    `Method ${JSON.stringify(method.slice(0, 20))} is not allowed: ${ALLOW} are`,
    {
      status: 405,
      type: "invalid_request_error",
      code: "method_not_allowed",
      headers: { allow: ALLOW },
    },
  );
}

function proxy(config: Config, app: App): Middleware {
  const retry = config.retry;
  const v1OnlyPools = new WeakMap<Pool, boolean>();
  /** Whether every upstream of a pool takes only /v1 paths (computed once per pool). */
  const v1Only = (pool: Pool): boolean => {
    let v = v1OnlyPools.get(pool);
    if (v === undefined) {
      v = pool.candidates.every((c) => c.upstream.pathMode === "v1");
      v1OnlyPools.set(pool, v);
    }
    return v;
  };
  return async function proxy(ctx: RequestContext): Promise<void> {
    const { req, path } = ctx;
    const method = req.method;
    if (!isForwarded(method)) {
      // nothing is read or forwarded: a TRACE echoed upstream would show the upstream's key
      if (method !== "OPTIONS") throw notAllowed(method);
      // a preflight was answered by the cors step; any other OPTIONS is answered here
      ctx.res = new Response(null, { status: 204, headers: { allow: ALLOW } });
      return;
    }
    let body = await readBody(req, config.server.maxBodyBytes);
    const contentType = body === null ? null : req.headers.get("content-type");
    let text: string | undefined;
    let model: string | undefined;
    let injected = false;
    let fields: (FieldSpan | undefined)[] | undefined;
    if (body !== null && body.length > 0 && isJson(contentType, body)) {
      text = decoder.decode(body);
      // one pass over the body finds every field the proxy reads
      fields = findTopLevelFields(text, BODY_FIELDS);
      model = stringOf(fields[0]);
    }
    ctx.log.model = model;
    const client = ctx.client;
    if (client?.models !== undefined) {
      // a limited key's request must name its model so that every upstream reads the same one
      const named = limitedModel(contentType, body, text);
      if (named !== undefined && !client.models.includes(named)) {
        throw new ProxyError(`Client key "${client.name}" may not use model "${named}"`, {
          status: 403,
          type: "permission_error",
          code: "model_not_allowed",
        });
      }
    }
    if (
      text !== undefined && fields !== undefined && config.usage.injectStreamUsage &&
      acceptsStreamOptions(path)
    ) {
      const withUsage = injectIncludeUsage(text, { stream: fields[1], streamOptions: fields[2] });
      if (withUsage !== undefined) {
        text = withUsage;
        body = encoder.encode(withUsage);
        injected = true;
      }
    }
    const pool = ctx.rt.poolFor(model);
    if (pool === undefined) {
      throw model === undefined
        ? new ProxyError("Request names no model and no default pool is configured", {
          status: 400,
          type: "invalid_request_error",
          code: "model_required",
        })
        : new ProxyError(`The model "${model}" does not exist or is not served here`, {
          status: 404,
          type: "invalid_request_error",
          code: "model_not_found",
        });
    }
    if (
      path !== "/v1" && !path.startsWith("/v1/") &&
      v1Only(pool)
    ) {
      throw new ProxyError(`Path "${path}" is not proxied: only /v1/* requests are forwarded`, {
        status: 404,
        type: "not_found_error",
        code: "not_found",
      });
    }
    const start = app.now();
    const deadline = retry.deadlineMs > 0 ? start + retry.deadlineMs : Infinity;
    // made on the first retry: most requests never need them
    let tried: Set<string> | undefined;
    let failedUpstreams: Set<string> | undefined;
    let bodies: Map<string, Uint8Array<ArrayBuffer> | null> | undefined;
    let last: AttemptResult | undefined;
    let lastCandidate: Candidate | undefined;
    for (let n = 1; n <= retry.maxAttempts; n++) {
      if (app.stopping) throw shuttingDown();
      if (n > 1 && app.now() >= deadline) break;
      const pick = { model, attempt: n };
      // a stale keep-alive connection is not the key's fault: it may be picked again
      const stale = last?.cls === "stale";
      if (lastCandidate !== undefined && !stale) (tried ??= new Set()).add(lastCandidate.id);
      let c = n === 1 ? pool.pick(pick) : pool.pick(
        pick,
        (k) => tried?.has(k.id) === true || failedUpstreams?.has(k.upstream.name) === true,
      );
      if (c === undefined && n > 1) {
        // only upstreams that already failed (or only tried keys) are left: back off first
        if (pool.any()) {
          const wait = Math.min(
            backoffMs(n - 1, retry.backoffBaseMs, retry.backoffMaxMs, app.random),
            Math.max(0, deadline - app.now()),
          );
          if (wait > 0) await sleep(wait, req.signal);
          if (req.signal.aborted) break;
          c = pool.pick(pick, (k) => tried?.has(k.id) === true) ?? pool.pick(pick);
        }
      }
      if (c === undefined) break;
      if (app.stopping) throw shuttingDown();
      lastCandidate = c;
      ctx.log.attempts = n;
      ctx.log.upstream = c.upstream.name;
      ctx.log.key = c.mask;
      const up = c.upstream.config;
      const headers = forwardRequestHeaders(req.headers, up.headers, up.forceHeaders);
      if (c.key !== undefined) applyAuth(headers, c.upstream.auth, c.key.reveal());
      const trial = app.board.begin(c);
      const t0 = performance.now();
      let control: AttemptControl | undefined;
      const result = await attempt({
        url: upstreamUrl(c.upstream, path, ctx.search),
        method: req.method,
        headers,
        body: bodyFor(c, body, text, model, n > 1 ? (bodies ??= new Map()) : undefined),
        timeouts: c.upstream.config.timeouts,
        deadline,
        clientSignal: clientSignal(req),
        fetch: app.fetch,
        client: app.httpClient,
        now: app.now,
        onControl: (k) => app.open.add(control = k),
        startedAt: t0,
        fresh: stale,
      });
      if (result.kind !== "response" && control !== undefined) app.open.delete(control);
      const t1 = performance.now();
      ctx.log.upstreamMs += t1 - t0;
      if (result.kind === "response") {
        commit(ctx, app, c, result, { trial, injected, now: t1 });
        return;
      }
      const status = result.kind === "error_response" ? result.response.status : undefined;
      app.board.end(c, result.cls, {
        status,
        trial,
        retryAt: result.kind === "error_response"
          ? retryAt(result.response.headers, app.now())
          : undefined,
      });
      last = result;
      app.logger.info("upstream attempt failed", {
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
    ctx.res = finalResponse(ctx, app, pool, last, lastCandidate);
  };
}

/** Reading `req.signal` costs; attempts that answer fast never need it (see ClientSignal). */
function clientSignal(req: Request): () => AbortSignal {
  return () => req.signal;
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

/** The forwarding step: route, pick, attempt, retry, relay. */
export default {
  kind: "middleware",
  name: "proxy",
  description: "Forwards the request to a candidate of its model's pool, with retries",
  create: proxy,
} satisfies MiddlewarePlugin;
