/**
 * @module
 * Token usage read from a copy of a response, for every OpenAI and Anthropic endpoint that
 * reports it: the top-level `usage` of a JSON body (chat completions, completions, embeddings,
 * responses, audio transcriptions, image generations, Anthropic messages); in a stream, the
 * usage chunk of chat completions and completions, `response.completed`'s `response.usage` of
 * the Responses API, the `usage` of transcription, speech and image-generation events, and
 * Anthropic's usage spread over `message_start` and `message_delta`. Anthropic's cache reads
 * and writes count as prompt tokens (OpenAI's `prompt_tokens` include cached ones). It only
 * reads; the bytes the client gets are never touched or delayed.
 */

import { findTopLevel } from "./json_scan.ts";
import { concat } from "./bytes.ts";

/** Token counts of one response. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** A token count as reported: a whole number of 0 or more (anything else counts none). */
function num(v: unknown): number {
  // a negative count would make the counters (and Prometheus' counters) go backwards
  return typeof v === "number" && v >= 0 && v <= Number.MAX_SAFE_INTEGER ? Math.floor(v) : 0;
}

/**
 * Reads a usage object in the OpenAI shape (`prompt_tokens`, `completion_tokens`), the shape of
 * the Responses, audio and image APIs (`input_tokens`, `output_tokens`, `total_tokens`) or
 * Anthropic's (`input_tokens` plus `cache_creation_input_tokens` and `cache_read_input_tokens`,
 * which Anthropic counts apart, and `output_tokens`).
 * @param u the `usage` value
 * @returns the counts, or undefined when `u` is not a usage object or counts no token (e.g. a
 *   transcription's `{"type": "duration", "seconds": 3}`)
 */
export function readUsage(u: unknown): Usage | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as Record<string, unknown>;
  const prompt = num(o.prompt_tokens) ||
    num(o.input_tokens) + num(o.cache_creation_input_tokens) + num(o.cache_read_input_tokens);
  const completion = num(o.completion_tokens) || num(o.output_tokens);
  const total = num(o.total_tokens) || prompt + completion;
  if (prompt === 0 && completion === 0 && total === 0) return undefined;
  return { promptTokens: prompt, completionTokens: completion, totalTokens: total };
}

const sharedDecoder = new TextDecoder();

/**
 * Reads the usage of a whole JSON response body (the top-level `usage` object).
 * @param body the body's bytes
 * @returns the usage, or undefined when the body has none (or is too large to scan)
 */
export function usageOfJson(body: Uint8Array): Usage | undefined {
  if (body.length === 0 || body.length > MAX_JSON_BYTES) return undefined;
  return usageField(sharedDecoder.decode(body));
}

/**
 * Reads the top-level `"usage"` of a JSON text without building the rest of the body.
 * @returns the usage, or undefined when there is none
 */
function usageField(text: string): Usage | undefined {
  const span = findTopLevel(text, "usage");
  if (span === undefined || span.raw.charCodeAt(0) !== 123) return undefined;
  try {
    return readUsage(JSON.parse(span.raw));
  } catch {
    return undefined;
  }
}

const LF = 10;
const QUOTE = 34;
const SPACE = 32;
const COLON = 58;
const OPEN_BRACE = 123;
const encoder = new TextEncoder();
const USAGE = encoder.encode('"usage"');
const NULL = encoder.encode("null");
/** Lines that end a stream: OpenAI's `[DONE]` (with or without the space), Anthropic's end. */
const END_LINES = ["data: [DONE]", "data:[DONE]", "event: message_stop"].map((s) =>
  encoder.encode(s)
);
/**
 * Longest SSE line kept whole across chunks to look for usage in (a usage line is short; the
 * Responses API's `response.completed` carries the whole answer).
 */
const MAX_LINE_BYTES = MAX_JSON_BYTES;

/** Whether `b[at, end)` starts with `p`. */
function startsWith(b: Uint8Array, at: number, end: number, p: Uint8Array): boolean {
  if (end - at < p.length) return false;
  for (let i = 0; i < p.length; i++) if (b[at + i] !== p[i]) return false;
  return true;
}

/**
 * Finds the next `"usage"` in `b[from, end)`.
 * @returns its index, or -1
 */
function usageAt(b: Uint8Array, from: number, end: number): number {
  for (
    let i = b.indexOf(QUOTE, from);
    i >= 0 && i + USAGE.length <= end;
    i = b.indexOf(QUOTE, i + 1)
  ) {
    if (startsWith(b, i, end, USAGE)) return i;
  }
  return -1;
}

/**
 * Whether the `"usage"` at `at` is `"usage": null` (and the only one before `end`).
 * @param b the bytes
 * @param at where `"usage"` starts
 * @param end the end of the line
 */
function isNullUsage(b: Uint8Array, at: number, end: number): boolean {
  let i = at + USAGE.length;
  while (b[i] === SPACE) i++;
  if (b[i] !== COLON) return false;
  i++;
  while (b[i] === SPACE) i++;
  if (!startsWith(b, i, end, NULL)) return false;
  return usageAt(b, i + NULL.length, end) < 0;
}

/** The first byte that is not JSON whitespace, or -1. */
function firstByte(b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c !== SPACE && c !== LF && c !== 13 && c !== 9) return c;
  }
  return -1;
}

/** The `usage` member of an event's object member (`message`, `response`), if any. */
function inner(v: unknown): unknown {
  return typeof v === "object" && v !== null ? (v as Record<string, unknown>).usage : undefined;
}

