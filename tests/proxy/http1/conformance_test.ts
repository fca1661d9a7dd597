/**
 * @module
 * Conformance of the upstream HTTP/1.1 client (src/proxy/http1/) against hostile raw upstreams,
 * with Deno's `fetch` as the oracle. Each case of the table runs against both clients, side by
 * side; the table records what `fetch` does (observed, not assumed) and what our client must
 * do. Our client is at least as safe as `fetch`: no byte reaches a request it was not answering,
 * no request is sent twice unseen, the same status and body as `fetch` where `fetch` succeeds
 * (unless the case explains a cleaner rejection), and every failure an
 * `UpstreamProtocolError` whose message holds neither the upstream's address nor its bytes.
 */

import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import type { Clock } from "../../../src/clock.ts";
import {
  Http1Client,
  StaleConnectionError,
  UpstreamProtocolError,
} from "../../../src/proxy/http1/mod.ts";
import {
  type RawConnection,
  type RawRequest,
  type RawScript,
  rawUpstream,
  type RawUpstreamOptions,
  response,
} from "../../helpers/raw_upstream.ts";

/** In every hostile byte sequence: it must never reach a caller, as a body or in a message. */
const SECRET = "sk-live-SECRET";
/** Longest a request may take to settle (a hang is a failure of its own). */
const STEP_LIMIT_MS = 1000;

/** What one request came to. */
type Outcome =
  /** Answered, and the whole body read; `headers` lists fields checked (null: absent). */
  | { status: number; body: string; headers?: Record<string, string | null> }
  /** Answered, but reading the body rejected with this error class. */
  | { status: number; bodyRejects: string }
  /** The call rejected with this error class (its `name`). */
  | { rejects: string }
  /** Did not settle within {@linkcode STEP_LIMIT_MS}. */
  | { hangs: true };

/** One request of a case. */
interface Step {
  /** The request goes to `/${marker}`; a well-behaved answer's body is the marker. */
  marker: string;
  /** @default "POST" */
  method?: string;
  /** Request body size in bytes. @default a short JSON body naming the marker */
  bodyBytes?: number;
  /** Waits this long before sending. @default 0 */
  waitMs?: number;
  /**
   * The wait is for an idle lifetime of our client to pass: our client's clock skips it at once
   * (fetch's pool runs on real time, so `fetch` still waits). @default false (both wait)
   */
  lifetime?: boolean;
}

/** What a client does in a case. */
interface Expect {
  /** Per step; an array lists the outcomes accepted (where timing decides). */
  outcomes: (Outcome | Outcome[])[];
  /** Requests the upstream received: a re-send shows here. */
  requests: number;
  /** Connections the upstream accepted. @default not checked */
  connections?: number;
  /**
   * Connections (ids, 1-based) the client closes by itself, unasked, before the case ends
   * (a connection that can no longer be reused is not left open). @default not checked
   */
  clientCloses?: number[];
}

/** A hostile upstream and what each client does with it. */
interface Case {
  /** The upstream's behaviour. */
  name: string;
  steps: Step[];
  answer: RawScript;
  server?: RawUpstreamOptions;
  /** Our client's idle lifetime. @default the client's */
  idleTimeoutMs?: number;
  /** What `fetch` does (observed with Deno 2.9). */
  fetch: Expect;
  /** What our client must do. */
  ours: Expect;
  /** Why our client differs from `fetch` where `fetch` succeeds. */
  why?: string;
}

const marker = (req: RawRequest) => req.target.slice(1);
const ok = (req: RawRequest) => response(200, marker(req));

/** Answers `hostile` bytes to the request marked `to`, and a plain 200 to the others. */
function hostileTo(to: string, ...hostile: string[]): RawScript {
  return async (req, conn) => {
    await conn.write(...(marker(req) === to ? hostile : [ok(req)]));
  };
}

/** Answers the first request on each connection; what `next` says for later ones. */
function firstOnly(next: (req: RawRequest, conn: RawConnection) => Promise<void>): RawScript {
  return async (req, conn) => {
    if (req.index === 1) await conn.write(ok(req));
    else await next(req, conn);
  };
}

