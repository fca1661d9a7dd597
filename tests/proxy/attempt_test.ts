/**
 * @module Tests of one upstream attempt: time limits, first bytes, classification. Limits run on
 * a manual clock: a test moves it and ticks the watchdog instead of sleeping.
 */

import assert from "node:assert/strict";
import { attempt, type AttemptRequest, type AttemptResult } from "../../src/proxy/attempt.ts";
import { type AttemptControl, LAZY_CLIENT_MS } from "../../src/proxy/attempt_control.ts";
import { Watchdog } from "../../src/proxy/watchdog.ts";
import { ManualClock } from "../helpers/clock.ts";
import { within } from "../helpers/e2e.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

type FakeFetch = (url: string, init: RequestInit) => Promise<Response>;

/** A manual clock and a watchdog on it: limits fire only when the test moves time and ticks. */
function timing(): { clock: ManualClock; watchdog: Watchdog } {
  const clock = new ManualClock();
  return { clock, watchdog: new Watchdog({ clock }) };
}

/**
 * Moves the clock on and has the watchdog check at once.
 * @param t the test's clock and watchdog
 * @param ms how far
 */
function pass(t: { clock: ManualClock; watchdog: Watchdog }, ms: number): void {
  t.clock.advance(ms);
  t.watchdog.tick();
}

function request(fetch: FakeFetch, over: Partial<AttemptRequest> = {}): AttemptRequest {
  return {
    url: "http://upstream.test/v1/chat/completions",
    method: "POST",
    headers: new Headers({ authorization: "Bearer k" }),
    body: enc.encode('{"model":"m"}'),
    timeouts: { connectMs: 0, firstByteMs: 0, idleMs: 0, totalMs: 0 },
    deadline: Infinity,
    clientSignal: new AbortController().signal,
    fetch: fetch as typeof globalThis.fetch,
    client: undefined,
    ...timing(),
    ...over,
  };
}

/** A body that sends `chunks`, then stays open until the fetch signal aborts (then errors). */
function openBody(signal: AbortSignal | null | undefined, chunks: string[] = []) {
  return new ReadableStream<Uint8Array>({
    start(c) {
      for (const s of chunks) c.enqueue(enc.encode(s));
      signal?.addEventListener("abort", () => c.error(signal.reason), { once: true });
    },
  });
}

/** A fetch whose headers never come; it rejects when its signal aborts. */
const neverAnswers: FakeFetch = (_url, init) =>
  new Promise((_resolve, reject) => {
    init.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
  });

/** Runs one attempt, failing the test if it takes more than 3 s. */
function run(r: AttemptRequest): Promise<AttemptResult> {
  return within(attempt(r), 3000, "attempt()");
}

function done(r: AttemptResult): void {
  if (r.kind === "response") {
    r.control.dispose();
    r.reader?.cancel().catch(() => {});
  }
}

Deno.test("attempt() sends the request as given, without following redirects", async () => {
  let seen: { url: string; init: RequestInit } | undefined;
  const client = Deno.createHttpClient({});
  try {
    const r = await run(request((url, init) => {
      seen = { url, init };
      return Promise.resolve(new Response("{}"));
    }, { client, method: "PUT" }));
    done(r);
    assert.equal(seen?.url, "http://upstream.test/v1/chat/completions");
    assert.equal(seen?.init.method, "PUT");
    assert.equal(seen?.init.redirect, "manual");
    assert.equal(new Headers(seen?.init.headers).get("authorization"), "Bearer k");
    assert.equal(dec.decode(seen?.init.body as Uint8Array), '{"model":"m"}');
    assert.ok(seen?.init.signal instanceof AbortSignal);
    assert.equal((seen?.init as { client?: Deno.HttpClient }).client, client);
  } finally {
    client.close();
  }
});

Deno.test("attempt() commits once the first body bytes arrive, leaving the reader open", async () => {
  let signal: AbortSignal | null | undefined;
  const r = await run(request((_u, init) => {
    signal = init.signal;
    return Promise.resolve(
      new Response(openBody(init.signal, ["data: 1\n\n"]), {
        headers: { "content-type": "text/event-stream" },
      }),
    );
  }, { timeouts: { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 } }));
  assert.equal(r.kind, "response");
  if (r.kind !== "response") return;
  assert.equal(r.cls, "ok");
  assert.equal(dec.decode(r.first), "data: 1\n\n");
  assert.ok(r.reader !== undefined);
  assert.equal(signal?.aborted, false);
  r.control.clientGone();
  await assert.rejects(within(r.reader.read(), 3000, "the read to fail"));
  r.control.dispose();
});

