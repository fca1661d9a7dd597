/**
 * @module
 * The beginning of a request's prompt, for the `prefix` affinity source: requests of the same
 * conversation go to the same upstream key, where the provider's prompt cache holds it.
 *
 * A chat client resends the whole conversation each turn and adds the new messages at the end
 * of `messages` (or `input`), so its beginning stays the same: the system prompt (`system`,
 * `instructions`, or system and developer messages first in the list) and the first user
 * message. Those two are what identifies the conversation: the system prompt alone would put
 * every conversation of one agent (whose system prompt is the same and often many kilobytes)
 * on one key, and the whole list would change every turn. Each is read as text, up to
 * `maxChars` characters each: a message's `content` as a string or its blocks' `text` (other
 * blocks by their `type`), so what changes between turns without changing the conversation does
 * not change the hash: Anthropic's `cache_control` marks moving to the newest message, a
 * content string sent as a text block, a Responses `input` string that becomes a list, JSON
 * spacing and key order. The other fields (`model`, `max_tokens`, `stream`, ...) play no part.
 *
 * Cost: one scan of the body for the top-level fields, a scan of the list up to the end of its
 * first user message, and `JSON.parse` of that much (at most {@linkcode PARSE_MAX} characters;
 * beyond, the raw text's first characters are used as they are).
 */

import { type FieldSpan, findTopLevelFields } from "./json_scan.ts";

/** The prompt-bearing top-level fields. */
export const PROMPT_FIELDS = ["system", "instructions", "messages", "input", "prompt"] as const;
/** The most characters of a value parsed for its text. */
export const PARSE_MAX = 262_144;
/** Between the system part and the first user message: never in a JSON text's value. */
const SEPARATOR = "\u0000";

/**
 * The text that identifies a request's conversation: its system prompt and its first user
 * message, each as text and cut to `maxChars`, joined by a NUL.
 * @param text the request body as JSON text
 * @param maxChars the most characters of each part (UTF-16 code units)
 * @param spans where {@linkcode PROMPT_FIELDS} sit in `text`, when a scan of the body already
 *   found them (read from `text` otherwise)
 * @returns the text, or undefined when the body is not a JSON object, carries no prompt (or
 *   only empty ones), or `maxChars` is below 1
 */
export function promptPrefix(
  text: string,
  maxChars: number,
  spans?: readonly (FieldSpan | undefined)[],
): string | undefined {
  const max = Math.floor(maxChars);
  if (!(max >= 1)) return undefined;
  const [system, instructions, messages, input, prompt] = spans ??
    findTopLevelFields(text, PROMPT_FIELDS);
  let head = "";
  let first = "";
  for (const span of [system, instructions]) {
    if (span !== undefined) head = join(head, valueText(text, span, max));
  }
  for (const span of [messages, input]) {
    if (span === undefined || first !== "") continue;
    if (text.charCodeAt(span.start) === 91) {
      const lead = leading(text, span, max);
      head = join(head, lead.head);
      first = lead.first;
    } else first = valueText(text, span, max);
  }
  if (first === "" && prompt !== undefined) first = valueText(text, prompt, max);
  if (head === "" && first === "") return undefined;
  return cut(head, max) + SEPARATOR + cut(first, max);
}

/**
 * A list of messages through its first user message: the text of the messages before it (the
 * system and developer messages) and the first user message's text.
 */
function leading(text: string, span: FieldSpan, max: number): { head: string; first: string } {
  const found = scanList(text, span.start, Math.min(span.end, span.start + PARSE_MAX));
  let end = found.userEnd;
  // no user message: the whole list, when it is small enough to read
  if (end < 0 && found.userStart < 0 && span.end - span.start <= PARSE_MAX) end = span.end - 1;
  if (end < 0 && found.userStart > 0) {
    // a first user message too long to read whole: the messages before it, and its text's
    // first characters as they are written (the same on every turn, the cut well inside it)
    const before = parseList(text.slice(span.start, found.userStart).replace(/,\s*$/, "") + "]");
    if (before !== undefined && found.textStart > 0) {
      const textEnd = Math.min(text.indexOf('"', found.textStart), found.textStart + max);
      return {
        head: textOf(before).head,
        first: text.slice(
          found.textStart,
          textEnd > found.textStart ? textEnd : found.textStart + max,
        ),
      };
    }
  }
  const list = end > 0 ? parseList(text.slice(span.start, end) + "]") : undefined;
  if (list === undefined) {
    // no user message in reach (or not JSON): the list's first characters, as they are
    return { head: text.slice(span.start, Math.min(span.end, span.start + max)), first: "" };
  }
  return textOf(list);
}

