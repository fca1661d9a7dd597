/** @module Tests of the mock OpenAI-compatible upstream used by tests, the demo and the bench. */

import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";

const JSON_HEADERS = { "content-type": "application/json", authorization: "Bearer k1" };

function post(mock: MockUpstream, path: string, body: unknown, headers = JSON_HEADERS) {
  return fetch(mock.baseUrl + path, { method: "POST", headers, body: JSON.stringify(body) });
}

/** Splits an SSE text into the data payloads of its events. */
function sseData(text: string): string[] {
  return text.split("\n\n").filter((e) => e.trim() !== "").map((event) =>
    event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n")
  );
}

Deno.test("startMockUpstream() answers a chat completion with usage and the request's model", async () => {
  await using mock = await startMockUpstream({ name: "alpha" });
  assert.equal(mock.origin, `http://127.0.0.1:${mock.port}`);
  assert.equal(mock.baseUrl, `${mock.origin}/v1`);
  const res = await post(mock, "/chat/completions", {
    model: "gpt-x",
    messages: [{ role: "user", content: "Hello there, mock" }],
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-mock-name"), "alpha");
  assert.equal(res.headers.get("x-request-id"), "mock-1");
  assert.ok(Number(res.headers.get("x-ratelimit-remaining-requests")) > 0);
  const body = await res.json();
  assert.equal(body.object, "chat.completion");
  assert.equal(body.id, "chatcmpl-alpha-1");
  assert.equal(body.model, "gpt-x");
  assert.equal(body.choices[0].message.role, "assistant");
  assert.equal(body.choices[0].message.content, "Hello from the mock upstream");
  assert.equal(body.usage.completion_tokens, 5);
  assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + 5);
});

Deno.test("startMockUpstream() streams chunks, a usage chunk only when asked, then [DONE]", async () => {
  await using mock = await startMockUpstream({ chunks: 3 });
  const plain = await post(mock, "/chat/completions", { model: "m", stream: true, messages: [] });
  assert.equal(plain.headers.get("content-type"), "text/event-stream");
  const events = sseData(await plain.text());
  assert.equal(events.length, 3 + 1 + 1);
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === "m"));
  assert.equal(chunks.map((c) => c.choices[0].delta.content ?? "").join(""), "Hello from the");
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");

  const withUsage = await post(mock, "/chat/completions", {
    model: "m",
    stream: true,
    stream_options: { include_usage: true },
  });
  const usageEvents = sseData(await withUsage.text());
  assert.equal(usageEvents.length, 3 + 1 + 1 + 1);
  const usage = JSON.parse(usageEvents.at(-2)!);
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 3);
});

Deno.test("startMockUpstream() sends each stream chunk separately, chunkDelayMs apart", async () => {
  await using mock = await startMockUpstream({ chunks: 2, chunkDelayMs: 40 });
  const res = await post(mock, "/chat/completions", { stream: true });
  const reader = res.body!.getReader();
  const started = performance.now();
  const first = await reader.read();
  assert.ok(new TextDecoder().decode(first.value).startsWith("data: {"));
  let reads = 1;
  while (!(await reader.read()).done) reads++;
  assert.ok(reads >= 4, `expected separate chunks, got ${reads} reads`);
  assert.ok(performance.now() - started >= 100);
});

Deno.test("startMockUpstream() honors mock_long_line and mock_multiline", async () => {
  await using mock = await startMockUpstream();
  const long = await post(mock, "/chat/completions", { stream: true, mock_long_line: 70_000 });
  const longEvents = sseData(await long.text());
  assert.equal(JSON.parse(longEvents[0]!).choices[0].delta.content.length, 70_000);

  const multi = await post(mock, "/chat/completions", { stream: true, mock_multiline: true });
  const text = await multi.text();
  const first = text.split("\n\n")[0]!;
  assert.match(first, /^: mock comment\n/);
  assert.equal(first.split("\n").filter((l) => l.startsWith("data: ")).length, 2);
  const chunk = JSON.parse(sseData(text)[0]!);
  assert.equal(chunk.choices[0].delta.content, "Hello");
});

