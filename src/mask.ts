/**
 * @module
 * Stable ids and display masks for secrets. A mask shows a little of the key so people can tell
 * keys apart, never enough to use it; masks never collide within one set of keys.
 */

/**
 * Hashes a string to 13 hex digits (cyrb53, 53 bits): not cryptographic, only for stable ids.
 * @param text the string to hash
 * @returns a 13-character lowercase hex string
 */
export function shortHash(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  const n = 4294967296 * (2097151 & h2) + (h1 >>> 0);
  return n.toString(16).padStart(14, "0").slice(-13);
}

/**
 * Masks one key: `sk-a...wxyz` for long keys, fewer visible characters for short ones, and only
 * a hash tag for very short keys (`...~1a2b`); masks use only URL-safe characters, so they can name a key in an admin URL as they are. Never throws, whatever the length.
 * @param key the secret
 * @returns the mask
 */
export function maskKey(key: string): string {
  const n = key.length;
  if (n >= 20) return `${key.slice(0, 4)}...${key.slice(-4)}`;
  if (n >= 12) return `${key.slice(0, 2)}...${key.slice(-2)}`;
  return `...~${shortHash(key).slice(0, 4)}`;
}

/**
 * Masks a set of keys so that no two masks are equal: when two keys share a mask, each gets a
 * `~xxxx` tag from its hash (longer tags if those collide too).
 * @param keys the secrets, duplicates allowed (equal keys get equal masks)
 * @returns key → mask
 */
export function maskAll(keys: Iterable<string>): Map<string, string> {
  const unique = [...new Set(keys)];
  const out = new Map<string, string>();
  const byMask = new Map<string, string[]>();
  for (const key of unique) {
    const mask = maskKey(key);
    const list = byMask.get(mask);
    if (list) list.push(key);
    else byMask.set(mask, [key]);
  }
  const used = new Set<string>();
  for (const [mask, list] of byMask) {
    if (list.length === 1) {
      out.set(list[0]!, mask);
      used.add(mask);
    }
  }
  for (const [mask, list] of byMask) {
    if (list.length === 1) continue;
    for (const key of list) {
      const hash = shortHash(key);
      let len = 4;
      let tagged = `${mask}~${hash.slice(0, len)}`;
      while (used.has(tagged) && len < hash.length) tagged = `${mask}~${hash.slice(0, ++len)}`;
      while (used.has(tagged)) tagged += "'";
      used.add(tagged);
      out.set(key, tagged);
    }
  }
  return out;
}
