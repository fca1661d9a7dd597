/**
 * @module
 * Small pure helpers of the forwarding step: the upstream URL for a client path, retry
 * backoff, the honest message when no candidate can serve, and the table of final outcomes:
 * for a request that got no upstream answer to commit, the status, `Retry-After` and
 * `x-should-retry` the client gets.
 */

import type { RetryAdvice } from "../errors.ts";
import type { AttemptClass } from "../health/classify.ts";
import type { Upstream } from "../plugin.ts";
import type { Pool, PoolSummary } from "../pool.ts";
import { formatWithOffset } from "../budget/reset.ts";

/**
 * Builds the upstream URL. In `v1` mode the base URL includes `/v1`, so the client's leading
 * `/v1` is dropped; in `full` mode the client's path is appended as is.
 * @param u the upstream
 * @param path the client's path (`/v1/chat/completions`)
 * @param search the client's query string, `?` included, or ""
 * @returns the absolute URL; always on the upstream's own host
 */
export function upstreamUrl(u: Upstream, path: string, search: string): string {
  let rest = path;
  if (u.pathMode === "v1" && (path === "/v1" || path.startsWith("/v1/"))) rest = path.slice(3);
  return u.baseUrl + rest + search;
}

/**
 * Backoff before reusing an upstream: a random wait between half and all of an exponential
 * ceiling ("equal jitter"), so retries spread out yet never come back at once.
 * @param retry the retry number, 1-based
 * @param baseMs the first ceiling
 * @param maxMs the largest ceiling
 * @param random returns [0, 1)
 * @returns milliseconds to wait
 */
