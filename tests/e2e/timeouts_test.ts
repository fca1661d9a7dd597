/**
 * @module
 * End-to-end time limits: a hung upstream costs the first-byte limit and then fails over; the
 * overall deadline bounds a request across attempts; a stream that stalls (idle limit) or
 * runs too long (total limit) ends with an SSE error event and no `[DONE]`.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { KEY_A, KEY_B, MASK_A, MESSAGES, sdk, stats } from "../helpers/failures.ts";

/** Sends a streaming chat request and reads the whole body, tolerating a cut connection. */
async function streamText(proxy: TestProxy): Promise<{ status: number; text: string }> {
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-x", messages: MESSAGES, stream: true }),
  });
  let text = "";
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (let i = 0; i < 1000; i++) {
      const r = await reader.read();
      if (r.done) break;
      text += r.value;
    }
  } catch {
    // the connection is cut after the error event
  }
  return { status: res.status, text };
}

Deno.test("proxy gives up on a hung upstream at the first-byte limit and fails over", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "hang" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}], timeout: { first_byte: 0.3 } }
  b: { base_url: "${b.baseUrl}", keys: [${KEY_B}] }
`);
  const started = performance.now();
  const { data, response } = await sdk(proxy).chat.completions
    .create({ model: "gpt-x", messages: MESSAGES })
    .withResponse();
  const elapsed = performance.now() - started;
  assert.equal(data.object, "chat.completion");
  assert.equal(response.headers.get("x-llm-balance-upstream"), "b");
  assert.ok(elapsed >= 250 && elapsed < 3000, `took ${elapsed} ms`);
  const failed = proxy.logRecords().find((l) => l.msg === "upstream attempt failed");
  assert.equal(failed?.class, "timeout");
  assert.equal((await stats(proxy))[MASK_A]?.last_error, "timeout");
});

Deno.test("proxy fails a stream over from a hung upstream before the first byte", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "hang" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}], timeout: { first_byte: 0.3 } }
  b: { base_url: "${b.baseUrl}", keys: [${KEY_B}] }
`);
  const { status, text } = await streamText(proxy);
  assert.equal(status, 200);
  assert.ok(text.endsWith("data: [DONE]\n\n"));
  assert.equal(b.requestCount, 1);
});

Deno.test("proxy answers 504 when the request deadline runs out on a hung upstream", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "hang" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}], timeout: { first_byte: 30 } }
retry: { deadline: 0.4 }
`);
  const started = performance.now();
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-x", messages: MESSAGES }),
  });
  const elapsed = performance.now() - started;
  assert.equal(res.status, 504);
  const body = await res.json();
  assert.equal(body.error.type, "timeout_error");
  assert.match(body.error.message, /timed out/);
  assert.ok(elapsed >= 350 && elapsed < 3000, `took ${elapsed} ms`);
  assert.equal(a.requestCount, 1, "no attempt starts after the deadline");
});

Deno.test("proxy ends a stalled stream at the idle limit with an SSE error event", async () => {
  await using a = await startMockUpstream({ name: "a", chunkDelayMs: 5000 });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}], timeout: { idle: 0.2 } }
`);
  const started = performance.now();
  const { status, text } = await streamText(proxy);
  const elapsed = performance.now() - started;
  assert.equal(status, 200);
  assert.match(text, /"content":"Hello"/);
  assert.match(text, /event: error\ndata: .*Stream interrupted: upstream idle timeout/);
  assert.ok(!text.includes("[DONE]"));
  assert.ok(elapsed < 3000, `took ${elapsed} ms`);
  for (let i = 0; i < 100 && (await stats(proxy))[MASK_A]?.in_flight !== 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.last_error, "timeout");
  assert.equal(s[MASK_A]?.in_flight, 0);
});

Deno.test("proxy ends a stream that runs past the total limit with an SSE error event", async () => {
  await using a = await startMockUpstream({ name: "a", chunkDelayMs: 100, chunks: 50 });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}], timeout: { total: 0.4 } }
`);
  const started = performance.now();
  const { text } = await streamText(proxy);
  const elapsed = performance.now() - started;
  assert.match(text, /Stream interrupted: upstream total timeout/);
  assert.ok(!text.includes("[DONE]"));
  assert.ok(elapsed >= 350 && elapsed < 3000, `took ${elapsed} ms`);
});

const enc = new TextEncoder();

/**
 * Upstream "a" sends its headers at once and its first chunk only once the attempt's signal has
 * aborted (the first-byte limit fired while the chunk was on its way); "b" answers normally.
 */
function lateFirstChunk(url: string, init: RequestInit): Promise<Response> {
  const signal = init.signal!;
  if (url.startsWith("http://a.test")) {
    let reads = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (reads++ === 0) {
          await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
          c.enqueue(enc.encode('data: {"from":"a"}\n\n'));
        } else c.error(signal.reason);
      },
    }, { highWaterMark: 0 });
    return Promise.resolve(
      new Response(body, { headers: { "content-type": "text/event-stream" } }),
    );
  }
  return Promise.resolve(
    new Response('data: {"from":"b"}\n\ndata: [DONE]\n\n', {
      headers: { "content-type": "text/event-stream" },
    }),
  );
}

Deno.test("proxy retries an attempt whose first chunk came as the first-byte limit fired", async () => {
  await using proxy = await startProxy(
    `
upstreams:
  a: { base_url: "http://a.test/v1", keys: [${KEY_A}], priority: 1, timeout: { first_byte: 0.1 } }
  b: { base_url: "http://b.test/v1", keys: [${KEY_B}], priority: 2 }
`,
    { fetch: lateFirstChunk as typeof fetch },
  );
  const { status, text } = await streamText(proxy);
  assert.equal(status, 200);
  assert.equal(text, 'data: {"from":"b"}\n\ndata: [DONE]\n\n');
});

Deno.test("proxy answers 504 when the only upstream's first chunk came as the limit fired", async () => {
  await using proxy = await startProxy(
    `
upstreams:
  a: { base_url: "http://a.test/v1", keys: [${KEY_A}], timeout: { first_byte: 0.1 } }
`,
    { fetch: lateFirstChunk as typeof fetch },
  );
  const { status, text } = await streamText(proxy);
  assert.equal(status, 504, text);
});
