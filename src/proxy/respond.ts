/**
 * @module
 * Turning an attempt into the client's response: a committed upstream response goes out (a
 * small JSON body in one piece, anything else relayed as it arrives, with usage counted and the
 * health board told how it ended), and when every attempt failed, the honest error the table of
 * final outcomes calls for: the upstream's own error (its body kept, readable by SDKs), or
 * llm-balance's own saying why, each saying when to retry and whether an SDK should.
 */

import type { Clock } from "../clock.ts";
import type { Logger } from "../logger.ts";
import { ProxyError, setRetryHeaders, upstreamErrorBody } from "../errors.ts";
import type { Candidate, RequestContext } from "../plugin.ts";
import type { Pool } from "../pool.ts";
import type { AttemptResult } from "./attempt.ts";
import type { Lease } from "./lease.ts";
import type { LearnedBudgets } from "../budget/headers.ts";
import { copyResponseHeaders, returnResponseHeaders } from "./headers.ts";
import { relay } from "./relay.ts";
import { UsageChunkStripper } from "./stream_usage.ts";
import { usageOfJson, UsageTap } from "./usage.ts";
import {
  describeUnavailable,
  FINAL_OUTCOMES,
  type FinalOutcome,
  finalOutcome,
  retryAdvice,
} from "./routing.ts";

const NULL_BODY = new Set([101, 204, 205, 304]);

/** Options of {@linkcode commit}. */
export interface CommitOptions {
  /** Whether the proxy added `stream_options.include_usage` (its usage chunk is stripped). */
  injected: boolean;
  /** `clock.mono()` when the attempt's answer was ready. */
  now: number;
  /** Whether the answer carries `x-llm-balance-overhead-ms`. */
  overheadHeader: boolean;
  /** Told when a stream breaks mid-body. */
  logger: Logger;
  /** What the answer's headers said of the key's budgets. */
  learned?: LearnedBudgets | undefined;
}

/**
 * Sends a committed attempt's response to the client (sets `ctx.res`, and `ctx.done` for a
 * relayed body), and ends its lease when the body has been sent (at once for a body read whole,
 * when the relay ends for a stream), with the tokens it counted.
 * @param ctx the request
 * @param lease the attempt's lease
 * @param r the committed attempt
 * @param options usage stripping, when the answer was ready, the overhead header, the logger
 */
export function commit(
  ctx: RequestContext,
  lease: Lease,
  r: Extract<AttemptResult, { kind: "response" }>,
  options: CommitOptions,
): void {
  const c = lease.candidate;
  const res = r.response;
  const now = options.now;
  if (options.learned !== undefined) lease.learn(options.learned);
  ctx.log.status = res.status;
  ctx.log.ttfbMs = now - ctx.startedAt;
  lease.firstByte(now);
  const sse = (r.contentType ?? "").includes("text/event-stream");
  ctx.log.stream = sse;
  if (r.reader === undefined || NULL_BODY.has(res.status)) {
    r.reader?.cancel().catch(() => {});
    const body = NULL_BODY.has(res.status) ? null : r.body ?? null;
    let usage;
    if (body !== null && body.length > 0) {
      ctx.log.bytes = body.length;
      usage = ctx.log.usage = usageOfJson(body);
    }
    lease.done({
      cls: "ok",
      status: res.status,
      usage,
      at: now,
      stream: sse,
    });
    ctx.log.outcome = "complete";
    ctx.res = respondWith(ctx, c, res, body, options.overheadHeader);
    return;
  }
  const tap = new UsageTap(sse);
  // the usage chunk the client did not ask for: the tap reads it, the client never sees it
  const strip = options.injected && sse ? new UsageChunkStripper() : undefined;
  const logger = options.logger;
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
      ctx.log.bytes = end.bytes;
      // SDKs stop reading (and cancel) at `[DONE]` / `message_stop`: that stream was complete
      const complete = end.outcome === "complete" ||
        (end.outcome === "client_abort" && !end.shutdown && tap.ended);
      // tokens the upstream reported were spent, however the stream ended
      const usage = tap.finish();
      if (usage !== undefined) ctx.log.usage = usage;
      if (complete) ctx.log.outcome = "complete";
      else if (end.shutdown) ctx.log.outcome = "shutdown";
      else ctx.log.outcome = end.outcome === "failed" ? end.cls : end.outcome;
      if (end.shutdown) {
        ctx.log.error = "stream cut: llm-balance shut down before the upstream finished";
      } else if (end.outcome === "failed") {
        ctx.log.error = `stream interrupted: ${end.cls}`;
        logger.warn("upstream broke mid-response", {
          request_id: ctx.requestId,
          upstream: c.upstream.name,
          key: c.mask,
          class: end.cls,
          bytes: end.bytes,
        });
      }
      lease.done({
        cls: complete ? "ok" : end.cls,
        status: res.status,
        usage,
        stream: sse,
      });
      resolveDone();
    },
  });
  ctx.res = respondWith(ctx, c, res, stream, options.overheadHeader);
}

/** The client's response: the upstream's status and useful headers, ours, and the body. */
function respondWith(
  ctx: RequestContext,
  c: Candidate,
  res: Response,
  body: BodyInit | null,
  overheadHeader: boolean,
): Response {
  // headers appended to a new response cost far less than a `headers` constructor option
  const out = new Response(body, { status: res.status, statusText: res.statusText });
  const headers = out.headers;
  copyResponseHeaders(res.headers, headers);
  // none of these came from the upstream (copyResponseHeaders leaves them out): appended
  headers.append("x-request-id", ctx.requestId);
  headers.append("x-llm-balance-upstream", c.upstream.name);
  const served = ctx.log.servedModel;
  if (served !== undefined) headers.append("x-llm-balance-model", served);
  if (overheadHeader) {
    const overhead = Math.max(0, (ctx.log.ttfbMs ?? 0) - ctx.log.upstreamMs);
    headers.append("x-llm-balance-overhead-ms", overhead.toFixed(3));
  }
  return out;
}

