/**
 * @module
 * The soak's upstream: a raw HTTP/1.1 server on 127.0.0.1 (bytes written by hand, on TCP
 * connections whose end is exact, see `_wire.ts`, so every fault is precise) that answers chat
 * completions with a fault chosen by a seeded random per request: normal JSON or SSE answers
 * with a `usage` block, 500s, 429s with `retry-after`, connections closed or reset before
 * answering, hangs, bodies that die midway, and kept-alive connections closed after a short
 * idle time. It counts every request head it receives (per key and per marker), the requests
 * that come after it closed an idle connection, and the tokens of every usage block it fully
 * sent.
 */

import {
  chunk,
  completionJson,
  concat,
  encoder,
  errorJson,
  head,
  response,
  sseEvents,
  type Tokens,
} from "./_answers.ts";
import { type Wire, WireListener } from "./_wire.ts";

export type { Tokens };

/** What the upstream does with one request. */
export type Fault = "ok" | "error500" | "rate_limit" | "reset" | "close" | "hang" | "die";

/** Every {@link Fault}. */
export const FAULTS: readonly Fault[] = [
  "ok",
  "error500",
  "rate_limit",
  "reset",
  "close",
  "hang",
  "die",
];

/** Relative weights of the faults (normalized when picked). */
export type FaultWeights = Record<Fault, number>;

/** The default mix: 70% normal answers. */
export const DEFAULT_WEIGHTS: Readonly<FaultWeights> = {
  ok: 0.7,
  error500: 0.06,
  rate_limit: 0.02,
  reset: 0.05,
  close: 0.04,
  hang: 0.03,
  die: 0.1,
};

/** One request head the upstream received. */
export interface Arrival {
  upstream: string;
  /** The bearer key the request carried ("" when none). */
  key: string;
  /** The soak marker of the request's `x-soak-marker` header ("" when none). */
  marker: string;
  /** The fault and its variant, e.g. `ok:sse`, `die:after_usage`, `reset`. */
  fault: string;
  /** Connection number on this upstream (1-based). */
  conn: number;
  /** Position of this request on its connection (1 = the connection's first request). */
  onConn: number;
  /** `performance.now()` when the head was read (one clock for every upstream). */
  at: number;
}

/** Options of {@link FaultyUpstream.start}. */
export interface FaultyUpstreamOptions {
  /** Name in records and answers. */
  name: string;
  /** Seeded random source in [0, 1). */
  random: () => number;
  /** Fault mix. @default DEFAULT_WEIGHTS */
  weights?: Partial<FaultWeights>;
  /**
   * Range of the idle time after which a kept-alive connection is closed, in ms.
   * @default [200, 800]
   */
  idleMs?: readonly [number, number];
  /**
   * Share of answers that say `Keep-Alive: timeout=1` (the connection then closes after 1 s
   * idle). @default 0.2
   */
  keepAliveHeader?: number;
  /** Share of answers that say `Connection: close` and close. @default 0.08 */
  connectionClose?: number;
  /** How long a hang holds the connection at most, in ms. @default 3000 */
  hangMs?: number;
  /** Longest delay before an answer and between two stream chunks, in ms. @default 10 */
  delayMs?: number;
}

/** Matches a soak marker (`SOAK-c<client>-<seq>-<8 hex>`). */
export const MARKER_RE = /SOAK-c\d+-\d+-[0-9a-f]{8}/;

const decoder = new TextDecoder();
const MAX_HEAD = 64 * 1024;
const CRLFCRLF = [13, 10, 13, 10];

function indexOfHeadEnd(buf: Uint8Array): number {
  outer: for (let i = 0; i + 3 < buf.length; i++) {
    for (let j = 0; j < 4; j++) if (buf[i + j] !== CRLFCRLF[j]) continue outer;
    return i;
  }
  return -1;
}

function addTokens(map: Map<string, Tokens>, key: string, t: Tokens): void {
  const sum = map.get(key);
  if (sum === undefined) map.set(key, { ...t });
  else {
    sum.prompt += t.prompt;
    sum.completion += t.completion;
    sum.total += t.total;
  }
}

