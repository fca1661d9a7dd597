/**
 * @module
 * The beginning of a request's prompt, for the `prefix` affinity source: requests whose prompts
 * begin alike go to the same upstream key, where the provider's prompt cache holds that
 * beginning.
 *
 * Why the beginning identifies a conversation: a chat client resends the whole conversation each
 * turn and adds the new messages at the end of `messages` (or `input`). The system prompt and the
 * first messages stay where they were, written the same way by the same client, so they are the
 * same on every turn while `model`, `max_tokens`, `stream` and the other fields may change. An
 * array of messages is read only up to the end of its first user message (the system and
 * developer messages before it included): a short first turn would otherwise hash differently
 * from the second, which appends to it. Providers cache by prefix for the same reason. The raw JSON text
 * is used as it stands (no parse, no re-serialization): spacing differs between clients, not
 * between the turns of one client. A client that sends only the new input each turn (Responses
 * with `previous_response_id`) is not grouped this way; it should send `prompt_cache_key`.
 *
 * The trade-off of N: a small N sees only a long shared system prompt, so every conversation
 * that shares it shares one pin (and one key takes all of their load); a large N reaches each
 * conversation's first user message, giving more distinct pins that spread over the keys, at
 * the cost of hashing more text.
 */

import { type FieldSpan, findTopLevelFields } from "./json_scan.ts";

/** The prompt-bearing top-level fields, in the order their text is joined. */
const PROMPT_FIELDS = ["system", "instructions", "messages", "input", "prompt"];
/** Between two fields' text: a NUL never appears in valid JSON text, so no value can fake it. */
const SEPARATOR = "\u0000";
/** JSON whitespace, matched only where `lastIndex` points. */
const JSON_WS = /[ \t\n\r]*/y;

/**
 * The text that identifies a request's conversation: the raw JSON values of its `system`,
 * `instructions`, `messages`, `input` and `prompt` fields, in that order whatever their order in
 * the body, each joined to the next by a NUL (an absent or empty field leaves its place empty),
 * cut to `maxChars`. Only the first `maxChars` characters are copied, whatever the body's size.
 * A repeated field resolves as `JSON.parse` resolves it (the last one wins).
 * @param text the request body as JSON text
 * @param maxChars the most UTF-16 code units returned (a cut never ends on half a surrogate pair)
 * @returns the prefix, or undefined when the body is not a JSON object, has none of the fields
 *   (or each is `null`, `""`, `[]` or `{}`), or `maxChars` is below 1
 */
export function promptPrefix(text: string, maxChars: number): string | undefined {
  const max = Math.floor(maxChars);
  if (!(max >= 1)) return undefined;
  const spans = findTopLevelFields(text, PROMPT_FIELDS);
  if (spans.every((span) => span === undefined || isEmpty(text, span))) return undefined;
  let out = "";
  for (let k = 0; k < spans.length; k++) {
    if (k > 0) out += SEPARATOR;
    const span = spans[k];
    if (span !== undefined && !isEmpty(text, span)) {
      const limit = Math.min(span.end, span.start + max - out.length);
      const first = text.charCodeAt(span.start) === 91 ? firstUserEnd(text, span.start, limit) : -1;
      out += text.slice(span.start, first > 0 ? first : limit);
    }
    if (out.length >= max) break;
  }
  // a cut between the halves of a surrogate pair would leave a lone high surrogate
  const last = out.charCodeAt(out.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? out.slice(0, -1) : out;
}

/** Whether a value says nothing: `null`, `""`, or an array or object with only whitespace. */
function isEmpty(text: string, span: FieldSpan): boolean {
  const first = text.charCodeAt(span.start);
  const length = span.end - span.start;
  if (first === 34) return length === 2;
  if (first === 110) return length === 4 && text.startsWith("null", span.start);
  if (first !== 91 && first !== 123) return false;
  JSON_WS.lastIndex = span.start + 1;
  JSON_WS.test(text);
  return JSON_WS.lastIndex === span.end - 1;
}

/**
 * Where an array of messages' first user message ends: the index after the first element with
 * `"role": "user"`, read no further than `limit`.
 * @param t the JSON text
 * @param start the index of the array's `[`
 * @param limit read up to here
 * @returns the index after that element, or -1 when none ends before `limit`
 */
function firstUserEnd(t: string, start: number, limit: number): number {
  let depth = 0;
  /** At depth 2 (an element's fields): whether the next string is a value, not a name. */
  let value = false;
  let roleName = false;
  let user = false;
  let i = start;
  while (i < limit) {
    const c = t.charCodeAt(i);
    if (c === 34) {
      const end = stringEnd(t, i, limit);
      if (end < 0) return -1;
      if (depth === 2) {
        if (value) {
          if (roleName && end - i === 6 && t.startsWith('"user"', i)) user = true;
          value = false;
        } else roleName = end - i === 6 && t.startsWith('"role"', i);
      }
      i = end;
      continue;
    }
    if (c === 123 || c === 91) depth++;
    else if (c === 125 || c === 93) {
      depth--;
      if (depth === 1 && user) return i + 1;
      if (depth === 0) return -1;
    } else if (depth === 2) {
      if (c === 58) value = true;
      else if (c === 44) value = roleName = false;
    }
    i++;
  }
  return -1;
}

/** The index after the string starting at `i` (its quote), or -1 when it does not end by `limit`. */
function stringEnd(t: string, i: number, limit: number): number {
  let from = i + 1;
  for (;;) {
    const q = t.indexOf('"', from);
    if (q < 0 || q >= limit) return -1;
    let b = q - 1;
    while (b > i && t.charCodeAt(b) === 92) b--;
    if (((q - 1 - b) & 1) === 0) return q + 1;
    from = q + 1;
  }
}