Deno.test("startMockUpstream() rejects unknown keys and records the key of each auth style", async () => {
  await using mock = await startMockUpstream({ keys: ["k1", "k2"] });
  const ok = [
    { authorization: "Bearer k1" },
    { "x-api-key": "k2" },
    { "api-key": "k1" },
  ];
  for (const headers of ok) {
    const res = await fetch(mock.baseUrl + "/models", { headers });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  const bad = await fetch(mock.baseUrl + "/models", { headers: { authorization: "Bearer nope" } });
  assert.equal(bad.status, 401);
  assert.equal((await bad.json()).error.code, "invalid_api_key");
  const none = await fetch(mock.baseUrl + "/models");
  assert.equal(none.status, 401);
  await none.body?.cancel();
  assert.deepEqual(mock.requests.map((r) => [r.key, r.status]), [
    ["k1", 200],
    ["k2", 200],
    ["k1", 200],
    ["nope", 401],
    [undefined, 401],
  ]);
});

Deno.test("startMockUpstream() records method, path, search, lowercase headers and body", async () => {
  await using mock = await startMockUpstream();
  const res = await fetch(mock.origin + "/v1/other/thing?x=1", {
    method: "PUT",
    headers: { "X-Custom": "Yes" },
    body: "raw body",
  });
  const echo = await res.json();
  assert.deepEqual(
    [echo.method, echo.path, echo.search, echo.headers["x-custom"], echo.body],
    ["PUT", "/v1/other/thing", "?x=1", "Yes", "raw body"],
  );
  const [rec] = mock.requests;
  assert.ok(rec);
  assert.equal(rec.n, 1);
  assert.equal(rec.method, "PUT");
  assert.equal(rec.path, "/v1/other/thing");
  assert.equal(rec.search, "?x=1");
  assert.equal(rec.headers["x-custom"], "Yes");
  assert.equal(rec.text, "raw body");
  assert.deepEqual(rec.body, new TextEncoder().encode("raw body"));
  assert.equal(rec.status, 200);
});

Deno.test("startMockUpstream() keeps no requests when record is false", async () => {
  await using mock = await startMockUpstream({ record: false });
  for (let i = 0; i < 3; i++) await (await post(mock, "/chat/completions", { model: "m" })).json();
  assert.equal(mock.requests.length, 0);
  assert.equal(mock.requestCount, 3);
});

Deno.test("MockUpstream.setMode() switches to OpenAI-style error answers", async () => {
  await using mock = await startMockUpstream();
  const cases = [
    { mode: "error500", status: 500, type: "server_error" },
    { mode: "rate_limit", status: 429, type: "requests" },
    { mode: "quota", status: 429, type: "insufficient_quota" },
    { mode: "unauthorized", status: 401, type: "invalid_request_error" },
    { mode: "bad_request", status: 400, type: "invalid_request_error" },
  ] as const;
  for (const { mode, status, type } of cases) {
    await mock.setMode(mode);
    assert.equal(mock.mode, mode);
    const res = await post(mock, "/chat/completions", { model: "m" });
    assert.equal(res.status, status, mode);
    const body = await res.json();
    assert.equal(body.error.type, type, mode);
    assert.equal(typeof body.error.message, "string");
    if (mode === "rate_limit") assert.equal(res.headers.get("retry-after"), "2");
    if (mode === "quota") {
      assert.equal(body.error.code, "insufficient_quota");
      assert.match(body.error.message, /exceeded your current quota/);
    }
  }
  mock.mode = "ok";
  assert.equal(
    (await post(mock, "/chat/completions", { model: "m" }).then((r) => r.json())).model,
    "m",
  );
});

Deno.test("MockUpstream.setMode() rejects an unknown mode", async () => {
  await using mock = await startMockUpstream();
  await assert.rejects(mock.setMode("sleepy" as "ok"), /unknown mode "sleepy"/);
});

Deno.test("startMockUpstream() fails every Nth POST when failEvery is set", async () => {
  await using mock = await startMockUpstream({ failEvery: 3 });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    const res = await post(mock, "/chat/completions", { model: "m" });
    statuses.push(res.status);
    await res.body?.cancel();
    const models = await fetch(mock.baseUrl + "/models");
    assert.equal(models.status, 200);
    await models.body?.cancel();
  }
  assert.deepEqual(statuses, [200, 200, 500, 200, 200, 500]);
});

Deno.test("startMockUpstream() waits latencyMs before the headers", async () => {
  await using mock = await startMockUpstream({ latencyMs: 60 });
  const started = performance.now();
  const res = await fetch(mock.baseUrl + "/models");
  assert.ok(performance.now() - started >= 55);
  await res.body?.cancel();
});

Deno.test("MockUpstream in hang mode answers nothing and still closes cleanly", async () => {
  const mock = await startMockUpstream({ mode: "hang" });
  const aborted = new AbortController();
  const first = fetch(mock.baseUrl + "/models", { signal: aborted.signal });
  const second = fetch(mock.baseUrl + "/models").then(async (res) => await res.text());
  const outcome = await Promise.race([
    first.then(() => "answered", () => "failed"),
    new Promise((resolve) => setTimeout(resolve, 150, "pending")),
  ]);
  assert.equal(outcome, "pending");
  aborted.abort();
  await assert.rejects(first, { name: "AbortError" });
  await mock.close();
  await assert.rejects(second);
  assert.deepEqual(mock.requests.map((r) => r.status), [503, 503]);
});

