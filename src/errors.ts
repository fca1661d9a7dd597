/**
 * @module
 * Typed errors and the one place that turns them into OpenAI-style error responses:
 * `{"error": {"message", "type", "code"}}`, with `Retry-After` and `x-should-retry` as advised;
 * and the shape an upstream's error body takes for the client (its explanation kept, in a form
 * SDKs read).
 */

import type { ErrorHandler } from "./compose.ts";
import type { Logger } from "./logger.ts";
import type { RequestContext } from "./plugin.ts";

/** OpenAI-style error `type` values used by llm-balance. */
export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "rate_limit_error"
  | "server_error"
  | "upstream_error"
  | "service_unavailable"
  | "timeout_error"
  | "not_found_error"
  | "insufficient_quota";

/**
 * What a client is told about trying again: `Retry-After` and `x-should-retry`. The official
 * SDKs (openai, anthropic) obey `x-should-retry: true|false` over their own rules (which retry
 * 408, 409, 429 and 5xx), and wait as `Retry-After` says when it is under 60 s.
 */
export interface RetryAdvice {
  /** Seconds to wait before trying again (`Retry-After`), at least 1. */
  afterSeconds: number;
  /**
   * Whether an automatic retry (an SDK's, within seconds) can help: `x-should-retry`. Left out,
   * the client's own rules decide.
   */
  retry?: boolean;
}

/**
 * Sets `Retry-After` and `x-should-retry` as advised, replacing any an upstream sent (and its
 * `retry-after-ms`, which SDKs read first).
 * @param headers the response headers to change
 * @param advice when to retry, and whether retrying at once can help
 */
export function setRetryHeaders(headers: Headers, advice: RetryAdvice): void {
  headers.set("retry-after", String(Math.max(1, Math.ceil(advice.afterSeconds))));
  headers.delete("retry-after-ms");
  if (advice.retry === undefined) headers.delete("x-should-retry");
  else headers.set("x-should-retry", String(advice.retry));
}

/** Options of a {@linkcode ProxyError}. */
export interface ProxyErrorOptions {
  /** HTTP status. @default 500 */
  status?: number;
  /** @default "server_error" */
  type?: ErrorType;
  /** Machine-readable code. @default null */
  code?: string;
  /** Extra response headers. */
  headers?: Record<string, string>;
  /**
   * When to retry, and whether retrying at once can help (`Retry-After`, `x-should-retry`).
   * @default for a status of 500 or more, `Retry-After: 1` and the client's own rules
   */
  retry?: RetryAdvice | undefined;
  cause?: unknown;
}

/** An error meant for the client: it renders itself as an OpenAI-style error response. */
export class ProxyError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string | null;
  readonly headers: Record<string, string>;
  readonly retry: RetryAdvice | undefined;

  /**
   * @param message what went wrong, for the client; never holds a secret
   * @param options status, type, code and headers
   */
  constructor(message: string, options: ProxyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ProxyError";
    this.status = options.status ?? 500;
    this.type = options.type ?? "server_error";
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
    this.retry = options.retry;
  }
}

/**
 * Builds the OpenAI-style error body.
 * @returns `{"error": {"message", "type", "code", "param": null}}` as a JSON string
 */
export function errorBody(message: string, type: ErrorType, code: string | null): string {
  return JSON.stringify({ error: { message, type, code, param: null } });
}

/**
 * Turns any thrown value into a response; unknown errors become a generic 500 whose message
 * reveals nothing internal (and that an SDK does not retry: a fault of llm-balance's own rarely
 * goes away in a second). Every answer of status 500 or more says when to retry.
 * @param err what was thrown
 * @param requestId echoed in `x-request-id`
 * @returns the error response
 */
export function errorResponse(err: unknown, requestId?: string): Response {
  const e = err instanceof ProxyError ? err : new ProxyError("Internal error in llm-balance", {
    code: "internal_error",
    retry: { afterSeconds: 1, retry: false },
  });
  const headers = new Headers(e.headers);
  headers.set("content-type", "application/json");
  if (e.retry !== undefined) setRetryHeaders(headers, e.retry);
  else if (e.status >= 500 && !headers.has("retry-after")) headers.set("retry-after", "1");
  if (requestId) headers.set("x-request-id", requestId);
  return new Response(errorBody(e.message, e.type, e.code), { status: e.status, headers });
}

const decoder = new TextDecoder();
/** The most of an upstream's text quoted in a message. */
const MAX_QUOTED = 500;
/** Where error bodies without an `error` member put their explanation. */
const MESSAGE_FIELDS = [
  "message",
  "msg",
  "detail",
  "error_message",
  "errorMessage",
  "error_msg",
  "error_description",
  "description",
  "reason",
  "title",
];

/** What an upstream answered, as {@linkcode upstreamErrorBody} reads it. */
export interface UpstreamAnswer {
  status: number;
  statusText: string;
  /** The upstream's name, for messages. */
  upstream: string;
}

