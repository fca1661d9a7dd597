/**
 * @module
 * First in the chain: gives each request its id (the client's `x-request-id` when it is
 * sane, else a new one) and writes one structured log line per request when the response has
 * really finished (streams included), with the true status, duration and bytes. Masks any
 * configured key found in response headers or error bodies before they leave. Errors thrown
 * further down reach it as responses already (the chain's error handler made them).
 */

import type { Middleware, MiddlewarePlugin, RequestContext, Services } from "../../src/plugin.ts";
import { errorResponse, ProxyError } from "../../src/errors.ts";

const SANE_ID = /^[\w.:@-]{1,128}$/;
/** Methods that need no scan for secrets (any other is outside text). */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
const decoder = new TextDecoder();

function requestLog(_config: unknown, services: Services): Middleware {
  const logger = services.logger;
  return async function requestLog(ctx: RequestContext, next): Promise<void> {
    const given = ctx.req.headers.get("x-request-id");
    // a client's id that holds a configured key is not taken (it would be echoed and logged)
    if (given !== null && SANE_ID.test(given) && logger.redact(given) === given) {
      ctx.requestId = given;
    }
    await next();
    if (ctx.res === undefined) {
      ctx.res = errorResponse(
        new ProxyError("Not found", { status: 404, type: "not_found_error", code: "not_found" }),
        ctx.requestId,
      );
    }
    if (ctx.res.status >= 400) ctx.res = await withoutSecrets(ctx, logger, ctx.res);
    if (!ctx.res.headers.has("x-request-id")) {
      try {
        ctx.res.headers.set("x-request-id", ctx.requestId);
      } catch {
        // immutable headers: leave as is
      }
    }
    if (ctx.log.status === 0) ctx.log.status = ctx.res.status;
    if (ctx.done === undefined) write(ctx, services);
    else ctx.done.then(() => write(ctx, services));
  };
}

/**
 * The last line of defence for error responses (status >= 400): a configured key in a header or
 * in the buffered body (an upstream's error, or one of ours) is replaced by its mask. Upstream
 * providers do quote the key they were sent in their error messages. Successful responses and
 * streamed bodies are never touched, so their bytes reach the client unchanged and undelayed.
 */
async function withoutSecrets(
  ctx: RequestContext,
  logger: Services["logger"],
  res: Response,
): Promise<Response> {
  const redact = (t: string) => logger.redact(t);
  let headers: Headers | undefined;
  for (const [k, v] of res.headers) {
    const clean = redact(v);
    if (clean === v) continue;
    headers ??= new Headers(res.headers);
    headers.set(k, clean);
  }
  let body: BodyInit | null = res.body;
  if (res.status >= 400 && ctx.done === undefined && res.body !== null) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    const text = decoder.decode(bytes);
    const clean = redact(text);
    body = clean === text ? bytes : clean;
    if (clean !== text) {
      headers ??= new Headers(res.headers);
      headers.delete("content-length");
    }
  } else if (headers === undefined) {
    return res;
  }
  if (headers !== undefined) {
    logger.warn("a key was masked in a response to a client", {
      request_id: ctx.requestId,
      upstream: ctx.log.upstream,
      status: res.status,
    });
  }
  return new Response(body, {
    status: res.status,
    statusText: res.statusText,
    headers: headers ?? res.headers,
  });
}

function write(ctx: RequestContext, services: Services): void {
  const durationMs = services.clock.mono() - ctx.startedAt;
  services.stats.observe(ctx, durationMs);
  const path = ctx.path;
  // polled by monitors and by the dashboard's page every 2 s: logged at debug only
  const quiet = path === "/health" || path === "/metrics" || path === "/dashboard/data";
  const level = quiet ? "debug" : ctx.log.status >= 500 ? "warn" : "info";
  const logger = services.logger;
  if (!logger.enabled(level)) return;
  const l = ctx.log;
  const method = ctx.req.method;
  // only the values that can carry outside text are scanned for secrets (the rest are config
  // names, masks, numbers and fixed words), not the whole line; the line is one record
  // serialized in one step (members without a value are left out)
  logger.scrubbedRecord({
    time: logger.timeText(),
    level,
    msg: "request",
    request_id: ctx.requestId,
    method: METHODS.has(method) ? method : logger.redact(method),
    path: logger.redact(path),
    client: ctx.client?.name,
    model: l.model === undefined ? undefined : logger.redact(l.model),
    served_model: l.servedModel,
    upstream: l.upstream,
    key: l.key,
    affinity: l.affinity,
    status: l.status,
    duration_ms: round(durationMs),
    ttfb_ms: l.ttfbMs === undefined ? undefined : round(l.ttfbMs),
    attempts: l.attempts || undefined,
    stream: l.stream || undefined,
    bytes: l.bytes || undefined,
    outcome: l.outcome,
    prompt_tokens: l.usage?.promptTokens,
    completion_tokens: l.usage?.completionTokens,
    error: l.error === undefined ? undefined : logger.redact(l.error),
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Request ids, error responses and the per-request log line. */
export default {
  kind: "middleware",
  name: "request_log",
  description: "Request ids, errors as OpenAI-style responses, one log line per request",
  create: requestLog,
} satisfies MiddlewarePlugin;
