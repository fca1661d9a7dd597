/**
 * @module
 * The upstream HTTP client: HTTP/1.1 over `Deno.connect` / `Deno.connectTls`, with keep-alive
 * connections pooled per origin, behind `fetch`'s signature (a request URL and init in, a
 * `Response` out). Deno's own `fetch` costs more CPU per request than everything else a
 * balancer does; this client writes the request in one piece, parses the answer's head itself,
 * and hands a body that came whole with its head over as bytes (a streamed body, chunked or
 * not, as a byte stream read as it arrives). It never follows redirects.
 *
 * Requests it does not take are passed to `fetch`: requests that would follow redirects (any
 * `redirect` but `"manual"`), other schemes, URLs with credentials, bodies that are not bytes or
 * text, and every request while `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` is set (`fetch`
 * honours those) or `LLM_BALANCE_HTTP_CLIENT=fetch`.
 */

/** Options of {@linkcode Http1Client}. */
export interface Http1Options {
  /** Idle connections are closed after this long. @default 60000 */
  idleTimeoutMs?: number;
  /** Idle connections kept per origin. @default 256 */
  maxIdlePerOrigin?: number;
  /** Largest response head accepted. @default 65536 */
  maxHeadBytes?: number;
  /** Extra root certificates (PEM) for `https` upstreams. @default the system's and Deno's */
  caCerts?: string[];
  /**
   * Opens a connection (TLS already negotiated for `tls`).
   * @default `Deno.connect`, or `Deno.connectTls` with ALPN `http/1.1` and a completed handshake
   */
  dial?: (to: { hostname: string; port: number; tls: boolean }) => Promise<Deno.Conn>;
  /** What requests this client does not take go to. @default globalThis.fetch */
  fallback?: typeof fetch;
  /** Whether every request goes to `fallback`. @default {@linkcode fetchPreferred} */
  useFallback?: boolean;
}

interface Origin {
  key: string;
  hostname: string;
  port: number;
  tls: boolean;
  /** The Host header's value. */
  host: string;
  /** Until when `fetch` takes this origin's requests (after a failed connect). */
  fetchUntil: number;
}

/** One connection and what has been read from it but not yet used. */
interface Connection {
  conn: Deno.Conn;
  /** Bytes read past the previous response (kept for the next read). */
  buf: Uint8Array<ArrayBuffer>;
  start: number;
  end: number;
  idleSince: number;
  reused: boolean;
  /** The last read filled the buffer (the next one gets a bigger buffer). */
  full: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\r\n\0]/;
const NON_ASCII = /[\u0080-\uffff]/;
/** A request target that can go on the request line as it is (visible ASCII). */
const PLAIN_TARGET = /^[\x21-\x7e]*$/;
const ORIGIN = /^(https?):\/\/([^/?#]*)/i;
/** Request headers this client writes itself. */
const OWN_HEADERS = new Set(["host", "content-length", "transfer-encoding", "connection"]);
/** A connection's first read buffer; it doubles while reads fill it, up to 64 KiB. */
const READ_BYTES = 4 * 1024;
const USER_AGENT = `user-agent: Deno/${Deno.version.deno}\r\n`;
const MAX_READ_BYTES = 64 * 1024;

/** The answer broke the protocol, or the connection failed before it was complete. */
export class UpstreamProtocolError extends TypeError {
  /** @param message what went wrong */
  constructor(message: string) {
    super(message);
    this.name = "UpstreamProtocolError";
  }
}

/** No connection within the connect limit (`connectTimeoutMs`). */
export class ConnectTimeoutError extends UpstreamProtocolError {
  /** @param message what went wrong */
  constructor(message: string) {
    super(message);
    this.name = "ConnectTimeoutError";
  }
}

/** `fetch`'s init, and how long a new connection may take to open (0: no limit). */
export interface Http1Init extends RequestInit {
  connectTimeoutMs?: number;
}

/**
 * Whether `fetch` should take every request: a proxy is configured in the environment
 * (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, any case), or `LLM_BALANCE_HTTP_CLIENT=fetch` asks
 * for it.
 */
export function fetchPreferred(): boolean {
  try {
    if (Deno.env.get("LLM_BALANCE_HTTP_CLIENT") === "fetch") return true;
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]) {
      if (Deno.env.get(name) || Deno.env.get(name.toLowerCase())) return true;
    }
    return false;
  } catch {
    // no permission to read the environment: a proxy could be set, so let fetch decide
    return true;
  }
}

