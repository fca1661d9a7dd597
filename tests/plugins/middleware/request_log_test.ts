import { builtins } from "../../../plugins/mod.ts";
import assert from "node:assert/strict";
import requestLogPlugin from "../../../plugins/middleware/request_log.ts";
import { App } from "../../../src/app.ts";
import { compose } from "../../../src/compose.ts";
import { parseConfigText } from "../../../src/config/mod.ts";
import type { Middleware, RequestContext } from "../../../src/plugin.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { errorHandler, ProxyError } from "../../../src/errors.ts";
import { Logger } from "../../../src/logger.ts";
import { startProxy } from "../../helpers/proxy.ts";

const KEY = "sk-requestlog-upstream-key-00000000000001";

function configText(baseUrl: string): string {
  return `upstreams:\n  m: { base_url: "${baseUrl}", keys: [${KEY}] }\n`;
}

function chat(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-x", messages: [{ role: "user", content: "hi" }], ...body }),
  });
}

function requestLines(logs: string[]): Record<string, unknown>[] {
  return logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");
}

/** Waits (bounded) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

/** Runs request_log in front of `inner`, with its log lines. */
async function runDirect(inner: Middleware, headers: Record<string, string> = {}) {
  const lines: string[] = [];
  const config = parseConfigText(configText("http://127.0.0.1:9/v1"), "r.yaml", {
    env: () => undefined,
  });
  const logger = new Logger({ sink: (l) => lines.push(l), level: "debug" });
  logger.setSecrets(new Map([[KEY, "sk-r...0001"]]));
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger,
  });
  const req = new Request("http://proxy.test/v1/chat/completions", { method: "POST", headers });
  const ctx = {
    req,
    url: new URL(req.url),
    path: new URL(req.url).pathname,
    search: new URL(req.url).search,
    startedAt: performance.now(),
    remoteAddr: "127.0.0.1",
    requestId: "generated-id",
    client: undefined,
    res: undefined,
    log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
    done: undefined,
  } as RequestContext;
  // as the runtime composes it: with the chain's error handler
  await compose([requestLogPlugin.create(config, app.services()), inner], errorHandler(logger))(
    ctx,
  );
  await ctx.done;
  await app.close();
  return { ctx, res: ctx.res!, lines: lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

Deno.test("request_log writes one line per request and returns the request id", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(configText(mock.baseUrl));
  const res = await chat(proxy.url, {});
  const id = res.headers.get("x-request-id");
  assert.match(id ?? "", /^[0-9a-f-]{36}$/);
  await res.body?.cancel();
  await until(() => requestLines(proxy.logs).length === 1, "the log line");
  const [line] = requestLines(proxy.logs);
  assert.equal(line!.request_id, id);
  assert.equal(line!.method, "POST");
  assert.equal(line!.path, "/v1/chat/completions");
  assert.equal(line!.status, 200);
  assert.equal(line!.model, "gpt-x");
  assert.equal(line!.upstream, "m");
  assert.equal(line!.level, "info");
  assert.equal(typeof line!.duration_ms, "number");
  assert.equal(typeof line!.key, "string");
  assert.ok(!JSON.stringify(line).includes(KEY));
});

Deno.test("request_log keeps a sane x-request-id from the client and replaces others", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(configText(mock.baseUrl));
  const kept = await chat(proxy.url, {}, { "x-request-id": "trace-abc.123:x@y" });
  assert.equal(kept.headers.get("x-request-id"), "trace-abc.123:x@y");
  await kept.body?.cancel();
  for (const bad of ["has space", "x".repeat(129), 'quote"d', "new\u00e9"]) {
    const res = await fetch(`${proxy.url}/health`, { headers: { "x-request-id": bad } });
    const id = res.headers.get("x-request-id") ?? "";
    assert.notEqual(id, bad);
    assert.match(id, /^[0-9a-f-]{36}$/);
    await res.body?.cancel();
  }
});

Deno.test("request_log logs a stream when it ends, with its true duration and bytes", async () => {
  await using mock = await startMockUpstream({ chunkDelayMs: 40, chunks: 4 });
  await using proxy = await startProxy(configText(mock.baseUrl));
  const started = performance.now();
  const res = await chat(proxy.url, { stream: true });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.equal(first.done, false);
  assert.equal(requestLines(proxy.logs).length, 0, "no line before the stream ends");
  let bytes = first.value!.length;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    bytes += r.value.length;
  }
  const elapsed = performance.now() - started;
  await until(() => requestLines(proxy.logs).length === 1, "the log line");
  const [line] = requestLines(proxy.logs);
  assert.equal(line!.stream, true);
  assert.equal(line!.bytes, bytes);
  assert.equal(line!.outcome, "complete");
  assert.equal(line!.status, 200);
  assert.ok((line!.duration_ms as number) >= 4 * 40 - 5, `duration ${line!.duration_ms}`);
  assert.ok((line!.duration_ms as number) <= elapsed + 5);
  assert.ok((line!.ttfb_ms as number) < (line!.duration_ms as number));
});

Deno.test("request_log tells a stream the upstream broke from a complete one", async () => {
  await using mock = await startMockUpstream({ mode: "die_mid_stream" });
  await using proxy = await startProxy(configText(mock.baseUrl));
  const res = await chat(proxy.url, { stream: true });
  assert.equal(res.status, 200);
  await res.text().catch(() => "");
  await until(() => requestLines(proxy.logs).length === 1, "the log line");
  const [line] = requestLines(proxy.logs);
  assert.equal(line!.outcome, "server");
  assert.match(String(line!.error), /stream interrupted/);
  assert.equal(line!.level, "info");
  assert.ok((line!.bytes as number) > 0);
});

