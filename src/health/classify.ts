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
  | "timeout";

const QUOTA_RE = /insufficient_quota|quota|billing|balance|credit|exceeded your current|余额|额度|配额/i;

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
  if (status === 429) return QUOTA_RE.test(body) ? "quota" : "rate_limited";
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
  /** Bytes of the body had already arrived (a break mid-body is the server's failure). */
  midBody?: boolean;
}

/**
 * Classifies a failed fetch or body read.
 * @param flags why it may have failed
 * @returns `client_abort`, `timeout`, `server` (broke mid-body) or `connect`
 */
export function classifyFailure(flags: FailureFlags): AttemptClass {
  if (flags.clientAborted) return "client_abort";
  if (flags.timedOut) return "timeout";
  return flags.midBody ? "server" : "connect";
}

/**
 * Tells whether a class may be retried on another candidate.
 * @param cls the attempt's class
 * @returns true for rate limits, quota, auth, server errors, connect errors and timeouts
 */
export function isRetryable(cls: AttemptClass): boolean {
  return cls === "rate_limited" || cls === "quota" || cls === "auth" || cls === "server" ||
    cls === "connect" || cls === "timeout";
}

/**
 * Tells whether a class counts towards passive-health ejection (the upstream misbehaved).
 * @param cls the attempt's class
 * @returns true for server errors, connect errors and timeouts
 */
export function isFailure(cls: AttemptClass): boolean {
  return cls === "server" || cls === "connect" || cls === "timeout";
}
