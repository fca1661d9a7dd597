/**
 * @module
 * The response head of the upstream HTTP/1.1 client (RFC 9112 §4, §5, §6.3): finding its end,
 * parsing the status line and fields under real limits (size and field count, as `fetch`
 * has), and deciding how the body is framed and whether the connection may be reused. Errors
 * describe what was wrong without quoting the upstream's bytes.
 */

import { UpstreamProtocolError } from "./errors.ts";

const decoder = new TextDecoder();
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: ([^\0\r\n]*))?$/;
/** A reason phrase `Response` takes. */
const REASON = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Characters no field value may hold (CR is legal only in a line end; obs-fold is refused). */
const BAD_VALUE = /[\0\r\n]/;
const KEEP_ALIVE_TIMEOUT = /(?:^|[,;\s])timeout\s*=\s*"?(\d{1,9})/i;

/** How a response body is delimited. */
export type Framing =
  | { kind: "none" }
  | { kind: "close" }
  | { kind: "length"; length: number }
  | { kind: "chunked" };

/** A parsed response head. */
export interface ResponseHead {
  status: number;
  statusText: string;
  /** Names (lower case) and values, alternating; `content-length` dropped when chunked. */
  fields: string[];
  /** Content-Length, when the body is not chunked. */
  length: number | undefined;
  chunked: boolean;
  /** Whether the upstream lets the connection be reused (HTTP/1.1 or `keep-alive`, no `close`). */
  keepAlive: boolean;
  /** Seconds from `Keep-Alive: timeout=N`, when the upstream said. */
  keepAliveSeconds: number | undefined;
}

/** Limits of {@linkcode parseHead}. */
export interface HeadLimits {
  /** Largest head, in bytes. @default 65536 */
  maxBytes: number;
  /** Most fields. @default 100 */
  maxFields: number;
}

/**
 * Finds the end of a head in `buf[from, end)`: an empty line, CRLF or a bare LF (RFC 9112 §2.2
 * lets a recipient take a bare LF as a line end; `fetch` does).
 * @param buf the bytes read
 * @param from where to start looking
 * @param end where the bytes read end
 * @returns the index just past the empty line, or -1
 */
export function headEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = buf.indexOf(10, from); i >= 0 && i < end; i = buf.indexOf(10, i + 1)) {
    if (i + 1 < end && buf[i + 1] === 10) return i + 2;
    if (i + 2 < end && buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
  }
  return -1;
}

/** Header bytes as text, one character per byte (as `fetch` gives them). */
function latin1(bytes: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 127) {
      ascii = false;
      break;
    }
  }
  if (ascii) return decoder.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

/**
 * Checks the status line.
 * @param line the line without its end
 * @returns the protocol's minor version and the status
 * @throws {UpstreamProtocolError} when it is malformed or the status is outside 100-599
 */
function statusLine(line: string): { http11: boolean; status: number; reason: string } {
  const m = STATUS_LINE.exec(line);
  if (m === null) throw new UpstreamProtocolError("upstream sent a malformed status line");
  const status = Number(m[2]);
  if (status < 100 || status > 599) {
    throw new UpstreamProtocolError(`upstream answered with an invalid status (${m[2]})`);
  }
  return { http11: m[1] === "1", status, reason: m[3] ?? "" };
}

/**
 * Checks a field line.
 * @param line the line without its end
 * @returns the name (lower case) and the value (trimmed)
 * @throws {UpstreamProtocolError} for a missing colon, a bad name or a bad value
 */
function fieldLine(line: string): [string, string] {
  const colon = line.indexOf(":");
  if (colon <= 0) throw new UpstreamProtocolError("upstream sent a malformed header line");
  const name = line.slice(0, colon).toLowerCase();
  if (!TOKEN.test(name)) throw new UpstreamProtocolError("upstream sent a malformed header name");
  const value = trimOws(line.slice(colon + 1));
  if (BAD_VALUE.test(value)) {
    throw new UpstreamProtocolError("upstream sent an invalid header value");
  }
  return [name, value];
}

/** How far a head still arriving was checked (see {@linkcode checkPartialHead}). */
export interface PartialHead {
  /** Bytes from the head's start whose lines were checked. */
  checked: number;
  /** Complete lines checked (the status line included). */
  lines: number;
}

const HTTP_PREFIX = [72, 84, 84, 80, 47]; // "HTTP/"

/**
 * Checks the complete lines of a head that has not fully arrived, so an upstream that sends a
 * malformed head and then nothing fails at once instead of when it closes: the start must be
 * `HTTP/`, each complete line must be well-formed, a CR must be followed by LF, and the field
 * count stays within its limit. Only lines not checked before are read.
 * @param head the bytes of the head so far
 * @param state what was checked already (updated)
 * @param limits the field count limit
 * @throws {UpstreamProtocolError} for what can already be seen to be wrong
 */
