/**
 * @module
 * Reads and rewrites one top-level field of a JSON request body without parsing or
 * re-serializing the rest: every other byte (tools, vendor fields, number formats, spacing)
 * reaches the upstream unchanged. Reads the whole top level, so a repeated name resolves as
 * `JSON.parse` resolves it (the last one wins). Also lists every top-level field some parser
 * could take for a given name, for a check that must hold whichever parser reads the body.
 */

/** Where a top-level value sits in the text. */
export interface FieldSpan {
  /** The raw JSON text of the value. */
  raw: string;
  /** Index of the value's first character. */
  start: number;
  /** Index after the value's last character. */
  end: number;
}

function skipWs(t: string, i: number): number {
  while (i < t.length) {
    const c = t.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break;
    i++;
  }
  return i;
}

function skipString(t: string, i: number): number {
  // t[i] is the opening quote; the native search skips the text between quotes at once, and a
  // quote counts as the end when an even number of backslashes precedes it
  let from = i + 1;
  for (;;) {
    const q = t.indexOf('"', from);
    if (q < 0) return -1;
    let b = q - 1;
    while (b > i && t.charCodeAt(b) === 92) b--;
    if (((q - 1 - b) & 1) === 0) return q + 1;
    from = q + 1;
  }
}

/**
 * Finds where the JSON value starting at `i` ends.
 * @param t the JSON text
 * @param i index of the value's first character
 * @returns the index after the value, or -1 when it does not end
 */
function skipValue(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === 34) return skipString(t, i);
  if (c === 123 || c === 91) {
    let depth = 0;
    while (i < t.length) {
      const d = t.charCodeAt(i);
      if (d === 34) {
        i = skipString(t, i);
        if (i < 0) return -1;
        continue;
      }
      if (d === 123 || d === 91) depth++;
      else if (d === 125 || d === 93) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  while (i < t.length) {
    const d = t.charCodeAt(i);
    if (d === 44 || d === 125 || d === 93 || d === 32 || d === 10 || d === 13 || d === 9) break;
    i++;
  }
  return i;
}

/**
 * Finds a top-level field of a JSON object. Like `JSON.parse`, the last occurrence of a repeated
 * name wins, and names written with escapes (`"mod\u0065l"`) match.
 * @param text the JSON text
 * @param key the field name
 * @returns the value's span, or undefined when absent or the text is not a JSON object
 */
export function findTopLevel(text: string, key: string): FieldSpan | undefined {
  return findTopLevelFields(text, [key])[0];
}

/**
 * Finds several top-level fields of a JSON object in one pass over the text (as
 * {@linkcode findTopLevel} finds one).
 * @param text the JSON text
 * @param keys the field names
 * @returns each key's span (or undefined), in the order of `keys`
 */
export function findTopLevelFields(
  text: string,
  keys: readonly string[],
): (FieldSpan | undefined)[] {
  const found: (FieldSpan | undefined)[] = keys.map(() => undefined);
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 123) return found;
  i++;
  while (i < text.length) {
    i = skipWs(text, i);
    if (text.charCodeAt(i) !== 34) return found;
    const keyEnd = skipString(text, i);
    if (keyEnd < 0) return found;
    const k = keyIndex(text, i, keyEnd, keys);
    i = skipWs(text, keyEnd);
    if (text.charCodeAt(i) !== 58) return found;
    i = skipWs(text, i + 1);
    const start = i;
    const end = skipValue(text, i);
    if (end < 0 || end === start) return found;
    if (k >= 0) found[k] = { raw: text.slice(start, end), start, end };
    i = skipWs(text, end);
    if (text.charCodeAt(i) !== 44) return found;
    i++;
  }
  return found;
}

/** Which of `keys` the quoted name at `text[start, end)` is, or -1. */
function keyIndex(text: string, start: number, end: number, keys: readonly string[]): number {
  const len = end - start - 2;
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k]!;
    // the names asked for are plain words, so a literal match holds no escape
    if (len === key.length && text.startsWith(key, start + 1)) return k;
  }
  if (!hasEscape(text, start, end)) return -1;
  const name = unescapeKey(text.slice(start, end));
  return name === undefined ? -1 : keys.indexOf(name);
}

function hasEscape(t: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (t.charCodeAt(i) === 92) return true;
  return false;
}