Deno.test("MockUpstream in die_mid_stream mode breaks the stream after 2 chunks", async () => {
  await using mock = await startMockUpstream({ mode: "die_mid_stream" });
  const res = await post(mock, "/chat/completions", { stream: true });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  let received = "";
  const error = await (async () => {
    for (let i = 0; i < 10; i++) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      received += new TextDecoder().decode(value);
    }
  })().catch((e: unknown) => e);
  assert.ok(error instanceof Error, "the read must fail");
  assert.equal(sseData(received).length, 2);
  assert.ok(!received.includes("[DONE]"));

  const plain = await post(mock, "/chat/completions", { model: "m" });
  await assert.rejects(plain.text());
});

Deno.test("MockUpstream in refuse mode refuses connections, then reopens on the same port", async () => {
  await using mock = await startMockUpstream();
  const port = mock.port;
  await (await fetch(mock.baseUrl + "/models")).body?.cancel();
  await mock.setMode("refuse");
  await assert.rejects(fetch(mock.baseUrl + "/models"));
  await mock.setMode("ok");
  assert.equal(mock.port, port);
  const res = await fetch(mock.baseUrl + "/models");
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("MockUpstream.connections counts TCP connections, not requests", async () => {
  await using mock = await startMockUpstream();
  for (let i = 0; i < 5; i++) await (await fetch(mock.baseUrl + "/models")).body?.cancel();
  assert.equal(mock.connections, 1);
  using client = Deno.createHttpClient({});
  await (await fetch(mock.baseUrl + "/models", { client })).body?.cancel();
  assert.equal(mock.connections, 2);
});

Deno.test("startMockUpstream() serves embeddings, models, completions and messages", async () => {
  await using mock = await startMockUpstream({ name: "m1", chunks: 2 });
  const emb = await (await post(mock, "/embeddings", { model: "e", input: ["a", "b"] })).json();
  assert.equal(emb.data.length, 2);
  assert.equal(emb.data[1].embedding.length, 8);
  assert.ok(emb.usage.prompt_tokens > 0);

  const models = await (await fetch(mock.baseUrl + "/models")).json();
  assert.equal(models.object, "list");
  assert.ok(models.data.length > 0);

  const completion = await (await post(mock, "/completions", { model: "c", prompt: "Hi" })).json();
  assert.equal(completion.object, "text_completion");
  assert.equal(completion.choices[0].text, "Hello from");

  const message = await (await post(mock, "/messages", { model: "claude", messages: [] })).json();
  assert.equal(message.type, "message");
  assert.equal(message.content[0].text, "Hello from");
  assert.equal(message.usage.output_tokens, 2);

  const stream = await post(mock, "/messages", { model: "claude", stream: true });
  const names = (await stream.text()).split("\n").filter((l) => l.startsWith("event: "));
  assert.deepEqual(names.map((l) => l.slice(7)), [
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
});

Deno.test("startMockUpstream() serves the Responses API, with usage in response.completed when streamed", async () => {
  await using mock = await startMockUpstream({ name: "r1", chunks: 2 });
  const plain = await (await post(mock, "/responses", { model: "gpt", input: "Hi there" })).json();
  assert.equal(plain.object, "response");
  assert.equal(plain.status, "completed");
  assert.equal(plain.output[0].content[0].text, "Hello from");
  assert.deepEqual(
    [plain.usage.input_tokens, plain.usage.output_tokens, plain.usage.total_tokens],
    [3, 2, 5],
  );

  const stream = await post(mock, "/responses", { model: "gpt", input: "Hi there", stream: true });
  assert.equal(stream.headers.get("content-type"), "text/event-stream");
  const events = sseData(await stream.text()).map((d) => JSON.parse(d));
  assert.deepEqual(events.map((e) => e.type), [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_item.done",
    "response.completed",
  ]);
  assert.deepEqual(events.map((e) => e.sequence_number), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(events[0].response.usage, null);
  assert.deepEqual(events.at(-1).response.usage, plain.usage);
});

Deno.test("startMockUpstream() answers 400 to a body that is not a JSON object", async () => {
  await using mock = await startMockUpstream();
  const res = await fetch(mock.baseUrl + "/chat/completions", { method: "POST", body: "{nope" });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.type, "invalid_request_error");
});

Deno.test("mock_upstream.ts run as a program prints its origin first and stops on SIGTERM", {
  ignore: Deno.build.os === "windows",
}, async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../tools/mock_upstream.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const origin = out.split("\n")[0]!;
  assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/);
  const res = await fetch(origin + "/v1/models");
  assert.equal(res.status, 200);
  await res.body?.cancel();
  child.kill("SIGTERM");
  while (!(await reader.read()).done) { /* drain */ }
  assert.equal((await child.status).code, 0);
});
