/**
 * @module
 * Concurrency test of the upstream HTTP/1.1 client (src/proxy/http1/): 50 callers sharing one
 * client send marked requests through a set of misbehaving raw upstreams (garbage or a
 * duplicated response after the real one, idle connections closed at random, 204 with a stray
 * body, `connection: close`). Requests may fail; no answer may ever reach a request it was not
 * for, and no request may reach an upstream twice.
 */

import assert from "node:assert/strict";
import { Http1Client, UpstreamProtocolError } from "../../../src/proxy/http1/mod.ts";
import {
  type RawConnection,
  type RawRequest,
  type RawScript,
  type RawUpstream,
  rawUpstream,
  type RawUpstreamOptions,
  response,
} from "../../helpers/raw_upstream.ts";

const CALLERS = 50;
const REQUESTS_PER_CALLER = 6;
/** The whole run stops sending new requests after this. */
const RUN_LIMIT_MS = 8000;
/** Longest one request (answer and body) may take. */
const REQUEST_LIMIT_MS = 3000;

/**
 * A request that reached an upstream within this long after stray bytes were written on its
 * connection crossed them on the wire: the client had no time to see them before it sent,
 * and may take them as its answer (`fetch` does the same). Such crossings are counted apart;
 * a connection reused longer after stray bytes arrived must never be. The margin is wide
 * because 50 callers and the upstreams share one event loop.
 */
const RACE_MS = 50;
/** Markers of requests that crossed stray bytes on the wire. */
const raced = new Set<string>();

/** A seeded generator (mulberry32): the same run every time. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The marker a request carries, in its header and its body; "?" when they disagree. */
function markerOf(req: RawRequest): string {
  const header = req.headers.get("x-marker") ?? "";
  let body = "";
  try {
    body = (JSON.parse(req.text) as { marker?: string }).marker ?? "";
  } catch {
    // not JSON: a request mixed with another
  }
  return header === body ? header : "?";
}

/** The right answer to a request: its marker as body and in `x-echo`. */
const echo = (req: RawRequest) => response(200, markerOf(req), [`x-echo: ${markerOf(req)}`]);

/** One misbehaving upstream. */
interface Kind {
  name: string;
  answer: (random: () => number) => RawScript;
  options?: (random: () => number) => RawUpstreamOptions;
}

const KINDS: Kind[] = [
  { name: "well-behaved", answer: () => async (req, conn) => void await conn.write(echo(req)) },
  {
    name: "garbage or a duplicated response after the real one",
    answer: (random) => async (req, conn) => {
      const tail = random() < 0.5 ? echo(req) : "GARBAGE\r\n\r\n";
      await conn.write(echo(req) + tail);
    },
  },
  {
    name: "a late duplicate of the response",
    answer: (random) => {
      /** Per connection: the last request answered, and when stray bytes were last written. */
      const state = new Map<number, { answered: number; strayAt: number }>();
      return async (req, conn) => {
        const s = state.get(conn.id) ?? { answered: 0, strayAt: -Infinity };
        state.set(conn.id, s);
        s.answered = req.index;
        // sent as stray bytes arrived: its answer is stray too (the client took those as it)
        const crossed = performance.now() - s.strayAt < RACE_MS;
        if (crossed) raced.add(markerOf(req));
        await conn.write(echo(req));
        if (crossed) s.strayAt = performance.now();
        const again = echo(req);
        conn.later(Math.floor(random() * 15), async (c: RawConnection) => {
          // only while the connection is idle (before the next request arrived)
          if (s.answered !== req.index) return;
          s.strayAt = performance.now();
          await c.write(again);
        });
      };
    },
  },
  {
    name: "idle connections closed at random",
    answer: () => async (req, conn) => void await conn.write(echo(req)),
    options: (random) => ({ idleCloseMs: () => Math.floor(random() * 40) }),
  },
  {
    name: "204 with a stray response as its body",
    answer: () => async (req, conn) => {
      const m = markerOf(req);
      await conn.write(`HTTP/1.1 204 No Content\r\nx-echo: ${m}\r\n\r\n${echo(req)}`);
    },
  },
  {
    name: "connection: close, then a close",
    answer: () => async (req, conn) => {
      await conn.write(
        response(200, markerOf(req), [`x-echo: ${markerOf(req)}`, "connection: close"]),
      );
      return "close" as const;
    },
  },
  {
    name: "chunked with a content-length, and garbage after",
    answer: () => async (req, conn) => {
      const m = markerOf(req);
      const size = new TextEncoder().encode(m).length.toString(16);
      await conn.write(
        `HTTP/1.1 200 OK\r\nx-echo: ${m}\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n`,
        `${size}\r\n${m}\r\n0\r\n\r\n${echo(req)}`,
      );
    },
  },
];