const A = (over: Partial<Step> = {}): Step => ({ marker: "a", ...over });
const B = (over: Partial<Step> = {}): Step => ({ marker: "b", waitMs: 20, ...over });
const okA: Outcome = { status: 200, body: "a" };
const okB: Outcome = { status: 200, body: "b" };
const protocol: Outcome = { rejects: "UpstreamProtocolError" };
const stale: Outcome = { rejects: "StaleConnectionError" };
const typeError: Outcome = { rejects: "TypeError" };
/** The same for both clients; `fetch` rejects with a plain `TypeError` where ours names its class. */
function both(ours: Expect): { fetch: Expect; ours: Expect } {
  const plain = (o: Outcome): Outcome =>
    "rejects" in o ? typeError : "bodyRejects" in o ? { ...o, bodyRejects: "TypeError" } : o;
  const outcomes = ours.outcomes.map((o) => Array.isArray(o) ? o.map(plain) : plain(o));
  return { fetch: { ...ours, outcomes }, ours };
}

/** A response head with `n` header fields. */
function manyFields(n: number): string {
  let head = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n";
  for (let i = 1; i < n; i++) head += `x-field-${i}: ${SECRET}\r\n`;
  return head + "\r\na";
}

/** A final answer with status `code`, which `fetch` answers with `fetched`. */
function badStatus(code: string, fetched: Outcome): Case {
  return {
    name: `status ${code}`,
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 ${code} ${SECRET}\r\ncontent-length: 1\r\n\na`),
    fetch: { outcomes: [fetched], requests: 1 },
    ours: { outcomes: [protocol], requests: 1 },
    ...("status" in fetched
      ? { why: "a final status is 200-599 (101: no upgrade was asked)" }
      : {}),
  };
}

const CASES: Case[] = [
  // 1. no byte reaches a request it was not answering
  {
    name: "a late second response after a complete one",
    steps: [A(), B({ waitMs: 100 })],
    answer: async (req, conn) => {
      await conn.write(ok(req));
      conn.later(20, (c) => c.write(response(200, SECRET)).then(() => {}));
    },
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "two responses written in one go for one request",
    steps: [A(), B({ waitMs: 0 })],
    answer: hostileTo("a", response(200, "a") + response(200, SECRET)),
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "a stray body after a 204",
    steps: [A(), B()],
    answer: hostileTo("a", `HTTP/1.1 204 No Content\r\n\r\n${SECRET}`),
    ...both({
      outcomes: [{ status: 204, body: "" }, okB],
      requests: 2,
      clientCloses: [1],
      connections: 2,
    }),
  },
  {
    name: "a stray body after a 304",
    steps: [A(), B()],
    answer: hostileTo("a", `HTTP/1.1 304 Not Modified\r\n\r\n${SECRET}`),
    ...both({
      outcomes: [{ status: 304, body: "" }, okB],
      requests: 2,
      clientCloses: [1],
      connections: 2,
    }),
  },
  {
    name: "a stray body after a HEAD answer",
    steps: [A({ method: "HEAD" }), B()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n${SECRET}`),
    ...both({
      outcomes: [{ status: 200, body: "" }, okB],
      requests: 2,
      clientCloses: [1],
      connections: 2,
    }),
  },
  {
    name: "garbage after content-length",
    steps: [A(), B()],
    answer: hostileTo("a", response(200, "a") + SECRET),
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "garbage after the last chunk",
    steps: [A(), B()],
    answer: hostileTo(
      "a",
      `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n${SECRET}`,
    ),
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "stray bytes on an idle connection",
    steps: [A(), B({ waitMs: 100 })],
    answer: async (req, conn) => {
      await conn.write(ok(req));
      conn.later(20, (c) => c.write(`${SECRET}\r\n`).then(() => {}));
    },
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "a late second response 2 ms after a complete one",
    steps: [A(), B({ waitMs: 50 })],
    answer: async (req, conn) => {
      await conn.write(ok(req));
      conn.later(2, (c) => c.write(response(200, SECRET)).then(() => {}));
    },
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "garbage after a 100 KB content-length body",
    steps: [A(), B()],
    answer: hostileTo("a", response(200, "a".repeat(100_000)) + SECRET),
    ...both({
      outcomes: [{ status: 200, body: "a".repeat(100_000) }, okB],
      requests: 2,
      clientCloses: [1],
    }),
  },
  {
    name: "garbage after a chunked body that arrived in pieces",
    steps: [A(), B()],
    answer: async (req, conn) => {
      if (marker(req) !== "a") return void await conn.write(ok(req));
      await conn.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n");
      await new Promise((r) => setTimeout(r, 10));
      await conn.write(`0\r\n\r\n${response(200, SECRET)}`);
    },
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "an answer written a byte at a time",
    steps: [A(), B()],
    answer: async (req, conn) => {
      for (const ch of response(200, marker(req), ["x-one: 1"])) await conn.write(ch);
    },
    ...both({ outcomes: [okA, okB], requests: 2, connections: 1 }),
  },
  {
    name: "connection: close, then keeping the connection open",
    steps: [A(), B()],
    answer: hostileTo("a", response(200, "a", ["connection: close"])),
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "an HTTP/1.0 answer, then keeping the connection open",
    steps: [A(), B()],
    answer: hostileTo("a", "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\na"),
    ...both({ outcomes: [okA, okB], requests: 2, clientCloses: [1], connections: 2 }),
  },
  {
    name: "a 204 with a content-length and no body",
    steps: [A(), B()],
    answer: hostileTo("a", "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
    ...both({ outcomes: [{ status: 204, body: "" }, okB], requests: 2, connections: 1 }),
  },
  {
    name: "a HEAD answer with transfer-encoding chunked and no body",
    steps: [A({ method: "HEAD" }), B()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
    ...both({ outcomes: [{ status: 200, body: "" }, okB], requests: 2, connections: 1 }),
  },
  // 2. idle connections are reused only while the upstream still accepts them
  {
    name: "an idle connection closed by the upstream",
    steps: [A(), B({ waitMs: 100 })],
    answer: async (req, conn) => {
      await conn.write(ok(req));
    },
    server: { idleCloseMs: 20 },
    ...both({ outcomes: [okA, okB], requests: 2, connections: 2 }),
  },
  {
    name: "Keep-Alive: timeout=1",
    steps: [A(), B()],
    answer: async (req, conn) => {
      await conn.write(response(200, marker(req), ["keep-alive: timeout=1"]));
    },
    fetch: { outcomes: [okA, okB], requests: 2, connections: 1 },
    ours: { outcomes: [okA, okB], requests: 2, connections: 2, clientCloses: [1] },
    why: "a connection is not reused past its Keep-Alive timeout less 1 s (here: at once)",
  },
  {
    name: "Keep-Alive: timeout=2, dropping requests that arrive after 1 s idle",
    steps: [A(), B({ waitMs: 1100, lifetime: true })],
    answer: async (req, conn) => {
      // the upstream's timer fired as the request arrived: closed unanswered
      if (req.idleMs >= 1000) conn.close();
      else await conn.write(response(200, marker(req), ["keep-alive: timeout=2"]));
    },
    // fetch reuses the connection, then sends the request again on a new one
    fetch: { outcomes: [okA, okB], requests: 3, connections: 2 },
    ours: { outcomes: [okA, okB], requests: 2, connections: 2 },
    why: "the connection is past its Keep-Alive lifetime: no re-send needed",
  },
  {
    name: "an idle timeout longer than ours, dropping requests that arrive after 150 ms idle",
    steps: [A(), B({ waitMs: 200, lifetime: true })],
    idleTimeoutMs: 100,
    answer: async (req, conn) => {
      if (req.idleMs >= 150) conn.close();
      else await conn.write(ok(req));
    },
    fetch: { outcomes: [okA, okB], requests: 3, connections: 2 },
    ours: { outcomes: [okA, okB], requests: 2, connections: 2 },
    why: "the connection is past idleTimeoutMs: no re-send needed",
  },
  {
    name: "Keep-Alive: timeout=5",
    steps: [A(), B()],
    answer: async (req, conn) => {
      await conn.write(response(200, marker(req), ["keep-alive: timeout=5, max=100"]));
    },
    ...both({ outcomes: [okA, okB], requests: 2, connections: 1 }),
  },
  {
    name: "Keep-Alive: timeout=0",
    steps: [A(), B()],
    answer: async (req, conn) => {
      await conn.write(response(200, marker(req), ["keep-alive: timeout=0"]));
    },
    fetch: { outcomes: [okA, okB], requests: 2, connections: 1 },
    ours: { outcomes: [okA, okB], requests: 2, connections: 2, clientCloses: [1] },
    why: "a connection is not reused past its Keep-Alive timeout less 1 s (here: at once)",
  },
  // 3. never a re-send
  {
    name: "a reused connection closed after the upstream read the request",
    steps: [A(), B()],
    answer: firstOnly((_req, conn) => Promise.resolve(conn.close())),
    // fetch sends the request again, on a new connection: the upstream saw it twice
    fetch: { outcomes: [okA, okB], requests: 3, connections: 2 },
    ours: { outcomes: [okA, stale], requests: 2, connections: 1 },
    why: "never a re-send of a request the upstream may have acted on: the caller decides",
  },
  {
    name: "a reused connection reset after the upstream read the request head",
    steps: [A(), B({ bodyBytes: 1 << 20 })],
    server: { readBody: (head) => head.index === 1 },
    answer: firstOnly((_req, conn) => Promise.resolve(conn.close())),
    fetch: { outcomes: [okA, okB], requests: 3, connections: 2 },
    ours: { outcomes: [okA, stale], requests: 2, connections: 1 },
    why: "never a re-send of a request the upstream may have acted on: the caller decides",
  },
  {
    name: "a reused connection closed after part of the answer head",
    steps: [A(), B()],
    answer: firstOnly(async (_req, conn) => {
      await conn.write("HTTP/1.1 200 OK\r\ncontent-");
      conn.close();
    }),
    // fetch sends the request again even after part of an answer
    fetch: { outcomes: [okA, okB], requests: 3, connections: 2 },
    ours: { outcomes: [okA, protocol], requests: 2, connections: 1 },
    why: "never a re-send; bytes of an answer arrived, so not a stale connection either",
  },
  {
    name: "a new connection closed before an answer",
    steps: [A()],
    answer: (_req, conn) => conn.close(),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a reused connection reset while a 5 MB body is written",
    steps: [A(), B({ bodyBytes: 5 << 20 })],
    server: { readBody: (head) => head.index === 1 },
    answer: firstOnly((_req, conn) => Promise.resolve(conn.close())),
    fetch: { outcomes: [okA, okB], requests: 3, connections: 2 },
    ours: { outcomes: [okA, stale], requests: 2, connections: 1 },
    why: "never a re-send of a request the upstream may have acted on: the caller decides",
  },
  {
    name: "a new connection reset while a 5 MB body is written",
    steps: [A({ bodyBytes: 5 << 20 })],
    server: { readBody: () => false },
    answer: (_req, conn) => conn.close(),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  // 4. an early answer is read while the request body is still being written
  {
    name: "413 after the head of a 5 MB body, then a lingering close",
    steps: [A({ bodyBytes: 5 << 20 })],
    server: { readBody: () => false },
    answer: async (_req, conn) => {
      await conn.write(response(413, "too large", ["connection: close"]));
      await conn.lingeringClose(1000);
    },
    ...both({ outcomes: [{ status: 413, body: "too large" }], requests: 1 }),
  },
  {
    name: "413 after the head of a 5 MB body, then an abrupt close",
    steps: [A({ bodyBytes: 5 << 20 })],
    server: { readBody: () => false },
    answer: async (_req, conn) => {
      await conn.write(response(413, "too large", ["connection: close"]));
      conn.close();
    },
    ...both({ outcomes: [{ status: 413, body: "too large" }], requests: 1 }),
  },
  {
    name: "an early 200 on a kept-alive connection before the 1 MB body is read",
    steps: [A({ bodyBytes: 1 << 20 }), B()],
    server: { readBody: (head) => head.index === 1 ? "after" : true },
    answer: async (req, conn) => {
      await conn.write(ok(req));
    },
    ...both({ outcomes: [okA, okB], requests: 2 }),
  },
  // 5. framing
  {
    name: "transfer-encoding chunked with a content-length",
    steps: [A(), B()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ),
    // fetch forwards the content-length (3) of an 11-byte body, and reuses the connection
    fetch: {
      outcomes: [{ status: 200, body: "hello world", headers: { "content-length": "3" } }, okB],
      requests: 2,
      connections: 1,
    },
    ours: {
      outcomes: [{ status: 200, body: "hello world", headers: { "content-length": null } }, okB],
      requests: 2,
      connections: 2,
      clientCloses: [1],
    },
    why: "a content-length beside chunked is a smuggling sign: dropped, connection not reused",
  },
  {
    name: "a 100 KB response head",
    steps: [A()],
    answer: hostileTo(
      "a",
      `HTTP/1.1 200 OK\r\nx-big: ${SECRET}${"x".repeat(100_000)}\r\ncontent-length: 1\r\n\r\na`,
    ),
    fetch: { outcomes: [okA], requests: 1 },
    ours: { outcomes: [protocol], requests: 1 },
    why: "a head is limited to 64 KiB (maxHeadBytes)",
  },
  {
    name: "100 header fields",
    steps: [A()],
    answer: hostileTo("a", manyFields(100)),
    ...both({ outcomes: [okA], requests: 1 }),
  },
  {
    name: "1000 header fields",
    steps: [A()],
    answer: hostileTo("a", manyFields(1000)),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a chunk-size line ending in a bare LF",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
      "5\nhello\r\n0\r\n\r\n",
    ),
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
  {
    name: "an invalid chunk size",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
      `zz${SECRET}\r\nhello\r\n0\r\n\r\n`,
    ),
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
  {
    name: "a negative content-length",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\na`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a non-numeric content-length",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\ncontent-length: ${SECRET}\r\n\r\na`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "conflicting content-lengths",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\naa`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  badStatus("600", { status: 600, body: "a" }),
  badStatus("999", { status: 999, body: "a" }),
  badStatus("000", typeError),
  badStatus("101", { status: 101, body: "" }),
  {
    name: "1xx answers before the final one",
    steps: [A(), B()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 100 Continue\r\n\r\n",
      "HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n",
      response(200, "a"),
    ),
    ...both({
      outcomes: [{ status: 200, body: "a", headers: { link: null } }, okB],
      requests: 2,
      connections: 1,
    }),
  },
  {
    name: "a head with bare-LF line ends",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\ncontent-length: 1\n\na"),
    ...both({ outcomes: [okA], requests: 1 }),
  },
  {
    name: "a header line without a colon",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\nx-key ${SECRET}\r\ncontent-length: 1\r\n\r\na`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a malformed status line",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 2x0 ${SECRET}\r\ncontent-length: 1\r\n\r\na`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "content-length: 1, 1 (a list of one value)",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\r\ncontent-length: 1, 1\r\n\r\na"),
    ...both({ outcomes: [okA], requests: 1 }),
  },
  {
    name: "a content-length beyond 2^64",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\na"),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a content-length with a plus sign",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\na"),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a chunk size beyond 2^64",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
      "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
  {
    name: "chunk data not followed by CRLF",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
      `5\r\nhello${SECRET}\r\n0\r\n\r\n`,
    ),
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
  {
    name: "trailer fields after the last chunk",
    steps: [A(), B()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
      `1;ext=${SECRET}\r\na\r\n0\r\nx-trailer: ${SECRET}\r\n\r\n`,
    ),
    // fetch does not reuse a connection after trailers
    fetch: { outcomes: [okA, okB], requests: 2, connections: 2 },
    ours: { outcomes: [okA, okB], requests: 2, connections: 1 },
    why: "trailers are read to their end: the connection stays usable",
  },
  {
    name: "transfer-encoding gzip (not chunked)",
    steps: [A()],
    answer: async (_req, conn) => {
      await conn.write("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nab");
      conn.close();
    },
    // fetch reads to the close, as RFC 9112 §6.3 says, and hands over the coded bytes
    fetch: { outcomes: [{ status: 200, body: "ab" }], requests: 1 },
    ours: { outcomes: [protocol], requests: 1 },
    why: "a transfer coding other than chunked is refused: it cannot be relayed as it is",
  },
  {
    name: "a space before a header's colon",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\r\ncontent-length : 1\r\n\r\na"),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "an obs-fold header line",
    steps: [A()],
    answer: hostileTo(
      "a",
      `HTTP/1.1 200 OK\r\nx-a: 1\r\n  ${SECRET}\r\ncontent-length: 1\r\n\r\na`,
    ),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a status line without a reason phrase",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200\r\ncontent-length: 1\r\n\r\na"),
    ...both({ outcomes: [okA], requests: 1 }),
  },
  {
    name: "HTTP/2.0 in the status line",
    steps: [A()],
    answer: hostileTo("a", "HTTP/2.0 200 OK\r\ncontent-length: 1\r\n\r\na"),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a NUL in a header value",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\nx-a: ${SECRET}\0x\r\ncontent-length: 1\r\n\r\na`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "40 informational answers before the final one",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 103 Early Hints\r\n\r\n".repeat(40), response(200, "a")),
    fetch: { outcomes: [okA], requests: 1 },
    ours: { outcomes: [protocol], requests: 1 },
    why: "informational answers are bounded (32): an upstream sending only those is refused",
  },
  {
    name: "a chunk extension of 8 KB",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
      `1;${"e".repeat(8000)}\r\na\r\n0\r\n\r\n`,
    ),
    fetch: { outcomes: [okA], requests: 1 },
    ours: { outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 },
    why: "a chunk-size line is limited to 4 KiB",
  },
  {
    name: "transfer-encoding: chunked, chunked",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    ),
    fetch: { outcomes: [okA], requests: 1 },
    ours: { outcomes: [protocol], requests: 1 },
    why: "chunked applied twice is invalid (RFC 9112 §6.1)",
  },
  {
    // the same list as the case before, in two field lines (RFC 9110 §5.3)
    name: "transfer-encoding: chunked in two field lines",
    steps: [A()],
    answer: hostileTo(
      "a",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
      "1\r\na\r\n0\r\n\r\n",
    ),
    fetch: { outcomes: [okA], requests: 1 },
    ours: { outcomes: [protocol], requests: 1 },
    why: "the same list as chunked, chunked: chunked applied twice is invalid (RFC 9112 §6.1)",
  },
  {
    name: "a DEL in the reason phrase",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 O\x7fK\r\ncontent-length: 1\r\n\r\na"),
    fetch: { outcomes: [typeError], requests: 1 },
    // the reason phrase is dropped; the answer is relayed
    ours: { outcomes: [okA], requests: 1 },
  },
  // malformed heads fail at once, not when the upstream finally ends the head or closes
  {
    name: "a head with bare-CR line ends, then nothing",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\rx-key: ${SECRET}\rcontent-length: 1\r\r\na`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a malformed status line, then nothing",
    steps: [A()],
    answer: hostileTo("a", `SPDY/9 200 ${SECRET}\r\n`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "a header line without a colon, then nothing",
    steps: [A()],
    answer: hostileTo("a", `HTTP/1.1 200 OK\r\nx-key ${SECRET}\r\n`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "garbage instead of a head, then nothing",
    steps: [A()],
    answer: hostileTo("a", `${SECRET} garbage\r\n`),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  {
    name: "1000 header fields, then nothing",
    steps: [A()],
    answer: hostileTo("a", "HTTP/1.1 200 OK\r\n" + `x-a: ${SECRET}\r\n`.repeat(1000)),
    ...both({ outcomes: [protocol], requests: 1 }),
  },
  // 6. truncation
  {
    name: "a close before content-length is complete",
    steps: [A()],
    answer: async (_req, conn) => {
      await conn.write(`HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n${SECRET}`);
      conn.close();
    },
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
  {
    name: "a close in the middle of a chunk",
    steps: [A()],
    answer: async (_req, conn) => {
      await conn.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n40\r\n${SECRET}`);
      conn.close();
    },
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
  {
    name: "a close before the last chunk",
    steps: [A()],
    answer: async (_req, conn) => {
      await conn.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n`);
      conn.close();
    },
    ...both({ outcomes: [{ status: 200, bodyRejects: "UpstreamProtocolError" }], requests: 1 }),
  },
];

/** A client under test. */
interface Subject {
  fetch(url: string, init: RequestInit): Promise<Response>;
  /** Waits before a step (see {@linkcode Step.lifetime}). */
  wait(ms: number, lifetime: boolean): Promise<void>;
  close(): void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Real time, plus what was skipped: our client's idle lifetimes pass without a real wait, while
 * everything else it measures (event-loop turns, the stale window) stays on real time.
 */
class SkippingClock implements Clock {
  #skipped = 0;
  readonly now = (): number => Date.now() + this.#skipped;
  readonly mono = (): number => performance.now() + this.#skipped;
  /** @param ms how far to move on at once */
  skip(ms: number): void {
    this.#skipped += ms;
  }
}

const SUBJECTS = {
  fetch: (): Subject => {
    // a pool of its own per case
    const client = Deno.createHttpClient({});
    return {
      fetch: (url, init) => fetch(url, { ...init, client }),
      wait: (ms) => sleep(ms),
      close: () => client.close(),
    };
  },
  Http1Client: (c: Case): Subject => {
    const clock = new SkippingClock();
    const http = new Http1Client({
      useFallback: false,
      ...(c.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: c.idleTimeoutMs }),
      fallback: () => Promise.reject(new Error("Http1Client handed the request to its fallback")),
      clock,
    });
    return {
      fetch: http.fetch,
      wait: (ms, lifetime) => lifetime ? Promise.resolve(clock.skip(ms)) : sleep(ms),
      close: () => http.close(),
    };
  },
};

/** The class an error shows as in outcomes. */
function kind(err: unknown): string {
  if (err instanceof StaleConnectionError) return "StaleConnectionError";
  if (err instanceof UpstreamProtocolError) return "UpstreamProtocolError";
  return err instanceof Error ? err.constructor.name : typeof err;
}

/** Settles `p`, or gives "hangs" after {@linkcode STEP_LIMIT_MS}. */
async function settle<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown } | "hangs"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<"hangs">((r) => timer = setTimeout(() => r("hangs"), STEP_LIMIT_MS));
  try {
    return await Promise.race([p.then((value) => ({ value }), (error) => ({ error })), limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends one step's request and reads its answer. */
async function send(
  subject: Subject,
  base: string,
  step: Step,
  checked: string[],
  errors: unknown[],
): Promise<Outcome> {
  if (step.waitMs) await subject.wait(step.waitMs, step.lifetime === true);
  const method = step.method ?? "POST";
  const body = method === "GET" || method === "HEAD"
    ? null
    : step.bodyBytes === undefined
    ? JSON.stringify({ marker: step.marker })
    : new Uint8Array(step.bodyBytes).fill(0x78);
  const init: RequestInit = {
    method,
    redirect: "manual",
    headers: { "content-type": "application/json", "x-marker": step.marker },
    body,
  };
  const sent = await settle(subject.fetch(`${base}/${step.marker}`, init));
  if (sent === "hangs") return { hangs: true };
  if ("error" in sent) {
    errors.push(sent.error);
    return { rejects: kind(sent.error) };
  }
  const res = sent.value;
  const read = await settle(res.text());
  if (read === "hangs") {
    await res.body?.cancel().catch(() => {});
    return { hangs: true };
  }
  if ("error" in read) {
    errors.push(read.error);
    return { status: res.status, bodyRejects: kind(read.error) };
  }
  const outcome: Outcome = { status: res.status, body: read.value };
  if (checked.length > 0) {
    outcome.headers = Object.fromEntries(checked.map((name) => [name, res.headers.get(name)]));
  }
  return outcome;
}

/** Runs a case's steps against one client; checks what both clients must hold to. */
async function run(c: Case, subject: Subject, expect: Expect, ours: boolean): Promise<void> {
  await using upstream = rawUpstream(c.answer, c.server);
  const errors: unknown[] = [];
  const outcomes: Outcome[] = [];
  try {
    for (const [i, step] of c.steps.entries()) {
      const want = expect.outcomes[i] ?? [];
      const checked = (Array.isArray(want) ? want : [want])
        .flatMap((w) => "headers" in w && w.headers !== undefined ? Object.keys(w.headers) : []);
      outcomes.push(await send(subject, upstream.url, step, checked, errors));
    }
    const closes = expect.clientCloses ?? [];
    const closedByClient = () =>
      upstream.connectionInfo().filter((i) => i.closedBy === "client").map((i) => i.id);
    await upstream.until(() => closes.every((id) => closedByClient().includes(id)), 500)
      .catch(() => {});
    for (const id of closes) {
      assert.ok(
        closedByClient().includes(id),
        `connection ${id} left open: ${JSON.stringify(upstream.connectionInfo())}`,
      );
    }
  } finally {
    subject.close();
  }
  const seen = upstream.requests.map((r) => marker(r));
  const short = (_key: string, v: unknown) =>
    typeof v === "string" && v.length > 80 ? `${v.slice(0, 40)}...(${v.length} chars)` : v;
  const report = `outcomes: ${JSON.stringify(outcomes, short)}\nupstream saw: ${
    JSON.stringify(seen)
  } on ${upstream.connections} connection(s)`;
  expect.outcomes.forEach((want, i) => {
    const got = outcomes[i]!;
    const alternatives = Array.isArray(want) ? want : [want];
    assert.ok(
      alternatives.some((w) => isDeepStrictEqual(got, w)),
      `step ${i + 1} (${c.steps[i]!.marker}): expected ${JSON.stringify(want)}\n${report}`,
    );
  });
  assert.equal(seen.length, expect.requests, `requests received\n${report}`);
  if (expect.connections !== undefined) {
    assert.equal(upstream.connections, expect.connections, `connections opened\n${report}`);
  }
  if (!ours) return;
  // never an unseen re-send: each request reached the upstream at most once
  for (const step of c.steps) {
    assert.ok(seen.filter((m) => m === step.marker).length <= 1, `${step.marker} re-sent`);
  }
  for (const err of errors) {
    if (!(err instanceof UpstreamProtocolError)) {
      assert.fail(`not an UpstreamProtocolError: ${err}\n${report}`);
    }
    for (const leak of [upstream.url, "127.0.0.1", String(upstream.port), "SECRET"]) {
      assert.ok(!err.message.includes(leak), `message shows "${leak}": ${err.message}`);
    }
  }
}

/** Whether an outcome is an answer read whole. */
const answered = (o: Outcome | Outcome[] | undefined) => o !== undefined && "body" in o;

Deno.test("conformance table explains every departure from what fetch achieves", () => {
  for (const c of CASES) {
    assert.equal(c.fetch.outcomes.length, c.steps.length, c.name);
    assert.equal(c.ours.outcomes.length, c.steps.length, c.name);
    const departs = c.fetch.outcomes.some((f, i) =>
      answered(f) && !isDeepStrictEqual(f, c.ours.outcomes[i])
    ) || c.fetch.connections !== c.ours.connections || c.fetch.requests !== c.ours.requests;
    assert.equal(c.why !== undefined, departs, `${c.name}: "why" iff ours departs from fetch`);
    // at least as safe: never more requests than the calls made
    assert.ok(c.ours.requests <= c.steps.length, `${c.name}: ours never re-sends`);
  }
});

for (const c of CASES) {
  Deno.test(`fetch (oracle) against an upstream sending ${c.name}`, async () => {
    await run(c, SUBJECTS.fetch(), c.fetch, false);
  });
  Deno.test(`Http1Client against an upstream sending ${c.name}`, async () => {
    await run(c, SUBJECTS.Http1Client(c), c.ours, true);
  });
}

Deno.test("Http1Client uses a new connection for init.fresh, and leaves a retry to its caller", async () => {
  await using upstream = rawUpstream(firstOnly((_req, conn) => Promise.resolve(conn.close())));
  const http = new Http1Client({ useFallback: false });
  const post = (marker: string, fresh = false) =>
    http.fetch(`${upstream.url}/${marker}`, {
      method: "POST",
      redirect: "manual",
      body: marker,
      fresh,
    });
  try {
    assert.equal(await (await post("a")).text(), "a");
    // the idle connection answers nothing more: stale, sent once
    await assert.rejects(post("b"), StaleConnectionError);
    assert.deepEqual(upstream.requests.map(marker), ["a", "b"]);
    assert.equal(await (await post("c")).text(), "c", "a new connection");
    // the caller's retry, on a new connection though one is idle
    assert.equal(http.idleConnections, 1);
    assert.equal(await (await post("b", true)).text(), "b");
    assert.deepEqual(upstream.requests.map((r) => [marker(r), r.connection]), [
      ["a", 1],
      ["b", 1],
      ["c", 2],
      ["b", 3],
    ]);
  } finally {
    http.close();
  }
});