/** The text of the messages before the first user message, and that message's text. */
function textOf(list: unknown[]): { head: string; first: string } {
  let head = "";
  let first = "";
  for (const m of list) {
    const message = typeof m === "object" && m !== null ? m as Record<string, unknown> : {};
    const body = message.content ?? message.output ?? message.arguments;
    if (message.role === "user") first = contentText(body);
    else head = join(head, `${String(message.role ?? message.type)}: ${contentText(body)}`);
  }
  return { head, first };
}

function parseList(json: string): unknown[] | undefined {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A top-level value as text: a string itself, blocks by their text; raw beyond the parse cap. */
function valueText(text: string, span: FieldSpan, max: number): string {
  if (span.end - span.start > PARSE_MAX) return text.slice(span.start, span.start + max);
  try {
    return contentText(JSON.parse(text.slice(span.start, span.end)));
  } catch {
    return text.slice(span.start, Math.min(span.end, span.start + max));
  }
}

/** A message content's text: a string, or its blocks' `text` (other blocks by `type`). */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) return "";
  const blocks = Array.isArray(content) ? content : [content];
  let out = "";
  for (const b of blocks) {
    let part: string;
    if (typeof b === "string") part = b;
    else if (typeof b === "object" && b !== null) {
      const block = b as Record<string, unknown>;
      part = typeof block.text === "string"
        ? block.text
        : typeof block.type === "string"
        ? `[${block.type}]`
        : "";
    } else part = String(b);
    out = join(out, part);
  }
  return out;
}

function join(a: string, b: string): string {
  return a === "" ? b : b === "" ? a : `${a}\n${b}`;
}

/** The first `max` characters, never ending on half a surrogate pair. */
function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  const last = s.charCodeAt(max - 1);
  return s.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/**
 * Reads a list of messages up to its first user message: where that element starts, where the
 * first text inside it starts (the value of its `content` or of a block's `text`), and where it
 * ends; read no further than `limit`.
 * @param t the JSON text
 * @param start the index of the list's `[`
 * @param limit read up to here
 * @returns the indexes, each -1 when not found before `limit`
 */
function scanList(
  t: string,
  start: number,
  limit: number,
): { userStart: number; textStart: number; userEnd: number } {
  const found = { userStart: -1, textStart: -1, userEnd: -1 };
  let depth = 0;
  /** Whether the next string is a value, not a name (in an object). */
  let value = false;
  /** The name the next value belongs to: 1 role, 2 content or text, 0 another. */
  let name = 0;
  let element = -1;
  let user = false;
  let i = start;
  while (i < limit) {
    const c = t.charCodeAt(i);
    if (c === 34) {
      const end = stringEnd(t, i, limit);
      if (value && name === 2 && user && found.textStart < 0) found.textStart = i + 1;
      if (end < 0) return found;
      if (depth >= 2 && value) {
        if (depth === 2 && name === 1 && end - i === 6 && t.startsWith('"user"', i)) {
          user = true;
          found.userStart = element;
          found.textStart = -1;
        }
        value = false;
      } else if (depth >= 2) {
        const n = end - i;
        name = n === 6 && t.startsWith('"role"', i)
          ? 1
          : (n === 9 && t.startsWith('"content"', i)) || (n === 6 && t.startsWith('"text"', i))
          ? 2
          : 0;
      }
      i = end;
      continue;
    }
    if (c === 123 || c === 91) {
      if (depth === 1) element = i;
      depth++;
      value = false;
    } else if (c === 125 || c === 93) {
      depth--;
      if (depth === 1 && user) {
        found.userEnd = i + 1;
        return found;
      }
      if (depth === 0) return found;
    } else if (depth >= 2) {
      if (c === 58) value = true;
      else if (c === 44) value = false;
    }
    i++;
  }
  return found;
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