/** How a run went. */
interface Tally {
  ok: number;
  failed: number;
  /** Markers that got another request's answer, and what they got. */
  crossings: { marker: string; what: string }[];
  /** Failures by error name, and errors that were not UpstreamProtocolError. */
  failures: Record<string, number>;
  foreign: string[];
}

/** Sends one marked request; checks that the answer, if any, is its own. */
async function one(
  http: Http1Client,
  upstream: RawUpstream,
  kind: string,
  marker: string,
  tally: Tally,
): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error("request took too long")), REQUEST_LIMIT_MS);
  try {
    const res = await http.fetch(`${upstream.url}/v1/echo`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/json", "x-marker": marker },
      body: JSON.stringify({ marker }),
      signal: abort.signal,
    });
    const body = await res.text();
    const echoed = res.headers.get("x-echo");
    const expected = res.status === 204 ? "" : marker;
    if (echoed !== marker || body !== expected || (res.status !== 200 && res.status !== 204)) {
      const what = `${res.status} x-echo=${echoed} body=${body}`;
      tally.crossings.push({ marker, what: `${kind}: ${marker} got ${what}` });
    } else tally.ok++;
  } catch (err) {
    tally.failed++;
    const name = err instanceof Error ? err.name : String(err);
    tally.failures[name] = (tally.failures[name] ?? 0) + 1;
    if (!(err instanceof UpstreamProtocolError)) tally.foreign.push(`${kind}: ${err}`);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("Http1Client never hands an answer to another request under 50 concurrent callers", async () => {
  const random = seeded(0x5eed);
  const upstreams = KINDS.map((k) => ({
    kind: k.name,
    upstream: rawUpstream(k.answer(random), k.options?.(random)),
  }));
  const http = new Http1Client({
    useFallback: false,
    idleTimeoutMs: 1000,
    fallback: () => Promise.reject(new Error("Http1Client handed the request to its fallback")),
  });
  const tally: Tally = { ok: 0, failed: 0, crossings: [], failures: {}, foreign: [] };
  const started = performance.now();
  try {
    await Promise.all(Array.from({ length: CALLERS }, async (_, caller) => {
      for (let i = 0; i < REQUESTS_PER_CALLER; i++) {
        if (performance.now() - started > RUN_LIMIT_MS) return;
        const { kind, upstream } = upstreams[Math.floor(random() * upstreams.length)]!;
        await one(http, upstream, kind, `m-${caller}-${i}`, tally);
        // a pause now and then lets idle connections see late bytes and closes
        if (random() < 0.5) await new Promise((r) => setTimeout(r, Math.floor(random() * 60)));
      }
    }));
  } finally {
    http.close();
    await Promise.all(upstreams.map(({ upstream }) => upstream.close()));
  }
  // the server knows only now which requests crossed a duplicate on the wire
  const crossings = tally.crossings.filter((c) => !raced.has(c.marker)).map((c) => c.what);
  const racedCrossings = tally.crossings.length - crossings.length;
  const { ok, failed, failures } = tally;
  const stats = JSON.stringify({ ok, failed, failures, racedCrossings, raced: raced.size });
  assert.deepEqual(crossings, [], `answers crossed requests (${stats})`);
  assert.deepEqual(tally.foreign, [], `failures not UpstreamProtocolError (${stats})`);
  // no re-send, and no request mixed with another on the way (header and body agree)
  const seen = upstreams.flatMap(({ upstream }) => upstream.requests.map(markerOf));
  assert.ok(!seen.includes("?"), "a request reached an upstream mixed with another");
  const counts = new Map<string, number>();
  for (const m of seen) counts.set(m, (counts.get(m) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([m]) => m);
  assert.deepEqual(twice, [], "requests reached an upstream twice");
  assert.ok(tally.ok + tally.failed > 0 && tally.ok >= tally.failed, `too few answers: ${stats}`);
});
