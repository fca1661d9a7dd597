/**
 * @module
 * Hostile raw upstreams for tests: TCP servers on 127.0.0.1 that read HTTP/1.1 requests and
 * answer with exactly the bytes a script writes (a late second response, a stray body, garbage,
 * a close at the wrong moment). Scripts run per request, know their connection, and can act
 * later on it; every request received is recorded with its connection, and idle connections
 * can be closed after a delay, as servers do with keep-alive connections.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLFCRLF = [13, 10, 13, 10];
const READ_BYTES = 64 * 1024;

/** The head of a request, as read (before its body). */
export interface RawRequestHead {
  /** 1-based, in the order heads arrived over the whole server. */
  readonly seq: number;
  /** The connection's id: 1-based, in the order connections were accepted. */
  readonly connection: number;
  /** 1-based position of the request on its connection. */
  readonly index: number;
  readonly method: string;
  /** The request target, e.g. `/v1/chat?x=1`. */
  readonly target: string;
  /** The request line and header lines, without the blank line that ends them. */
  readonly head: string;
  /** The header fields (names lower case; repeated fields joined by `, `). */
  readonly headers: Headers;
  /**
   * How long the connection sat idle before this request's first byte arrived: since the
   * server was done with the previous request (0 for a connection's first request).
   */
  readonly idleMs: number;
}

/** A request as recorded: its head and, when read, its body. */
export interface RawRequest extends RawRequestHead {
  /** The body (empty when not read). */
  readonly body: Uint8Array;
  /** Whether the body is read (see {@linkcode RawUpstreamOptions.readBody}). */
  readonly bodyRead: boolean;
  /** The body as UTF-8 text. */
  readonly text: string;
}

/** One accepted connection, as a script sees it. */
export interface RawConnection {
  /** 1-based, in the order connections were accepted. */
  readonly id: number;
  /** Whether the server side has closed it (or the peer did). */
  readonly closed: boolean;
  /**
   * Writes the parts in order, each as given (strings as UTF-8).
   * @returns false when the connection failed or was closed (the rest is not written)
   */
  write(...parts: (string | Uint8Array)[]): Promise<boolean>;
  /** Closes the connection at once (unread request bytes make the kernel send a reset). */
  close(): void;
  /** Sends FIN (no more bytes from the server) but keeps reading. */
  closeWrite(): Promise<void>;
  /**
   * Closes as careful servers do after an early answer: FIN, then reads and drops what the
   * client still sends until it closes or `ms` pass, then closes.
   * @param ms longest drain @default 2000
   */
  lingeringClose(ms?: number): Promise<void>;
  /**
   * Runs `action` after `ms` unless the connection or the server closed first. The server
   * waits for a running action when it closes.
   */
  later(ms: number, action: (conn: RawConnection) => void | Promise<void>): void;
}

/**
 * Answers one request. `"close"` closes the connection after it; `"keep"` (or nothing) reads
 * the next request on it. A script may also close the connection itself.
 */
export type RawScript = (
  req: RawRequest,
  conn: RawConnection,
) => void | "keep" | "close" | Promise<void | "keep" | "close">;

/** What became of a connection. */
export interface RawConnectionInfo {
  readonly id: number;
  /** Requests read on it. */
  readonly requests: number;
  /** Who ended it: the client (EOF or reset read by the server), the server, or nobody yet. */
  readonly closedBy: "client" | "server" | null;
}

/** Options of {@linkcode rawUpstream}. */
export interface RawUpstreamOptions {
  /** Called once per connection when accepted, before any request is read; may write or close. */
  onConnect?: (conn: RawConnection) => void | Promise<void>;
  /**
   * Closes a connection after it has been idle (waiting for a request, nothing buffered) for
   * this long; a function decides per connection (undefined: never).
   * @default never
   */
  idleCloseMs?: number | ((connection: number) => number | undefined);
  /**
   * When a request's body is read: `true` before the script answers, `"after"` once the script
   * has answered (an early answer on a connection that stays usable), `false` never (the
   * connection is then closed after the script: its next request cannot be found).
   * @default every body is read before the script answers
   */
  readBody?: (head: RawRequestHead) => boolean | "after";
}

/** A running raw upstream. Dispose it (or call `close()`) at the end of the test. */
export interface RawUpstream extends AsyncDisposable {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** Every request received, in order. */
  readonly requests: readonly RawRequest[];
  /** Connections accepted so far. */
  readonly connections: number;
  /** What became of each connection, by id order. */
  connectionInfo(): RawConnectionInfo[];
  /** Closes every connection that is waiting for a request (idle keep-alive connections). */
  dropIdle(): void;
  /**
   * Waits until `test` holds (checked every 5 ms).
   * @param timeoutMs longest wait @default 2000
   * @throws {Error} when it does not hold in time
   */
  until(test: () => boolean, timeoutMs?: number): Promise<void>;
  /**
   * Closes the listener and every connection, and waits for every script and action.
   * @throws {Error} when a script or action threw (its error is the cause)
   */
  close(): Promise<void>;
}

