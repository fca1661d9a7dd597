/**
 * @module
 * Reading a presented credential and comparing secrets in constant time.
 */

const encoder = new TextEncoder();

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
 * @returns whether they are equal
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.max(x.length, y.length);
  let diff = x.length ^ y.length;
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