Deno.test("attempt() commits a response without a body, or with an empty one", async () => {
  const none = await run(request(() => Promise.resolve(new Response(null, { status: 204 }))));
  assert.equal(none.kind, "response");
  if (none.kind === "response") {
    assert.equal(none.reader, undefined);
    assert.equal(none.first, undefined);
  }
  done(none);
  const empty = await run(request(() => Promise.resolve(new Response(""))));
  assert.equal(empty.kind, "response");
  if (empty.kind === "response") assert.equal(empty.first?.length ?? 0, 0);
  done(empty);
});

Deno.test("attempt() reads error answers and classifies them", async () => {
  const cases: { status: number; body: string; cls: string }[] = [
    { status: 500, body: '{"error":{"message":"boom"}}', cls: "server" },
    { status: 503, body: "", cls: "server" },
    { status: 429, body: '{"error":{"code":"rate_limit_exceeded"}}', cls: "rate_limited" },
    { status: 429, body: '{"error":{"code":"insufficient_quota"}}', cls: "quota" },
    { status: 401, body: "no", cls: "auth" },
    { status: 403, body: "", cls: "auth" },
    { status: 400, body: '{"error":{}}', cls: "bad_request" },
    { status: 404, body: "", cls: "bad_request" },
  ];
  for (const c of cases) {
    const r = await run(
      request(() => Promise.resolve(new Response(c.body, { status: c.status })), {
        timeouts: { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 },
      }),
    );
    assert.equal(r.kind, "error_response", `${c.status}`);
    if (r.kind !== "error_response") continue;
    assert.equal(r.cls, c.cls, `${c.status} ${c.body}`);
    assert.equal(r.response.status, c.status);
    assert.equal(dec.decode(r.body), c.body);
  }
});

Deno.test("attempt() keeps at most 1 MiB of an error body", async () => {
  const big = new Uint8Array(3 * 1024 * 1024).fill(65);
  const r = await run(
    request(() => Promise.resolve(new Response(new Blob([big]).stream(), { status: 500 }))),
  );
  assert.equal(r.kind, "error_response");
  if (r.kind === "error_response") assert.equal(r.body.length, 1024 * 1024);
});

Deno.test("attempt() classifies a failed connection as connect", async () => {
  const r = await run(request(() => Promise.reject(new TypeError("connection refused"))));
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "connect");
  if (r.kind === "failure") assert.equal(r.timeout, undefined);
});

Deno.test("attempt() times out when the headers do not come in time", async () => {
  const t = timing();
  const t0 = performance.now();
  let signal: AbortSignal | null | undefined;
  const pending = run(request((url, init) => {
    signal = init.signal;
    return neverAnswers(url, init);
  }, {
    ...t,
    timeouts: { connectMs: 0, firstByteMs: 60, idleMs: 0, totalMs: 5000 },
  }));
  pass(t, 59);
  assert.equal(signal?.aborted, false, "not before the limit");
  pass(t, 1);
  const r = await pending;
  assert.equal(r.cls, "timeout");
  assert.equal(r.kind === "failure" && r.timeout, "first_byte");
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("attempt() times out when headers come but the first body bytes do not", async () => {
  const t = timing();
  let reading!: () => void;
  const read = new Promise<void>((resolve) => reading = resolve);
  const pending = run(
    request((_u, init) => {
      // a body whose first read waits (until the signal aborts)
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          init.signal?.addEventListener("abort", () => c.error(init.signal!.reason), {
            once: true,
          });
        },
        pull: () => reading(),
      }, { highWaterMark: 0 });
      return Promise.resolve(new Response(body, { status: 200 }));
    }, {
      ...t,
      timeouts: { connectMs: 0, firstByteMs: 60, idleMs: 0, totalMs: 5000 },
    }),
  );
  await within(read, 3000, "the first body read");
  pass(t, 60);
  const r = await pending;
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "timeout");
  assert.equal(r.kind === "failure" && r.timeout, "first_byte");
});