/** Growable bytes read from a connection. */
class Bytes {
  buf = new Uint8Array(READ_BYTES);
  start = 0;
  end = 0;

  get length(): number {
    return this.end - this.start;
  }

  view(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }

  /** Room for at least `n` more bytes at the end. */
  room(n: number): Uint8Array {
    if (this.start === this.end) this.start = this.end = 0;
    if (this.buf.length - this.end < n) {
      const live = this.length;
      if (this.buf.length - live >= n) this.buf.copyWithin(0, this.start, this.end);
      else {
        const next = new Uint8Array(Math.max(this.buf.length * 2, live + n));
        next.set(this.view());
        this.buf = next;
      }
      this.start = 0;
      this.end = live;
    }
    return this.buf.subarray(this.end);
  }

  take(n: number): Uint8Array {
    const out = this.buf.slice(this.start, this.start + n);
    this.start += n;
    return out;
  }
}

function indexOf(bytes: Uint8Array, pattern: number[], from = 0): number {
  for (let i = bytes.indexOf(pattern[0]!, from); i >= 0; i = bytes.indexOf(pattern[0]!, i + 1)) {
    if (i + pattern.length > bytes.length) return -1;
    let all = true;
    for (let j = 1; j < pattern.length; j++) {
      if (bytes[i + j] !== pattern[j]) {
        all = false;
        break;
      }
    }
    if (all) return i;
  }
  return -1;
}

/** The end of a connection's reading: the peer closed or reset it, or the server closed it. */
class Ended extends Error {}

/**
 * Starts a raw upstream on 127.0.0.1 (a free port) answering each request with `script`.
 * @param script answers one request
 * @param options connection hooks, idle closing, body reading
 * @returns the running upstream
 */
