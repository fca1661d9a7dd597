/**
 * @module
 * Turning an attempt into the client's response: a committed upstream response goes out (a
 * small JSON body in one piece, anything else relayed as it arrives, with usage counted and the
 * health board told how it ended), and when every attempt failed, the honest error: the
 * upstream's own error, a 502/504 naming the upstream, or a 503 saying why nothing could serve.
 */

import type { RequestContext } from "../context.ts";
import type { App } from "../app.ts";
import { errorBody, ProxyError } from "../errors.ts";
import type { Candidate, CandidateState } from "../plugin.ts";
import type { Pool } from "../pool.ts";
import type { AttemptResult } from "./attempt.ts";
import { copyResponseHeaders, returnResponseHeaders } from "./headers.ts";
import { relay } from "./relay.ts";
import { UsageChunkStripper } from "./stream_usage.ts";
import { type Usage, usageOfJson, UsageTap } from "./usage.ts";
import { describeUnavailable } from "./routing.ts";

const decoder = new TextDecoder();
const NULL_BODY = new Set([101, 204, 205, 304]);

/**
 * The error for requests cut by shutdown.
 * @returns a 503 `shutting_down` error
 */
export function shuttingDown(): ProxyError {
  return new ProxyError("llm-balance is shutting down; retry the request", {
    status: 503,
    type: "service_unavailable",
    code: "shutting_down",
    headers: { "retry-after": "1" },
  });
}

/**
 * Sends a committed attempt's response to the client (sets `ctx.res`, and `ctx.done` for a
 * relayed body), and reports its end to the health board, latency, usage and the log.
 * @param ctx the request
 * @param app the application
 * @param c the candidate that answered
 * @param r the committed attempt
 * @param flags whether the attempt was a half-open trial, whether the proxy added
 *   `stream_options.include_usage` (then the extra usage chunk is stripped), and
 *   `performance.now()` when the attempt's answer was ready (measured when not given)
 */
export function commit(
  ctx: RequestContext,
  app: App,
  c: Candidate,
  r: Extract<AttemptResult, { kind: "response" }>,
  { trial, injected, now = performance.now() }: {
    trial: boolean;
    injected: boolean;
    now?: number;
  },
): void {
  const res = r.response;
  const started = r.startedAt;
  ctx.log.status = res.status;
  ctx.log.ttfbMs = now - ctx.startedAt;
  const sse = (r.contentType ?? "").includes("text/event-stream");
  ctx.log.stream = sse;
  if (r.reader === undefined || NULL_BODY.has(res.status)) {
    r.reader?.cancel().catch(() => {});
    r.control.dispose();
    app.open.delete(r.control);
    const body = NULL_BODY.has(res.status) ? null : r.body ?? null;
    if (body !== null && body.length > 0) {
      ctx.log.bytes = body.length;
      countUsage(ctx, c, usageOfJson(body));
    }
    app.board.end(c, "ok", { trial });
    app.latency.record(c.id, now - started);
    ctx.log.outcome = "complete";
    ctx.res = respondWith(ctx, c, res, body);
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
      // SDKs stop reading (and cancel) at `[DONE]` / `message_stop`: that stream was complete
      const complete = end.outcome === "complete" ||
        (end.outcome === "client_abort" && !end.shutdown && tap.ended);
      // tokens the upstream reported were spent, however the stream ended
      countUsage(ctx, c, tap.finish());
      if (complete) ctx.log.outcome = "complete";
      else if (end.shutdown) ctx.log.outcome = "shutdown";
      else ctx.log.outcome = end.outcome === "failed" ? end.cls : end.outcome;
      if (end.shutdown) {
        ctx.log.error = "stream cut: llm-balance shut down before the upstream finished";
      } else if (end.outcome === "failed") {
        ctx.log.error = `stream interrupted: ${end.cls}`;
        app.logger.warn("upstream broke mid-response", {
          request_id: ctx.requestId,
          upstream: c.upstream.name,
          key: c.mask,
          class: end.cls,
          bytes: end.bytes,
        });
      }
      app.board.end(c, complete ? "ok" : end.cls, { trial });
      if (complete) app.latency.record(c.id, performance.now() - started);
      resolveDone();
    },
  });
  ctx.res = respondWith(ctx, c, res, stream);
}

/** The client's response: the upstream's status and useful headers, ours, and the body. */
function respondWith(
  ctx: RequestContext,
  c: Candidate,
  res: Response,
  body: BodyInit | null,
): Response {
  // headers appended to a new response cost far less than a `headers` constructor option
  const out = new Response(body, { status: res.status, statusText: res.statusText });
  const headers = out.headers;
  copyResponseHeaders(res.headers, headers);
  // none of these came from the upstream (copyResponseHeaders leaves them out): appended
  headers.append("x-request-id", ctx.requestId);
  headers.append("x-llm-balance-upstream", c.upstream.name);
  if (ctx.rt.config.server.overheadHeader) {
    const overhead = Math.max(0, (ctx.log.ttfbMs ?? 0) - ctx.log.upstreamMs);
    headers.append("x-llm-balance-overhead-ms", overhead.toFixed(3));
  }
  return out;
}

function countUsage(ctx: RequestContext, c: Candidate, usage: Usage | undefined): void {
  if (usage === undefined) return;
  ctx.log.usage = usage;
  const s = c.state as CandidateState; // the live store record; the proxy counts its usage
  s.promptTokens += usage.promptTokens;
  s.completionTokens += usage.completionTokens;
  s.totalTokens += usage.totalTokens;
}

/**
 * The response when no attempt produced one to commit.
 * @param ctx the request
 * @param app the application
 * @param pool the request's pool
 * @param last the last attempt's result, if any attempt was made
 * @param c the last candidate tried
 * @returns the upstream's error (status kept, body wrapped when not OpenAI-style JSON), or 499
 *   when the client left
 * @throws {ProxyError} 503 when nothing could be tried, 502 for an unreachable upstream or a
 *   refused key, 504 for a timeout
 */
export function finalResponse(
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
  if (last.cls === "stale") {
    // the upstream closed a kept-alive connection as the request went out: trying again helps
    throw new ProxyError(
      `Upstream "${c.upstream.name}" closed the connection before answering; retry the request`,
      {
        status: 502,
        type: "upstream_error",
        code: "upstream_connection_closed",
        headers: { "retry-after": "1" },
      },
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
