/**
 * @module
 * Header hygiene in both directions: hop-by-hop headers (and any named in `Connection`) are
 * never copied; the client's credentials never reach an upstream; an upstream's configured
 * headers are defaults the client's own override, unless forced; the chosen key is applied in
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
const NOT_RETURNED = new Set([
  ...HOP_BY_HOP,
  "set-cookie",
  "x-request-id",
  "date",
  "server",
  // ours describe this hop (an upstream that is itself an llm-balance sends its own)
  "x-llm-balance-upstream",
  "x-llm-balance-overhead-ms",
]);

/** A valid HTTP header name (an RFC 9110 token). */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The header names a `Connection` value lists (lower case). */
function connectionTokens(value: string): string[] {
  const names: string[] = [];
  for (const t of value.split(",")) {
    const name = t.trim().toLowerCase();
    if (name) names.push(name);
  }
  return names;
}

/** Header names (lower case) to values: what `fetch` is given (cheaper for it than `Headers`). */
export type HeaderRecord = Record<string, string>;

/**
 * The headers an upstream's configuration sends, for a request with no client headers (a
 * health probe): defaults and forced ones alike.
 * @param defaults the upstream's `headers`
 * @param forced the upstream's `force_headers`
 * @returns a new `Headers`
 */
export function configuredHeaders(
  defaults: Readonly<HeaderRecord>,
  forced: Readonly<HeaderRecord> = {},
): Headers {
  const out = new Headers();
  for (const k in defaults) out.set(k, defaults[k]!);
  for (const k in forced) out.set(k, forced[k]!);
  return out;
}

/**
 * Copies the headers of a client request that may go upstream.
 * @param src the client's request headers
 * @param defaults the upstream's `headers`: sent unless the client sent one of that name
 * @param forced the upstream's `force_headers`: they replace the client's
 * @returns a new record without hop-by-hop headers, credentials or routing hints, asking for
 *   an uncompressed response (`identity`: fetch then never decodes, so bytes pass unchanged)
 */
export function forwardRequestHeaders(
  src: Headers,
  defaults?: Readonly<HeaderRecord>,
  forced?: Readonly<HeaderRecord>,
): HeaderRecord {
  const out: HeaderRecord = Object.create(null);
  let connection: string | undefined;
  // one walk over the header list (forEach builds no entry array per header); headers named in
  // `Connection` are dropped after it
  src.forEach((v, k) => {
    if (k === "connection") connection = v;
    else if (!NOT_FORWARDED.has(k)) out[k] = v;
  });
  if (connection !== undefined) {
    for (const name of connectionTokens(connection)) {
      delete out[name];
    }
  }
  out["accept-encoding"] = "identity";
  if (defaults !== undefined) {
    for (const k in defaults) {
      const name = k.toLowerCase();
      if (out[name] === undefined) out[name] = defaults[k]!;
    }
  }
  if (forced !== undefined) { for (const k in forced) out[k.toLowerCase()] = forced[k]!; }
  return out;
}

/**
 * Sets the upstream credential in the upstream's style.
 * @param h headers to change
 * @param style bearer, x-api-key or api-key
 * @param key the secret
 */
export function applyAuth(h: Headers | HeaderRecord, style: AuthStyle, key: string): void {
  const value = style === "bearer" ? `Bearer ${key}` : key;
  const name = style === "bearer" ? "authorization" : style;
  if (h instanceof Headers) h.set(name, value);
  else h[name] = value;
}

/**
 * Copies the headers of an upstream response that may go back to the client. The upstream's
 * `x-request-id` is kept as `x-upstream-request-id` (ours takes `x-request-id`). Upstreams are
 * asked for `identity` encoding and fetch leaves an encoded body as it came, so an upstream that
 * compresses anyway keeps its `content-encoding` and `content-length`: the client decodes.
 * @param src the upstream response's headers
 * @param dst where they go, e.g. the headers of the client's new `Response` (appending to them
 *   costs far less than a `headers` option of the `Response` constructor)
 */
export function copyResponseHeaders(src: Headers, dst: Headers): void {
  let connection: string | undefined;
  src.forEach((v, k) => {
    if (k === "connection") connection = v;
    else if (!NOT_RETURNED.has(k)) dst.append(k, v);
    else if (k === "x-request-id") dst.append("x-upstream-request-id", v);
  });
  // headers named in `Connection` describe the upstream's hop: taken back out
  if (connection !== undefined) {
    for (const name of connectionTokens(connection)) {
      if (!NOT_RETURNED.has(name) && HEADER_NAME.test(name)) dst.delete(name);
    }
  }
}

/**
 * {@linkcode copyResponseHeaders} into a new `Headers`.
 * @param src the upstream response's headers
 * @returns the headers for the client's response
 */
export function returnResponseHeaders(src: Headers): Headers {
  const out = new Headers();
  copyResponseHeaders(src, out);
  return out;
}