Deno.test("attempt() times out at the request's deadline before its own limits", async () => {
  const t = timing();
  const t0 = performance.now();
  const pending = run(request(neverAnswers, {
    ...t,
    timeouts: { connectMs: 0, firstByteMs: 10_000, idleMs: 0, totalMs: 10_000 },
    deadline: t.clock.now() + 60,
  }));
  pass(t, 60);
  const r = await pending;
  assert.equal(r.cls, "timeout");
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("attempt() classifies a client that leaves as client_abort, not a timeout", async () => {
  const t = timing();
  const client = new AbortController();
  const pending = run(request(neverAnswers, {
    ...t,
    clientSignal: client.signal,
    timeouts: { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 },
  }));
  pass(t, 30);
  client.abort();
  const r = await pending;
  assert.equal(r.cls, "client_abort");
});

Deno.test("attempt() aborts at once for a client already gone", async () => {
  const client = new AbortController();
  client.abort();
  let signal: AbortSignal | null | undefined;
  const r = await run(request((_u, init) => {
    signal = init.signal;
    return Promise.reject(init.signal?.reason);
  }, { clientSignal: client.signal }));
  assert.equal(r.cls, "client_abort");
  assert.equal(signal?.aborted, true);
});

Deno.test("attempt() classifies an error body that breaks as a server failure", async () => {
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc.encode('{"error":'));
      c.error(new TypeError("connection reset"));
    },
  });
  const r = await run(request(() => Promise.resolve(new Response(body, { status: 502 }))));
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "server");
});

Deno.test("attempt() reads a JSON body whole before committing", async () => {
  const parts = ['{"id":"x",', '"choices":[]', "}"];
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
  const r = await run(
    request(
      () =>
        Promise.resolve(new Response(body, { headers: { "content-type": "application/json" } })),
      {
        timeouts: { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 },
      },
    ),
  );
  assert.equal(r.kind, "response");
  if (r.kind !== "response") return;
  assert.equal(dec.decode(r.body), parts.join(""));
  assert.equal(r.reader, undefined);
});

Deno.test("attempt() classifies a JSON body that breaks before its end as a server failure", async () => {
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      c.enqueue(enc.encode('{"id":'));
      await new Promise((r) => setTimeout(r, 5));
      c.error(new TypeError("connection reset"));
    },
  });
  const r = await run(
    request(() =>
      Promise.resolve(new Response(body, { headers: { "content-type": "application/json" } }))
    ),
  );
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "server");
});

Deno.test("attempt() leaves a JSON body over 4 MiB to stream", async () => {
  const r = await run(request((_u, init) =>
    Promise.resolve(
      new Response(openBody(init.signal, ['{"data":[']), {
        headers: { "content-type": "application/json", "content-length": String(5 * 1024 * 1024) },
      }),
    )
  ));
  assert.equal(r.kind, "response");
  if (r.kind !== "response") return;
  assert.equal(r.body, undefined);
  assert.equal(dec.decode(r.first), '{"data":[');
  assert.ok(r.reader !== undefined);
  done(r);
});

Deno.test("attempt() reads a client signal given as a function only when the attempt lasts", async () => {
  const t = timing();
  let reads = 0;
  const client = new AbortController();
  const lazy = () => {
    reads++;
    return client.signal;
  };
  const quick = await run(request(
    () =>
      Promise.resolve(
        new Response('{"ok":true}', { headers: { "content-type": "application/json" } }),
      ),
    { ...t, clientSignal: lazy },
  ));
  assert.equal(quick.kind, "response");
  pass(t, 60);
  assert.equal(reads, 0, "a fast answer never needs the client's signal");

  const t0 = performance.now();
  const pending = run(request(neverAnswers, {
    ...t,
    clientSignal: lazy,
    timeouts: { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 },
  }));
  pass(t, LAZY_CLIENT_MS - 1);
  assert.equal(reads, 0, "not read before LAZY_CLIENT_MS");
  pass(t, 1);
  assert.equal(reads, 1, "read once the attempt lasted LAZY_CLIENT_MS");
  pass(t, 30);
  client.abort();
  const slow = await pending;
  assert.equal(slow.cls, "client_abort");
  assert.equal(reads, 1);
  assert.ok(performance.now() - t0 < 1000);
});