function unescapeKey(raw: string): string | undefined {
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A top-level field that some JSON parser could read as the name asked for. */
export interface NamedField {
  /** The name as the body spells it (escapes resolved). */
  name: string;
  /** Whether it is exactly the name asked for. */
  exact: boolean;
  /** Where its value is. */
  span: FieldSpan;
}

/**
 * Lists every top-level field of a JSON object that some parser could read as `key`: the name
 * itself, and any spelling equal to it once escapes are resolved, case is ignored (Go's
 * `encoding/json`, case-insensitive .NET or Jackson options), Unicode compatibility forms are
 * folded (NFKC: `ｍｏｄｅｌ`) or the name is cut at a NUL (C-string parsers). The whole top
 * level is read: a repeated name is listed each time.
 * @param text the JSON text
 * @param key the field name (plain ASCII)
 * @returns the fields in body order, or undefined when the text is not exactly one JSON object
 *   as far as its top level goes (nested values are only skipped: check them with `JSON.parse`)
 */
export function fieldsNamedLike(text: string, key: string): NamedField[] | undefined {
  const out: NamedField[] = [];
  const folded = fold(key);
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 123) return undefined;
  i = skipWs(text, i + 1);
  if (text.charCodeAt(i) !== 125) {
    for (;;) {
      if (text.charCodeAt(i) !== 34) return undefined;
      const keyEnd = skipString(text, i);
      if (keyEnd < 0) return undefined;
      const name = hasEscape(text, i, keyEnd)
        ? unescapeKey(text.slice(i, keyEnd))
        : text.slice(i + 1, keyEnd - 1);
      if (name === undefined) return undefined;
      i = skipWs(text, keyEnd);
      if (text.charCodeAt(i) !== 58) return undefined;
      i = skipWs(text, i + 1);
      const start = i;
      const end = skipValue(text, i);
      if (end < 0 || end === start) return undefined;
      if (name === key || fold(name) === folded) {
        out.push({ name, exact: name === key, span: { raw: text.slice(start, end), start, end } });
      }
      i = skipWs(text, end);
      const c = text.charCodeAt(i);
      if (c === 125) break;
      if (c !== 44) return undefined;
      i = skipWs(text, i + 1);
    }
  }
  return skipWs(text, i + 1) === text.length ? out : undefined;
}

/**
 * A name as the most forgiving parser would compare it: cut at a NUL, Unicode compatibility
 * forms folded (NFKC), case ignored.
 * @param name a field name
 * @returns the folded name
 */
export function fold(name: string): string {
  const nul = name.indexOf("\0");
  const cut = nul < 0 ? name : name.slice(0, nul);
  // upper then lower case: `ſ` and the Kelvin sign fold to `s` and `k`, as Go folds them
  return cut.normalize("NFKC").toUpperCase().toLowerCase();
}

/**
 * Reads a top-level string field.
 * @returns the string, or undefined when absent or not a string
 */
export function readTopLevelString(text: string, key: string): string | undefined {
  return stringOf(findTopLevel(text, key));
}

/**
 * The string a span holds.
 * @param span a value's span
 * @returns the string, or undefined when there is no span or it is not a string
 */
export function stringOf(span: FieldSpan | undefined): string | undefined {
  if (span === undefined || span.raw.charCodeAt(0) !== 34) return undefined;
  if (!span.raw.includes("\\")) return span.raw.slice(1, -1);
  try {
    const v: unknown = JSON.parse(span.raw);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Replaces a top-level field's value.
 * @param text the JSON text
 * @param span where the value is (from {@linkcode findTopLevel})
 * @param value the new value, serialized with JSON.stringify
 * @returns the new text
 */
export function replaceValue(text: string, span: FieldSpan, value: unknown): string {
  return text.slice(0, span.start) + JSON.stringify(value) + text.slice(span.end);
}

/**
 * Adds a top-level field before the closing brace of a JSON object.
 * @param text the JSON object text
 * @param key the new field's name
 * @param value its value
 * @returns the new text, or the text unchanged when it does not end with `}`
 */
export function appendField(text: string, key: string, value: unknown): string {
  const close = text.lastIndexOf("}");
  if (close < 0) return text;
  const before = text.slice(0, close).trimEnd();
  const sep = before.endsWith("{") ? "" : ",";
  return `${before}${sep}${JSON.stringify(key)}:${JSON.stringify(value)}${text.slice(close)}`;
}
