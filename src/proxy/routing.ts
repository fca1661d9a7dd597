/**
 * @module
 * Small pure helpers of the forwarding step: the upstream URL for a client path, retry
 * backoff, and the honest message when no candidate can serve.
 */

import type { Upstream } from "../plugin.ts";
import type { Pool, PoolSummary } from "../pool.ts";

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
 * `all 3 keys of upstream "modelscope" are unavailable: 2 rate limited, 1 unhealthy`.
 * @param pool the pool
 * @param s its summary
 * @returns the message
 */
export function describeUnavailable(pool: Pool, s: PoolSummary): string {
  const upstreams = new Set(pool.candidates.map((c) => c.upstream.name));
  const what = upstreams.size === 1
    ? `upstream "${[...upstreams][0]}"`
    : pool.model === "*"
    ? "the default pool"
    : `model "${pool.model}"`;
  const parts: string[] = [];
  const add = (n: number, label: string) => n > 0 && parts.push(`${n} ${label}`);
  add(s.rateLimited, "rate limited");
  add(s.quota, "out of quota");
  add(s.authFailed, "refused by the upstream (401/403)");
  add(s.unhealthy, "unhealthy");
  add(s.ejected, "ejected after failures");
  add(s.disabled, "disabled");
  const keys = s.total === 1 ? "the only key" : `all ${s.total} keys`;
  return `No upstream key can serve this request: ${keys} of ${what} ${
    s.total === 1 ? "is" : "are"
  } unavailable${parts.length ? `: ${parts.join(", ")}` : ""}`;
}
