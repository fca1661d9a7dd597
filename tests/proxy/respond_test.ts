import { builtins } from "../../plugins/mod.ts";
import assert from "node:assert/strict";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import type { RequestContext } from "../../src/plugin.ts";
import { errorResponse, ProxyError, shuttingDown } from "../../src/errors.ts";
import type { AttemptClass } from "../../src/health/classify.ts";
import { Logger } from "../../src/logger.ts";
import type { AttemptResult } from "../../src/proxy/attempt.ts";
import { finalResponse } from "../../src/proxy/respond.ts";

const T0 = Date.UTC(2025, 0, 1);

async function setup(keys = 1): Promise<{ app: App; ctx: RequestContext } & AsyncDisposable> {
  const list = Array.from({ length: keys }, (_, i) => `sk-respond-test-00000000${i}`).join(", ");
  const config = parseConfigText(
    `upstreams:\n  up: { base_url: "http://127.0.0.1:9/v1", keys: [${list}] }\n`,
    "respond_test.yaml",
    { env: () => undefined },
  );
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
    now: () => T0,
  });
  const req = new Request("http://x/v1/chat/completions", { method: "POST" });
  const ctx: RequestContext = {
    req,
    url: new URL(req.url),
    path: new URL(req.url).pathname,
    search: "",
    startedAt: performance.now(),
    remoteAddr: "127.0.0.1",
    requestId: "req-1",
    client: undefined,
    res: undefined,
    log: { status: 0, attempts: 1, stream: false, bytes: 0, upstreamMs: 0 },
    done: undefined,
  };
  return { app, ctx, [Symbol.asyncDispose]: () => app.close() };
}

function errorAnswer(
  status: number,
  body: string,
  cls: AttemptClass,
  headers: Record<string, string> = {},
): AttemptResult {
  return {
    kind: "error_response",
    cls,
    response: new Response(null, { status, headers: { "x-request-id": "up-1", ...headers } }),
    body: new TextEncoder().encode(body),
  };
}

function failure(cls: AttemptClass, timeout?: string): AttemptResult {
  return { kind: "failure", cls, error: new Error("connection refused"), timeout };
}

/** The response a thrown error becomes (as the request_log middleware renders it). */
function answer(f: () => Response): Response {
  try {
    return f();
  } catch (err) {
    assert.ok(err instanceof ProxyError, String(err));
    return errorResponse(err, "req-1");
  }
}

/** What finalResponse reads from the application. */
function opts(app: App) {
  return { clock: app.clock, logger: app.logger, retries: app.rt.config.retry.maxAttempts > 1 };
}

function retryHeaders(res: Response): [string | null, string | null] {
  return [res.headers.get("retry-after"), res.headers.get("x-should-retry")];
}

Deno.test("finalResponse() answers 503 saying why when nothing could be tried", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  t.app.board.setDisabled(pool.candidates[0]!, true);
  assert.throws(
    () => finalResponse(t.ctx, pool, undefined, undefined, opts(t.app)),
    (e: unknown) =>
      e instanceof ProxyError && e.status === 503 && e.code === "no_upstream_available" &&
      /the only key of upstream "up" is unavailable: 1 disabled/.test(e.message),
  );
  // no key comes back by itself: a retry in a minute at the soonest, never one at once
  const res = answer(() => finalResponse(t.ctx, pool, undefined, undefined, opts(t.app)));
  assert.deepEqual(retryHeaders(res), ["60", "false"]);
});

Deno.test("finalResponse() answers 429 with Retry-After when every key rests for a rate limit", async () => {
  await using t = await setup(2);
  const pool = t.app.rt.defaultPool!;
  const [a, b] = pool.candidates;
  t.app.board.end(a!, "rate_limited", { status: 429, retryAt: T0 + 12_000 });
  t.app.board.end(b!, "rate_limited", { status: 429, retryAt: T0 + 30_000 });
  const res = answer(() => finalResponse(t.ctx, pool, undefined, undefined, opts(t.app)));
  assert.equal(res.status, 429);
  const body = await res.json();
  assert.equal(body.error.type, "rate_limit_error");
  assert.equal(body.error.code, "all_keys_rate_limited");
  assert.match(body.error.message, /all 2 keys of upstream "up" are unavailable: 2 rate limited/);
  // the first key returns in 12 s: an SDK waits that long, then retries
  assert.deepEqual(retryHeaders(res), ["12", "true"]);
});

Deno.test("finalResponse() tells SDKs not to retry a rate limit lasting a minute or more", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  t.app.board.end(pool.candidates[0]!, "rate_limited", { status: 429, retryAt: T0 + 90_000 });
  const res = answer(() => finalResponse(t.ctx, pool, undefined, undefined, opts(t.app)));
  assert.equal(res.status, 429);
  assert.deepEqual(retryHeaders(res), ["90", "false"]);
});

Deno.test("finalResponse() answers 429 insufficient_quota when every key is out of quota", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  t.app.board.end(pool.candidates[0]!, "quota", { status: 429 });
  const res = answer(() => finalResponse(t.ctx, pool, undefined, undefined, opts(t.app)));
  assert.equal(res.status, 429);
  assert.equal((await res.json()).error.code, "insufficient_quota");
  // health.quota_rest: an hour
  assert.deepEqual(retryHeaders(res), ["3600", "false"]);
});

Deno.test("finalResponse() passes an upstream's JSON error through with its status", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const body = '{"error":{"message":"bad","type":"invalid_request_error"}}';
  const res = finalResponse(
    t.ctx,
    pool,
    errorAnswer(400, body, "bad_request", { "x-should-retry": "false" }),
    pool.candidates[0],
    opts(t.app),
  );
  assert.equal(res.status, 400);
  assert.equal(await res.text(), body);
  assert.equal(res.headers.get("x-request-id"), "req-1");
  assert.equal(res.headers.get("x-upstream-request-id"), "up-1");
  // a client error is the upstream's to advise on
  assert.deepEqual(retryHeaders(res), [null, "false"]);
});

