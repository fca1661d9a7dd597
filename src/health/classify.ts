/**
 * @module
 * The one place that classifies an upstream attempt. Policy (health, rests, retries) acts on
 * the class, never on raw statuses or errors.
 */

/** What happened to one upstream attempt. */
export type AttemptClass =
  | "ok"
  | "client_abort"
  | "bad_request"
  | "auth"
  | "quota"
  | "rate_limited"
  | "server"
  | "connect"
  | "stale"
  | "timeout";

/** Error codes and types providers use for an exhausted quota or balance. */
const QUOTA_CODE =
  /^(insufficient_quota|quota_exceeded|billing_hard_limit_reached|insufficient_balance|insufficient_funds|arrearage|payment_required)$/i;
/** Wording of an exhausted quota or balance. */
const QUOTA_TEXT =
  /insufficient[_ ]quota|exceeded your current quota|quota (?:has been )?(?:exceeded|exhausted)|out of quota|billing|credit balance|insufficient (?:balance|funds|credits?)|余额|欠费|额度|配额/i;
/**
 * Wording of a short-term rate limit. It wins over {@linkcode QUOTA_TEXT}: OpenAI's per-minute
 * limit message mentions billing, Google's says "Quota exceeded for ... per minute".
 */
const RATE_TEXT =
  /rate[_ ]?limit|per (?:second|minute|min|hour)|\b[RT]P[MS]\b|too many requests|try again in/i;

/**
 * Tells whether a 429 body says the quota (or balance) is exhausted rather than a short-term
 * rate limit: a structured `error.code`/`error.type` such as `insufficient_quota` decides;
 * otherwise the wording does, rate-limit wording winning.
 * @param body the response body
 * @returns true for quota exhaustion
 */
export function isQuotaBody(body: string): boolean {
  const err = errorObject(body);
  if (err !== undefined) {
    for (const field of [err.code, err.type, err.status]) {
      if (typeof field === "string" && QUOTA_CODE.test(field)) return true;
    }
  }
  const text = err !== undefined && typeof err.message === "string" ? err.message : body;
  return !RATE_TEXT.test(text) && QUOTA_TEXT.test(text);
}

/**
 * Classifies an HTTP response from an upstream.
 * @param status the response status
 * @param body the response body (only read for 429, to tell quota exhaustion from a rate limit)
 * @returns the class
 */
export function classifyStatus(status: number, body = ""): AttemptClass {
  if (status < 400) return "ok";
  if (status === 401 || status === 403) return "auth";
  if (status === 402) return "quota";
  if (status === 429) return isQuotaBody(body) ? "quota" : "rate_limited";
  if (status === 408) return "timeout";
  if (status >= 500) return "server";
  return "bad_request";
}

/** Flags that tell why a fetch failed. */
export interface FailureFlags {
  /** The client went away (its request signal aborted). */
  clientAborted: boolean;
  /** One of our own timers fired. */
  timedOut: boolean;
  /** Bytes of the body had already arrived (a break mid-body is the server's failure). @default false */
  midBody?: boolean;
  /**
   * A reused keep-alive connection failed before any byte of the answer (the upstream closed
   * it while idle): not the upstream's fault, and worth a retry on a fresh connection.
   * @default false
   */
  stale?: boolean;
}

/**
 * Classifies a failed fetch or body read. A client that went away wins over everything: it is
 * never the upstream's fault.
 * @param flags why it may have failed
 * @returns `client_abort`, `timeout`, `stale` (a kept-alive connection found closed), `server`
 *   (broke mid-body) or `connect`
 */
export function classifyFailure(flags: FailureFlags): AttemptClass {
  if (flags.clientAborted) return "client_abort";
  if (flags.timedOut) return "timeout";
  if (flags.stale === true && flags.midBody !== true) return "stale";
  return flags.midBody ? "server" : "connect";
}

/**
 * Tells whether a class may be retried on another candidate. Auth failures and quota are
 * properties of one key, so another key may well succeed; other 4xx would fail anywhere.
 * @param cls the attempt's class
 * @returns true for rate limits, quota, auth, server errors, connect errors, stale connections
 *   and timeouts
 */
export function isRetryable(cls: AttemptClass): boolean {
  return cls === "rate_limited" || cls === "quota" || cls === "auth" || cls === "server" ||
    cls === "connect" || cls === "stale" || cls === "timeout";
}

/**
 * Tells whether a class counts towards passive-health ejection (the upstream misbehaved).
 * @param cls the attempt's class
 * @returns true for server errors, connect errors and timeouts
 */
export function isFailure(cls: AttemptClass): boolean {
  return cls === "server" || cls === "connect" || cls === "timeout";
}

function errorObject(body: string): Record<string, unknown> | undefined {
  const t = body.trimStart();
  if (!t.startsWith("{") && !t.startsWith("[")) return undefined;
  try {
    let v: unknown = JSON.parse(t);
    if (Array.isArray(v)) v = v[0];
    if (typeof v !== "object" || v === null) return undefined;
    const err = (v as Record<string, unknown>).error;
    if (typeof err === "object" && err !== null) return err as Record<string, unknown>;
    return v as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