/** An HTTP/1.1 client with pooled keep-alive connections and `fetch`'s signature. */
export class Http1Client {
  readonly #idle = new Map<string, Connection[]>();
  readonly #origins = new Map<string, Origin>();
  readonly #idleTimeoutMs: number;
  readonly #maxIdle: number;
  readonly #maxHead: number;
  readonly #fallback: typeof fetch;
  readonly #useFallback: boolean;
  readonly #dial: (to: { hostname: string; port: number; tls: boolean }) => Promise<Deno.Conn>;
  #lastSweep = 0;
  #closed = false;

  /** @param options pool limits and the fallback */
  constructor(options: Http1Options = {}) {
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.#maxIdle = options.maxIdlePerOrigin ?? 256;
    this.#maxHead = options.maxHeadBytes ?? 64 * 1024;
    this.#fallback = options.fallback ?? globalThis.fetch;
    this.#useFallback = options.useFallback ?? fetchPreferred();
    this.#dial = options.dial ?? ((to) => dial(to, options.caCerts));
  }

  /** Idle connections held, over all origins. */
  get idleConnections(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /** `fetch`'s signature; see the module's description for what it takes. */
  readonly fetch = (input: string | URL | Request, init: Http1Init = {}): Promise<Response> => {
    // `fetch` follows redirects unless told not to: such requests (health probes) go to it
    if (this.#useFallback || typeof input !== "string" || init.redirect !== "manual") {
      return this.#fallback(input, init);
    }
    const body = init.body ?? null;
    if (body !== null && typeof body !== "string" && !(body instanceof Uint8Array)) {
      return this.#fallback(input, init);
    }
    const origin = this.#origin(input);
    if (origin === undefined || (origin.fetchUntil > 0 && origin.fetchUntil > Date.now())) {
      return this.#fallback(input, init);
    }
    return this.#request(origin, input, init, body);
  };

  /** Closes every idle connection; requests in flight finish on theirs, which then close. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) for (const c of list) safeClose(c.conn);
    this.#idle.clear();
  }

  #origin(url: string): Origin | undefined {
    const m = ORIGIN.exec(url);
    if (m === null) return undefined;
    const key = m[0]!.toLowerCase();
    let o = this.#origins.get(key);
    if (o === undefined) {
      if (m[2]!.includes("@") || m[2] === "") return undefined;
      let parsed: URL;
      try {
        parsed = new URL(m[0]!);
      } catch {
        return undefined;
      }
      const tls = parsed.protocol === "https:";
      o = {
        key,
        hostname: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
        port: parsed.port ? Number(parsed.port) : tls ? 443 : 80,
        tls,
        host: parsed.host,
        fetchUntil: 0,
      };
      this.#origins.set(key, o);
    }
    return o;
  }

  async #request(
    origin: Origin,
    url: string,
    init: Http1Init,
    body: string | Uint8Array | null,
  ): Promise<Response> {
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    const bytes = typeof body === "string" ? encoder.encode(body) : body;
    const head = requestHead(origin, url, init, bytes);
    // one byte per character of the head (see writeHead)
    const message = new Uint8Array(head.length + (bytes?.length ?? 0));
    let size = writeHead(head, message);
    if (bytes !== null) {
      message.set(bytes, size);
      size += bytes.length;
    }
    const method = (init.method ?? "GET").toUpperCase();
    for (let attempt = 0;; attempt++) {
      let c: Connection;
      try {
        c = await this.#checkout(origin, signal, init.connectTimeoutMs ?? 0);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof ConnectTimeoutError) throw err;
        // `Deno.connect` tries only the first address a name resolves to (e.g. `localhost` to
        // ::1 while the server listens on 127.0.0.1); `fetch` tries them all: it takes this
        // origin for a while, and answers this request (or fails it the same way)
        origin.fetchUntil = Date.now() + this.#idleTimeoutMs;
        return this.#fallback(url, init);
      }
      const onAbort = () => safeClose(c.conn);
      signal?.addEventListener("abort", onAbort);
      let gotBytes = false;
      try {
        await writeAll(c.conn, message.subarray(0, size));
        const parsed = await this.#readHead(c, () => gotBytes = true);
        return this.#respond(origin, c, parsed, method, signal, onAbort);
      } catch (err) {
        signal?.removeEventListener("abort", onAbort);
        safeClose(c.conn);
        if (signal?.aborted) throw signal.reason;
        // a kept-alive connection the server had already closed: once more on a new one
        if (c.reused && !gotBytes && attempt === 0) continue;
        throw err instanceof UpstreamProtocolError
          ? err
          : new UpstreamProtocolError(`error sending request for url (${url}): ${message_(err)}`);
      }
    }
  }

  async #checkout(
    origin: Origin,
    signal: AbortSignal | undefined,
    connectTimeoutMs: number,
  ): Promise<Connection> {
    const list = this.#idle.get(origin.key);
    const now = Date.now();
    // the most recently used first: the likeliest to be still open
    for (let c = list?.pop(); c !== undefined; c = list?.pop()) {
      if (now - c.idleSince < this.#idleTimeoutMs) {
        c.reused = true;
        return c;
      }
      safeClose(c.conn);
    }
    const connect = this.#dial(origin);
    let conn: Deno.Conn;
    if (signal === undefined && !(connectTimeoutMs > 0)) conn = await connect;
    else {
      // a connect that never completes is cut by the caller's signal or the connect limit
      let onAbort: (() => void) | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cut = new Promise<never>((_, reject) => {
        if (signal !== undefined) {
          onAbort = () => reject(signal.reason);
          signal.addEventListener("abort", onAbort, { once: true });
        }
        if (connectTimeoutMs > 0) {
          timer = setTimeout(() =>
            reject(
              new ConnectTimeoutError(
                `connect timeout: no connection to ${origin.host} within ${connectTimeoutMs} ms`,
              ),
            ), connectTimeoutMs);
        }
      });
      try {
        conn = await Promise.race([connect, cut]);
      } catch (err) {
        connect.then((late) => safeClose(late), () => {});
        throw err;
      } finally {
        if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
        clearTimeout(timer);
      }
    }
    return {
      conn,
      buf: new Uint8Array(READ_BYTES),
      start: 0,
      end: 0,
      idleSince: 0,
      reused: false,
      full: false,
    };
  }

  #release(origin: Origin, c: Connection): void {
    const now = Date.now();
    if (this.#closed) {
      safeClose(c.conn);
      return;
    }
    c.idleSince = now;
    let list = this.#idle.get(origin.key);
    if (list === undefined) this.#idle.set(origin.key, list = []);
    if (list.length >= this.#maxIdle) safeClose(c.conn);
    else list.push(c);
    if (now - this.#lastSweep > this.#idleTimeoutMs) this.#sweep(now);
  }

  /** Closes connections idle for longer than the idle timeout. */
  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const list of this.#idle.values()) {
      let kept = 0;
      for (const c of list) {
        if (now - c.idleSince < this.#idleTimeoutMs) list[kept++] = c;
        else safeClose(c.conn);
      }
      list.length = kept;
    }
  }