/** A connection being served, with what the idle timer needs. */
interface Served {
  conn: Wire;
  id: number;
  /** Bytes read and not yet used. */
  pending: Uint8Array;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The answer being sent says `Connection: close`: the connection closes after it. */
  closing: boolean;
  /** The last answer said `Keep-Alive: timeout=1`: the idle close comes after 1 s. */
  keepAlive1: boolean;
  /** We sent a FIN because the connection was idle: bytes that still come are late. */
  idleClosed: boolean;
}

/** One parsed request head. */
interface Head {
  method: string;
  path: string;
  headers: Map<string, string>;
}

/** A raw HTTP/1.1 upstream that injects faults; see the module doc. */
export class FaultyUpstream {
  readonly name: string;
  /** `http://127.0.0.1:PORT`. */
  readonly origin: string;
  /** Every chat completion request head received, in order. */
  readonly arrivals: Arrival[] = [];
  /** Request heads on other paths (answered 404). */
  otherArrivals = 0;
  /** Tokens of usage blocks fully sent, by key. */
  readonly tokensByKey: Map<string, Tokens> = new Map();
  /** Tokens of usage blocks fully sent, by marker. */
  readonly tokensByMarker: Map<string, Tokens> = new Map();
  /** Connections accepted. */
  connections = 0;
  /** Kept-alive connections closed for being idle. */
  idleCloses = 0;
  /**
   * Requests that came on a connection after its idle close (FIN) was sent: received, never
   * processed or answered (`fault` is `late`; `marker` is "" when the head was incomplete).
   */
  readonly lateRequests: Arrival[] = [];
  /** Bytes that came on a connection while it hung. */
  unexpectedBytes = 0;
  /** Requests whose body carried another marker than their `x-soak-marker` header. */
  readonly mixedRequests: string[] = [];
  readonly #listener: WireListener;
  readonly #random: () => number;
  readonly #weights: [Fault, number][];
  readonly #idleMs: readonly [number, number];
  readonly #keepAliveHeader: number;
  readonly #connectionClose: number;
  readonly #hangMs: number;
  readonly #delayMs: number;
  readonly #open = new Set<Served>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #sleeps = new Set<() => void>();
  #stopped = false;

  private constructor(listener: WireListener, o: FaultyUpstreamOptions) {
    this.#listener = listener;
    this.name = o.name;
    this.origin = `http://127.0.0.1:${listener.port}`;
    this.#random = o.random;
    const w = { ...DEFAULT_WEIGHTS, ...o.weights };
    this.#weights = FAULTS.map((f) => [f, Math.max(0, w[f])]);
    this.#idleMs = o.idleMs ?? [200, 800];
    this.#keepAliveHeader = o.keepAliveHeader ?? 0.2;
    this.#connectionClose = o.connectionClose ?? 0.08;
    this.#hangMs = o.hangMs ?? 3000;
    this.#delayMs = o.delayMs ?? 10;
  }

  /**
   * Starts an upstream on a free port of 127.0.0.1.
   * @param options name, random source, fault mix and timings
   * @returns the running upstream
   */
  static async start(options: FaultyUpstreamOptions): Promise<FaultyUpstream> {
    // connections accepted before the constructor ran wait in `early`
    const box: { upstream?: FaultyUpstream; early: Wire[] } = { early: [] };
    const listener = await WireListener.listen((wire) => {
      if (box.upstream === undefined) box.early.push(wire);
      else box.upstream.#accept(wire);
    });
    const upstream = new FaultyUpstream(listener, options);
    box.upstream = upstream;
    for (const wire of box.early) upstream.#accept(wire);
    return upstream;
  }

  /** Sums of the tokens fully sent, over every key. */
  tokens(): Tokens {
    const t: Tokens = { prompt: 0, completion: 0, total: 0 };
    for (const v of this.tokensByKey.values()) {
      t.prompt += v.prompt;
      t.completion += v.completion;
      t.total += v.total;
    }
    return t;
  }

  /** Stops accepting, closes every connection and waits for their handlers. */
  async close(): Promise<void> {
    this.#stopped = true;
    for (const s of this.#open) this.#shut(s);
    for (const wake of this.#sleeps) wake();
    await Promise.all([...this.#tasks]);
    await this.#listener.close();
  }

  #accept(wire: Wire): void {
    if (this.#stopped) {
      wire.close();
      return;
    }
    const task = this.#serve(wire);
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  #pick(): Fault {
    let total = 0;
    for (const [, w] of this.#weights) total += w;
    let r = this.#random() * total;
    for (const [f, w] of this.#weights) {
      if (r < w) return f;
      r -= w;
    }
    return "ok";
  }

  #int(min: number, max: number): number {
    return min + Math.floor(this.#random() * (max - min + 1));
  }

  /** Sleeps, cut short by {@link close}. */
  #sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleeps.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleeps.add(wake);
    });
  }

  /** Closes a connection (close(2)); nothing more is read or counted on it. */
  #shut(s: Served): void {
    clearTimeout(s.timer);
    s.conn.close();
  }