Deno.test("finalResponse() keeps a JSON error body without an error member, adding one", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const body = '{"status":"failure","message":"Invalid config passed"}\n';
  const res = finalResponse(
    t.ctx,
    pool,
    errorAnswer(400, body, "bad_request"),
    pool.candidates[0],
    opts(t.app),
  );
  assert.equal(res.status, 400);
  assert.equal(res.headers.get("content-type"), "application/json");
  const json = await res.json();
  assert.equal(json.status, "failure");
  assert.equal(json.message, "Invalid config passed");
  assert.equal(json.error.message, "Invalid config passed");
  assert.equal(json.error.code, "upstream_400");
});

Deno.test("finalResponse() wraps a non-JSON upstream error, quoting it", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const res = finalResponse(
    t.ctx,
    pool,
    errorAnswer(502, "<html><body><h1>bad gateway</h1></body></html>", "server"),
    pool.candidates[0],
    opts(t.app),
  );
  assert.equal(res.status, 502);
  const json = await res.json();
  assert.equal(json.error.type, "upstream_error");
  assert.equal(json.error.message, 'Upstream "up" answered HTTP 502: bad gateway');
});

Deno.test("finalResponse() tells SDKs not to retry an upstream 5xx it already retried", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const res = finalResponse(
    t.ctx,
    pool,
    errorAnswer(500, '{"error":{"message":"boom"}}', "server", {
      "retry-after": "30",
      "retry-after-ms": "20",
      "x-should-retry": "true",
    }),
    pool.candidates[0],
    opts(t.app),
  );
  assert.equal(res.status, 500);
  // the key can be tried again now; the upstream's own advice is replaced
  assert.deepEqual(retryHeaders(res), ["1", "false"]);
  assert.equal(res.headers.get("retry-after-ms"), null);
});

Deno.test("finalResponse() keeps an upstream's 429 retryable with the pool's Retry-After", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const c = pool.candidates[0]!;
  t.app.board.end(c, "rate_limited", { status: 429, retryAt: T0 + 5_000 });
  const res = finalResponse(
    t.ctx,
    pool,
    errorAnswer(429, '{"error":{"message":"slow down"}}', "rate_limited", { "retry-after": "5" }),
    c,
    opts(t.app),
  );
  assert.equal(res.status, 429);
  assert.deepEqual(retryHeaders(res), ["5", "true"]);
  assert.equal((await res.json()).error.message, "slow down");
});

Deno.test("finalResponse() turns a refusal of our key into a 502 naming the masked key", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const c = pool.candidates[0]!;
  t.app.board.end(c, "auth", { status: 401 });
  assert.throws(
    () => finalResponse(t.ctx, pool, errorAnswer(401, '{"error":{}}', "auth"), c, opts(t.app)),
    (e: unknown) =>
      e instanceof ProxyError && e.status === 502 && e.message.includes(c.mask) &&
      !e.message.includes("sk-respond-test-000000000"),
  );
  const res = answer(() =>
    finalResponse(t.ctx, pool, errorAnswer(401, '{"error":{}}', "auth"), c, opts(t.app))
  );
  // health.auth_rest: ten minutes
  assert.deepEqual(retryHeaders(res), ["600", "false"]);
});

Deno.test("finalResponse() maps timeouts to 504 and unreachable upstreams to 503, not retryable", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const c = pool.candidates[0]!;
  assert.throws(
    () => finalResponse(t.ctx, pool, failure("timeout", "first_byte"), c, opts(t.app)),
    (e: unknown) => e instanceof ProxyError && e.status === 504 && /first byte/.test(e.message),
  );
  const timedOut = answer(() => finalResponse(t.ctx, pool, failure("timeout"), c, opts(t.app)));
  assert.deepEqual(retryHeaders(timedOut), ["1", "false"]);
  const refused = answer(() => finalResponse(t.ctx, pool, failure("connect"), c, opts(t.app)));
  assert.equal(refused.status, 503);
  assert.equal((await refused.json()).error.code, "upstream_unreachable");
  assert.deepEqual(retryHeaders(refused), ["1", "false"]);
  // once the key is ejected, Retry-After says when it may be tried again
  for (let i = 0; i < 3; i++) t.app.board.end(c, "connect");
  const ejected = answer(() => finalResponse(t.ctx, pool, failure("connect"), c, opts(t.app)));
  assert.deepEqual(retryHeaders(ejected), ["30", "false"]);
});

Deno.test("finalResponse() keeps a closed kept-alive connection retryable at once", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const res = answer(() =>
    finalResponse(t.ctx, pool, failure("stale"), pool.candidates[0], opts(t.app))
  );
  assert.equal(res.status, 502);
  assert.equal((await res.json()).error.code, "upstream_connection_closed");
  assert.deepEqual(retryHeaders(res), ["1", "true"]);
});

Deno.test("finalResponse() answers 499 without a body when the client left", async () => {
  await using t = await setup();
  const pool = t.app.rt.defaultPool!;
  const res = finalResponse(t.ctx, pool, failure("client_abort"), pool.candidates[0], opts(t.app));
  assert.equal(res.status, 499);
  assert.equal(t.ctx.log.status, 499);
});

Deno.test("shuttingDown() is a 503 shutting_down, retryable after a second", async () => {
  const e = shuttingDown();
  assert.equal(e.status, 503);
  assert.equal(e.code, "shutting_down");
  const res = errorResponse(e);
  assert.deepEqual(retryHeaders(res), ["1", "true"]);
  await res.body?.cancel();
});
