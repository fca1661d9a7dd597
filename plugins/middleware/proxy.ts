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
import { errorBody, ProxyError } from "../../src/errors.ts";
import { isRetryable } from "../../src/health/classify.ts";
import { retryAt } from "../../src/health/retry_after.ts";
import type { Candidate } from "../../src/plugin.ts";
import type { Pool } from "../../src/pool.ts";
import { attempt, type AttemptResult } from "../../src/proxy/attempt.ts";
import type { AttemptControl } from "../../src/proxy/attempt_control.ts";
import {
  applyAuth,
  forwardRequestHeaders,
  returnResponseHeaders,
} from "../../src/proxy/headers.ts";
import { findTopLevel, readTopLevelString, replaceValue } from "../../src/proxy/json_scan.ts";
import { relay } from "../../src/proxy/relay.ts";
import {
  acceptsStreamOptions,
  injectIncludeUsage,
  UsageChunkStripper,
} from "../../src/proxy/stream_usage.ts";
import { type Usage, UsageTap } from "../../src/proxy/usage.ts";
import { backoffMs, describeUnavailable, upstreamUrl } from "../../src/proxy/routing.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const NULL_BODY = new Set([101, 204, 205, 304]);

/** Reads the request body once (it is replayed on every attempt), enforcing the size limit. */
async function readBody(req: Request, max: number): Promise<Uint8Array<ArrayBuffer> | null> {
  // `req.body` is never touched: reading it builds a JS stream and loses the native fast path
  if (req.method === "GET" || req.method === "HEAD") return null;
  const declared = Number(req.headers.get("content-length") ?? "0");
  const tooLarge = () =>
    new ProxyError(`Request body is larger than ${max} bytes`, {
      status: 413,
      type: "invalid_request_error",
      code: "request_too_large",
    });
  if (declared > max) throw tooLarge();
  const body = new Uint8Array(await req.arrayBuffer());
  if (body.length > max) throw tooLarge();
  return body.length === 0 && !req.headers.has("content-length") ? null : body;
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
    const { req, url } = ctx;
    let body = await readBody(req, config.server.maxBodyBytes);
    let text: string | undefined;
    let model: string | undefined;
    let injected = false;
    if (body !== null && body.length > 0 && isJson(req.headers.get("content-type"), body)) {
      text = decoder.decode(body);
      model = readTopLevelString(text, "model");
      if (config.usage.injectStreamUsage && acceptsStreamOptions(url.pathname)) {
        const withUsage = injectIncludeUsage(text);
        if (withUsage !== undefined) {
          text = withUsage;
          body = encoder.encode(withUsage);
          injected = true;
        }
      }
    }
    ctx.log.model = model;
    if (model !== undefined && ctx.client?.models && !ctx.client.models.includes(model)) {
      throw new ProxyError(`Client key "${ctx.client.name}" may not use model "${model}"`, {
        status: 403,
        type: "permission_error",
        code: "model_not_allowed",
      });
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
    const path = url.pathname;
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
    const tried = new Set<string>();
    const failedUpstreams = new Set<string>();
    const bodies = new Map<string, Uint8Array<ArrayBuffer> | null>();
    let last: AttemptResult | undefined;
    let lastCandidate: Candidate | undefined;
    for (let n = 1; n <= retry.maxAttempts; n++) {
      if (app.stopping) throw shuttingDown();
      if (n > 1 && app.now() >= deadline) break;
      const pick = { model, attempt: n };
      let c = n === 1 ? pool.pick(pick) : pool.pick(
        pick,
        (k) => tried.has(k.id) || failedUpstreams.has(k.upstream.name),
      ) ?? pool.pick(pick, (k) => tried.has(k.id));
      if (c === undefined && n > 1 && pool.pick(pick) !== undefined) {
        // only tried candidates are left: back off before reusing one, then pick again
        const wait = Math.min(
          backoffMs(n - 1, retry.backoffBaseMs, retry.backoffMaxMs, app.random),
          Math.max(0, deadline - app.now()),
        );
        if (wait > 0) await sleep(wait, req.signal);
        if (req.signal.aborted) break;
        c = pool.pick(pick);
      }
      if (c === undefined) break;
      if (app.stopping) throw shuttingDown();
      tried.add(c.id);
      lastCandidate = c;
      ctx.log.attempts = n;
      ctx.log.upstream = c.upstream.name;
      ctx.log.key = c.mask;
      const headers = forwardRequestHeaders(req.headers);
      const extra = c.upstream.config.headers;
      for (const k in extra) headers.set(k, extra[k]!);
      if (c.key !== undefined) applyAuth(headers, c.upstream.auth, c.key.reveal());
      const trial = app.board.begin(c);
      const t0 = performance.now();
      let control: AttemptControl | undefined;
      const result = await attempt({
        url: upstreamUrl(c.upstream, url.pathname, url.search),
        method: req.method,
        headers,
        body: bodyFor(c, body, text, model, bodies),
        timeouts: c.upstream.config.timeouts,
        deadline,
        clientSignal: req.signal,
        fetch: app.fetch,
        client: app.httpClient,
        now: app.now,
        onControl: (k) => app.open.add(control = k),
      });
      if (result.kind !== "response" && control !== undefined) app.open.delete(control);
      ctx.log.upstreamMs += performance.now() - t0;
      if (result.kind === "response") {
        commit(ctx, app, c, result, { trial, injected });
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
        failedUpstreams.add(c.upstream.name);
      }
    }
    ctx.res = finalResponse(ctx, app, pool, last, lastCandidate);
  };
}

