/**
 * @module
 * End-to-end failover, driven by the official openai SDK against mock upstreams: a 500, a
 * refused connection or a 401 on one key ends in a success from another; a provider's 400 is
 * shown as is; a stream fails over until its first byte and reports a mid-stream break
 * honestly; one client request never causes more than `retry.max_attempts` upstream attempts.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { KEY_A, KEY_B, MASK_A, MESSAGES, sdk, stats, twoUpstreams } from "../helpers/failures.ts";
import { apiError } from "../helpers/sdk_error.ts";

Deno.test("proxy answers a 500 from one key with a success from another", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "error500" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const { data, response } = await sdk(proxy).chat.completions
    .create({ model: "gpt-x", messages: MESSAGES })
    .withResponse();
  assert.equal(data.object, "chat.completion");
  assert.equal(response.headers.get("x-llm-balance-upstream"), "b");
  assert.equal(a.requestCount, 1);
  assert.equal(b.requestCount, 1);
  assert.equal(a.requests[0]?.key, KEY_A);
  assert.equal(b.requests[0]?.key, KEY_B);
  const failed = proxy.logRecords().find((l) => l.msg === "upstream attempt failed");
  assert.equal(failed?.class, "server");
  assert.equal(failed?.key, MASK_A);
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.consecutive_failures, 1);
  assert.equal(s[MASK_A]?.last_error, "server");
});

Deno.test("proxy replays the request body byte-identical on each attempt", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "error500" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const body =
    '{ "model" : "gpt-x",\n  "messages": [{"role":"user","content":"héllo \\u00e9 ✓"}] }';
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const sent = new TextEncoder().encode(body);
  assert.deepEqual(a.requests[0]?.body, sent);
  assert.deepEqual(b.requests[0]?.body, sent);
});

Deno.test("proxy fails over when the connection is refused", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "refuse" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const { response } = await sdk(proxy).chat.completions
    .create({ model: "gpt-x", messages: MESSAGES })
    .withResponse();
  assert.equal(response.headers.get("x-llm-balance-upstream"), "b");
  assert.equal(a.requestCount, 0);
  const failed = proxy.logRecords().find((l) => l.msg === "upstream attempt failed");
  assert.equal(failed?.class, "connect");
});

Deno.test("proxy takes a key refused with 401 out and says which key and why", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "unauthorized" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const client = sdk(proxy);
  const first = await client.chat.completions.create({ model: "gpt-x", messages: MESSAGES });
  assert.equal(first.object, "chat.completion");
  const second = await client.chat.completions.create({ model: "gpt-x", messages: MESSAGES });
  assert.equal(second.object, "chat.completion");
  assert.equal(a.requestCount, 1, "the refused key is not tried again");
  assert.equal(b.requestCount, 2);
  const out = proxy.logRecords().filter((l) =>
    String(l.msg).includes("refused by the upstream") && l.key === MASK_A
  );
  assert.equal(out.length, 1, "the state change is logged once");
  assert.equal(out[0]?.status, 401);
  assert.ok(!proxy.logs.join("\n").includes(KEY_A), "the key itself is never logged");
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.state, "resting");
  assert.equal(s[MASK_A]?.reason, "auth");
  assert.equal(typeof s[MASK_A]?.until, "string");
});

Deno.test("proxy shows the provider's 400 to the client and does not retry it", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "bad_request" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "gpt-x", messages: MESSAGES }),
  );
  assert.ok(err instanceof OpenAI.BadRequestError);
  assert.equal(err.status, 400);
  assert.equal((err.error as { message?: string }).message, "The mock rejects this request");
  assert.equal(a.requestCount, 1);
  assert.equal(b.requestCount, 0, "a 400 would fail anywhere: no retry");
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.state, "healthy", "a bad request is not the upstream's fault");
});

Deno.test("proxy fails a stream over to another key before its first byte", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "error500" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const stream = await sdk(proxy).chat.completions.create({
    model: "gpt-x",
    messages: MESSAGES,
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
  assert.equal(text, "Hello from the mock upstream");
  assert.equal(a.requestCount, 1);
  assert.equal(b.requestCount, 1);
});

Deno.test("proxy ends a stream that dies mid-way with an SSE error event and no [DONE]", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "die_mid_stream" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-x", messages: MESSAGES, stream: true }),
  });
  assert.equal(res.status, 200);
  let text = "";
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (let i = 0; i < 100; i++) {
      const r = await reader.read();
      if (r.done) break;
      text += r.value;
    }
  } catch {
    // the connection is cut after the error event
  }
  assert.match(text, /"content":"Hello"/);
  assert.match(text, /event: error\ndata: \{"error":\{"message":"Stream interrupted: [^"]+"/);
  assert.match(text, /"code":"stream_interrupted"/);
  assert.ok(!text.includes("[DONE]"));
  assert.equal(b.requestCount, 0, "after the first byte there is no failover");
});

Deno.test("proxy makes the openai SDK raise when a stream dies mid-way", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "die_mid_stream" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}] }
`);
  const stream = await sdk(proxy).chat.completions.create({
    model: "gpt-x",
    messages: MESSAGES,
    stream: true,
  });
  let text = "";
  const err = await apiError((async () => {
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
  })());
  assert.equal(text, "Hello from");
  assert.match(err.message, /Stream interrupted/);
  await new Promise((r) => setTimeout(r, 20));
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.last_error, "server");
});

Deno.test("proxy causes at most retry.max_attempts upstream attempts when all fail", async () => {
  const mocks = await Promise.all(
    [0, 1, 2, 3, 4].map((i) => startMockUpstream({ name: `m${i}`, mode: "error500" })),
  );
  try {
    for (const maxAttempts of [3, 2, 1]) {
      const upstreams = mocks.map((m, i) =>
        `  m${i}: { base_url: "${m.baseUrl}", keys: [sk-mmmm-00000000000${i}] }`
      ).join("\n");
      await using proxy = await startProxy(`
upstreams:
${upstreams}
retry: { max_attempts: ${maxAttempts} }
`);
      const before = mocks.reduce((n, m) => n + m.requestCount, 0);
      const err = await apiError(
        sdk(proxy).chat.completions.create({ model: "gpt-x", messages: MESSAGES }),
      );
      assert.equal(err.status, 500, "the last upstream error is shown");
      const attempts = mocks.reduce((n, m) => n + m.requestCount, 0) - before;
      assert.equal(attempts, maxAttempts);
    }
  } finally {
    await Promise.all(mocks.map((m) => m.close()));
  }
});

Deno.test("proxy retries a single failing key at most retry.max_attempts times", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "error500" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}] }
retry: { max_attempts: 3, backoff_base: 0.01, backoff_max: 0.02 }
`);
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "gpt-x", messages: MESSAGES }),
  );
  assert.equal(err.status, 500);
  assert.equal(a.requestCount, 3);
});

Deno.test("proxy still tries an ejected key when every key is ejected (panic)", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "error500" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}] }
retry: { max_attempts: 1 }
health: { max_failures: 1, ejection_base: 60 }
`);
  const client = sdk(proxy);
  await apiError(client.chat.completions.create({ model: "gpt-x", messages: MESSAGES }));
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.state, "ejected");
  assert.equal(s[MASK_A]?.consecutive_failures, 1);
  assert.equal(s[MASK_A]?.last_error, "server");
  assert.equal(typeof s[MASK_A]?.until, "string");
  await a.setMode("ok");
  const ok = await client.chat.completions.create({ model: "gpt-x", messages: MESSAGES });
  assert.equal(ok.object, "chat.completion");
  assert.equal(a.requestCount, 2);
});

Deno.test("proxy neither counts nor retries an attempt the client abandoned", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "hang" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b));
  const ctl = new AbortController();
  const pending = sdk(proxy).chat.completions.create(
    { model: "gpt-x", messages: MESSAGES },
    { signal: ctl.signal },
  );
  for (let i = 0; i < 100 && a.requestCount === 0; i++) await new Promise((r) => setTimeout(r, 5));
  ctl.abort();
  await assert.rejects(pending);
  for (let i = 0; i < 100; i++) {
    if (proxy.logRecords().some((l) => l.class === "client_abort")) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(b.requestCount, 0, "no retry for a client that left");
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.consecutive_failures, 0);
  assert.equal(s[MASK_A]?.failures, 0);
  assert.equal(s[MASK_A]?.in_flight, 0);
});
