/**
 * @module
 * The bytes the soak's fault upstream sends: response heads, chunks, OpenAI-style chat
 * completions, error bodies and server-sent events ending with a usage chunk.
 */

/** Token counts of one usage block, or sums of them. */
export interface Tokens {
  prompt: number;
  completion: number;
  total: number;
}

/** Encodes text as UTF-8. */
export const encoder: TextEncoder = new TextEncoder();

/** Joins two byte arrays. */
export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * The events of one streamed answer: the role, the content in pieces (the marker whole in one
 * of them), the finish, and the usage chunk last (no `[DONE]`).
 * @param a the upstream's name, the request's marker and an id for the completion
 * @param usage the token counts of the usage chunk
 * @returns each event as `data: {...}\n\n`
 */
export function sseEvents(
  a: { name: string; marker: string; id: string },
  usage: Tokens,
): string[] {
  const id = `chatcmpl-${a.name}-${a.id}`;
  const base = { id, object: "chat.completion.chunk", created: 1700000000, model: "soak-model" };
  const ev = (delta: Record<string, unknown>, finish: string | null) =>
    `data: ${
      JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })
    }\n\n`;
  const words = ["Echo ", a.marker, " from ", a.name, "."];
  return [
    ev({ role: "assistant", content: "" }, null),
    ...words.map((w) => ev({ content: w }, null)),
    ev({}, "stop"),
    `data: ${JSON.stringify({ ...base, choices: [], usage: usageJson(usage) })}\n\n`,
  ];
}

/** The OpenAI `usage` object of token counts. */
export function usageJson(t: Tokens): Record<string, number> {
  return { prompt_tokens: t.prompt, completion_tokens: t.completion, total_tokens: t.total };
}

/**
 * A chat completion whose message echoes the marker.
 * @param name the upstream's name (in the id and the message)
 * @param marker the request's marker
 * @param usage its token counts
 */
export function completionJson(name: string, marker: string, usage: Tokens): string {
  return JSON.stringify({
    id: `chatcmpl-${name}`,
    object: "chat.completion",
    created: 1700000000,
    model: "soak-model",
    choices: [{
      index: 0,
      message: { role: "assistant", content: `Echo ${marker} from ${name}.` },
      finish_reason: "stop",
    }],
    usage: usageJson(usage),
  });
}

/** An OpenAI-style error body: `{"error": {"message", "type", "code"}}`. */
export function errorJson(message: string, code: string): Uint8Array {
  return encoder.encode(JSON.stringify({
    error: { message, type: code === "server_error" ? "server_error" : "requests", code },
  }));
}

/** A response head: status line, headers, blank line. */
export function head(status: number, reason: string, headers: string[]): Uint8Array {
  return encoder.encode(
    `HTTP/1.1 ${status} ${reason}\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n`,
  );
}

/** A whole response with `content-length` (and `content-type: application/json` unless given). */
export function response(
  status: number,
  reason: string,
  headers: string[],
  body: Uint8Array,
): Uint8Array {
  const withType = headers.some((h) => h.startsWith("content-type:"))
    ? headers
    : ["content-type: application/json", ...headers];
  return concat(head(status, reason, [...withType, `content-length: ${body.length}`]), body);
}

/** One chunk of the chunked transfer coding. */
export function chunk(bytes: Uint8Array): Uint8Array {
  return concat(
    concat(encoder.encode(`${bytes.length.toString(16)}\r\n`), bytes),
    encoder.encode("\r\n"),
  );
}