function shuttingDown(): ProxyError {
  return new ProxyError("llm-balance is shutting down; retry the request", {
    status: 503,
    type: "service_unavailable",
    code: "shutting_down",
    headers: { "retry-after": "1" },
  });
}

function bodyFor(
  c: Candidate,
  body: Uint8Array<ArrayBuffer> | null,
  text: string | undefined,
  model: string | undefined,
  cache: Map<string, Uint8Array<ArrayBuffer> | null>,
): Uint8Array<ArrayBuffer> | null {
  if (text === undefined || model === undefined) return body;
  const mapped = c.upstream.config.models[model];
  if (mapped === undefined || mapped === model) return body;
  let out = cache.get(c.upstream.name);
  if (out === undefined) {
    const span = findTopLevel(text, "model");
    out = span === undefined ? body : encoder.encode(replaceValue(text, span, mapped));
    cache.set(c.upstream.name, out);
  }
  return out;
}

function commit(
  ctx: RequestContext,
  app: App,
  c: Candidate,
  r: Extract<AttemptResult, { kind: "response" }>,
  { trial, injected }: { trial: boolean; injected: boolean },
): void {
  const res = r.response;
  const started = r.startedAt;
  const headers = returnResponseHeaders(res.headers);
  headers.set("x-request-id", ctx.requestId);
  headers.set("x-llm-balance-upstream", c.upstream.name);
  ctx.log.status = res.status;
  ctx.log.ttfbMs = performance.now() - ctx.startedAt;
  if (ctx.rt.config.server.overheadHeader) {
    const overhead = Math.max(0, ctx.log.ttfbMs - ctx.log.upstreamMs);
    headers.set("x-llm-balance-overhead-ms", overhead.toFixed(3));
  }
  const sse = (res.headers.get("content-type") ?? "").includes("text/event-stream");
  ctx.log.stream = sse;
  if (r.reader === undefined || NULL_BODY.has(res.status)) {
    r.reader?.cancel().catch(() => {});
    r.control.dispose();
    app.open.delete(r.control);
    const body = NULL_BODY.has(res.status) ? null : r.body ?? null;
    if (body !== null && body.length > 0) {
      ctx.log.bytes = body.length;
      const tap = new UsageTap(false);
      tap.push(body);
      countUsage(ctx, app, c, tap.finish());
    }
    app.board.end(c, "ok", { trial });
    app.latency.record(c.id, performance.now() - started);
    ctx.log.outcome = "complete";
    ctx.res = new Response(body, { status: res.status, statusText: res.statusText, headers });
    return;
  }
  const tap = new UsageTap(sse);
  // the usage chunk the client did not ask for: the tap reads it, the client never sees it
  const strip = injected && sse ? new UsageChunkStripper() : undefined;
  app.open.add(r.control);
  let resolveDone!: () => void;
  ctx.done = new Promise<void>((resolve) => resolveDone = resolve);
  const stream = relay({
    reader: r.reader,
    first: r.first,
    control: r.control,
    idleMs: c.upstream.config.timeouts.idleMs,
    sse,
    onChunk: (chunk) => tap.push(chunk),
    transform: strip && ((chunk) => strip.push(chunk)),
    flush: strip && (() => strip.flush()),
    onEnd: (end) => {
      app.open.delete(r.control);
      ctx.log.bytes = end.bytes;
      ctx.log.outcome = end.outcome === "failed" ? end.cls : end.outcome;
      if (end.outcome === "complete") countUsage(ctx, app, c, tap.finish());
      if (end.outcome === "failed") {
        ctx.log.error = `stream interrupted: ${end.cls}`;
        app.logger.warn("upstream broke mid-response", {
          request_id: ctx.requestId,
          upstream: c.upstream.name,
          key: c.mask,
          class: end.cls,
          bytes: end.bytes,
        });
      }
      app.board.end(c, end.outcome === "complete" ? "ok" : end.cls, { trial });
      if (end.outcome === "complete") app.latency.record(c.id, performance.now() - started);
      resolveDone();
    },
  });
  ctx.res = new Response(stream, { status: res.status, statusText: res.statusText, headers });
}