  /** Reads one response head (skipping 1xx answers); leaves what follows it in the buffer. */
  async #readHead(c: Connection, onBytes: () => void): Promise<Head> {
    for (;;) {
      // bytes after c.start already scanned (fill may move the buffer's contents)
      let scanned = 0;
      for (;;) {
        const at = headEnd(c.buf, c.start + scanned, c.end);
        if (at >= 0) {
          const head = parseHead(c.buf.subarray(c.start, at));
          c.start = at + 4;
          if (head.status >= 100 && head.status < 200 && head.status !== 101) break;
          return head;
        }
        if (c.end - c.start > this.#maxHead) {
          throw new UpstreamProtocolError("upstream response head is too large");
        }
        scanned = Math.max(0, c.end - c.start - 3);
        if (!(await fill(c))) {
          throw new UpstreamProtocolError(
            c.end > c.start
              ? "upstream closed the connection in the middle of the response head"
              : "upstream closed the connection before answering",
          );
        }
        onBytes();
      }
    }
  }

  #respond(
    origin: Origin,
    c: Connection,
    head: Head,
    method: string,
    signal: AbortSignal | undefined,
    onAbort: () => void,
  ): Response {
    const { status } = head;
    if (status < 200 || status > 599) {
      throw new UpstreamProtocolError(`upstream answered with status ${status}`);
    }
    let framing: Framing;
    const noBody = method === "HEAD" || status === 204 || status === 304;
    if (noBody) framing = { kind: "none" };
    else if (head.chunked) framing = { kind: "chunked" };
    else if (head.length !== undefined) framing = { kind: "length", left: head.length };
    else framing = { kind: "close" };
    const keepAlive = head.keepAlive && framing.kind !== "close";
    const done = (reusable: boolean) => {
      signal?.removeEventListener("abort", onAbort);
      if (reusable && keepAlive && c.start === c.end) this.#release(origin, c);
      else safeClose(c.conn);
    };
    let body: BodyInit | null = null;
    if (framing.kind === "none" || (framing.kind === "length" && framing.left === 0)) {
      done(true);
    } else if (framing.kind === "length" && c.end - c.start >= framing.left) {
      // the whole body came with the head: bytes, no stream
      body = c.buf.slice(c.start, c.start + framing.left);
      c.start += framing.left;
      done(true);
    } else {
      body = bodyStream(c, framing, done);
    }
    const res = new Response(body, { status, statusText: head.statusText });
    const headers = res.headers;
    for (let i = 0; i < head.fields.length; i += 2) {
      headers.append(head.fields[i]!, head.fields[i + 1]!);
    }
    return res;
  }
}

