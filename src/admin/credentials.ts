/**
 * @module
 * Reading a presented credential and comparing secrets in constant time.
 */

/**
 * Reads the credential a request presents: `Authorization: Bearer <k>`, else `x-api-key`,
 * else `api-key`.
 * @param h request headers
 * @returns the credential, or undefined
 */
export function credentialOf(h: Headers): string | undefined {
  const auth = h.get("authorization");
  if (auth !== null) {
    const key = bearerToken(auth);
    if (key !== undefined) return key;
  }
  return h.get("x-api-key") ?? h.get("api-key") ?? undefined;
}

const SPACE = /\s/;

/** The token of `Bearer <token>` (scheme in any case, spaces around), without a regex run. */
function bearerToken(auth: string): string | undefined {
  const v = auth.trim();
  if (v.length < 8 || v.slice(0, 6).toLowerCase() !== "bearer" || !SPACE.test(v[6]!)) {
    return undefined;
  }
  const token = v.slice(7).trim();
  return token === "" ? undefined : token;
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