/**
 * The response when no attempt produced one to commit, as the table of final outcomes
 * ({@linkcode FINAL_OUTCOMES}) says: its status, and `Retry-After` and `x-should-retry` on every
 * answer but a client error passed through.
 * @param ctx the request
 * @param pool the request's pool
 * @param last the last attempt's result, if any attempt was made
 * @param c the last candidate tried
 * @param options the clock, the logger (redacts error messages) and whether retries are on
 * @returns the upstream's error (status and body kept; a body SDKs cannot read gets an `error`
 *   member, or is wrapped in OpenAI's shape when it is not JSON), or 499 when the client left
 * @throws {ProxyError} 429 when every key that could serve rests for a rate limit or quota,
 *   503 when nothing else could be tried or no upstream could be reached, 502 for a refused
 *   key or a kept-alive connection closed before any answer, 504 for a timeout
 */
export function finalResponse(
  ctx: RequestContext,
  pool: Pool,
  last: AttemptResult | undefined,
  c: Candidate | undefined,
  options: {
    clock: Clock;
    logger: Logger;
    retries: boolean;
    model?: string | undefined;
    /** Fallback pools that could serve later: `Retry-After` counts their returns too. */
    alsoPools?: readonly Pool[] | undefined;
  },
): Response {
  if (last?.kind === "response" || last?.cls === "ok") {
    throw new Error("unreachable: a committed attempt has no final error");
  }
  if (last?.cls === "client_abort") {
    ctx.log.outcome = last.cls;
    ctx.log.status = 499;
    return new Response(null, { status: 499 });
  }
  const now = options.clock.now();
  const summary = pool.summary(now, options.model);
  // when to retry: the first key back in this pool or in a fallback that would serve
  let when = summary;
  for (const other of options.alsoPools ?? []) {
    const s = other.summary(now, other.model);
    if (s.available > 0 || s.nextReturn < when.nextReturn) {
      when = { ...when, nextReturn: s.available > 0 ? now : s.nextReturn };
    }
  }
  if (last === undefined || c === undefined) {
    ctx.log.error = "no candidate available";
    const outcome = finalOutcome(undefined, summary);
    throw new ProxyError(describeUnavailable(pool, summary, options.model), {
      status: ownStatus(outcome),
      type: outcome === "unavailable"
        ? "service_unavailable"
        : outcome === "quota"
        ? "insufficient_quota"
        : "rate_limit_error",
      code: outcome === "unavailable"
        ? "no_upstream_available"
        : outcome === "quota"
        ? "insufficient_quota"
        : "all_keys_rate_limited",
      retry: retryAdvice(outcome, when, now),
    });
  }
  const outcome = finalOutcome(last.cls, summary);
  const retry = retryAdvice(outcome, when, now, options.retries);
  ctx.log.outcome = last.cls;
  if (outcome === "auth_refused") {
    // the upstream refused OUR key: not the client's fault, and not its key
    ctx.log.status = 502;
    throw new ProxyError(
      `Upstream "${c.upstream.name}" refused key ${c.mask}${
        last.kind === "error_response" ? ` (HTTP ${last.response.status})` : ""
      }; no other key could serve the request`,
      { status: 502, type: "upstream_error", code: "upstream_auth_failed", retry },
    );
  }
  if (last.kind === "error_response") {
    const res = last.response;
    const headers = returnResponseHeaders(res.headers);
    headers.delete("content-length");
    headers.set("x-request-id", ctx.requestId);
    headers.set("x-llm-balance-upstream", c.upstream.name);
    if (retry !== undefined) setRetryHeaders(headers, retry);
    ctx.log.status = res.status;
    const out = upstreamErrorBody(last.body, {
      status: res.status,
      statusText: res.statusText,
      upstream: c.upstream.name,
    });
    if (out.changed) headers.set("content-type", "application/json");
    return new Response(out.body, { status: res.status, headers });
  }
  const message = options.logger.redact(
    last.error instanceof Error ? last.error.message : String(last.error),
  );
  ctx.log.error = message;
  const status = ownStatus(outcome);
  if (outcome === "timeout") {
    throw new ProxyError(
      `Upstream "${c.upstream.name}" timed out (${
        (last.timeout ?? "total").replace("_", " ")
      } limit)`,
      { status, type: "timeout_error", code: "upstream_timeout", retry },
    );
  }
  if (outcome === "stale") {
    // the upstream closed a kept-alive connection as the request went out: trying again helps
    throw new ProxyError(
      `Upstream "${c.upstream.name}" closed the connection before answering; retry the request`,
      { status, type: "upstream_error", code: "upstream_connection_closed", retry },
    );
  }
  if (outcome === "server_error") {
    // an answer that broke the protocol, or a body that broke off before its end: no answer
    // to pass on
    throw new ProxyError(
      `Upstream "${c.upstream.name}" sent a broken answer: ${message}`,
      { status: 502, type: "upstream_error", code: "upstream_broken", retry },
    );
  }
  throw new ProxyError(`Could not reach upstream "${c.upstream.name}": ${message}`, {
    status,
    type: "service_unavailable",
    code: "upstream_unreachable",
    retry,
  });
}

/** The status of llm-balance's own answer for an outcome. */
function ownStatus(outcome: FinalOutcome): number {
  const status = FINAL_OUTCOMES[outcome].status;
  return status === "upstream" ? 502 : status;
}
