/**
 * @module
 * Tests of the HTTP server: the request handler, request tracking, and shutdown (drain, then
 * cut with an honest error).
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../src/dev/mock_upstream.ts";
import { createHandler } from "../src/server.ts";
import { startProxy } from "./helpers/proxy.ts";

function config(baseUrl: string): string {
  return `upstreams:
  mock: { base_url: ${baseUrl}, keys: [sk-server-test-0001], timeout: { first_byte: 30, idle: 30 } }
`;
}

function chat(url: string, stream: boolean): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }),
  });
}

async function readAll(res: Response): Promise<{ text: string; failed: boolean }> {
  const reader = res.body!.getReader();
  let text = "";
  try {
    for (let i = 0; i < 100_000; i++) {
      const r = await reader.read();
      if (r.done) return { text, failed: false };
      text += new TextDecoder().decode(r.value);
    }
  } catch {
    return { text, failed: true };
  }
  return { text, failed: false };
}

const INFO = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
} as Deno.ServeHandlerInfo<
  Deno.NetAddr
>;

Deno.test("createHandler() answers through the chain and tracks each request until it ends", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const started: string[] = [];
  const ended: string[] = [];
  const handle = createHandler(proxy.app, {
    track: { start: (ctx) => started.push(ctx.requestId), end: (ctx) => ended.push(ctx.requestId) },
  });
  const res = await handle(new Request("http://x/health"), INFO);
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const missing = await handle(
    new Request("http://x/v1/chat/completions", { method: "POST", body: "{}" }),
    INFO,
  );
  assert.ok(missing.headers.get("x-request-id"));
  await missing.body?.cancel();
  assert.equal(started.length, 2);
  assert.deepEqual(ended, started);
});

Deno.test("createHandler() answers 503 shutting_down once the cut signal is aborted", async () => {
  await using mock = await startMockUpstream({ mode: "hang" });
  await using proxy = await startProxy(config(mock.baseUrl));
  const cut = new AbortController();
  const handle = createHandler(proxy.app, { cut: cut.signal });
  const waiting = handle(
    new Request("http://x/v1/chat/completions", { method: "POST", body: '{"model":"m"}' }),
    INFO,
  );
  for (let i = 0; i < 100 && mock.requests.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  cut.abort();
  const res = await waiting;
  assert.equal(res.status, 503);
  assert.equal((await res.json()).error.code, "shutting_down");
  const late = await handle(new Request("http://x/health"), INFO);
  assert.equal(late.status, 503);
  await late.body?.cancel();
  await mock.close(); // releases the hung upstream request
});

Deno.test("RunningServer.shutdown() lets a stream finish within the drain time", async () => {
  await using mock = await startMockUpstream({ chunks: 6, chunkDelayMs: 50 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url, true);
  const body = readAll(res);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(proxy.server.inFlight(), 1);
  const report = await proxy.server.shutdown(5000);
  assert.deepEqual(report, { drained: true, cut: 0 });
  const { text, failed } = await body;
  assert.equal(failed, false);
  assert.ok(text.endsWith("data: [DONE]\n\n"));
  assert.equal(proxy.server.inFlight(), 0);
  assert.equal(proxy.server.shutdown(5000), proxy.server.shutdown(1), "the same shutdown");
});

Deno.test("RunningServer.shutdown() cuts a stream still open after the drain time with an error event", async () => {
  await using mock = await startMockUpstream({ chunks: 100_000, chunkDelayMs: 50 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url, true);
  const body = readAll(res);
  await new Promise((r) => setTimeout(r, 60));
  const t0 = performance.now();
  const report = await proxy.server.shutdown(200);
  assert.ok(performance.now() - t0 < 200 + 1500);
  assert.deepEqual(report, { drained: false, cut: 1 });
  const { text } = await body;
  assert.match(text, /event: error\ndata: .*"code":"stream_interrupted"/);
  assert.ok(
    proxy.logRecords().some((r) => r.msg === "drain time over: cutting the requests still open"),
  );
});

Deno.test("RunningServer.cutNow() ends the drain at once", async () => {
  await using mock = await startMockUpstream({ chunks: 100_000, chunkDelayMs: 50 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url, true);
  const body = readAll(res);
  await new Promise((r) => setTimeout(r, 60));
  const t0 = performance.now();
  const stopping = proxy.server.shutdown(60_000);
  await new Promise((r) => setTimeout(r, 50));
  proxy.server.cutNow();
  assert.deepEqual(await stopping, { drained: false, cut: 1 });
  assert.ok(performance.now() - t0 < 2000);
  assert.match((await body).text, /event: error/);
});