function countUsage(ctx: RequestContext, app: App, c: Candidate, usage: Usage | undefined): void {
  if (usage === undefined) return;
  ctx.log.usage = usage;
  const s = app.store.record(c.id);
  s.promptTokens += usage.promptTokens;
  s.completionTokens += usage.completionTokens;
  s.totalTokens += usage.totalTokens;
}

function finalResponse(
  ctx: RequestContext,
  app: App,
  pool: Pool,
  last: AttemptResult | undefined,
  c: Candidate | undefined,
): Response {
  const now = app.now();
  const summary = pool.summary(now);
  const retryAfter = Number.isFinite(summary.nextReturn)
    ? String(Math.max(1, Math.ceil((summary.nextReturn - now) / 1000)))
    : undefined;
  if (last === undefined || c === undefined) {
    ctx.log.error = "no candidate available";
    throw new ProxyError(describeUnavailable(pool, summary), {
      status: 503,
      type: "service_unavailable",
      code: "no_upstream_available",
      headers: retryAfter === undefined ? {} : { "retry-after": retryAfter },
    });
  }
  if (last.kind === "error_response" && last.cls === "auth") {
    // the upstream refused OUR key: not the client's fault, and not its key
    ctx.log.status = 502;
    ctx.log.outcome = last.cls;
    throw new ProxyError(
      `Upstream "${c.upstream.name}" refused key ${c.mask} (HTTP ${last.response.status}); ` +
        "no other key could serve the request",
      { status: 502, type: "upstream_error", code: "upstream_auth_failed" },
    );
  }
  if (last.kind === "error_response") {
    const res = last.response;
    const headers = returnResponseHeaders(res.headers);
    headers.delete("content-length");
    headers.set("x-request-id", ctx.requestId);
    headers.set("x-llm-balance-upstream", c.upstream.name);
    if (res.status === 429 && !headers.has("retry-after") && retryAfter !== undefined) {
      headers.set("retry-after", retryAfter);
    }
    ctx.log.status = res.status;
    ctx.log.outcome = last.cls;
    let body: Uint8Array<ArrayBuffer> | string = last.body;
    if (!looksLikeJsonError(last.body)) {
      headers.set("content-type", "application/json");
      body = errorBody(
        `Upstream "${c.upstream.name}" answered HTTP ${res.status}${
          res.statusText ? ` ${res.statusText}` : ""
        }`,
        res.status >= 500 ? "upstream_error" : "invalid_request_error",
        `upstream_${res.status}`,
      );
    }
    return new Response(body, { status: res.status, headers });
  }
  ctx.log.outcome = last.cls;
  if (last.kind !== "failure") {
    throw new Error("unreachable: a committed attempt has no final error");
  }
  if (last.cls === "client_abort") {
    ctx.log.status = 499;
    return new Response(null, { status: 499 });
  }
  const message = app.logger.redact(
    last.error instanceof Error ? last.error.message : String(last.error),
  );
  ctx.log.error = message;
  if (last.cls === "timeout") {
    throw new ProxyError(
      `Upstream "${c.upstream.name}" timed out (${
        (last.timeout ?? "total").replace("_", " ")
      } limit)`,
      { status: 504, type: "timeout_error", code: "upstream_timeout" },
    );
  }
  throw new ProxyError(`Could not reach upstream "${c.upstream.name}": ${message}`, {
    status: 502,
    type: "upstream_error",
    code: "upstream_unreachable",
  });
}

function looksLikeJsonError(body: Uint8Array): boolean {
  if (body.length === 0) return false;
  try {
    const v: unknown = JSON.parse(decoder.decode(body));
    return typeof v === "object" && v !== null && "error" in v;
  } catch {
    return false;
  }
}

/**
 * Whether a request body is JSON: by its content type, or, for the types `curl -d` and
 * careless clients send (`x-www-form-urlencoded`, `text/plain`), by a leading `{`.
 */
function isJson(contentType: string | null, body: Uint8Array): boolean {
  if (contentType === null || contentType.includes("json")) return true;
  if (!contentType.includes("x-www-form-urlencoded") && !contentType.startsWith("text/plain")) {
    return false;
  }
  let i = 0;
  while (i < body.length && (body[i] === 32 || body[i] === 10 || body[i] === 13 || body[i] === 9)) {
    i++;
  }
  return body[i] === 123;
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
