/**
 * @module
 * Tests of the forwarding engine (`src/proxy/forward.ts`) without a server: pools from a parsed
 * configuration, a fake transport that answers each attempt from a script, a manual clock and
 * the engine's narrow dependencies. Table-driven: which candidate each attempt gets, when the
 * loop stops, what the client sees; and that every attempt's lease ended exactly once.
 */

import assert from "node:assert/strict";
import { builtins } from "../../plugins/mod.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { errorResponse, ProxyError } from "../../src/errors.ts";
import { Logger } from "../../src/logger.ts";
import type {
  AttemptOutcome,
  Candidate,
  RequestContext,
  StrategyPlugin,
} from "../../src/plugin.ts";
import { forward, type ForwardDeps } from "../../src/proxy/forward.ts";
import { StaleConnectionError } from "../../src/proxy/http1/mod.ts";
import { ManualClock } from "../helpers/clock.ts";

/** What the fake upstream does for one attempt. */
type Step =
  | { status: number; body?: string; headers?: Record<string, string> }
  | { stream: string[]; breakAfter?: boolean }
  | "refuse"
  | "stale"
  | "hang";

/** One attempt the fake transport saw. */
interface Call {
  url: string;
  key: string;
  fresh: boolean;
  body: string;
}

/** A strategy that picks the first available candidate and records every outcome. */
function recorder(outcomes: { key: string; outcome: AttemptOutcome }[]): StrategyPlugin {
  return {
    kind: "strategy",
    name: "first_recording",
    create: () => ({
      pick: (available) => available[0],
      done: (c: Candidate, outcome: AttemptOutcome) => outcomes.push({ key: c.mask, outcome }),
    }),
  };
}

interface Harness extends AsyncDisposable {
  app: App;
  clock: ManualClock;
  calls: Call[];
  outcomes: { key: string; outcome: AttemptOutcome }[];
  deps: ForwardDeps;
  /** Runs one request through the engine; a thrown ProxyError is rendered as the chain would. */
  run(body?: unknown, init?: { signal?: AbortSignal; path?: string }): Promise<Response>;
}

const KEYS = ["sk-fwd-aaaa-0000000001", "sk-fwd-bbbb-0000000002", "sk-fwd-cccc-0000000003"];

