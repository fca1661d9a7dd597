/**
 * @module
 * Streamed usage the client did not ask for: {@linkcode injectIncludeUsage} adds
 * `"stream_options":{"include_usage":true}` to an OpenAI-style streaming request body without
 * re-serializing it, and {@linkcode UsageChunkStripper} removes the one extra usage event that
 * this makes the upstream send, passing every other byte through unchanged.
 */

import { appendField, type FieldSpan, findTopLevelFields } from "./json_scan.ts";
import { concat } from "./bytes.ts";

/**
 * Tells whether a path is an OpenAI-style endpoint that honours `stream_options`.
 * @param pathname the request path, e.g. `/v1/chat/completions`
 * @returns true for `.../chat/completions` and `.../completions`
 */
export function acceptsStreamOptions(pathname: string): boolean {
  return pathname.endsWith("/chat/completions") || pathname.endsWith("/completions");
}

/**
 * Asks for the usage chunk on a streaming request that did not ask for it.
 * @param text the request body, a JSON object
 * @param spans its top-level `stream` and `stream_options`, when the caller has scanned for them
 * @returns the body with `"stream_options":{"include_usage":true}` added before the closing
 * brace, or undefined when there is nothing to do: `stream` is not `true`, `stream_options` is
 * already there (whatever it says), or the text is not a JSON object
 */
export function injectIncludeUsage(
  text: string,
  spans: StreamSpans = streamSpans(text),
): string | undefined {
  if (spans.stream?.raw !== "true") return undefined;
  if (spans.streamOptions !== undefined) return undefined;
  if (!text.trimEnd().endsWith("}")) return undefined;
  const out = appendField(text, "stream_options", { include_usage: true });
  return out === text ? undefined : out;
}

/** Where a request body's top-level `stream` and `stream_options` are. */
export interface StreamSpans {
  stream: FieldSpan | undefined;
  streamOptions: FieldSpan | undefined;
}

function streamSpans(text: string): StreamSpans {
  const [stream, streamOptions] = findTopLevelFields(text, ["stream", "stream_options"]);
  return { stream, streamOptions };
}

const LF = 10;
const CR = 13;
const EMPTY = new Uint8Array(0);
const decoder = new TextDecoder();
const EMPTY_CHOICES = /"choices"\s*:\s*\[\s*\]/;

/**
 * Tells whether one complete SSE event is an OpenAI usage chunk: its data is a JSON object with
 * `"choices": []` and a `usage` object.
 * @param event the event's bytes, terminator included
 */
export function isUsageEvent(event: Uint8Array): boolean {
  const text = decoder.decode(event);
  // cheap tests first: with include_usage every chunk carries `"usage":null`
  if (!EMPTY_CHOICES.test(text) || !text.includes('"usage"')) return false;
  const data: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  if (data.length === 0) return false;
  try {
    const v: unknown = JSON.parse(data.join("\n"));
    if (typeof v !== "object" || v === null) return false;
    const o = v as Record<string, unknown>;
    return Array.isArray(o.choices) && o.choices.length === 0 && typeof o.usage === "object" &&
      o.usage !== null;
  } catch {
    return false;
  }
}

/**
 * Removes the first OpenAI usage chunk (see {@linkcode isUsageEvent}) from an SSE stream. Every
 * other byte goes through unchanged and in order. Complete events go out in the same `push`
 * that completes them; only the bytes of an event still incomplete at the end of a chunk wait
 * for the rest of it. Once the usage event is removed, every later chunk is returned as is.
 */
export class UsageChunkStripper {
  /** Bytes of the current, incomplete event, from earlier chunks. */
  #held: Uint8Array[] = [];
  #heldLength = 0;
  /** Characters in the current line so far (terminator excluded). */
  #lineLength = 0;
  /** The last byte seen was a CR (a following LF belongs to the same line end). */
  #afterCr = false;
  /** The last event passed on ended with a CR: a LF right after it belongs to it. */
  #crEnded = false;
  /** The removed event ended with a CR: a LF right after it belongs to it too. */
  #dropLf = false;
  #stripped = false;

  /** Whether the usage event has been removed. */
  get stripped(): boolean {
    return this.#stripped;
  }

  /**
   * Takes the next chunk of the upstream body.
   * @param chunk bytes as the upstream sent them
   * @returns the bytes to send on to the client now (possibly empty; `chunk` itself when
   * nothing is held or removed)
   */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#stripped) {
      if (this.#dropLf && chunk.length > 0) {
        this.#dropLf = false;
        if (chunk[0] === LF) return chunk.subarray(1);
      }
      return chunk;
    }
    // bytes held from earlier chunks start the first event that ends in this chunk
    const held = this.#held;
    const heldLength = this.#heldLength;
    let cut = 0; // chunk[0, cut) holds complete events
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === LF && this.#afterCr) {
        this.#afterCr = false;
        // the LF of a CRLF that ended the event just passed on: it goes out with that event
        if (this.#crEnded) cut = i + 1;
        this.#crEnded = false;
        continue;
      }
      this.#crEnded = false;
      this.#afterCr = b === CR;
      if (b !== LF && b !== CR) {
        this.#lineLength++;
        continue;
      }
      const blank = this.#lineLength === 0;
      this.#lineLength = 0;
      if (!blank) continue;
      const first = cut === 0;
      const bytes = chunk.subarray(cut, i + 1);
      const event = first && heldLength > 0
        ? concat([...held, bytes], heldLength + bytes.length)
        : bytes;
      this.#crEnded = b === CR;
      if (isUsageEvent(event)) {
        this.#crEnded = false;
        this.#stripped = true;
        this.#dropLf = b === CR;
        this.#held = [];
        this.#heldLength = 0;
        const before = first ? EMPTY : concat([...held, chunk.subarray(0, cut)], heldLength + cut);
        const after = this.push(chunk.subarray(i + 1));
        if (after.length === 0) return before;
        return before.length === 0 ? after : concat([before, after], before.length + after.length);
      }
      cut = i + 1;
    }
    if (cut === chunk.length && heldLength === 0) return chunk;
    let passed: Uint8Array = EMPTY;
    if (cut > 0) {
      passed = heldLength > 0
        ? concat([...held, chunk.subarray(0, cut)], heldLength + cut)
        : chunk.subarray(0, cut);
      this.#held = [];
      this.#heldLength = 0;
    }
    if (cut < chunk.length) {
      this.#held.push(chunk.slice(cut));
      this.#heldLength += chunk.length - cut;
    }
    return passed;
  }

  /**
   * Ends the stream.
   * @returns the bytes still held (an event without its final blank line), unchanged unless
   * they are the usage event
   */
  flush(): Uint8Array {
    const held = concat(this.#held, this.#heldLength);
    this.#held = [];
    this.#heldLength = 0;
    if (held.length === 0) return EMPTY;
    if (!this.#stripped && isUsageEvent(held)) {
      this.#stripped = true;
      return EMPTY;
    }
    return held;
  }
}