export function rawUpstream(script: RawScript, options: RawUpstreamOptions = {}): RawUpstream {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const requests: RawRequest[] = [];
  const infos: { id: number; requests: number; closedBy: "client" | "server" | null }[] = [];
  /** Open connections, and how to close each. */
  const live = new Map<Deno.Conn, () => void>();
  /** Connections waiting for a request. */
  const idle = new Set<Deno.Conn>();
  const tasks = new Set<Promise<unknown>>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let accepted = 0;
  let closing = false;

  /** What scripts and actions threw: reported by `close()`. */
  const failures: unknown[] = [];
  const track = (p: Promise<unknown>) => {
    const t = p.catch((err) => void failures.push(err)).finally(() => tasks.delete(t));
    tasks.add(t);
  };

  const serve = async (conn: Deno.Conn, id: number) => {
    const info = { id, requests: 0, closedBy: null as "client" | "server" | null };
    infos.push(info);
    const bytes = new Bytes();
    let closed = false;
    const closeConn = (by: "client" | "server") => {
      if (closed) return;
      closed = true;
      info.closedBy ??= by;
      live.delete(conn);
      idle.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    };
    const read = async (): Promise<void> => {
      if (closed) throw new Ended();
      let n: number | null;
      try {
        n = await conn.read(bytes.room(READ_BYTES));
      } catch {
        n = null;
      }
      if (n === null) {
        // EOF or reset from the client, or our own close interrupting the read
        closeConn(closed ? "server" : "client");
        throw new Ended();
      }
      bytes.end += n;
    };
    const handle: RawConnection = {
      id,
      get closed() {
        return closed;
      },
      async write(...parts) {
        for (const part of parts) {
          const out = typeof part === "string" ? encoder.encode(part) : part;
          let off = 0;
          try {
            while (off < out.length) off += await conn.write(out.subarray(off));
          } catch {
            return false;
          }
        }
        return true;
      },
      close() {
        closeConn("server");
      },
      async closeWrite() {
        if (closed) return;
        info.closedBy ??= "server";
        await conn.closeWrite().catch(() => {});
      },
      async lingeringClose(ms = 2000) {
        if (closed) return;
        info.closedBy ??= "server";
        await conn.closeWrite().catch(() => {});
        const deadline = Date.now() + ms;
        const sink = new Uint8Array(READ_BYTES);
        while (!closed && Date.now() < deadline) {
          const timer = setTimeout(() => closeConn("server"), Math.max(0, deadline - Date.now()));
          timers.add(timer);
          const n = await conn.read(sink).catch(() => null);
          clearTimeout(timer);
          timers.delete(timer);
          if (n === null) break;
        }
        closeConn("server");
      },
      later(ms, action) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!closed && !closing) track(Promise.resolve(action(handle)));
        }, ms);
        timers.add(timer);
      },
    };
    live.set(conn, () => closeConn("server"));
    let lastAnswerAt = -1;
    try {
      if (options.onConnect) await options.onConnect(handle);
      for (let index = 1; !closed; index++) {
        // waiting for a request: idle, and closed after idleCloseMs if nothing arrives
        let arrivedAt = performance.now();
        if (bytes.length === 0) {
          const after = typeof options.idleCloseMs === "function"
            ? options.idleCloseMs(id)
            : options.idleCloseMs;
          idle.add(conn);
          const timer = after === undefined ? undefined : setTimeout(() => {
            if (idle.has(conn)) closeConn("server");
          }, after);
          if (timer !== undefined) timers.add(timer);
          try {
            await read();
          } finally {
            if (timer !== undefined) {
              clearTimeout(timer);
              timers.delete(timer);
            }
            idle.delete(conn);
          }
          arrivedAt = performance.now();
        }
        let end = indexOf(bytes.view(), CRLFCRLF);
        while (end < 0) {
          const scanned = Math.max(0, bytes.length - 3);
          await read();
          end = indexOf(bytes.view(), CRLFCRLF, scanned);
        }
        const head = decoder.decode(bytes.take(end));
        bytes.start += 4;
        const lines = head.split("\r\n");
        const [method = "", target = ""] = lines[0]!.split(" ");
        const headers = new Headers();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
        }
        const seen: RawRequestHead = {
          seq: requests.length + 1,
          connection: id,
          index,
          method,
          target,
          head,
          headers,
          idleMs: lastAnswerAt < 0 ? 0 : arrivedAt - lastAnswerAt,
        };
        info.requests++;
        const when = options.readBody?.(seen) ?? true;
        const record: { -readonly [K in keyof RawRequest]: RawRequest[K] } = {
          ...seen,
          body: new Uint8Array(0),
          bodyRead: when !== false,
          text: "",
        };
        // recorded before its body arrives: a request whose body never completes still counts
        requests.push(record);
        const body = async () => {
          record.body = await readBody(headers, bytes, read);
          record.text = decoder.decode(record.body);
        };
        if (when === true) await body();
        const verdict = await script(record, handle);
        if (when === "after" && !closed) await body();
        lastAnswerAt = performance.now();
        if (verdict === "close" || when === false) closeConn("server");
      }
    } catch (err) {
      if (!(err instanceof Ended)) throw err;
    } finally {
      closeConn("server");
    }
  };

  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      if (closing) {
        conn.close();
        return;
      }
      track(serve(conn, ++accepted));
    }
  })();

  const close = async () => {
    if (closing) return;
    closing = true;
    try {
      listener.close();
    } catch {
      // already closed
    }
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const closeConn of [...live.values()]) closeConn();
    await accepting;
    while (tasks.size > 0) await Promise.all([...tasks]);
    for (const timer of timers) clearTimeout(timer);
    if (failures.length > 0) {
      throw new Error(`Raw upstream script failed: ${failures[0]}`, { cause: failures[0] });
    }
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    get connections() {
      return accepted;
    },
    connectionInfo: () => infos.map((i) => ({ ...i })).sort((a, b) => a.id - b.id),
    dropIdle() {
      for (const conn of [...idle]) live.get(conn)?.();
    },
    async until(test, timeoutMs = 2000) {
      const deadline = performance.now() + timeoutMs;
      while (!test()) {
        if (performance.now() > deadline) throw new Error(`Condition not met in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Reads a request body framed by content-length or chunked (decoded). */
async function readBody(
  headers: Headers,
  bytes: Bytes,
  read: () => Promise<void>,
): Promise<Uint8Array> {
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
    const parts: Uint8Array[] = [];
    for (;;) {
      let eol = indexOf(bytes.view(), [13, 10]);
      while (eol < 0) {
        await read();
        eol = indexOf(bytes.view(), [13, 10]);
      }
      const size = parseInt(decoder.decode(bytes.take(eol)).split(";")[0]!, 16);
      bytes.start += 2;
      if (!(size > 0)) {
        // trailers until the blank line
        for (;;) {
          let end = indexOf(bytes.view(), [13, 10]);
          while (end < 0) {
            await read();
            end = indexOf(bytes.view(), [13, 10]);
          }
          bytes.start += end + 2;
          if (end === 0) return concat(parts);
        }
      }
      while (bytes.length < size + 2) await read();
      parts.push(bytes.take(size));
      bytes.start += 2;
    }
  }
  const length = Number(headers.get("content-length") ?? 0);
  while (bytes.length < length) await read();
  return bytes.take(length);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * A complete response with a content-length body.
 * @param status the status code
 * @param body the body
 * @param headers extra header lines, e.g. `["x-echo: a"]`
 * @returns the response's text
 */
export function response(status: number, body = "", headers: string[] = []): string {
  const reason = status === 200 ? "OK" : "Status";
  const extra = headers.map((h) => `${h}\r\n`).join("");
  return `HTTP/1.1 ${status} ${reason}\r\n${extra}content-length: ${
    encoder.encode(body).length
  }\r\n\r\n${body}`;
}
