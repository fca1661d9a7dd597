/**
 * @module
 * Token usage read from a copy of a response: the `usage` object of an OpenAI-style JSON body,
 * the final usage chunk of an OpenAI-style stream, or Anthropic's `input_tokens`/`output_tokens`
 * spread over `message_start` and `message_delta` events. It only reads; the bytes the client
 * gets are never touched or delayed.
 */

import { findTopLevel } from "./json_scan.ts";

/** Token counts of one response. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

const MAX_JSON_BYTES = 4 * 1024 * 1024;

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

/**
 * Reads a usage object in either the OpenAI or the Anthropic shape.
 * @param u the `usage` value
 * @returns the counts, or undefined when `u` is not a usage object
 */
export function readUsage(u: unknown): Usage | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as Record<string, unknown>;
  const prompt = num(o.prompt_tokens) || num(o.input_tokens);
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

/**
 * Whether the `"usage"` at `at` is `"usage": null` (and the only one before `end`).
 * @param text the text
 * @param at where `"usage"` starts
 * @param end the end of the line
 */
function isNullUsage(text: string, at: number, end: number): boolean {
  let i = at + 7;
  while (text.charCodeAt(i) === 32) i++;
  if (text.charCodeAt(i) !== 58) return false;
  i++;
  while (text.charCodeAt(i) === 32) i++;
  if (!text.startsWith("null", i)) return false;
  const next = text.indexOf('"usage"', i);
  return next < 0 || next >= end;
}

/** Collects usage from response bytes as they pass. */
export class UsageTap {
  readonly #sse: boolean;
  #decoder = new TextDecoder();
  #chunks: Uint8Array[] = [];
  #size = 0;
  #line = "";
  #usage: Usage | undefined;
  #ended = false;

  /** Whether the stream's own end marker went by (`data: [DONE]`, Anthropic's `message_stop`). */
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
      this.#size += chunk.length;
      if (this.#size <= MAX_JSON_BYTES) this.#chunks.push(chunk);
      return;
    }
    const carried = this.#line.length;
    const text = this.#line + this.#decoder.decode(chunk, { stream: true });
    let start = 0;
    // the carried part holds no newline: search only the new text (linear over a long line)
    let nl = text.indexOf("\n", carried);
    // one forward-moving search for "usage" serves every line of the chunk (linear overall)
    let usageAt = nl < 0 ? -1 : text.indexOf('"usage"');
    while (nl >= 0) {
      if (
        !this.#ended && (text.startsWith("data: [DONE]", start) ||
          text.startsWith("data:[DONE]", start) || text.startsWith("event: message_stop", start))
      ) this.#ended = true;
      if (usageAt >= 0 && usageAt < start) usageAt = text.indexOf('"usage"', start);
      // with include_usage every chunk says `"usage":null`: no need to parse those
      if (usageAt >= 0 && usageAt < nl && !isNullUsage(text, usageAt, nl)) {
        this.#onLine(text, start, nl);
      }
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    this.#line = text.slice(start);
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
    const rest = this.#line;
    if (rest.includes('"usage"')) this.#onLine(rest, 0, rest.length);
    this.#line = "";
    return this.#usage;
  }

  #onLine(text: string, start: number, end: number): void {
    if (!text.startsWith("data:", start)) return;
    let line = text.slice(start + 5, end);
    if (line.endsWith("\r")) line = line.slice(0, -1);
    try {
      const ev = JSON.parse(line) as Record<string, unknown>;
      let u = readUsage(ev.usage);
      const msg = ev.message as Record<string, unknown> | undefined;
      if (u === undefined && msg && typeof msg === "object") u = readUsage(msg.usage);
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
