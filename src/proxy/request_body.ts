/**
 * @module
 * The request body as the forwarding step needs it: read once (it is replayed byte-identical
 * on every attempt) within the size limit, recognised as JSON, and rewritten only where an
 * upstream maps the client's model name to its own.
 */

import { ProxyError } from "../errors.ts";
import type { Candidate } from "../plugin.ts";
import { findTopLevel, replaceValue } from "./json_scan.ts";

const encoder = new TextEncoder();

/**
 * Reads the request body once (it is replayed on every attempt), enforcing the size limit.
 * @param req the client's request
 * @param max the largest body accepted, in bytes
 * @returns the bytes, or null for a request without a body
 * @throws {ProxyError} 413 when the body is larger than `max`
 */
export async function readBody(req: Request, max: number): Promise<Uint8Array<ArrayBuffer> | null> {
  // `req.body` is never touched: reading it builds a JS stream and loses the native fast path
  if (req.method === "GET" || req.method === "HEAD") return null;
  const declared = Number(req.headers.get("content-length") ?? "0");
  const tooLarge = () =>
    new ProxyError(`Request body is larger than ${max} bytes`, {
      status: 413,
      type: "invalid_request_error",
      code: "request_too_large",
    });
  if (declared > max) throw tooLarge();
  const body = new Uint8Array(await req.arrayBuffer());
  if (body.length > max) throw tooLarge();
  return body.length === 0 && !req.headers.has("content-length") ? null : body;
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
  const mapped = c.upstream.config.models[model];
  if (mapped === undefined || mapped === model) return body;
  let out = cache?.get(c.upstream.name);
  if (out === undefined) {
    const span = findTopLevel(text, "model");
    out = span === undefined ? body : encoder.encode(replaceValue(text, span, mapped));
    cache?.set(c.upstream.name, out);
  }
  return out;
}
