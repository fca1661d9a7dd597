import assert from "node:assert/strict";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import type { RequestContext } from "../../src/context.ts";
import { ProxyError } from "../../src/errors.ts";
import { Logger } from "../../src/logger.ts";
import type { AttemptResult } from "../../src/proxy/attempt.ts";
import { finalResponse, shuttingDown } from "../../src/proxy/respond.ts";

async function setup(): Promise<{ app: App; ctx: RequestContext }> {
  const config = parseConfigText(
    `upstreams:\n  up: { base_url: "http://127.0.0.1:9/v1", keys: [sk-respond-test-000000001] }\n`,
    "respond_test.yaml",
    { env: () => undefined },
  );
  const app = await App.create(config, { probes: false, logger: new Logger({ sink: () => {} }) });
  const req = new Request("http://x/v1/chat/completions", { method: "POST" });
  const ctx: RequestContext = {
    req,
    url: new URL(req.url),
    path: new URL(req.url).pathname,
    search: "",
    app,
    rt: app.rt,
    startedAt: performance.now(),
    remoteAddr: "127.0.0.1",
    requestId: "req-1",
    client: undefined,
    res: undefined,
    log: { status: 0, attempts: 1, stream: false, bytes: 0, upstreamMs: 0 },
    done: undefined,
  };
  return { app, ctx };
}

function errorAnswer(status: number, body: string, cls: "bad_request" | "server" | "auth") {
  return {
    kind: "error_response",
    cls,
    response: new Response(null, { status, headers: { "x-request-id": "up-1" } }),
    body: new TextEncoder().encode(body),
  } as AttemptResult;
}

Deno.test("finalResponse() answers 503 saying why when nothing could be tried", async () => {
  const { app, ctx } = await setup();
  try {
    const pool = app.rt.defaultPool!;
    app.board.setDisabled(pool.candidates[0]!, true);
    assert.throws(
      () => finalResponse(ctx, app, pool, undefined, undefined),
      (e: unknown) =>
        e instanceof ProxyError && e.status === 503 && e.code === "no_upstream_available" &&
        /the only key of upstream "up" is unavailable: 1 disabled/.test(e.message),
    );
  } finally {
    await app.close();
  }
});

Deno.test("finalResponse() passes an upstream's JSON error through with its status", async () => {
  const { app, ctx } = await setup();
  try {
    const pool = app.rt.defaultPool!;
    const body = '{"error":{"message":"bad","type":"invalid_request_error"}}';
    const res = finalResponse(
      ctx,
      app,
      pool,
      errorAnswer(400, body, "bad_request"),
      pool.candidates[0],
    );
    assert.equal(res.status, 400);
    assert.equal(await res.text(), body);
    assert.equal(res.headers.get("x-request-id"), "req-1");
    assert.equal(res.headers.get("x-upstream-request-id"), "up-1");
  } finally {
    await app.close();
  }
});

Deno.test("finalResponse() wraps a non-JSON upstream error in OpenAI's shape", async () => {
  const { app, ctx } = await setup();
  try {
    const pool = app.rt.defaultPool!;
    const res = finalResponse(
      ctx,
      app,
      pool,
      errorAnswer(502, "<html>bad gateway</html>", "server"),
      pool.candidates[0],
    );
    assert.equal(res.status, 502);
    const json = await res.json();
    assert.equal(json.error.type, "upstream_error");
    assert.match(json.error.message, /Upstream "up" answered HTTP 502/);
  } finally {
    await app.close();
  }
});

Deno.test("finalResponse() turns a refusal of our key into a 502 naming the masked key", async () => {
  const { app, ctx } = await setup();
  try {
    const pool = app.rt.defaultPool!;
    const c = pool.candidates[0]!;
    assert.throws(
      () => finalResponse(ctx, app, pool, errorAnswer(401, '{"error":{}}', "auth"), c),
      (e: unknown) =>
        e instanceof ProxyError && e.status === 502 && e.message.includes(c.mask) &&
        !e.message.includes("sk-respond-test-000000001"),
    );
  } finally {
    await app.close();
  }
});

Deno.test("finalResponse() maps timeouts to 504 and unreachable upstreams to 502", async () => {
  const { app, ctx } = await setup();
  try {
    const pool = app.rt.defaultPool!;
    const c = pool.candidates[0]!;
    const timeout = {
      kind: "failure",
      cls: "timeout",
      error: new Error("t"),
      timeout: "first_byte",
    } as AttemptResult;
    assert.throws(
      () => finalResponse(ctx, app, pool, timeout, c),
      (e: unknown) => e instanceof ProxyError && e.status === 504 && /first byte/.test(e.message),
    );
    const refused = {
      kind: "failure",
      cls: "connect",
      error: new Error("connection refused"),
    } as AttemptResult;
    assert.throws(
      () => finalResponse(ctx, app, pool, refused, c),
      (e: unknown) => e instanceof ProxyError && e.status === 502,
    );
    const left = {
      kind: "failure",
      cls: "client_abort",
      error: new Error("gone"),
    } as AttemptResult;
    assert.equal(finalResponse(ctx, app, pool, left, c).status, 499);
  } finally {
    await app.close();
  }
});

Deno.test("shuttingDown() is a 503 shutting_down with Retry-After", () => {
  const e = shuttingDown();
  assert.equal(e.status, 503);
  assert.equal(e.code, "shutting_down");
  assert.equal(e.headers["retry-after"], "1");
});
