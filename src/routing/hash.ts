/**
 * @module
 * A fast, well-mixed, non-cryptographic string hash (cyrb53, public domain) for affinity:
 * the same string gives the same number in every instance and every run, so instances that
 * share nothing else still agree where a conversation is pinned. Not for secrets.
 */

/**
 * Hashes a string to a 53-bit integer (two 32-bit halves mixed together).
 * @param text the string
 * @param seed a seed, for independent hashes of the same text @default 0
 * @returns an integer in [0, 2^53)
 */
export function hash53(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * The 32-bit point of a 53-bit hash on a hash ring (its low 32 bits).
 * @param hash a value of {@linkcode hash53}
 * @returns an integer in [0, 2^32)
 */
export function ringPoint(hash: number): number {
  return hash >>> 0;
}