/**
 * The body of an upstream's error as the client gets it: the upstream's own explanation kept,
 * in a shape SDKs read (they take the message from `error.message`, and show "status code (no
 * body)" for JSON without an `error` member).
 *
 * - JSON with an `error` object or string: unchanged, byte for byte.
 * - Another JSON object (a gateway's `{"status":"failure","message":"Invalid config"}`): every
 *   byte kept, with an `error` member added at its end whose message is the object's own
 *   (`message`, `msg`, `detail`, ...), else the JSON text.
 * - Anything else (text, HTML, a JSON string or array, nothing): wrapped in OpenAI's shape,
 *   the message quoting the text (tags removed, at most 500 characters).
 *
 * Keys in it are masked later, with every error body (the request_log middleware).
 * @param body the upstream's body
 * @param answer its status, status text and the upstream's name
 * @returns the body, and whether it was changed (then it is JSON: set `content-type`)
 */
export function upstreamErrorBody(
  body: Uint8Array<ArrayBuffer>,
  answer: UpstreamAnswer,
): { body: Uint8Array<ArrayBuffer> | string; changed: boolean } {
  const text = decoder.decode(body);
  const t = text.trim();
  let value: unknown = undefined;
  const first = t.charCodeAt(0);
  // `{`, `[` or `"`: a JSON scalar of another kind explains nothing, and is quoted as text
  if (first === 0x7b || first === 0x5b || first === 0x22) {
    try {
      value = JSON.parse(t);
    } catch {
      value = undefined;
    }
  }
  const type: ErrorType = answer.status >= 500
    ? "upstream_error"
    : answer.status === 429
    ? "rate_limit_error"
    : answer.status === 408
    ? "timeout_error"
    : "invalid_request_error";
  const code = `upstream_${answer.status}`;
  const heading = `Upstream "${answer.upstream}" answered HTTP ${answer.status}${
    answer.statusText ? ` ${answer.statusText}` : ""
  }`;
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const err = obj.error;
    if ((typeof err === "object" && err !== null) || (typeof err === "string" && err !== "")) {
      return { body, changed: false };
    }
    let message: string | undefined;
    for (const field of MESSAGE_FIELDS) {
      const v = obj[field];
      if (typeof v === "string" && v.trim() !== "") {
        message = v;
        break;
      }
    }
    message ??= `${heading}: ${quote(t)}`;
    // added last: where the object already has a useless `error` (null, true), JSON readers
    // take the last member of a name
    const end = text.lastIndexOf("}");
    const added = `"error":${JSON.stringify({ message, type, code, param: null })}`;
    const comma = Object.keys(obj).length === 0 ? "" : ",";
    return {
      body: text.slice(0, end) + comma + added + text.slice(end),
      changed: true,
    };
  }
  const message = typeof value === "string" && value.trim() !== ""
    ? value
    : t === ""
    ? `${heading} with no body`
    : `${heading}: ${quote(t)}`;
  return { body: errorBody(message, type, code), changed: true };
}

/** An upstream's text as a message quotes it: tags removed, spaces collapsed, shortened. */
function quote(text: string): string {
  const plain = text.startsWith("<")
    ? text.replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, " ").replace(/<[^>]*>/g, " ")
    : text;
  const one = plain.replace(/\s+/g, " ").trim();
  return one.length > MAX_QUOTED ? `${one.slice(0, MAX_QUOTED)}…` : one;
}

/**
 * The one error for requests llm-balance does not serve because it is shutting down (cut while
 * waiting for an upstream, or arriving after the drain time).
 * @returns a 503 `shutting_down` error
 */
export function shuttingDown(): ProxyError {
  return new ProxyError("llm-balance is shutting down; retry the request", {
    status: 503,
    type: "service_unavailable",
    code: "shutting_down",
    // another instance, or this one restarted, may well serve it
    retry: { afterSeconds: 1, retry: true },
  });
}

/**
 * The answer while the shared state (Redis) cannot be reached and `state.redis_required` says
 * not to serve without it.
 */
export function sharedStateDown(): ProxyError {
  return new ProxyError(
    "llm-balance cannot reach its shared state (Redis) and is configured not to serve " +
      "without it (state.redis_required); retry later",
    {
      status: 503,
      type: "service_unavailable",
      code: "shared_state_unavailable",
      retry: { afterSeconds: 2, retry: true },
    },
  );
}

/**
 * The chain's error handler (see {@linkcode compose}): the one place an error thrown by any step
 * becomes the client's answer. A {@linkcode ProxyError} renders itself; anything else is a bug in
 * llm-balance or a plugin: logged with its stack (secrets masked), answered as a 500. A body made
 * before the failure is released (and with it its upstream connection).
 * @param logger where unexpected errors are logged
 * @returns the handler, which sets `ctx.res`
 */
export function errorHandler(logger: Logger): ErrorHandler<RequestContext> {
  return function onError(err: unknown, ctx: RequestContext): void {
    // a response body made before the failure would never be read: release it (and its
    // upstream connection), which also settles ctx.done
    ctx.res?.body?.cancel().catch(() => {});
    if (err instanceof ProxyError) {
      ctx.log.error ??= err.message;
    } else {
      const message = logger.redact(err instanceof Error ? err.message : String(err));
      ctx.log.error = message;
      logger.error("request failed inside llm-balance", {
        request_id: ctx.requestId,
        error: message,
        stack: err instanceof Error && err.stack ? logger.redact(err.stack) : undefined,
      });
    }
    ctx.res = errorResponse(err, ctx.requestId);
  };
}
