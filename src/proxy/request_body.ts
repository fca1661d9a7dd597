/**
 * @module
 * The request body as the forwarding step needs it: read once (it is replayed byte-identical
 * on every attempt) within the size limit, recognised as JSON, and rewritten only where an
 * upstream maps the client's model name to its own. (A limited client key's model check is
 * `model_limit.ts`.)
 */

import { ProxyError } from "../errors.ts";
import type { Candidate } from "../plugin.ts";
import { findTopLevel, replaceValue } from "./json_scan.ts";

const encoder = new TextEncoder();

function tooLarge(max: number): ProxyError {
  return new ProxyError(`Request body is larger than ${max} bytes`, {
    status: 413,
    type: "invalid_request_error",
    code: "request_too_large",
  });
}

/**
 * Reads the request body once (it is replayed on every attempt), never holding more than the
 * size limit: a declared `Content-Length` over the limit is refused before a byte is read, and a
 * body without one (chunked) is refused as soon as it passes the limit, while the client may
 * still be sending.
 * @param req the client's request
 * @param max the largest body accepted, in bytes
 * @returns the bytes, or null for a request without a body
 * @throws {ProxyError} 413 when the body is larger than `max`
 */
export async function readBody(req: Request, max: number): Promise<Uint8Array<ArrayBuffer> | null> {
  if (req.method === "GET" || req.method === "HEAD") return null;
  const declared = req.headers.get("content-length");
  // `req.body` is touched only without a declared length: reading it builds a JS stream and
  // loses the native fast path
  if (declared === null) return await readUpTo(req.body, max);
  if (Number(declared) > max) throw tooLarge(max);
  const body = new Uint8Array(await req.arrayBuffer());
  if (body.length > max) throw tooLarge(max);
  return body;
}

/**
 * Reads a body of unknown length, cancelling it once it passes `max`. The bytes go into one
 * buffer that doubles as needed (never past `max`): nothing is kept per chunk, since Deno's
 * server hands each chunk over in a buffer of its own (64 KiB, even for one byte), and a client
 * chooses its chunk sizes.
 */
async function readUpTo(
  stream: ReadableStream<Uint8Array> | null,
  max: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  if (stream === null) return null;
  const reader = stream.getReader();
  let buf = new Uint8Array(0);
  let size = 0;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    const end = size + r.value.length;
    if (end > max) {
      // the rest stays unread: the answer goes out now
      reader.cancel().catch(() => {});
      throw tooLarge(max);
    }
    if (end > buf.length) {
      const grown = new Uint8Array(Math.min(max, Math.max(end, 2 * buf.length, 16 * 1024)));
      grown.set(buf.subarray(0, size));
      buf = grown;
    }
    buf.set(r.value, size);
    size = end;
  }
  if (size === 0) return null;
  return size === buf.length ? buf : buf.slice(0, size);
}

/**
 * Whether a request body is JSON: by its content type, or, for the types `curl -d` and
 * careless clients send (`x-www-form-urlencoded`, `text/plain`), by a leading `{`.
 * @param contentType the request's content type
 * @param body the request body
 */
export function isJson(contentType: string | null, body: Uint8Array): boolean {
  if (contentType === null || contentType.includes("json")) return true;
  if (!contentType.includes("x-www-form-urlencoded") && !contentType.startsWith("text/plain")) {
    return false;
  }
  let i = 0;
  while (i < body.length && (body[i] === 32 || body[i] === 10 || body[i] === 13 || body[i] === 9)) {
    i++;
  }
  return body[i] === 123;
}

/**
 * The body one upstream receives: the client's bytes, or, when the upstream maps the client's
 * model to another name, the same text with only the model's value replaced. Computed once per
 * upstream and request.
 * @param c the candidate about to be tried
 * @param body the client's body
 * @param text the body as text, when it is JSON
 * @param model the client's model
 * @param cache mapped bodies by upstream name, for this request (none: nothing is kept, as on a
 *   first attempt, which most requests never follow)
 * @returns the bytes to send
 */
export function bodyFor(
  c: Candidate,
  body: Uint8Array<ArrayBuffer> | null,
  text: string | undefined,
  model: string | undefined,
  cache?: Map<string, Uint8Array<ArrayBuffer> | null>,
): Uint8Array<ArrayBuffer> | null {
  if (text === undefined || model === undefined) return body;
  const models = c.upstream.config.models;
  // own names only: a client's "constructor" or "toString" is not a mapping
  const mapped = Object.hasOwn(models, model) ? models[model] : undefined;
  if (mapped === undefined || mapped === model) return body;
  let out = cache?.get(c.upstream.name);
  if (out === undefined) {
    const span = findTopLevel(text, "model");
    out = span === undefined ? body : encoder.encode(replaceValue(text, span, mapped));
    cache?.set(c.upstream.name, out);
  }
  return out;
}