Deno.test("request_log logs a client that leaves mid-stream as client_abort", async () => {
  await using mock = await startMockUpstream({ chunkDelayMs: 30, chunks: 10 });
  await using proxy = await startProxy(configText(mock.baseUrl));
  const res = await chat(proxy.url, { stream: true });
  const reader = res.body!.getReader();
  await reader.read();
  await reader.cancel();
  await until(() => requestLines(proxy.logs).length === 1, "the log line");
  assert.equal(requestLines(proxy.logs)[0]!.outcome, "client_abort");
});

Deno.test("request_log logs /health and /metrics at debug only", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(configText(mock.baseUrl));
  await (await fetch(`${proxy.url}/health`)).body?.cancel();
  await (await fetch(`${proxy.url}/metrics`)).body?.cancel();
  await (await fetch(`${proxy.url}/stats`)).body?.cancel();
  const lines = requestLines(proxy.logs);
  assert.deepEqual(lines.map((l) => [l.path, l.level]), [
    ["/health", "debug"],
    ["/metrics", "debug"],
    ["/stats", "info"],
  ]);
  await using quiet = await startProxy(configText(mock.baseUrl), { level: "info" });
  await (await fetch(`${quiet.url}/health`)).body?.cancel();
  assert.equal(requestLines(quiet.logs).length, 0);
});

Deno.test("request_log logs upstream server errors at warn", async () => {
  await using mock = await startMockUpstream({ mode: "error500" });
  await using proxy = await startProxy(configText(mock.baseUrl));
  const res = await chat(proxy.url, {});
  assert.equal(res.status, 500);
  await res.body?.cancel();
  const [line] = requestLines(proxy.logs);
  assert.equal(line!.level, "warn");
  assert.equal(line!.status, 500);
  assert.ok((line!.attempts as number) >= 1);
});

Deno.test("errorHandler() turns a ProxyError into its OpenAI-style response, and request_log logs it", async () => {
  const { res, lines } = await runDirect(() => {
    throw new ProxyError("Nope", { status: 418, type: "invalid_request_error", code: "teapot" });
  });
  assert.equal(res.status, 418);
  assert.equal(res.headers.get("x-request-id"), "generated-id");
  assert.deepEqual(await res.json(), {
    error: { message: "Nope", type: "invalid_request_error", code: "teapot", param: null },
  });
  const line = lines.find((l) => l.msg === "request")!;
  assert.equal(line.status, 418);
  assert.equal(line.error, "Nope");
});

Deno.test("errorHandler() hides an internal error from the client and logs it redacted", async () => {
  const { res, lines } = await runDirect(() => {
    throw new Error(`bug while using ${KEY}`);
  });
  assert.equal(res.status, 500);
  const body = await res.json();
  assert.equal(body.error.message, "Internal error in llm-balance");
  assert.equal(body.error.code, "internal_error");
  const text = JSON.stringify(lines);
  assert.ok(!text.includes(KEY));
  const failure = lines.find((l) => l.msg === "request failed inside llm-balance")!;
  assert.equal(failure.error, "bug while using sk-r...0001");
  assert.equal(typeof failure.stack, "string");
  assert.equal(lines.find((l) => l.msg === "request")!.status, 500);
});

Deno.test("request_log answers 404 when nothing in the chain answered", async () => {
  const { res, lines } = await runDirect(() => {});
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "not_found");
  assert.equal(lines.find((l) => l.msg === "request")!.status, 404);
});

Deno.test("errorHandler() releases a response body left behind by a failure", async () => {
  let cancelled = false;
  const { res } = await runDirect((ctx) => {
    ctx.res = new Response(new ReadableStream({ cancel: () => void (cancelled = true) }));
    throw new ProxyError("late failure", { status: 502 });
  });
  assert.equal(res.status, 502);
  await res.body?.cancel();
  assert.equal(cancelled, true);
});

Deno.test("request_log masks a key quoted in an error response's body and headers", async () => {
  const { res, lines } = await runDirect((ctx) => {
    ctx.res = new Response(JSON.stringify({ error: { message: `Bad key ${KEY}` } }), {
      status: 401,
      headers: { "content-type": "application/json", "x-echo": `Bearer ${KEY}` },
    });
  });
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("x-echo"), "Bearer sk-r...0001");
  assert.equal(res.headers.get("x-request-id"), "generated-id");
  assert.deepEqual(await res.json(), { error: { message: "Bad key sk-r...0001" } });
  assert.ok(lines.some((l) => l.msg === "a key was masked in a response to a client"));
});

Deno.test("request_log leaves clean responses and success bodies as they are", async () => {
  const clean = new Response('{"error":"nothing secret"}', { status: 500 });
  const { res } = await runDirect((ctx) => {
    ctx.res = clean;
  });
  assert.equal(res.status, 500);
  assert.equal(await res.text(), '{"error":"nothing secret"}');
  const ok = new Response(`echo ${KEY}`, { status: 200 });
  const { res: passed } = await runDirect((ctx) => {
    ctx.res = ok;
  });
  assert.equal(passed, ok, "a success body is the upstream's business and never rewritten");
  await passed.body?.cancel();
});

Deno.test("request_log never echoes or logs a configured key sent as the request id or model", async () => {
  const { res, lines, ctx } = await runDirect((c) => {
    c.log.model = `model-${KEY}`;
    c.res = new Response("{}", { status: 200 });
  }, { "x-request-id": KEY });
  assert.equal(res.headers.get("x-request-id"), "generated-id");
  assert.equal(ctx.requestId, "generated-id");
  const line = lines.find((l) => l.msg === "request")!;
  assert.equal(line.model, "model-sk-r...0001");
  assert.ok(!JSON.stringify(lines).includes(KEY));
});