/** Collects usage from response bytes as they pass. */
export class UsageTap {
  readonly #sse: boolean;
  /** A JSON body's chunks (up to {@linkcode MAX_JSON_BYTES}), or the held part of an SSE line. */
  #chunks: Uint8Array[] = [];
  #size = 0;
  /** The current SSE line is longer than {@linkcode MAX_LINE_BYTES}: skipped to its end. */
  #skipLine = false;
  /** A JSON body's first byte other than whitespace went by. */
  #opened = false;
  #usage: Usage | undefined;
  #ended = false;

  /**
   * Whether the stream's own end marker went by (`data: [DONE]`, Anthropic's `message_stop`,
   * the Responses API's `response.completed` or `response.incomplete`).
   */
  get ended(): boolean {
    return this.#ended;
  }

  /** @param sse whether the body is a server-sent event stream */
  constructor(sse: boolean) {
    this.#sse = sse;
  }

  /**
   * Looks at one chunk of the body.
   * @param chunk bytes as they were sent to the client
   */
  push(chunk: Uint8Array): void {
    if (!this.#sse) {
      // a body that does not open as a JSON object has no top-level usage: nothing is kept
      if (!this.#opened) {
        const first = firstByte(chunk);
        this.#opened = first >= 0;
        if (first >= 0 && first !== OPEN_BRACE) this.#size = MAX_JSON_BYTES + 1;
      }
      this.#size += chunk.length;
      if (this.#size <= MAX_JSON_BYTES) this.#chunks.push(chunk);
      return;
    }
    // bytes, not text: a line ends at a LF, which is never part of a UTF-8 sequence, and only a
    // line that names a usage is decoded (nothing per chunk is kept but an unfinished line)
    let start = 0;
    const nl = chunk.indexOf(LF);
    if (this.#size > 0 || this.#skipLine) {
      if (nl < 0) {
        this.#hold(chunk, 0);
        return;
      }
      // the line held from earlier chunks ends here
      if (!this.#skipLine) {
        this.#chunks.push(chunk.subarray(0, nl));
        const line = concat(this.#chunks, this.#size + nl);
        this.#lines(line, 0, line.length);
      }
      this.#chunks = [];
      this.#size = 0;
      this.#skipLine = false;
      start = nl + 1;
    }
    const last = chunk.lastIndexOf(LF);
    if (last >= start) this.#lines(chunk, start, last + 1);
    if (last + 1 < chunk.length) this.#hold(chunk, Math.max(start, last + 1));
  }

  /** Looks at the complete lines of `b[start, end)` (`end` just past a LF, or a line's end). */
  #lines(b: Uint8Array, start: number, end: number): void {
    // one forward-moving search for "usage" serves every line (linear overall)
    let usage = -2;
    while (start < end) {
      let nl = b.indexOf(LF, start);
      if (nl < 0 || nl >= end) nl = end;
      if (
        !this.#ended &&
        (startsWith(b, start, nl, END_LINES[0]!) || startsWith(b, start, nl, END_LINES[1]!) ||
          startsWith(b, start, nl, END_LINES[2]!))
      ) this.#ended = true;
      if (usage === -2 || (usage >= 0 && usage < start)) usage = usageAt(b, start, end);
      // with include_usage every chunk says `"usage":null`: no need to parse those
      if (usage >= 0 && usage < nl && !isNullUsage(b, usage, nl)) {
        const text = sharedDecoder.decode(b.subarray(start, nl));
        this.#onLine(text, 0, text.length);
      }
      start = nl + 1;
    }
  }

  /** Keeps the start of a line that goes on in the next chunk (a copy: chunks move on). */
  #hold(chunk: Uint8Array, from: number): void {
    if (this.#skipLine) return;
    const n = chunk.length - from;
    if (this.#size + n > MAX_LINE_BYTES) {
      this.#chunks = [];
      this.#size = 0;
      this.#skipLine = true;
      return;
    }
    this.#chunks.push(chunk.slice(from));
    this.#size += n;
  }

  /**
   * Finishes reading.
   * @returns the usage found, or undefined
   */
  finish(): Usage | undefined {
    if (!this.#sse) {
      if (this.#size === 0 || this.#size > MAX_JSON_BYTES) return undefined;
      const all = new Uint8Array(this.#size);
      let off = 0;
      for (const c of this.#chunks) {
        all.set(c, off);
        off += c.length;
      }
      this.#chunks = [];
      return usageOfJson(all);
    }
    if (this.#size > 0 && !this.#skipLine) {
      const rest = concat(this.#chunks, this.#size);
      if (usageAt(rest, 0, rest.length) >= 0) {
        const text = sharedDecoder.decode(rest);
        this.#onLine(text, 0, text.length);
      }
    }
    this.#chunks = [];
    this.#size = 0;
    return this.#usage;
  }

  #onLine(text: string, start: number, end: number): void {
    if (!text.startsWith("data:", start)) return;
    let line = text.slice(start + 5, end);
    if (line.endsWith("\r")) line = line.slice(0, -1);
    try {
      const ev = JSON.parse(line) as Record<string, unknown>;
      // chat/completions chunks, audio and image events: `usage`; Anthropic's message_start:
      // `message.usage`; the Responses API's response.completed: `response.usage`
      const u = readUsage(ev.usage) ?? readUsage(inner(ev.message)) ??
        readUsage(inner(ev.response));
      if (ev.type === "response.completed" || ev.type === "response.incomplete") {
        this.#ended = true;
      }
      if (u === undefined) return;
      const prev = this.#usage;
      if (prev === undefined) this.#usage = u;
      else {
        const prompt = Math.max(prev.promptTokens, u.promptTokens);
        const completion = Math.max(prev.completionTokens, u.completionTokens);
        this.#usage = {
          promptTokens: prompt,
          completionTokens: completion,
          totalTokens: Math.max(prev.totalTokens, u.totalTokens, prompt + completion),
        };
      }
    } catch {
      // not JSON: not a usage event
    }
  }
}
