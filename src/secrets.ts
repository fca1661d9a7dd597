/**
 * @module
 * Finds known secrets in text and replaces them with their masks: whole, escaped, or in part.
 * A secret is found however its characters are written (raw, JSON-escaped as `\/` or `\u0041`,
 * URL-encoded as `%2F`, each character its own way, escapes doubled by nesting), and so is any
 * run of {@linkcode DEFAULT_FRAGMENT} or more of its characters in a row (a key quoted all but
 * its last few characters). Text holding no `\u`, `\/` or `%` is scanned as it is; other text is
 * decoded once into a copy whose characters remember where they came from, and what matched
 * there is masked in the original.
 *
 * The cost is one pass over the text whatever the number of secrets. Every run of a few
 * characters (the anchor) of every secret is indexed by its hash (about 0.4 KB per 40-character
 * secret). The text is sampled every few positions (a stride short enough that any maskable
 * match holds a whole anchor starting at a sampled position), reading fewer characters than it
 * holds; a bit table says at once whether any secret holds the anchor found there (most samples
 * stop at that), and only then are the secrets holding it compared, the match grown both ways.
 * (A regular expression of 10,000 alternatives tries every one at every position.)
 */

/**
 * The shortest run of a secret's characters masked on its own: 12. A secret of 12 characters or
 * fewer is masked only whole.
 */
export const DEFAULT_FRAGMENT = 12;
/** The shortest anchor hashed at a sampled position (shorter ones would match too often). */
const MIN_ANCHOR = 4;
const BASE = 31;
const BACKSLASH = 0x5c;
const PERCENT = 0x25;
/** Bit-table sizes (as powers of two): about 16 bits per indexed run, within these bounds. */
const MIN_TABLE_BITS = 16;
const MAX_TABLE_BITS = 24;

function hashOf(t: string, at: number, n: number): number {
  let h = 0;
  for (let j = 0; j < n; j++) h = (Math.imul(h, BASE) + t.charCodeAt(at + j)) | 0;
  return h;
}

function slotOf(h: number, shift: number): number {
  return Math.imul(h, 0x9e3779b1) >>> shift;
}

/** Options of {@linkcode SecretScanner}. */
export interface SecretScannerOptions {
  /**
   * The shortest run of a secret's characters that is masked when found alone; secrets of this
   * length or shorter are masked only whole.
   * @default 12
   */
  fragment?: number;
}

/** Masks a fixed set of secrets wherever they appear, however encoded, whole or in part. */
export class SecretScanner {
  readonly #fragment: number;
  /** Characters hashed at each sampled position. */
  readonly #anchor: number;
  /** Positions between two samples. */
  readonly #stride: number;
  /** The secrets (a secret JSON escapes also in its escaped form) and their masks. */
  readonly #keys: string[] = [];
  readonly #masks: string[] = [];
  /** One bit per slot: set when some indexed anchor hashes there. */
  readonly #table: Uint32Array;
  readonly #shift: number;
  /** Where each bucket's runs start in the arrays below (and where the last one ends). */
  readonly #starts: Uint32Array;
  readonly #bucketShift: number;
  /** Every anchor of every secret, by bucket: which secret, at which offset. */
  readonly #runKey: Int32Array;
  readonly #runOffset: Uint16Array | Int32Array;
  /** BASE^(anchor-1), to roll the first character out of a hash. */
  readonly #high: number;
  /** The match {@linkcode SecretScanner.#match} found: start, end, secret. */
  #start = 0;
  #end = 0;
  #key = 0;
  readonly #size: number;

