/**
 * @module
 * Reading a presented credential and comparing secrets in constant time.
 */

import type { ClientKeyConfig } from "../config/types.ts";

/**
 * Reads the credential a request presents: `Authorization: Bearer <k>`, else `x-api-key`,
 * else `api-key`.
 * @param h request headers
 * @returns the credential, or undefined
 */
export function credentialOf(h: Headers): string | undefined {
  const auth = h.get("authorization");
  if (auth !== null) {
    const m = /^\s*bearer\s+(.+?)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  return h.get("x-api-key") ?? h.get("api-key") ?? undefined;
}

/**
 * Compares two strings in time that depends only on their lengths, not on where they differ.
 * Compares UTF-16 code units directly: no encoding, no allocation per comparison.
 * @returns whether they are equal
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const n = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  // charCodeAt past the end is NaN, which `| 0` turns into 0
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}

/**
 * Finds the client key matching a presented credential, comparing against every key in
 * constant time per key.
 * @param keys the configured client keys
 * @param presented the credential from the request
 * @returns the matching client key, or undefined
 */
export function matchClientKey(
  keys: readonly ClientKeyConfig[],
  presented: string,
): ClientKeyConfig | undefined {
  let found: ClientKeyConfig | undefined;
  for (const k of keys) if (timingSafeEqual(k.key, presented) && found === undefined) found = k;
  return found;
}