/** The head of an answer. */
interface Head {
  status: number;
  statusText: string;
  /** Names (lower case) and values, alternating. */
  fields: string[];
  length: number | undefined;
  chunked: boolean;
  keepAlive: boolean;
}

type Framing =
  | { kind: "none" }
  | { kind: "close" }
  | { kind: "length"; left: number }
  | { kind: "chunked" };

/** Opens a TCP connection, or a TLS one with its handshake done (ALPN `http/1.1`). */
async function dial(
  to: { hostname: string; port: number; tls: boolean },
  caCerts: string[] | undefined,
): Promise<Deno.Conn> {
  if (!to.tls) {
    const conn = await Deno.connect({ hostname: to.hostname, port: to.port });
    conn.setNoDelay(true);
    return conn;
  }
  const tls = await Deno.connectTls({
    hostname: to.hostname,
    port: to.port,
    alpnProtocols: ["http/1.1"],
    ...(caCerts ? { caCerts } : {}),
  });
  // handshake failures (a certificate, an upstream that speaks only HTTP/2) surface here, as
  // connect failures, and not on the first write
  try {
    await tls.handshake();
  } catch (err) {
    safeClose(tls);
    throw err;
  }
  return tls;
}

function requestHead(
  origin: Origin,
  url: string,
  init: RequestInit,
  body: Uint8Array | null,
): string {
  const method = init.method ?? "GET";
  if (!TOKEN.test(method)) throw new TypeError(`Invalid method: ${method}`);
  let target = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  if (!target.startsWith("/")) target = "/";
  const hash = target.indexOf("#");
  if (hash >= 0) target = target.slice(0, hash);
  if (!PLAIN_TARGET.test(target)) {
    const u = new URL(url);
    target = u.pathname + u.search;
  }
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${origin.host}\r\n`;
  let accept = false;
  let agent = false;
  const add = (name: string, value: string) => {
    const k = name.toLowerCase();
    if (OWN_HEADERS.has(k)) return;
    if (!TOKEN.test(k) || BAD_VALUE.test(value)) {
      throw new TypeError(`Invalid header: ${k}`);
    }
    if (k === "accept") accept = true;
    else if (k === "user-agent") agent = true;
    head += `${k}: ${value.trim()}\r\n`;
  };
  const h = init.headers;
  if (h instanceof Headers) h.forEach((v, k) => add(k, v));
  else if (Array.isArray(h)) { for (const [k, v] of h) add(k!, v!); }
  else if (h !== undefined) {
    const rec = h as Record<string, string>;
    for (const k in rec) add(k, rec[k]!);
  }
  // what `fetch` sends when the request has none (some providers refuse a request without)
  if (!accept) head += "accept: */*\r\n";
  if (!agent) head += USER_AGENT;
  if (body !== null || (method !== "GET" && method !== "HEAD")) {
    head += `content-length: ${body?.length ?? 0}\r\n`;
  }
  return head + "\r\n";
}

/**
 * Writes a request head as bytes, one per character: header values are byte strings (a client's
 * UTF-8 `Café` arrives from `Deno.serve` as the characters of its bytes and must leave as those
 * bytes, as `fetch` sends them).
 * @returns the bytes written
 * @throws {TypeError} for a character above U+00FF (not a byte)
 */
function writeHead(head: string, out: Uint8Array): number {
  if (!NON_ASCII.test(head)) return encoder.encodeInto(head, out).written;
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if (c > 0xff) throw new TypeError("Invalid header value: characters must be bytes");
    out[i] = c;
  }
  return head.length;
}

/** Index of the `\r\n\r\n` ending a head in `buf[from, end)`, or -1. */
function headEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = indexOfCrlf(buf, from, end); i >= 0; i = indexOfCrlf(buf, i + 2, end)) {
    if (buf[i + 2] === 13 && buf[i + 3] === 10 && i + 3 < end) return i;
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

function parseHead(bytes: Uint8Array): Head {
  const text = latin1(bytes);
  const lines = text.split("\r\n");
  const statusLine = lines[0]!;
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (m === null) {
    throw new UpstreamProtocolError(`malformed status line: ${statusLine.slice(0, 80)}`);
  }
  const http11 = m[1] === "1";
  const fields: string[] = [];
  let length: number | undefined;
  let chunked = false;
  let keepAlive = http11;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new UpstreamProtocolError(`malformed header line: ${line.slice(0, 80)}`);
    const name = line.slice(0, colon).toLowerCase();
    if (!TOKEN.test(name)) throw new UpstreamProtocolError(`malformed header name: ${name}`);
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") {
      if (!/^\d+$/.test(value)) throw new UpstreamProtocolError(`bad content-length: ${value}`);
      const n = Number(value);
      if (length !== undefined && length !== n) {
        throw new UpstreamProtocolError("conflicting content-length headers");
      }
      length = n;
    } else if (name === "transfer-encoding") {
      const codings = value.toLowerCase().split(",").map((s) => s.trim());
      if (codings.at(-1) === "chunked") chunked = true;
      else throw new UpstreamProtocolError(`unsupported transfer-encoding: ${value}`);
    } else if (name === "connection") {
      const tokens = value.toLowerCase().split(",").map((s) => s.trim());
      if (tokens.includes("close")) keepAlive = false;
      else if (tokens.includes("keep-alive")) keepAlive = true;
    }
    fields.push(name, value);
  }
  if (chunked) length = undefined;
  const statusText = m[3] ?? "";
  return {
    status: Number(m[2]),
    // a reason phrase `Response` would refuse is left out
    statusText: /^[\t\x20-\x7e\x80-\xff]*$/.test(statusText) ? statusText : "",
    fields,
    length,
    chunked,
    keepAlive,
  };
}

/** Reads more bytes into the connection's buffer; false at the end of the connection. */
async function fill(c: Connection): Promise<boolean> {
  if (c.start === c.end) c.start = c.end = 0;
  // a full buffer (a head or chunk line longer than it, or a fast body) grows to the next size
  if (c.end === c.buf.length || (c.full && c.buf.length < MAX_READ_BYTES)) {
    const live = c.end - c.start;
    const next = new Uint8Array(c.buf.length * 2);
    next.set(c.buf.subarray(c.start, c.end), 0);
    c.buf = next;
    c.start = 0;
    c.end = live;
  }
  const room = c.buf.length - c.end;
  const n = await c.conn.read(c.buf.subarray(c.end));
  if (n === null) return false;
  c.end += n;
  c.full = n === room;
  return true;
}

/**
 * A response body read from the connection as it arrives: a fixed length, chunks (decoded), or
 * everything until the upstream closes. `done(reusable)` is called once, at the end, on a
 * failure or on cancel.
 */
function bodyStream(
  c: Connection,
  framing: Framing,
  done: (reusable: boolean) => void,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let finished = false;
  const finish = (reusable: boolean) => {
    if (finished) return;
    finished = true;
    done(reusable);
  };
  /** Bytes left in the current chunk (chunked), or in the body (length). */
  let left = framing.kind === "length" ? framing.left : 0;
  /** Where a chunked body is: at a size line, inside data, or after the last chunk. */
  let state: "size" | "data" | "crlf" | "trailer" = "size";
  const take = (n: number): Uint8Array<ArrayBuffer> => {
    const out = c.buf.slice(c.start, c.start + n);
    c.start += n;
    return out;
  };
  /** Decodes what the buffer holds; returns data bytes, null when more input is needed. */
  const decodeChunked = (): Uint8Array<ArrayBuffer> | null | "end" => {
    for (;;) {
      if (state === "data") {
        const avail = Math.min(left, c.end - c.start);
        if (avail === 0) return null;
        left -= avail;
        if (left === 0) state = "crlf";
        return take(avail);
      }
      const lineEnd = indexOfCrlf(c.buf, c.start, c.end);
      if (lineEnd < 0) {
        if (c.end - c.start > 4096) throw new UpstreamProtocolError("chunk size line too long");
        return null;
      }
      const line = decoder.decode(c.buf.subarray(c.start, lineEnd));
      c.start = lineEnd + 2;
      if (state === "crlf") {
        if (line !== "") throw new UpstreamProtocolError("malformed chunk: no CRLF after data");
        state = "size";
      } else if (state === "size") {
        const size = line.split(";")[0]!.trim();
        if (!/^[0-9a-fA-F]{1,12}$/.test(size)) {
          throw new UpstreamProtocolError(`malformed chunk size: ${size.slice(0, 20)}`);
        }
        left = parseInt(size, 16);
        state = left === 0 ? "trailer" : "data";
      } else if (line === "") {
        return "end";
      }
      // trailer fields are read and dropped
    }
  };
  const end = (controller: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>) => {
    finish(true);
    controller.close();
  };
  // a plain stream of the chunks as read (each a fresh copy of what arrived), pulled one read at
  // a time: nothing is read ahead of the consumer
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      try {
        for (;;) {
          if (framing.kind === "chunked") {
            const out = decodeChunked();
            if (out === "end") return end(controller);
            if (out !== null) {
              controller.enqueue(out);
              return;
            }
          } else if (c.end > c.start) {
            const n = framing.kind === "length" ? Math.min(left, c.end - c.start) : c.end - c.start;
            left -= n;
            controller.enqueue(take(n));
            if (framing.kind === "length" && left === 0) {
              finish(true);
              controller.close();
            }
            return;
          } else if (framing.kind === "length" && left === 0) {
            return end(controller);
          }
          if (!(await fill(c))) {
            if (framing.kind === "close") {
              finish(false);
              controller.close();
              return;
            }
            throw new UpstreamProtocolError("upstream closed the connection before the body ended");
          }
        }
      } catch (err) {
        finish(false);
        throw err instanceof UpstreamProtocolError
          ? err
          : new UpstreamProtocolError(`error reading a body from connection: ${message_(err)}`);
      }
    },
    cancel() {
      finish(false);
    },
  }, { highWaterMark: 0 });
}

/** Index of the next `\r\n` in `buf[from, end)`, or -1 (the search itself is native). */
function indexOfCrlf(buf: Uint8Array, from: number, end: number): number {
  for (let i = buf.indexOf(13, from); i >= 0 && i + 1 < end; i = buf.indexOf(13, i + 1)) {
    if (buf[i + 1] === 10) return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function safeClose(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function message_(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