  /**
   * @param masks secret → what replaces it; empty secrets are ignored
   * @param options the fragment length
   */
  constructor(masks: ReadonlyMap<string, string>, options: SecretScannerOptions = {}) {
    const fragment = Math.max(1, options.fragment ?? DEFAULT_FRAGMENT);
    this.#fragment = fragment;
    let size = 0;
    for (const [k, m] of masks) {
      if (k.length === 0) continue;
      size++;
      this.#keys.push(k);
      this.#masks.push(m);
      // the decoder reads `\"` and `\\` only where it decodes anyway: a secret holding a quote or
      // a backslash is also looked for as JSON writes it; one that decoding would change (it
      // holds `%41`, say) also as decoded text shows it; and one with characters beyond ASCII
      // (which the decoder leaves encoded) also URL-encoded
      const forms = [JSON.stringify(k).slice(1, -1), decode(k)?.text, urlForm(k)];
      for (const form of forms) {
        if (form !== undefined && form !== k && form.length > 0) {
          this.#keys.push(form);
          this.#masks.push(m);
        }
      }
    }
    this.#size = size;
    // the shortest maskable match: a whole short secret, or a fragment
    let shortest = Infinity;
    for (const k of this.#keys) shortest = Math.min(shortest, k.length, fragment);
    // half of it, so that samples come every half match: fewer characters read than positions
    const a = Number.isFinite(shortest)
      ? Math.min(shortest, Math.max(MIN_ANCHOR, Math.ceil(shortest / 2)))
      : 0;
    this.#anchor = a;
    let high = 1;
    for (let i = 1; i < a; i++) high = Math.imul(high, BASE);
    this.#high = high;
    // every maskable match holds an anchor starting at a sampled position
    this.#stride = Number.isFinite(shortest) ? shortest - a + 1 : 1;
    let runs = 0;
    let longest = 0;
    for (const k of this.#keys) {
      runs += k.length - a + 1;
      longest = Math.max(longest, k.length);
    }
    const bits = Math.min(
      MAX_TABLE_BITS,
      Math.max(MIN_TABLE_BITS, Math.ceil(Math.log2(Math.max(1, runs) * 16))),
    );
    this.#shift = 32 - bits;
    this.#table = new Uint32Array(2 ** bits / 32);
    // the runs grouped by bucket (the top bits of their slot, a few runs per bucket) by a
    // counting sort, in two passes over the secrets: no comparisons, nothing but the index kept,
    // and a lookup goes straight to its bucket
    const bucketBits = Math.min(bits, Math.max(1, Math.ceil(Math.log2(Math.max(1, runs))) - 2));
    this.#bucketShift = 32 - bucketBits;
    const starts = new Uint32Array(2 ** bucketBits + 1);
    this.#eachRun((h) => {
      const slot = slotOf(h, this.#shift);
      this.#table[slot >>> 5]! |= 1 << (slot & 31);
      starts[slotOf(h, this.#bucketShift)]!++;
    });
    // each bucket's end; filling a bucket from its end leaves each entry at its start
    for (let b = 1; b < starts.length - 1; b++) starts[b]! += starts[b - 1]!;
    starts[starts.length - 1] = runs;
    this.#runKey = new Int32Array(runs);
    this.#runOffset = longest < 2 ** 16 ? new Uint16Array(runs) : new Int32Array(runs);
    this.#eachRun((h, key, offset) => {
      const at = --starts[slotOf(h, this.#bucketShift)]!;
      this.#runKey[at] = key;
      this.#runOffset[at] = offset;
    });
    this.#starts = starts;
  }

  /** Calls `f` with the hash, secret and offset of every anchor of every secret. */
  #eachRun(f: (h: number, key: number, offset: number) => void): void {
    const a = this.#anchor;
    for (let ki = 0; ki < this.#keys.length; ki++) {
      const k = this.#keys[ki]!;
      let h = hashOf(k, 0, a);
      for (let o = 0; o + a <= k.length; o++) {
        if (o > 0) {
          h = (Math.imul(h - Math.imul(k.charCodeAt(o - 1), this.#high), BASE) +
            k.charCodeAt(o - 1 + a)) | 0;
        }
        f(h, ki, o);
      }
    }
  }

  /** How many secrets it knows. */
  get size(): number {
    return this.#size;
  }

  /**
   * Replaces every known secret in a text, and every run of a fragment's length or more of one,
   * by the secret's mask, whether written raw, JSON-escaped or URL-encoded.
   * @param text any text
   * @returns the text, the same string when it holds no secret
   */
  redact(text: string): string {
    if (this.#anchor === 0 || text.length < this.#anchor) return text;
    const decoded = text.indexOf("%") === -1 && text.indexOf("\\u") === -1 &&
        text.indexOf("\\/") === -1
      ? undefined
      : decode(text);
    if (decoded === undefined) {
      const found = this.#scan(text);
      return found === undefined ? text : this.#replace(text, found, undefined);
    }
    const found = this.#scan(decoded.text);
    return found === undefined ? text : this.#replace(text, found, decoded);
  }

  /**
   * Builds the masked text from the matches: [start, end, secret] triples, positions in
   * `decoded`'s text when given.
   */
  #replace(text: string, found: number[], decoded: Decoded | undefined): string {
    let out = "";
    let last = 0;
    for (let j = 0; j < found.length; j += 3) {
      const start = decoded === undefined ? found[j]! : decoded.at(found[j]!);
      const end = decoded === undefined ? found[j + 1]! : decoded.at(found[j + 1]!);
      out += text.slice(last, start) + this.#masks[found[j + 2]!]!;
      last = end;
    }
    return out + text.slice(last);
  }

  /** @returns the matches in `s` as [start, end, secret] triples, or undefined for none */
  #scan(s: string): number[] | undefined {
    const a = this.#anchor;
    const stride = this.#stride;
    const table = this.#table;
    const shift = this.#shift;
    const end = s.length - a;
    let found: number[] | undefined;
    let last = 0;
    for (let i = 0; i <= end; i += stride) {
      const h = hashOf(s, i, a);
      const slot = slotOf(h, shift);
      if ((table[slot >>> 5]! & (1 << (slot & 31))) === 0 || !this.#match(s, i, h, last)) continue;
      (found ??= []).push(this.#start, this.#end, this.#key);
      last = this.#end;
      // the next match starts at or after this one's end: the first sample there
      i = Math.ceil(last / stride) * stride - stride;
    }
    return found;
  }

  /**
   * Finds the longest maskable match holding the anchor at `i` (hash `h`), starting no earlier
   * than `from`, among the secrets holding that anchor; sets the start, end and secret fields.
   * @returns whether there was one
   */
  #match(s: string, i: number, h: number, from: number): boolean {
    const bucket = slotOf(h, this.#bucketShift);
    const last = this.#starts[bucket + 1]!;
    let bestLen = 0;
    const n = s.length;
    for (let r = this.#starts[bucket]!; r < last; r++) {
      const ki = this.#runKey[r]!;
      const o = this.#runOffset[r]!;
      const k = this.#keys[ki]!;
      // grown backwards, then forwards
      let b = 0;
      while (b < o && i - b > from && s.charCodeAt(i - b - 1) === k.charCodeAt(o - b - 1)) b++;
      const most = Math.min(n - i, k.length - o);
      let f = 0;
      while (f < most && s.charCodeAt(i + f) === k.charCodeAt(o + f)) f++;
      if (f < this.#anchor) continue; // another anchor in the bucket
      const len = b + f;
      const whole = b === o && len === k.length;
      if ((whole || len >= this.#fragment) && len > bestLen) {
        bestLen = len;
        this.#start = i - b;
        this.#end = i + f;
        this.#key = ki;
      }
    }
    return bestLen > 0;
  }
}

/** A secret URL-encoded, when that encoding holds more than {@linkcode decode} reads. */
function urlForm(k: string): string | undefined {
  try {
    const url = encodeURIComponent(k);
    return (decode(url)?.text ?? url) === k ? undefined : url;
  } catch {
    return undefined; // a lone surrogate: no URL holds it
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

/** The value of `n` hex digits at `at`, or -1. */
function hexAt(t: string, at: number, n: number): number {
  if (at + n > t.length) return -1;
  let v = 0;
  for (let j = 0; j < n; j++) {
    const d = hexDigit(t.charCodeAt(at + j));
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** Text decoded by {@linkcode decode}, and where its characters came from. */
export interface Decoded {
  text: string;
  /**
   * @param d a position in `text` (its length included)
   * @returns where that character starts in the original text (its length for the end)
   */
  at(d: number): number;
}

/**
 * Decodes JSON escapes and URL encoding in one go, leniently (a secret must be found however it
 * was written; a stray decoding costs nothing but a comparison): `\uXXXX`, `\/`, `\"` and a run
 * of backslashes (escapes of escapes) before them; `%XX` of an ASCII character, `%25XX` (encoded
 * twice) too. Only the escapes are recorded, so a text with a few costs little more than a copy.
 * @param t the text
 * @returns the decoded text and where its characters began; undefined when nothing was decoded
 */
export function decode(t: string): Decoded | undefined {
  const n = t.length;
  let text = "";
  let last = 0;
  /** For each decoded escape: its position in `text`, where it began and ended in `t`. */
  let escapes: number[] | undefined;
  let i = 0;
  while (i < n) {
    const c = t.charCodeAt(i);
    let code = c;
    let next = i + 1;
    if (c === BACKSLASH) {
      let j = i + 1;
      while (j < n && t.charCodeAt(j) === BACKSLASH) j++;
      const e = j < n ? t.charCodeAt(j) : -1;
      const u = e === 0x75 ? hexAt(t, j + 1, 4) : -1;
      if (u >= 0) {
        code = u;
        next = j + 5;
      } else if (e === 0x2f || e === 0x22) {
        code = e;
        next = j + 1;
      } else if (j - i >= 2) {
        next = j;
      }
    } else if (c === PERCENT) {
      let v = hexAt(t, i + 1, 2);
      let p = i + 3;
      while (v === PERCENT) {
        const w = hexAt(t, p, 2);
        if (w < 0) break;
        v = w;
        p += 2;
      }
      if (v >= 0 && v < 0x80) {
        code = v;
        next = p;
      }
    }
    if (next === i + 1) {
      i = next;
      continue;
    }
    text += t.slice(last, i);
    (escapes ??= []).push(text.length, i, next);
    text += String.fromCharCode(code);
    last = i = next;
  }
  if (escapes === undefined) return undefined;
  text += t.slice(last);
  const marks = escapes;
  return {
    text,
    at(d: number): number {
      // the last escape at or before d
      let lo = 0;
      let hi = marks.length / 3;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (marks[mid * 3]! <= d) lo = mid + 1;
        else hi = mid;
      }
      if (lo === 0) return d;
      const e = (lo - 1) * 3;
      return marks[e] === d ? marks[e + 1]! : marks[e + 2]! + (d - marks[e]! - 1);
    },
  };
}
