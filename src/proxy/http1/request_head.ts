/**
 * @module
 * The request head of the upstream HTTP/1.1 client (RFC 9112 §3, §5): the request line, the
 * caller's fields (checked: no field can split the request), `host` and `content-length`
 * written by the client itself, and `accept` / `user-agent` as `fetch` sends them when the
 * request has none. Written as bytes, one per character.
 */

import { trimOws } from "./response_head.ts";

const encoder = new TextEncoder();
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\r\n\0]/;
const NON_ASCII = /[\u0080-\uffff]/;
const AUTHORITY_END = /[/?#]/g;
/** Methods `fetch` writes in upper case whatever case they come in. */
const NORMALIZED = /^(?:delete|get|head|options|post|put)$/i;
/** A request target that can go on the request line as it is (visible ASCII). */
const PLAIN_TARGET = /^[\x21-\x7e]*$/;
/** Request fields this client writes itself (hop-by-hop, or framing it decides). */
const OWN_HEADERS = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "expect",
]);
const USER_AGENT = `user-agent: Deno/${Deno.version.deno}\r\n`;

/** Header fields as `fetch` takes them. */
export type HeaderInit = Headers | [string, string][] | Record<string, string>;

/**
 * Builds a request head.
 * @param host the `host` field's value
 * @param url the absolute URL (its path and query become the target; a fragment is dropped)
 * @param method the method (a token)
 * @param headers the caller's fields
 * @param bodyLength the body's length, or -1 for no body
 * @returns the head, ending in an empty line
 * @throws {TypeError} for an invalid method, field name or value
 */
export function requestHead(
  host: string,
  url: string,
  method: string,
  headers: HeaderInit | undefined,
  bodyLength: number,
): string {
  if (!TOKEN.test(method)) throw new TypeError("Invalid method");
  if (NORMALIZED.test(method)) method = method.toUpperCase();
  // the path starts where the authority ends: at the first "/", "?" or "#" after "//"
  AUTHORITY_END.lastIndex = url.indexOf("//") + 2;
  const end = AUTHORITY_END.exec(url)?.index ?? -1;
  const pathed = end >= 0 && url[end] === "/";
  let target = pathed ? url.slice(end) : "";
  const hash = target.indexOf("#");
  if (hash >= 0) target = target.slice(0, hash);
  // no path (`http://h?x=1`), or anything but visible ASCII: the URL parser decides
  if (!pathed || !PLAIN_TARGET.test(target)) {
    const u = new URL(url);
    target = u.pathname + u.search;
  }
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  let accept = false;
  let agent = false;
  const add = (name: string, value: string) => {
    const k = name.toLowerCase();
    if (OWN_HEADERS.has(k)) return;
    if (!TOKEN.test(k) || BAD_VALUE.test(value)) throw new TypeError(`Invalid header: ${k}`);
    if (k === "accept") accept = true;
    else if (k === "user-agent") agent = true;
    head += `${k}: ${trimOws(value)}\r\n`;
  };
  if (headers instanceof Headers) headers.forEach((v, k) => add(k, v));
  else if (Array.isArray(headers)) { for (const [k, v] of headers) add(k, v); }
  else if (headers !== undefined) { for (const k in headers) add(k, headers[k]!); }
  // what `fetch` sends when the request has none (some providers refuse a request without)
  if (!accept) head += "accept: */*\r\n";
  if (!agent) head += USER_AGENT;
  // as `fetch`: a length for a body, and 0 for a POST or PUT without one
  if (bodyLength >= 0 || method === "POST" || method === "PUT") {
    head += `content-length: ${Math.max(0, bodyLength)}\r\n`;
  }
  return head + "\r\n";
}

/**
 * The whole request message: the head as bytes, one per character (header values are byte
 * strings: a client's UTF-8 `Café` arrives from `Deno.serve` as the characters of its bytes and
 * must leave as those bytes, as `fetch` sends them), then the body.
 * @param head from {@linkcode requestHead}
 * @param body the body, if any
 * @returns the bytes to write
 * @throws {TypeError} for a character above U+00FF (not a byte)
 */
export function requestMessage(head: string, body: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(head.length + (body?.length ?? 0));
  if (!NON_ASCII.test(head)) encoder.encodeInto(head, out);
  else {
    for (let i = 0; i < head.length; i++) {
      const c = head.charCodeAt(i);
      if (c > 0xff) {
        throw new TypeError("Invalid header value: characters must be bytes");
      }
      out[i] = c;
    }
  }
  if (body !== null) out.set(body, head.length);
  return out;
}
