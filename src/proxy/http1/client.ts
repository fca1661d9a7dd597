/**
 * @module
 * The upstream HTTP client: HTTP/1.1 over pooled keep-alive connections, behind `fetch`'s
 * signature (a URL and init in, a `Response` out). Deno's own `fetch` costs more CPU per
 * request than everything else a balancer does; this client writes the request in one piece
 * while already reading the answer, parses the head itself, and hands a body that came whole
 * with its head over as bytes (anything else as a pull stream). It never follows redirects,
 * never sends a request twice, and never lets a byte meant for one request reach another:
 * a connection is reused only when its answer ended exactly as framed, nothing followed it,
 * and nothing arrived while it was idle. What it does not take goes to `fetch`
 * ({@linkcode FetchFallback}).
 */

import { type Clock, systemClock } from "../../clock.ts";
import { Connection } from "./connection.ts";
import { bodyStream } from "./body.ts";
import { defaultDial, type Dial, dialWithin } from "./dial.ts";
import {
  ConnectError,
  ConnectTimeoutError,
  failureName,
  StaleConnectionError,
  UpstreamProtocolError,
} from "./errors.ts";
import { FetchFallback } from "./fallback.ts";
import { ConnectionPool } from "./pool.ts";
import { type HeaderInit, requestHead, requestMessage } from "./request_head.ts";
import {
  checkPartialHead,
  framingOf,
  headEnd,
  parseHead,
  type PartialHead,
  type ResponseHead,
} from "./response_head.ts";

/** Options of {@linkcode Http1Client}. */
export interface Http1Options {
  /** Idle lifetime of a connection whose upstream announces none. @default 4000 */
  idleTimeoutMs?: number;
  /** Idle connections kept per origin. @default 256 */
  maxIdlePerOrigin?: number;
  /** Largest response head accepted, in bytes. @default 65536 */
  maxHeadBytes?: number;
  /** Most fields in a response head. @default 100 */
  maxHeaderFields?: number;
  /** Extra root certificates (PEM) for `https` upstreams. @default the system's and Deno's */
  caCerts?: string[];
  /** Opens connections. @default {@linkcode defaultDial} */
  dial?: Dial;
  /** What requests this client does not take go to. @default globalThis.fetch */
  fallback?: typeof fetch;
  /** Whether every request goes to `fallback`. @default {@linkcode fetchPreferred} */
  useFallback?: boolean;
  /** Told when an origin is handed to `fetch` (its connections could not be opened). */
  onFallback?: (origin: string, reason: string, forMs: number) => void;
  /**
   * What idle lifetimes, the fallback's hold and the client's own timing are measured on (its
   * `mono()`). @default {@linkcode systemClock}
   */
  clock?: Clock;
}

/** `fetch`'s init, with what only this client reads. */
export interface Http1Init extends RequestInit {
  /** How long a new connection may take to open. @default 0 (no limit) */
  connectTimeoutMs?: number;
  /** Use a new connection, not an idle one (a retry after a stale connection). @default false */
  fresh?: boolean;
}

interface Origin {
  key: string;
  hostname: string;
  port: number;
  tls: boolean;
  /** The Host field's value. */
  host: string;
}

const encoder = new TextEncoder();
const ORIGIN = /^(https?):\/\/([^/?#]*)/i;
/** An IPv4 or IPv6 address (a name is anything else). */
const IP_LITERAL = /^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:.]*:[0-9a-f:.]*)$/i;
/**
 * A reused connection that fails before any answer within this long of the request being
 * written was closed by the upstream as the request went out (stale); later, the upstream had
 * taken the request and given up on it (a server failure).
 */
const STALE_WINDOW_MS = 1000;
/** Informational answers skipped before one gives up on an upstream sending only those. */
const MAX_INFORMATIONAL = 32;
/**
 * Bytes that reach an idle connection are seen when the event loop next polls its sockets. A
 * pooled connection idle at least this long, taken when the loop last turned (polled) longer ago
 * than this (the process was busy), first waits one turn (see {@linkcode Connection.settled}).
 * Under load the loop turns constantly and no request waits.
 */
const SETTLE_AFTER_MS = 3;
/** How long an answer may still arrive after the request could not be written whole. */
const EARLY_ANSWER_MS = 1000;

/** An HTTP/1.1 client with pooled keep-alive connections and `fetch`'s signature. */
export class Http1Client {
  readonly #pool: ConnectionPool;
  readonly #fallback: FetchFallback;
  readonly #origins = new Map<string, Origin>();
  readonly #dial: Dial;
  readonly #maxHead: number;
  readonly #limits: { maxFields: number };
  readonly #clock: Clock;
  /** When a timer last ran (the clock's `mono()`): the loop had just polled its sockets. */
  #lastTurn = 0;
  #turnTimer: ReturnType<typeof setTimeout> | undefined;

