/**
 * @module
 * Finds known secrets in text and replaces them with their masks, in one pass whose cost
 * grows with the text, not with the number of secrets: each position's first few characters
 * are hashed and looked up, and only secrets sharing that start are compared. (A regular
 * expression of 10,000 alternatives tries every one at every position.)
 */

const MAX_ANCHOR = 8;

function hashAt(t: string, i: number, n: number): number {
  let h = 0;
  for (let j = 0; j < n; j++) h = (Math.imul(h, 31) + t.charCodeAt(i + j)) | 0;
  return h;
}

/** Masks a fixed set of secrets wherever they appear. */
export class SecretScanner {
  readonly #anchor: number;
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
    for (const k of masks.keys()) {
      if (k.length === 0) continue;
      const h = hashAt(k, 0, this.#anchor);
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
    let out: string | undefined;
    let last = 0;
    let i = 0;
    const end = text.length - a;
    while (i <= end) {
      const list = this.#buckets.get(hashAt(text, i, a));
      let hit: string | undefined;
      if (list !== undefined) {
        for (const k of list) {
          if (text.startsWith(k, i)) {
            hit = k;
            break;
          }
        }
      }
      if (hit === undefined) {
        i++;
        continue;
      }
      out = (out ?? "") + text.slice(last, i) + (this.#masks.get(hit) ?? "***");
      i += hit.length;
      last = i;
    }
    return out === undefined ? text : out + text.slice(last);
  }
}
