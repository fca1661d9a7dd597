/**
 * @module
 * Header hygiene in both directions: hop-by-hop headers (and any named in `Connection`) are
 * never copied; the client's credentials never reach an upstream; the chosen key is applied in
 * the upstream's auth style.
 */

import type { AuthStyle } from "../config/types.ts";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "proxy-authenticate",
  "proxy-authorization",
]);

/** Request headers that describe the client's hop to us, or its credentials. */
const NOT_FORWARDED = new Set([
  ...HOP_BY_HOP,
  "host",
  "authorization",
  "x-api-key",
  "api-key",
  "content-length",
  "accept-encoding",
  "cookie",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-real-ip",
  "x-request-id",
]);

/** Response headers that describe the upstream's hop, or that the client must not get. */
const NOT_RETURNED = new Set([...HOP_BY_HOP, "set-cookie", "x-request-id", "date", "server"]);

function connectionTokens(h: Headers): Set<string> | undefined {
  const conn = h.get("connection");
  if (conn === null) return undefined;
  const set = new Set<string>();
  for (const t of conn.split(",")) {
    const name = t.trim().toLowerCase();
    if (name) set.add(name);
  }
  return set;
}

/**
 * Copies the headers of a client request that may go upstream.
 * @param src the client's request headers
 * @returns a new Headers without hop-by-hop headers, credentials or routing hints, asking for
 *   an uncompressed response (`identity`: fetch then never decodes, so bytes pass unchanged)
 */
export function forwardRequestHeaders(src: Headers): Headers {
  const extra = connectionTokens(src);
  // forEach walks the header list without building an entry array per header
  const pairs: [string, string][] = [];
  src.forEach((v, k) => {
    if (!NOT_FORWARDED.has(k) && (extra === undefined || !extra.has(k))) pairs.push([k, v]);
  });
  pairs.push(["accept-encoding", "identity"]);
  return new Headers(pairs);
}

/**
 * Sets the upstream credential in the upstream's style.
 * @param h headers to change
 * @param style bearer, x-api-key or api-key
 * @param key the secret
 */
export function applyAuth(h: Headers, style: AuthStyle, key: string): void {
  if (style === "bearer") h.set("authorization", `Bearer ${key}`);
  else h.set(style, key);
}

/**
 * Copies the headers of an upstream response that may go back to the client. The upstream's
 * `x-request-id` is kept as `x-upstream-request-id` (ours takes `x-request-id`). Upstreams are
 * asked for `identity` encoding and fetch leaves an encoded body as it came, so an upstream that
 * compresses anyway keeps its `content-encoding` and `content-length`: the client decodes.
 * @param src the upstream response's headers
 * @returns a new Headers for the client's response
 */
export function returnResponseHeaders(src: Headers): Headers {
  const extra = connectionTokens(src);
  const pairs: [string, string][] = [];
  src.forEach((v, k) => {
    if (!NOT_RETURNED.has(k) && (extra === undefined || !extra.has(k))) pairs.push([k, v]);
    else if (k === "x-request-id") pairs.push(["x-upstream-request-id", v]);
  });
  return new Headers(pairs);
}