async function harness(
  script: Step[] | ((call: Call, n: number) => Step),
  yaml = `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${KEYS.join(", ")}] }\n` +
    `pools:\n  default: { strategy: first_recording, upstreams: [up] }\n` +
    `retry: { max_attempts: 3, backoff_base: 0.001, backoff_max: 0.001 }\n`,
): Promise<Harness> {
  const clock = new ManualClock();
  const calls: Call[] = [];
  const outcomes: { key: string; outcome: AttemptOutcome }[] = [];
  const fake = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    const call: Call = {
      url: String(input),
      key: (headers.get("authorization") ?? "").replace("Bearer ", ""),
      fresh: (init as { fresh?: boolean }).fresh === true,
      body: init?.body instanceof Uint8Array ? new TextDecoder().decode(init.body) : "",
    };
    calls.push(call);
    const step = typeof script === "function"
      ? script(call, calls.length)
      : script[calls.length - 1] ?? { status: 200, body: "{}" };
    const signal = init?.signal;
    if (step === "refuse") throw new TypeError("error sending request: connection refused");
    if (step === "stale") throw new StaleConnectionError("connection closed before any answer");
    if (step === "hang") {
      return await new Promise<Response>((_, reject) => {
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    }
    if ("stream" in step) {
      const parts = step.stream;
      let i = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (i < parts.length) controller.enqueue(new TextEncoder().encode(parts[i++]));
          else if (step.breakAfter) controller.error(new TypeError("connection reset"));
          else controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    return new Response(step.body ?? "{}", {
      status: step.status,
      headers: { "content-type": "application/json", ...step.headers },
    });
  };
  const config = parseConfigText(yaml, "forward_test.yaml", { env: () => undefined });
  const app = await App.create(config, {
    plugins: [...builtins, recorder(outcomes)],
    probes: false,
    logger: new Logger({ sink: () => {} }),
    clock,
    fetch: fake as typeof fetch,
    random: () => 0.5,
  });
  const rt = app.rt;
  const deps: ForwardDeps = {
    poolFor: (model) => rt.poolFor(model),
    transport: { fetch: app.fetch, client: undefined },
    clock,
    random: () => 0.5,
    watchdog: app.watchdog,
    logger: app.logger,
    settings: {
      retry: config.retry,
      maxBodyBytes: config.server.maxBodyBytes,
      injectStreamUsage: config.usage.injectStreamUsage,
      overheadHeader: false,
      queue: config.queue,
    },
    // the App's queues: its ledger wakes their waiters when a lease ends
    queues: app.queues,
    stopping: () => app.stopping,
  };
  return {
    app,
    clock,
    calls,
    outcomes,
    deps,
    async run(body = { model: "m", messages: [] }, init = {}) {
      const req = new Request(`http://proxy.test${init.path ?? "/v1/chat/completions"}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-session-id": "s-1" },
        body: JSON.stringify(body),
        ...(init.signal === undefined ? {} : { signal: init.signal }),
      });
      const ctx = contextOf(req, clock);
      try {
        await forward(deps, ctx);
        return ctx.res!;
      } catch (err) {
        assert.ok(err instanceof ProxyError, String(err));
        return errorResponse(err, ctx.requestId);
      }
    },
    [Symbol.asyncDispose]: () => app.close(),
  };
}

function contextOf(req: Request, clock: ManualClock): RequestContext {
  const url = new URL(req.url);
  return {
    req,
    url,
    path: url.pathname,
    search: url.search,
    startedAt: clock.mono(),
    remoteAddr: "127.0.0.1",
    requestId: "req-1",
    client: undefined,
    res: undefined,
    log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
    done: undefined,
  };
}

/** Every lease ended: nothing in flight, nothing open, one outcome per attempt. */
function assertSettled(h: Harness): void {
  for (const c of h.app.rt.candidates.values()) assert.equal(c.state.inFlight, 0, c.mask);
  assert.equal(h.app.open.size, 0);
  assert.equal(h.outcomes.length, h.calls.length, "one outcome per attempt");
}

const k = (i: number) => KEYS[i]!;

interface Row {
  name: string;
  script: Step[];
  /** The key each attempt went to, in order. */
  keys: string[];
  status: number;
  /** The error code of llm-balance's own answer, when it is one. */
  code?: string;
  /** The outcome classes the strategy heard, in order. */
  classes: string[];
}

const TABLE: Row[] = [
  {
    name: "a success on the first attempt is the only attempt",
    script: [{ status: 200, body: '{"ok":true}' }],
    keys: [k(0)],
    status: 200,
    classes: ["ok"],
  },
  {
    name: "a 500 moves to the next key, which answers",
    script: [{ status: 500 }, { status: 200 }],
    keys: [k(0), k(1)],
    status: 200,
    classes: ["server", "ok"],
  },
  {
    name: "a refused key (401) moves to the next key",
    script: [{ status: 401 }, { status: 200 }],
    keys: [k(0), k(1)],
    status: 200,
    classes: ["auth", "ok"],
  },
  {
    name: "a client error (400) is not retried and goes back as the upstream said",
    script: [{ status: 400, body: '{"error":{"message":"bad"}}' }],
    keys: [k(0)],
    status: 400,
    classes: ["bad_request"],
  },
  {
    name: "429 on every key ends in the last 429, after max_attempts",
    script: [{ status: 429 }, { status: 429 }, { status: 429 }],
    keys: [k(0), k(1), k(2)],
    status: 429,
    classes: ["rate_limited", "rate_limited", "rate_limited"],
  },
  {
    name: "connection refused everywhere ends in 503 upstream_unreachable",
    script: ["refuse", "refuse", "refuse"],
    keys: [k(0), k(1), k(2)],
    status: 503,
    code: "upstream_unreachable",
    classes: ["connect", "connect", "connect"],
  },
  {
    name: "a stale kept-alive connection is retried on the same key",
    script: ["stale", { status: 200 }],
    keys: [k(0), k(0)],
    status: 200,
    classes: ["stale", "ok"],
  },
  {
    name: "three stale connections use up max_attempts: 502 upstream_connection_closed",
    script: ["stale", "stale", "stale"],
    keys: [k(0), k(0), k(0)],
    status: 502,
    code: "upstream_connection_closed",
    classes: ["stale", "stale", "stale"],
  },
];

for (const row of TABLE) {
  Deno.test(`forward(): ${row.name}`, async () => {
    await using h = await harness(row.script);
    const res = await h.run();
    assert.equal(res.status, row.status);
    const body = await res.text();
    if (row.code !== undefined) assert.equal(JSON.parse(body).error.code, row.code);
    assert.deepEqual(h.calls.map((c) => c.key), row.keys);
    assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), row.classes);
    assertSettled(h);
  });
}

Deno.test("forward() retries a stale connection on a fresh one and says so to the transport", async () => {
  await using h = await harness(["stale", { status: 200 }]);
  await (await h.run()).body?.cancel();
  assert.deepEqual(h.calls.map((c) => c.fresh), [false, true]);
});

Deno.test("forward() replays the request body byte-identical on every attempt", async () => {
  await using h = await harness([{ status: 500 }, { status: 503 }, { status: 200 }]);
  await (await h.run({ model: "m", messages: [{ role: "user", content: "héllo" }] })).text();
  assert.equal(h.calls.length, 3);
  assert.equal(new Set(h.calls.map((c) => c.body)).size, 1);
  assert.match(h.calls[0]!.body, /héllo/);
});

Deno.test("forward() prefers another upstream after a server failure", async () => {
  const yaml = `upstreams:\n` +
    `  a: { base_url: "http://a.test/v1", keys: [${k(0)}, ${k(1)}] }\n` +
    `  b: { base_url: "http://b.test/v1", keys: [${k(2)}] }\n` +
    `pools:\n  default: { strategy: first_recording, upstreams: [a, b] }\n`;
  // candidates interleave upstreams: a/k0, b/k2, a/k1; the strategy takes the first available
  await using h = await harness([{ status: 500 }, { status: 200 }], yaml);
  await (await h.run()).text();
  assert.deepEqual(h.calls.map((c) => new URL(c.url).host), ["a.test", "b.test"]);
  assertSettled(h);
});

Deno.test("forward() stops at max_attempts even with keys left", async () => {
  const yaml = `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${KEYS.join(", ")}] }\n` +
    `pools:\n  default: { strategy: first_recording, upstreams: [up] }\n` +
    `retry: { max_attempts: 2 }\n`;
  await using h = await harness([{ status: 500 }, { status: 500 }, { status: 200 }], yaml);
  const res = await h.run();
  assert.equal(res.status, 500);
  await res.body?.cancel();
  assert.equal(h.calls.length, 2);
  assertSettled(h);
});

Deno.test("forward() answers 503 shutting_down and starts no attempt once stopping", async () => {
  await using h = await harness([{ status: 200 }]);
  h.app.stopping = true;
  const res = await h.run();
  assert.equal(res.status, 503);
  assert.equal((await res.json()).error.code, "shutting_down");
  assert.equal(h.calls.length, 0);
  assertSettled(h);
});

Deno.test("forward() refuses a model no pool serves with 404 before any attempt", async () => {
  const yaml = `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${k(0)}] }\n` +
    `pools:\n  gpt-4o: { upstreams: [up] }\n`;
  await using h = await harness([{ status: 200 }], yaml);
  const res = await h.run({ model: "other" });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "model_not_found");
  assert.equal(h.calls.length, 0);
});

Deno.test("forward() refuses a method it does not forward with 405 and Allow", async () => {
  await using h = await harness([{ status: 200 }]);
  const req = new Request("http://proxy.test/v1/chat/completions", { method: "PROPFIND" });
  await assert.rejects(
    () => forward(h.deps, contextOf(req, h.clock)),
    (e: unknown) => e instanceof ProxyError && e.status === 405 && e.headers.allow !== undefined,
  );
  assert.equal(h.calls.length, 0);
});

Deno.test("forward() times out a silent upstream on the manual clock, without sleeping", async () => {
  const yaml = `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${k(0)}],` +
    ` timeout: { first_byte: 30 } }\n` +
    `pools:\n  default: { strategy: first_recording, upstreams: [up] }\n` +
    `retry: { max_attempts: 1 }\n`;
  await using h = await harness(["hang"], yaml);
  const pending = h.run();
  await new Promise((r) => setTimeout(r, 0)); // the attempt is under way
  h.clock.advance(29_999);
  h.app.watchdog.tick();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(h.outcomes.length, 0, "nothing fired a millisecond early");
  h.clock.advance(1);
  h.app.watchdog.tick();
  const res = await pending;
  assert.equal(res.status, 504);
  assert.equal((await res.json()).error.code, "upstream_timeout");
  assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), ["timeout"]);
  assert.equal(h.outcomes[0]!.outcome.latencyMs, 30_000);
  assertSettled(h);
});

Deno.test("forward() gives a strategy the request's model, attempt, client and affinity key", async () => {
  const seen: {
    model: string | undefined;
    attempt: number;
    affinity: string | undefined;
    session: string | null;
  }[] = [];
  const spy: StrategyPlugin = {
    kind: "strategy",
    name: "spy",
    create: () => ({
      pick: (available, ctx) => {
        seen.push({
          model: ctx.model,
          attempt: ctx.attempt,
          affinity: ctx.affinityKey,
          session: ctx.headers.get("x-session-id"),
        });
        return available[0];
      },
    }),
  };
  const yaml = `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${k(0)}, ${k(1)}] }\n` +
    `pools:\n  default: { strategy: spy, upstreams: [up], affinity: { by: [user, "header:x-session-id"], pin: false } }\n` +
    `retry: { backoff_base: 0.001, backoff_max: 0.001 }\n`;
  const config = parseConfigText(yaml, "t.yaml", { env: () => undefined });
  const app = await App.create(config, {
    plugins: [...builtins, spy],
    probes: false,
    logger: new Logger({ sink: () => {} }),
    fetch: (() => {
      let n = 0;
      return () => Promise.resolve(new Response("{}", { status: n++ === 0 ? 500 : 200 }));
    })(),
  });
  try {
    const req = (body: unknown) =>
      new Request("http://proxy.test/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-session-id": "sess-9" },
        body: JSON.stringify(body),
      });
    await app.services().forward(contextOf(req({ model: "m", user: "u-1" }), new ManualClock()));
    await app.services().forward(contextOf(req({ model: "m" }), new ManualClock()));
  } finally {
    await app.close();
  }
  assert.deepEqual(seen, [
    { model: "m", attempt: 1, affinity: "u-1", session: "sess-9" },
    { model: "m", attempt: 2, affinity: "u-1", session: "sess-9" },
    { model: "m", attempt: 1, affinity: "sess-9", session: "sess-9" },
  ]);
});

Deno.test("forward() relays a stream and ends its lease only when the stream ends", async () => {
  await using h = await harness([{ stream: ["data: a\n\n", "data: [DONE]\n\n"] }]);
  const res = await h.run();
  assert.equal(res.status, 200);
  assert.equal(h.outcomes.length, 0, "the stream is still open");
  assert.equal(h.app.open.size, 1);
  assert.equal(await res.text(), "data: a\n\ndata: [DONE]\n\n");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), ["ok"]);
  assertSettled(h);
});

Deno.test("forward() reports a stream that breaks mid-body to the lease as a server failure", async () => {
  await using h = await harness([{ stream: ["data: a\n\n"], breakAfter: true }]);
  const res = await h.run();
  await res.text().catch(() => {});
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), ["server"]);
  assertSettled(h);
});

Deno.test("forward() ends a stream's lease once when the client leaves mid-stream", async () => {
  await using h = await harness([{ stream: ["data: a\n\n", "data: b\n\n", "data: c\n\n"] }]);
  const res = await h.run();
  const reader = res.body!.getReader();
  await reader.read();
  await reader.cancel();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), ["client_abort"]);
  assertSettled(h);
});

Deno.test("forward() ends a stream's lease once when shutdown cuts it", async () => {
  await using h = await harness([{ stream: ["data: a\n\n", "data: b\n\n"] }]);
  const res = await h.run();
  const reader = res.body!.getReader();
  await reader.read();
  h.app.cutAll();
  await reader.read().catch(() => {});
  await reader.cancel().catch(() => {});
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(h.outcomes.length, 1);
  assertSettled(h);
});

Deno.test("forward() ends a waiting attempt's lease once when shutdown cuts it: 503", async () => {
  await using h = await harness(["hang"]);
  const pending = h.run();
  await new Promise((r) => setTimeout(r, 0));
  h.app.cutAll();
  const res = await pending;
  assert.equal(res.status, 503);
  assert.equal((await res.json()).error.code, "shutting_down");
  assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), ["client_abort"]);
  assertSettled(h);
});

Deno.test("forward() ends the lease once when the client leaves before any answer: 499", async () => {
  await using h = await harness(["hang"]);
  const abort = new AbortController();
  const pending = h.run(undefined, { signal: abort.signal });
  await new Promise((r) => setTimeout(r, 0));
  abort.abort();
  // the client's signal is read once the attempt has lasted 50 ms (then at the next tick)
  h.clock.advance(60);
  h.app.watchdog.tick();
  const res = await pending;
  assert.equal(res.status, 499);
  assert.deepEqual(h.outcomes.map((o) => o.outcome.cls), ["client_abort"]);
  assertSettled(h);
});

Deno.test("forward() tells the strategy each attempt's status, latency and tokens", async () => {
  await using h = await harness([
    { status: 500 },
    { status: 200, body: '{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}' },
  ]);
  await (await h.run()).text();
  const [failed, ok] = h.outcomes.map((o) => o.outcome);
  assert.equal(failed!.status, 500);
  assert.equal(failed!.usage, undefined);
  assert.equal(ok!.status, 200);
  assert.deepEqual(ok!.usage, { promptTokens: 3, completionTokens: 4, totalTokens: 7 });
  assert.equal(ok!.latencyMs, 0); // the manual clock did not move
  assert.equal(ok!.ttfbMs, 0);
  const served = [...h.app.rt.candidates.values()].find((c) => c.mask === h.outcomes[1]!.key)!;
  assert.equal(served.state.totalTokens, 7);
});

/** A config of one key at `max_concurrency: 1`, with a wait queue. */
function queued(maxLength: number): string {
  return `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${k(0)}],` +
    ` quota: { max_concurrency: 1 } }\n` +
    `pools:\n  default: { strategy: first_recording, upstreams: [up] }\n` +
    `queue: { max_wait: 60, max_length: ${maxLength} }\n`;
}

/** Waits (real time) until `ok()` holds. */
async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(ok(), `timed out waiting for ${what}`);
}

Deno.test("forward() answers a request waiting for a key 503 shutting_down at shutdown and sends nothing", async () => {
  await using h = await harness([{ status: 200 }], queued(10));
  const pool = h.deps.poolFor("m")!;
  // the key's one slot, held by no attempt: only the shutdown can wake the waiter
  const held = pool.lease({
    model: "m",
    attempt: 1,
    client: undefined,
    affinityKey: undefined,
    headers: new Headers(),
  });
  assert.ok(held !== undefined);
  const waiter = h.run();
  await until(() => h.app.queues.waiting(pool, "m") === 1, "the request in the queue");
  const cutAt = performance.now();
  h.app.cutAll();
  const res = await waiter;
  const took = performance.now() - cutAt;
  // (a waiter for a busy key also looks again every second on its own)
  assert.ok(took < 500, `woken by the shutdown, not by a timer (${took.toFixed(0)} ms)`);
  assert.equal(res.status, 503);
  assert.equal((await res.json()).error.code, "shutting_down");
  assert.equal(h.calls.length, 0, "the waiting request never reached the upstream");
  assert.equal(h.app.queues.waiting(pool, "m"), 0);
  held.done({ cls: "client_abort" });
  assert.equal(pool.candidates[0]!.state.inFlight, 0);
});

Deno.test("forward() answers 503 shutting_down to a waiter woken when shutdown cuts the attempt it waits behind", async () => {
  await using h = await harness(["hang"], queued(10));
  const pool = h.deps.poolFor("m")!;
  const first = h.run();
  await until(() => h.calls.length === 1, "the first attempt");
  const second = h.run({ model: "m", messages: [{ role: "user", content: "second" }] });
  await until(() => h.app.queues.waiting(pool, "m") === 1, "the second request in the queue");
  h.app.cutAll();
  const res = await second;
  assert.equal(res.status, 503);
  assert.equal((await res.json()).error.code, "shutting_down");
  const cut = await first;
  assert.equal(cut.status, 503);
  await cut.body?.cancel();
  assert.equal(h.calls.length, 1, "the waiting request never reached the upstream");
  assert.equal(h.app.queues.waiting(pool, "m"), 0);
  assertSettled(h);
});

Deno.test("forward() leaves no wait queue behind for a client naming 1,000 models", async () => {
  await using h = await harness(() => ({ status: 200, body: "{}" }), queued(1));
  const pool = h.deps.poolFor("m0")!;
  const held = pool.lease({
    model: "held",
    attempt: 1,
    client: undefined,
    affinityKey: undefined,
    headers: new Headers(),
  });
  assert.ok(held !== undefined);
  // every request names a new model, while the one key is busy: each waits in its own queue
  const leaving = new AbortController();
  const pending = Array.from({ length: 1000 }, (_, i) =>
    h.run(
      { model: `m${i}`, messages: [] },
      i % 2 === 1 ? { signal: leaving.signal } : {},
    ));
  await until(
    () => Array.from({ length: 1000 }).every((_, i) => h.app.queues.waiting(pool, `m${i}`) === 1),
    "a waiter per model",
  );
  // half the clients leave; the key frees and serves the other half, one after the other
  leaving.abort();
  held.done({ cls: "ok" });
  const statuses = await Promise.all(pending.map(async (p) => {
    const res = await p;
    await res.body?.cancel();
    return res.status;
  }));
  assert.deepEqual(statuses, Array.from({ length: 1000 }, (_, i) => i % 2 === 1 ? 499 : 200));
  assert.equal(h.calls.length, 500);
  for (let i = 0; i < 1000; i++) assert.equal(h.app.queues.waiting(pool, `m${i}`), 0);
  const stats = h.app.queues.stats(pool);
  assert.equal(stats.waited, 500);
  // a pool's figures go on prune only once it holds no queue: none is left
  h.app.queues.prune(() => false);
  assert.deepEqual([...h.app.queues.pools()], [], "no queue left behind");
  assert.equal(pool.candidates[0]!.state.inFlight, 0);
});
