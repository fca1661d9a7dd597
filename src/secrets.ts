/**
 * @module
 * Finds known secrets in text and replaces them with their masks, in one pass whose cost
 * grows with the text, not with the number of secrets. A rolling hash of the next few
 * characters is kept at every position; a 64 KiB table of hash bits says at once whether any
 * secret starts that way, and only then are the secrets sharing that start compared. (A regular
 * expression of 10,000 alternatives tries every one at every position.)
 */

const MAX_ANCHOR = 8;
const BASE = 31;

function hashOf(t: string, at: number, n: number): number {
  let h = 0;
  for (let j = 0; j < n; j++) h = (Math.imul(h, BASE) + t.charCodeAt(at + j)) | 0;
  return h;
}

/** Masks a fixed set of secrets wherever they appear. */
export class SecretScanner {
  readonly #anchor: number;
  /** BASE^(anchor-1), to roll the first character out of the hash. */
  readonly #high: number;
  readonly #seen = new Uint8Array(65536);
  readonly #buckets = new Map<number, string[]>();
  readonly #masks: ReadonlyMap<string, string>;

  /**
   * @param masks secret → what replaces it; empty secrets are ignored
   */
  constructor(masks: ReadonlyMap<string, string>) {
    this.#masks = masks;
    let min = Infinity;
    for (const k of masks.keys()) if (k.length > 0 && k.length < min) min = k.length;
    this.#anchor = Number.isFinite(min) ? Math.min(MAX_ANCHOR, min) : 0;
    let high = 1;
    for (let i = 1; i < this.#anchor; i++) high = Math.imul(high, BASE);
    this.#high = high;
    for (const k of masks.keys()) {
      if (k.length === 0) continue;
      const h = hashOf(k, 0, this.#anchor);
      this.#seen[h & 0xffff] = 1;
      const list = this.#buckets.get(h);
      if (list) list.push(k);
      else this.#buckets.set(h, [k]);
    }
    // the longest secret sharing a start wins
    for (const list of this.#buckets.values()) list.sort((a, b) => b.length - a.length);
  }

  /** How many secrets it knows. */
  get size(): number {
    return this.#masks.size;
  }

  /**
   * Replaces every known secret in a text by its mask.
   * @param text any text
   * @returns the text, the same string when it holds no secret
   */
  redact(text: string): string {
    const a = this.#anchor;
    if (a === 0 || text.length < a) return text;
    const seen = this.#seen;
    let out: string | undefined;
    let last = 0;
    let i = 0;
    const end = text.length - a;
    let h = hashOf(text, 0, a);
    while (i <= end) {
      let hit: string | undefined;
      if (seen[h & 0xffff] === 1) {
        const list = this.#buckets.get(h);
        if (list !== undefined) {
          for (const k of list) {
            if (text.startsWith(k, i)) {
              hit = k;
              break;
            }
          }
        }
      }
      if (hit === undefined) {
        if (i < end) {
          h = (Math.imul(h - Math.imul(text.charCodeAt(i), this.#high), BASE) +
            text.charCodeAt(i + a)) | 0;
        }
        i++;
        continue;
      }
      out = (out ?? "") + text.slice(last, i) + (this.#masks.get(hit) ?? "***");
      i += hit.length;
      last = i;
      if (i <= end) h = hashOf(text, i, a);
    }
    return out === undefined ? text : out + text.slice(last);
  }
}