export function checkPartialHead(
  head: Uint8Array,
  state: PartialHead,
  limits: Pick<HeadLimits, "maxFields">,
): void {
  const n = head.length;
  if (state.lines === 0) {
    for (let i = 0; i < HTTP_PREFIX.length && i < n; i++) {
      if (head[i] !== HTTP_PREFIX[i]) {
        throw new UpstreamProtocolError("upstream sent a malformed status line");
      }
    }
  }
  for (let lf = head.indexOf(10, state.checked); lf >= 0; lf = head.indexOf(10, state.checked)) {
    const line = stripCr(latin1(head.subarray(state.checked, lf)));
    if (state.lines === 0) statusLine(line);
    else if (line !== "") fieldLine(line);
    state.lines++;
    state.checked = lf + 1;
    if (state.lines - 1 > limits.maxFields) {
      throw new UpstreamProtocolError(
        `upstream response head has more than ${limits.maxFields} fields`,
      );
    }
  }
  // a CR not followed by LF in the line still arriving
  for (
    let cr = head.indexOf(13, state.checked);
    cr >= 0 && cr + 1 < n;
    cr = head.indexOf(13, cr + 1)
  ) {
    if (head[cr + 1] !== 10) throw new UpstreamProtocolError("upstream sent a bare CR in its head");
  }
}

/**
 * Parses a head (its bytes up to, not including, the empty line).
 * @param bytes the status line and field lines (a final empty line may be included)
 * @param limits the field count limit
 * @returns the head
 * @throws {UpstreamProtocolError} for anything malformed or over a limit
 */
export function parseHead(bytes: Uint8Array, limits: Pick<HeadLimits, "maxFields">): ResponseHead {
  const lines = latin1(bytes).split("\n");
  const { http11, status, reason } = statusLine(stripCr(lines[0]!));
  const fields: string[] = [];
  let length: number | undefined;
  let chunked = false;
  let keepAlive = http11;
  /** `Connection: close` wins over `keep-alive`, in any order. */
  let close = false;
  let keepAliveSeconds: number | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = stripCr(lines[i]!);
    if (line === "") continue; // the empty line ending the head
    const [name, value] = fieldLine(line);
    if (name === "content-length") {
      const n = contentLength(value);
      if (length !== undefined && length !== n) {
        throw new UpstreamProtocolError("upstream sent conflicting content-length headers");
      }
      length = n;
    } else if (name === "transfer-encoding") {
      const codings = value.toLowerCase().split(",").map((s) => s.trim());
      // only chunked can be decoded here: another coding (gzip, chunked) would reach the
      // client still encoded, with nothing saying so
      if (chunked || codings.length !== 1 || codings[0] !== "chunked") {
        throw new UpstreamProtocolError("upstream sent an unsupported transfer-encoding");
      }
      chunked = true;
    } else if (name === "connection") {
      const tokens = value.toLowerCase().split(",").map((s) => s.trim());
      if (tokens.includes("close")) close = true;
      else if (tokens.includes("keep-alive") && !http11) keepAlive = true;
    } else if (name === "keep-alive") {
      const t = KEEP_ALIVE_TIMEOUT.exec(value);
      if (t !== null) keepAliveSeconds = Number(t[1]);
    }
    fields.push(name, value);
    if (fields.length > limits.maxFields * 2) {
      throw new UpstreamProtocolError(
        `upstream response head has more than ${limits.maxFields} fields`,
      );
    }
  }
  if (close) keepAlive = false;
  // RFC 9112 §6.1: chunked in an HTTP/1.0 message is faulty framing: not reused
  if (chunked && !http11) keepAlive = false;
  if (chunked && length !== undefined) {
    // RFC 9112 §6.3: chunked wins; the length must not be passed on, and a message framed
    // both ways may be an attempt at response splitting: its connection is not reused
    length = undefined;
    keepAlive = false;
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] === "content-length") {
        fields.splice(i, 2);
        i -= 2;
      }
    }
  }
  return {
    status,
    statusText: REASON.test(reason) ? reason : "",
    fields,
    length,
    chunked,
    keepAlive,
    keepAliveSeconds,
  };
}

/**
 * How a body is framed (RFC 9112 §6.3).
 * @param head the response head
 * @param method the request's method
 * @returns none (HEAD, 1xx, 204, 304), chunked, a length, or until the connection closes
 */
export function framingOf(head: ResponseHead, method: string): Framing {
  const { status } = head;
  if (method === "HEAD" || status === 204 || status === 304 || status < 200) {
    return { kind: "none" };
  }
  if (head.chunked) return { kind: "chunked" };
  if (head.length !== undefined) return { kind: "length", length: head.length };
  return { kind: "close" };
}

/** A Content-Length value: digits, or a list of the same digits (RFC 9110 §8.6). */
function contentLength(value: string): number {
  let n: number | undefined;
  for (const part of value.split(",")) {
    const v = part.trim();
    if (!/^\d{1,15}$/.test(v)) {
      throw new UpstreamProtocolError("upstream sent an invalid content-length");
    }
    const k = Number(v);
    if (n !== undefined && n !== k) {
      throw new UpstreamProtocolError("upstream sent conflicting content-length values");
    }
    n = k;
  }
  if (n === undefined) throw new UpstreamProtocolError("upstream sent an invalid content-length");
  return n;
}

/**
 * Trims optional white space (space and tab only: `trim()` would also take U+00A0, which in a
 * header read one character per byte is the last byte of UTF-8 `à`).
 */
export function trimOws(value: string): string {
  let a = 0;
  let b = value.length;
  while (a < b && (value.charCodeAt(a) === 32 || value.charCodeAt(a) === 9)) a++;
  while (b > a && (value.charCodeAt(b - 1) === 32 || value.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === value.length ? value : value.slice(a, b);
}

function stripCr(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}