Deno.test("attempt() stops at the first watchdog tick for a lazily read client already gone", async () => {
  const t = timing();
  const client = new AbortController();
  client.abort();
  const t0 = performance.now();
  let signal: AbortSignal | null | undefined;
  const pending = run(request((url, init) => {
    signal = init.signal;
    return neverAnswers(url, init);
  }, {
    ...t,
    clientSignal: () => client.signal,
    timeouts: { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 },
  }));
  pass(t, LAZY_CLIENT_MS - 1);
  assert.equal(signal?.aborted, false, "the client's signal is not read before LAZY_CLIENT_MS");
  pass(t, 1);
  const r = await pending;
  assert.equal(r.cls, "client_abort");
  assert.ok(performance.now() - t0 < 1000);
});

/**
 * A body whose chunks each come on a read (never before), the `late`-th one just after the
 * attempt's `limit` fires: the race between the watchdog and a chunk already on its way.
 */
function lateBody(
  chunks: string[],
  late: number,
  fire: () => void,
): { body: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let reads = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (reads === late) fire();
      const chunk = chunks[reads++];
      if (chunk === undefined) c.close();
      else c.enqueue(enc.encode(chunk));
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { body, cancelled: () => cancelled };
}

const LIMITS = { connectMs: 0, firstByteMs: 5000, idleMs: 0, totalMs: 5000 };

Deno.test("attempt() never commits a body whose first bytes come just as the first-byte limit fires", async () => {
  const json = { "content-type": "application/json" };
  const cases: { name: string; headers: Record<string, string>; chunks: string[] }[] = [
    {
      name: "event stream",
      headers: { "content-type": "text/event-stream" },
      chunks: ["data: 1\n\n"],
    },
    { name: "JSON of unknown length", headers: json, chunks: ['{"id":', '"x"}'] },
    {
      name: "JSON of known length",
      headers: { ...json, "content-length": "10" },
      chunks: ['{"id":"x"}'],
    },
    { name: "empty stream", headers: { "content-type": "text/event-stream" }, chunks: [] },
  ];
  for (const c of cases) {
    let control: AttemptControl | undefined;
    const late = lateBody(c.chunks, 0, () => control?.timeout("first_byte"));
    const r = await run(request(
      () => Promise.resolve(new Response(late.body, { headers: c.headers })),
      { timeouts: LIMITS, onControl: (k) => control = k },
    ));
    assert.equal(r.kind, "failure", c.name);
    assert.equal(r.cls, "timeout", c.name);
    assert.equal(r.kind === "failure" && r.timeout, "first_byte", c.name);
    assert.ok(control?.signal.aborted, c.name);
    if (c.chunks.length > 0 && !("content-length" in c.headers)) {
      assert.ok(late.cancelled(), `${c.name}: the reader is cancelled`);
    }
    done(r);
  }
});

Deno.test("attempt() never commits a response without a body once the first-byte limit fired", async () => {
  let control: AttemptControl | undefined;
  const r = await run(request(() => {
    // the headers were already on their way when the limit fired
    control?.timeout("first_byte");
    return Promise.resolve(new Response(null, { status: 204 }));
  }, { timeouts: LIMITS, onControl: (k) => control = k }));
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "timeout");
  assert.equal(r.kind === "failure" && r.timeout, "first_byte");
  done(r);
});

Deno.test("attempt() never commits a buffered JSON body once the total limit fired", async () => {
  let control: AttemptControl | undefined;
  const late = lateBody(['{"id":', '"x",', '"choices":[]}'], 2, () => control?.timeout("total"));
  const r = await run(request(
    () =>
      Promise.resolve(new Response(late.body, { headers: { "content-type": "application/json" } })),
    { timeouts: LIMITS, onControl: (k) => control = k },
  ));
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "timeout");
  assert.equal(r.kind === "failure" && r.timeout, "total");
  assert.ok(late.cancelled(), "the reader is cancelled");
});

Deno.test("attempt() never commits a body that arrives as the client leaves", async () => {
  let control: AttemptControl | undefined;
  const late = lateBody(["data: 1\n\n"], 0, () => control?.clientGone());
  const r = await run(request(
    () =>
      Promise.resolve(
        new Response(late.body, { headers: { "content-type": "text/event-stream" } }),
      ),
    { timeouts: LIMITS, onControl: (k) => control = k },
  ));
  assert.equal(r.kind, "failure");
  assert.equal(r.cls, "client_abort");
  assert.ok(late.cancelled());
});