  /** @param options pool limits, head limits and the fallback */
  constructor(options: Http1Options = {}) {
    const clock = options.clock ?? systemClock;
    this.#clock = clock;
    this.#pool = new ConnectionPool({
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      ...(options.maxIdlePerOrigin !== undefined
        ? { maxIdlePerOrigin: options.maxIdlePerOrigin }
        : {}),
      clock,
    });
    this.#fallback = new FetchFallback({
      ...(options.fallback !== undefined ? { fetch: options.fallback } : {}),
      ...(options.useFallback !== undefined ? { always: options.useFallback } : {}),
      ...(options.onFallback !== undefined ? { onSwitch: options.onFallback } : {}),
      clock,
    });
    this.#maxHead = options.maxHeadBytes ?? 64 * 1024;
    this.#limits = { maxFields: options.maxHeaderFields ?? 100 };
    this.#dial = options.dial ?? defaultDial(options.caCerts);
  }

  /** Idle connections held, over all origins. */
  get idleConnections(): number {
    return this.#pool.size;
  }

  /** `fetch`'s signature; see the module's description for what it takes. */
  readonly fetch = (input: string | URL | Request, init: Http1Init = {}): Promise<Response> => {
    const fallback = this.#fallback;
    if (fallback.takesRequest(input, init)) return fallback.fetch(input, init);
    const url = input as string;
    const origin = this.#origin(url);
    if (origin === undefined || fallback.takesOrigin(origin.key)) {
      return fallback.fetch(url, init);
    }
    return this.#request(origin, url, init);
  };

  /** Closes every idle connection; requests in flight finish on theirs, which then close. */
  close(): void {
    clearTimeout(this.#turnTimer);
    this.#turnTimer = undefined;
    this.#pool.close();
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
      };
      this.#origins.set(key, o);
    }
    return o;
  }

  async #request(origin: Origin, url: string, init: Http1Init): Promise<Response> {
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    const body = init.body as string | Uint8Array | null | undefined ?? null;
    const bytes = typeof body === "string" ? encoder.encode(body) : body;
    const method = init.method ?? "GET";
    const message = requestMessage(
      requestHead(
        origin.host,
        url,
        method,
        init.headers as HeaderInit | undefined,
        bytes?.length ?? -1,
      ),
      bytes,
    );
    let c = init.fresh === true ? undefined : this.#pool.take(origin.key);
    // a connection idle for a while may have received something this process has not seen yet
    // (it was busy): one turn of the event loop shows it
    const now = this.#clock.mono();
    if (c !== undefined) this.#noteTurn();
    while (
      c !== undefined && now - c.idleSince >= SETTLE_AFTER_MS &&
      now - this.#lastTurn >= SETTLE_AFTER_MS
    ) {
      if (await c.settled()) break;
      c.close();
      c = this.#pool.take(origin.key);
    }
    if (signal?.aborted) {
      c?.close();
      throw signal.reason;
    }
    if (c === undefined) {
      let conn: Deno.Conn;
      try {
        conn = await dialWithin(this.#dial, origin, {
          signal,
          timeoutMs: init.connectTimeoutMs ?? 0,
        });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof ConnectTimeoutError) throw err;
        const failed = new ConnectError(`connect failed (${failureName(err)})`);
        // `Deno.connect` tries only the first address a name resolves to (e.g. `localhost` to
        // ::1 while the server listens on 127.0.0.1); `fetch` tries them all, and speaks HTTP/2
        // to a TLS upstream that refuses HTTP/1.1. Where it can do better it answers this
        // request, and takes the origin a while if it could; an IP address over plain TCP it
        // could not reach either
        if (!origin.tls && IP_LITERAL.test(origin.hostname)) throw failed;
        let res: Response;
        try {
          res = await this.#fallback.fetch(url, init);
        } catch {
          if (signal?.aborted) throw signal.reason;
          throw failed;
        }
        this.#fallback.switchOrigin(origin.key, failed.message);
        return res;
      }
      c = new Connection(conn);
    }
    return await this.#exchange(origin, c, message, method.toUpperCase(), signal);
  }

  /**
   * Has the next turn of the event loop noted (one timer at a time, shared by every request of
   * a turn).
   */
  #noteTurn(): void {
    if (this.#turnTimer !== undefined) return;
    this.#turnTimer = setTimeout(() => {
      this.#turnTimer = undefined;
      this.#lastTurn = this.#clock.mono();
    }, 0);
  }

  /** Writes the request while reading the answer's head; hands back the response. */
  async #exchange(
    origin: Origin,
    c: Connection,
    message: Uint8Array,
    method: string,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const onAbort = () => c.close();
    signal?.addEventListener("abort", onAbort);
    let written = false;
    let writtenAt = 0;
    let headRead = false;
    // the answer is read while the request is written: an upstream that answers early (413)
    // and closes has its answer relayed, not a reset
    let giveUp: ReturnType<typeof setTimeout> | undefined;
    writeAll(c.conn, message).then(() => {
      written = true;
      writtenAt = this.#clock.mono();
    }, () => {
      if (!headRead && !c.closed) giveUp = setTimeout(() => c.close(), EARLY_ANSWER_MS);
    });
    let head: ResponseHead;
    try {
      head = await this.#readHead(c);
      headRead = true;
      clearTimeout(giveUp);
      if (head.status === 101) {
        throw new UpstreamProtocolError("upstream answered 101: protocol switches are not relayed");
      }
    } catch (err) {
      headRead = true;
      clearTimeout(giveUp);
      signal?.removeEventListener("abort", onAbort);
      c.close();
      if (signal?.aborted) throw signal.reason;
      if (
        c.reused && !c.answered &&
        (!written || this.#clock.mono() - writtenAt < STALE_WINDOW_MS)
      ) {
        // its idle companions went quiet as long ago: likely as dead
        this.#pool.dropOlder(origin.key, c.idleSince);
        throw new StaleConnectionError(
          "upstream closed a kept-alive connection before answering (stale connection)",
        );
      }
      throw err instanceof UpstreamProtocolError
        ? err
        : new UpstreamProtocolError(`upstream connection failed (${failureName(err)})`);
    }
    const framing = framingOf(head, method);
    const reusable = head.keepAlive && framing.kind !== "close";
    const done = (complete: boolean) => {
      signal?.removeEventListener("abort", onAbort);
      // reused only when the answer ended as framed, the whole request went out and nothing
      // came after the answer (the pool checks that nothing is left unread)
      if (complete && reusable && written) {
        this.#pool.put(origin.key, c, this.#pool.lifetime(head.keepAliveSeconds));
      } else c.close();
    };
    let body: BodyInit | null = null;
    if (framing.kind === "none" || (framing.kind === "length" && framing.length === 0)) {
      done(true);
    } else if (framing.kind === "length" && c.end - c.start >= framing.length) {
      // the whole body came with the head: bytes, no stream
      body = c.take(framing.length);
      done(true);
    } else {
      body = bodyStream(c, framing, done);
    }
    const res = new Response(body, { status: head.status, statusText: head.statusText });
    const headers = res.headers;
    const fields = head.fields;
    for (let i = 0; i < fields.length; i += 2) headers.append(fields[i]!, fields[i + 1]!);
    return res;
  }

  /** Reads one final response head (skipping 1xx answers); leaves what follows it unread. */
  async #readHead(c: Connection): Promise<ResponseHead> {
    for (let informational = 0;; informational++) {
      if (informational > MAX_INFORMATIONAL) {
        throw new UpstreamProtocolError("upstream sent too many informational answers");
      }
      // bytes after c.start already scanned (a fill may move the buffer's contents)
      let scanned = 0;
      const partial: PartialHead = { checked: 0, lines: 0 };
      for (;;) {
        const at = headEnd(c.buf, c.start + scanned, c.end);
        if (at >= 0) {
          if (at - c.start > this.#maxHead) {
            throw new UpstreamProtocolError("upstream response head is too large");
          }
          const head = parseHead(c.buf.subarray(c.start, at), this.#limits);
          c.start = at;
          if (head.status < 200 && head.status !== 101) break;
          return head;
        }
        if (c.end - c.start > this.#maxHead) {
          throw new UpstreamProtocolError("upstream response head is too large");
        }
        // what has come of the head so far must already be right (a head that is malformed and
        // then nothing fails now, not when the upstream closes)
        if (c.end > c.start) {
          checkPartialHead(c.buf.subarray(c.start, c.end), partial, this.#limits);
        }
        scanned = Math.max(0, c.end - c.start - 2);
        let more: boolean;
        try {
          more = await c.fill();
        } catch (err) {
          throw new UpstreamProtocolError(`upstream connection failed (${failureName(err)})`);
        }
        if (!more) {
          throw new UpstreamProtocolError(
            c.answered
              ? "upstream closed the connection in the middle of the response head"
              : "upstream closed the connection before answering",
          );
        }
      }
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