  /**
   * Closes an idle kept-alive connection as a server's keep-alive timeout does, with a FIN, but
   * keeps reading for a second: a request that still comes is counted as late.
   */
  #idleClose(s: Served): void {
    this.idleCloses++;
    s.idleClosed = true;
    s.conn.end();
    s.timer = setTimeout(() => this.#shut(s), 1000);
  }

  /** Records a request that came after the idle close. */
  #late(s: Served, head: Head | undefined, onConn: number): void {
    this.lateRequests.push({
      upstream: this.name,
      key: (head?.headers.get("authorization") ?? "").replace(/^bearer\s+/i, ""),
      marker: head?.headers.get("x-soak-marker") ?? "",
      fault: "late",
      conn: s.id,
      onConn,
      at: performance.now(),
    });
  }

  /** Reads more bytes; undefined at the end, on error, or once we closed the connection. */
  #read(s: Served): Promise<Uint8Array | undefined> {
    return s.conn.read();
  }

  async #serve(conn: Wire): Promise<void> {
    const s: Served = {
      conn,
      id: ++this.connections,
      pending: new Uint8Array(0),
      timer: undefined,
      closing: false,
      keepAlive1: false,
      idleClosed: false,
    };
    this.#open.add(s);
    try {
      for (let onConn = 1;; onConn++) {
        const head = await this.#readHead(s);
        if (s.idleClosed) {
          if (head !== undefined || s.pending.length > 0) this.#late(s, head, onConn);
          return;
        }
        if (head === undefined) return;
        const keepOpen = await this.#answer(s, head, onConn);
        if (!keepOpen || s.conn.closed) return;
        const idle = s.keepAlive1 ? 1000 : this.#int(this.#idleMs[0], this.#idleMs[1]);
        s.timer = setTimeout(() => this.#idleClose(s), idle);
      }
    } catch {
      // the peer went away while we wrote: nothing more to do
    } finally {
      this.#shut(s);
      this.#open.delete(s);
    }
  }

  async #readHead(s: Served): Promise<Head | undefined> {
    let end: number;
    while ((end = indexOfHeadEnd(s.pending)) < 0) {
      const chunk = await this.#read(s);
      if (chunk === undefined) return undefined;
      // the first bytes of a request: no idle close from now on (unless it came first)
      if (!s.idleClosed) {
        clearTimeout(s.timer);
        s.timer = undefined;
      }
      s.pending = concat(s.pending, chunk);
      if (s.pending.length > MAX_HEAD) return undefined;
    }
    const text = decoder.decode(s.pending.subarray(0, end));
    s.pending = s.pending.subarray(end + 4);
    const lines = text.split("\r\n");
    const [method = "", path = ""] = (lines[0] ?? "").split(" ");
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) {
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
    }
    return { method, path, headers };
  }

  /** Reads a body of `content-length` bytes; undefined when the connection ends first. */
  async #readBody(s: Served, head: Head): Promise<Uint8Array | undefined> {
    const length = Number(head.headers.get("content-length") ?? "0");
    if (!Number.isSafeInteger(length) || length < 0) return undefined;
    while (s.pending.length < length) {
      const chunk = await this.#read(s);
      if (chunk === undefined) return undefined;
      s.pending = concat(s.pending, chunk);
    }
    const body = s.pending.subarray(0, length);
    s.pending = s.pending.subarray(length);
    return body;
  }

  /**
   * Answers one request.
   * @returns whether the connection stays open for another request
   */
  async #answer(s: Served, head: Head, onConn: number): Promise<boolean> {
    s.closing = false;
    s.keepAlive1 = false;
    if (head.method !== "POST" || !head.path.endsWith("/chat/completions")) {
      this.otherArrivals++;
      await this.#readBody(s, head);
      await s.conn.write(response(404, "Not Found", [], errorJson("not found", "")));
      return true;
    }
    const auth = head.headers.get("authorization") ?? "";
    const arrival: Arrival = {
      upstream: this.name,
      key: auth.replace(/^bearer\s+/i, ""),
      marker: head.headers.get("x-soak-marker") ?? "",
      fault: "",
      conn: s.id,
      onConn,
      at: performance.now(),
    };
    this.arrivals.push(arrival);
    const fault = this.#pick();
    arrival.fault = fault;
    if (fault === "reset") {
      clearTimeout(s.timer);
      s.conn.reset();
      return false;
    }
    if (head.headers.has("transfer-encoding")) {
      arrival.fault = "unsupported:chunked_request";
      await s.conn.write(response(400, "Bad Request", [], errorJson("chunked body", "")));
      return false;
    }
    const body = await this.#readBody(s, head);
    if (body === undefined) {
      arrival.fault = `${fault}:body_not_received`;
      return false;
    }
    const text = decoder.decode(body);
    const inBody = MARKER_RE.exec(text)?.[0] ?? "";
    if (inBody !== arrival.marker) {
      this.mixedRequests.push(`header ${arrival.marker || "none"}, body ${inBody || "none"}`);
    }
    const stream = /"stream"\s*:\s*true/.test(text);
    // echo what the request's message says: a body that is not the request's own shows as a crossing
    const ctx: Answer = { s, arrival, stream, marker: inBody };
    switch (fault) {
      case "close":
        this.#shut(s);
        return false;
      case "hang":
        return await this.#hang(s);
      case "error500": {
        await this.#sleep(this.#int(0, this.#delayMs));
        const msg = `injected server error for ${ctx.marker}`;
        await s.conn.write(response(
          500,
          "Internal Server Error",
          this.#connHeaders(s),
          errorJson(msg, "server_error"),
        ));
        return !s.closing;
      }
      case "rate_limit": {
        const msg = `Rate limit reached for requests (${ctx.marker})`;
        const headers = ["retry-after: 1", ...this.#connHeaders(s)];
        await s.conn.write(
          response(429, "Too Many Requests", headers, errorJson(msg, "rate_limit_exceeded")),
        );
        return !s.closing;
      }
      case "die":
        return stream ? await this.#sseDie(ctx) : await this.#jsonDie(ctx);
      default:
        await this.#sleep(this.#int(0, this.#delayMs));
        return stream ? await this.#sse(ctx) : await this.#json(ctx);
    }
  }

  /** `Connection: close` or `Keep-Alive: timeout=1` for some answers (noted on `s`). */
  #connHeaders(s: Served): string[] {
    s.closing = this.#random() < this.#connectionClose;
    if (s.closing) return ["connection: close"];
    s.keepAlive1 = this.#random() < this.#keepAliveHeader;
    return s.keepAlive1 ? ["keep-alive: timeout=1"] : [];
  }

  async #hang(s: Served): Promise<boolean> {
    // hold the request unanswered until the proxy gives up (it closes) or hangMs passes
    const got = await Promise.race([this.#read(s), this.#sleep(this.#hangMs)]);
    if (got instanceof Uint8Array) this.unexpectedBytes += got.length;
    this.#shut(s);
    return false;
  }

  #usage(): Tokens {
    const prompt = this.#int(5, 2000);
    const completion = this.#int(1, 1000);
    return { prompt, completion, total: prompt + completion };
  }

  #sent(a: Arrival, t: Tokens): void {
    addTokens(this.tokensByKey, a.key, t);
    addTokens(this.tokensByMarker, a.marker, t);
  }

  async #json(c: Answer): Promise<boolean> {
    const usage = this.#usage();
    const body = encoder.encode(completionJson(this.name, c.marker, usage));
    const chunked = this.#random() < 0.3;
    c.arrival.fault = chunked ? "ok:json_chunked" : "ok:json";
    const headers = ["content-type: application/json", ...this.#connHeaders(c.s)];
    if (!chunked) {
      await c.s.conn.write(response(200, "OK", headers, body));
    } else {
      await c.s.conn.write(head(200, "OK", [...headers, "transfer-encoding: chunked"]));
      const cut = this.#int(1, body.length - 1);
      await c.s.conn.write(chunk(body.subarray(0, cut)));
      await this.#sleep(this.#int(0, this.#delayMs));
      await c.s.conn.write(concat(chunk(body.subarray(cut)), encoder.encode("0\r\n\r\n")));
    }
    this.#sent(c.arrival, usage);
    return !c.s.closing && !c.s.conn.closed;
  }

  async #jsonDie(c: Answer): Promise<boolean> {
    const body = encoder.encode(completionJson(this.name, c.marker, this.#usage()));
    c.arrival.fault = "die:json_mid_body";
    const headers = ["content-type: application/json"];
    const partial = concat(head(200, "OK", [...headers, `content-length: ${body.length}`]), body);
    await c.s.conn.write(partial.subarray(0, partial.length - this.#int(10, body.length - 1)));
    this.#shut(c.s);
    return false;
  }

  /** Writes events as HTTP chunks, sometimes several per write, sometimes one split in two. */
  async #writeEvents(c: Answer, events: string[], chunked: boolean): Promise<void> {
    const frame = (t: string) => chunked ? chunk(encoder.encode(t)) : encoder.encode(t);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const r = this.#random();
      if (r < 0.2 && i + 1 < events.length) {
        await c.s.conn.write(frame(e + events[++i]!));
      } else if (r < 0.35) {
        const cut = this.#int(1, e.length - 1);
        await c.s.conn.write(frame(e.slice(0, cut)));
        await this.#sleep(this.#int(0, 5));
        await c.s.conn.write(frame(e.slice(cut)));
      } else {
        await c.s.conn.write(frame(e));
      }
      await this.#sleep(this.#int(0, this.#delayMs));
    }
  }

  async #sse(c: Answer): Promise<boolean> {
    const usage = this.#usage();
    const events = sseEvents({
      name: this.name,
      marker: c.marker,
      id: `${c.arrival.conn}-${c.arrival.onConn}`,
    }, usage);
    // some servers end a stream by closing the connection instead of chunked framing
    const delimited = this.#random() < 0.1;
    const headers = ["content-type: text/event-stream", "cache-control: no-cache"];
    if (delimited) {
      c.arrival.fault = "ok:sse_close_delimited";
      await c.s.conn.write(head(200, "OK", [...headers, "connection: close"]));
      await this.#writeEvents(c, events, false);
      await c.s.conn.write(encoder.encode("data: [DONE]\n\n"));
      this.#sent(c.arrival, usage);
      this.#shut(c.s);
      return false;
    }
    c.arrival.fault = "ok:sse";
    const conn = this.#connHeaders(c.s);
    await c.s.conn.write(head(200, "OK", [...headers, ...conn, "transfer-encoding: chunked"]));
    await this.#writeEvents(c, events, true);
    await c.s.conn.write(
      concat(chunk(encoder.encode("data: [DONE]\n\n")), encoder.encode("0\r\n\r\n")),
    );
    this.#sent(c.arrival, usage);
    return !c.s.closing && !c.s.conn.closed;
  }

  async #sseDie(c: Answer): Promise<boolean> {
    const usage = this.#usage();
    const events = sseEvents({
      name: this.name,
      marker: c.marker,
      id: `${c.arrival.conn}-${c.arrival.onConn}`,
    }, usage);
    const r = this.#random();
    const variant = r < 0.2 ? "after_head" : r < 0.7 ? "mid_stream" : "after_usage";
    c.arrival.fault = `die:${variant}`;
    const h = head(200, "OK", ["content-type: text/event-stream", "transfer-encoding: chunked"]);
    if (variant === "after_head") {
      await c.s.conn.write(h);
    } else if (variant === "mid_stream") {
      // the head and the first event in one write: the proxy has its first byte
      await c.s.conn.write(concat(h, chunk(encoder.encode(events[0]!))));
      await this.#writeEvents(c, events.slice(1, this.#int(1, events.length - 2)), true);
    } else {
      await c.s.conn.write(h);
      await this.#writeEvents(c, events, true);
      this.#sent(c.arrival, usage);
    }
    await this.#sleep(this.#int(0, this.#delayMs));
    // a reset may drop bytes still in the send buffer: only where no usage block was sent
    if (variant === "mid_stream" && this.#random() < 0.5) {
      c.arrival.fault = "die:mid_stream_reset";
      clearTimeout(c.s.timer);
      c.s.conn.reset();
    } else this.#shut(c.s);
    return false;
  }
}

/** One request being answered. */
interface Answer {
  s: Served;
  arrival: Arrival;
  stream: boolean;
  marker: string;
}