export function backoffMs(
  retry: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/**
 * Says why no candidate of a pool can serve, e.g.
 * `all 3 keys of upstream "modelscope" are unavailable: 2 rate limited, 1 unhealthy`, or, when
 * every key is spent, `all 4 keys of upstream "modelscope" have spent their daily quota for
 * model "X"; next reset 2026-12-08T00:00:00+08:00`.
 * @param pool the pool
 * @param s its summary
 * @param model the request's model
 * @returns the message
 */
export function describeUnavailable(pool: Pool, s: PoolSummary, model?: string): string {
  const upstreams = new Set(pool.candidates.map((c) => c.upstream.name));
  const what = upstreams.size === 1
    ? `upstream "${[...upstreams][0]}"`
    : pool.model === "*"
    ? "the default pool"
    : `model "${pool.model}"`;
  const keys = s.total === 1 ? "the only key" : `all ${s.total} keys`;
  const spent = s.spent + s.spentForModel;
  if (spent > 0 && spent === s.total && Number.isFinite(s.nextReturn)) {
    const zone = pool.candidates[0]?.quota.timeZone ?? "UTC";
    const forModel = s.spentForModel > 0 && model !== undefined ? ` for model "${model}"` : "";
    return `No upstream key can serve this request: ${keys} of ${what} ${
      s.total === 1 ? "has spent its" : "have spent their"
    } quota${forModel}; next reset ${formatWithOffset(s.nextReturn, zone)}`;
  }
  const parts: string[] = [];
  const add = (n: number, label: string) => n > 0 && parts.push(`${n} ${label}`);
  add(s.spent, "spent their budget");
  add(s.spentForModel, model === undefined ? "spent for this model" : `spent for "${model}"`);
  add(s.busy, "at their concurrency cap");
  add(s.rateLimited, "rate limited");
  add(s.quota, "out of quota");
  add(s.authFailed, "refused by the upstream (401/403)");
  add(s.unhealthy, "unhealthy");
  add(s.ejected, "ejected after failures");
  add(s.disabled, "disabled");
  return `No upstream key can serve this request: ${keys} of ${what} ${
    s.total === 1 ? "is" : "are"
  } unavailable${parts.length ? `: ${parts.join(", ")}` : ""}`;
}

/** How a request ended when no upstream answer could be committed. */
export type FinalOutcome =
  /** Every key that could serve rests after a 429 (or the last attempt got one). */
  | "rate_limited"
  /** Every key that could serve is out of quota (or the last attempt said so: 402, 429). */
  | "quota"
  /** No key could be tried: ejected, unhealthy, refused, disabled, resting, mixed. */
  | "unavailable"
  /** The last attempt could not connect (refused, DNS, TLS, connect timeout). */
  | "unreachable"
  /** The last attempt found a kept-alive connection closed before any answer. */
  | "stale"
  /** The last attempt timed out (or the upstream answered 408). */
  | "timeout"
  /** The last attempt got a 5xx: passed through. */
  | "server_error"
  /** The upstream refused llm-balance's key (401/403) and no other key could serve. */
  | "auth_refused"
  /** The last attempt got another 4xx, the client's fault: passed through as it came. */
  | "client_error";

/** What the client of a {@linkcode FinalOutcome} is told. */
export interface OutcomeRule {
  /**
   * The status of llm-balance's own answer; when the last attempt got an upstream answer, its
   * status and body are passed through instead.
   */
  status: number | "upstream";
  /**
   * `Retry-After`: `"return"` when the first key that can serve returns (1 s when one can
   * serve now), a number of seconds, or `"upstream"` (left as the upstream sent it).
   */
  after: "return" | number | "upstream";
  /**
   * `x-should-retry`: whether an SDK's automatic retry can help. `"soon"`: true when the wait
   * is under 60 s (the SDKs wait as told under 60 s; beyond, they retry within seconds, too
   * early to help); `"upstream"`: left as the upstream sent it.
   */
  retry: boolean | "soon" | "upstream";
}

/**
 * The one table of final outcomes. After llm-balance has spent its own attempts on server
 * errors, timeouts or unreachable upstreams, an SDK retrying at once would only multiply the
 * attempts (3 × 3 per call): `x-should-retry: false`. Rate limits, quota and unavailable keys
 * stay retryable while a key returns within the SDKs' 60 s; a closed kept-alive connection is
 * worth retrying at once. (When llm-balance makes no retries, `retry.max_attempts: 1`, a `false`
 * is left out: see {@linkcode retryAdvice}.)
 */
export const FINAL_OUTCOMES: Readonly<Record<FinalOutcome, Readonly<OutcomeRule>>> = {
  rate_limited: { status: 429, after: "return", retry: "soon" },
  quota: { status: 429, after: "return", retry: "soon" },
  unavailable: { status: 503, after: "return", retry: "soon" },
  unreachable: { status: 503, after: "return", retry: false },
  stale: { status: 502, after: 1, retry: true },
  timeout: { status: 504, after: "return", retry: false },
  server_error: { status: "upstream", after: "return", retry: false },
  auth_refused: { status: 502, after: "return", retry: false },
  client_error: { status: "upstream", after: "upstream", retry: "upstream" },
};

/** The longest `Retry-After` (exclusive) that the official SDKs wait for as told. */
export const SDK_MAX_WAIT_S = 60;
/** `Retry-After` when no key will come back by itself (every one disabled, say). */
export const UNKNOWN_RETURN_S = 60;

/**
 * Names how a request ended.
 * @param last the last attempt's class, or undefined when nothing could be tried
 * @param s the pool's summary after the last attempt
 * @returns the outcome
 */
export function finalOutcome(
  last: Exclude<AttemptClass, "ok" | "client_abort"> | undefined,
  s: PoolSummary,
): FinalOutcome {
  switch (last) {
    case undefined: {
      // keys an admin disabled will not serve whatever the wait: every other one rests for a
      // rate limit or quota, so the answer is a rate limit (SDKs map 429 to RateLimitError)
      const resting = s.rateLimited + s.quota;
      if (resting === 0 || resting !== s.total - s.disabled - s.available) return "unavailable";
      return s.rateLimited === 0 ? "quota" : "rate_limited";
    }
    case "rate_limited":
      return "rate_limited";
    case "quota":
      return "quota";
    case "auth":
      return "auth_refused";
    case "server":
      return "server_error";
    case "connect":
      return "unreachable";
    case "stale":
      return "stale";
    case "timeout":
      return "timeout";
    case "bad_request":
      return "client_error";
  }
}

/**
 * What the client of an outcome is told about retrying.
 * @param outcome how the request ended
 * @param s the pool's summary after the last attempt
 * @param now epoch ms
 * @param retries whether llm-balance retries at all (`retry.max_attempts` > 1); when it does
 *   not, the client's own retries are the only ones, and are not turned off
 * @returns `Retry-After` and `x-should-retry`, or undefined to leave the upstream's as they are
 */
export function retryAdvice(
  outcome: FinalOutcome,
  s: PoolSummary,
  now: number,
  retries = true,
): RetryAdvice | undefined {
  const rule = FINAL_OUTCOMES[outcome];
  if (rule.after === "upstream") return undefined;
  const returns = s.available > 0 || Number.isFinite(s.nextReturn);
  const after = typeof rule.after === "number"
    ? rule.after
    : s.available > 0
    ? 1
    : returns
    ? Math.max(1, Math.ceil((s.nextReturn - now) / 1000))
    : UNKNOWN_RETURN_S;
  const retry = rule.retry === "soon" ? returns && after < SDK_MAX_WAIT_S : rule.retry;
  return retry === "upstream" || (rule.retry === false && !retries)
    ? { afterSeconds: after }
    : { afterSeconds: after, retry };
}
