/**
 * @module
 * End-to-end streaming through llm-balance: SSE passes byte for byte as it arrives (long lines,
 * multi-line events, comments), the official openai SDK gets every chunk, a client that leaves
 * cancels the upstream, and an upstream that dies mid-stream is never shown as a clean end.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import {
  chat,
  concatBytes,
  postJson,
  readChunks,
  requestLines,
  startScriptedUpstream,
  text,
  waitFor,
} from "../helpers/e2e.ts";

const enc = new TextEncoder();

function oneUpstream(baseUrl: string): string {
  return `upstreams:\n  m:\n    base_url: "${baseUrl}"\n    keys: [sk-upstream-key-000000000001]\n`;
}

function sdk(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "client-key", maxRetries: 0, timeout: 10_000 });
}

/** Streams `chunks` one per pull, `delayMs` apart; resolves `cancelled` if the reader cancels. */
function scriptedStream(chunks: readonly Uint8Array[], delayMs: number) {
  let i = 0;
  let onCancel!: () => void;
  const cancelled = new Promise<void>((r) => onCancel = r);
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (i > 0 && delayMs > 0) {
        await new Promise<void>((r) => {
          const t = setTimeout(() => (timers.delete(t), r()), delayMs);
          timers.add(t);
        });
      }
      if (i < chunks.length) c.enqueue(chunks[i++]!);
      if (i === chunks.length) c.close();
    },
    cancel() {
      for (const t of timers) clearTimeout(t);
      onCancel();
    },
  }, { highWaterMark: 0 });
  return { stream, cancelled, sent: () => i };
}

const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };

Deno.test("proxy passes a stream through byte for byte, however the upstream cuts it", async () => {
  const long = "y".repeat(70_000);
  const split = enc.encode('data: {"c":"😀 é"}\n\n');
  const cut = split.indexOf(0xf0) + 2; // inside the 4 bytes of the emoji
  const chunks = [
    enc.encode(": keep-alive comment\n\nretry: 3000\nid: 7\nevent: message\n"),
    enc.encode('data: {"a":\ndata: 1}\r\n\r\ndata: {"b"'),
    enc.encode(":2}\n\n"),
    split.subarray(0, cut),
    split.subarray(cut),
    enc.encode(`data: {"long":"${long}"}\n\n`),
    enc.encode("\n\n\ndata:no-space\n\n:\n\ndata: [DONE]\n\n"),
  ];
  const script = scriptedStream(chunks, 5);
  await using up = startScriptedUpstream(() =>
    new Response(script.stream, { headers: SSE_HEADERS })
  );
  await using proxy = await startProxy(oneUpstream(up.baseUrl));
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o", { stream: true }));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const { chunks: got, error } = await readChunks(res.body!);
  assert.equal(error, undefined);
  assert.deepEqual(concatBytes(got), concatBytes(chunks));
});

Deno.test("proxy keeps a 70,000-character SSE data line intact", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const res = await postJson(
    `${proxy.url}/v1/chat/completions`,
    chat("gpt-4o", { stream: true, mock_long_line: 70_000 }),
  );
  const body = await res.text();
  const first = body.split("\n\n")[0]!;
  assert.ok(first.startsWith("data: {"));
  const chunk = JSON.parse(first.slice(6));
  assert.equal(chunk.choices[0].delta.content, "x".repeat(70_000));
  assert.ok(body.endsWith("data: [DONE]\n\n"));
});

Deno.test("proxy keeps multi-line SSE events and comment lines intact", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const res = await postJson(
    `${proxy.url}/v1/chat/completions`,
    chat("gpt-4o", { stream: true, mock_multiline: true }),
  );
  const body = await res.text();
  assert.match(body, /^: mock comment\ndata: \{[^\n]*,\ndata: [^\n]*\}\n\n/);
  const first = body.split("\n\n")[0]!.split("\n").slice(1).map((l) => l.slice(6)).join("\n");
  assert.equal(JSON.parse(first).choices[0].delta.content, "Hello");
});

Deno.test("proxy streams every chunk to the official openai SDK", async () => {
  await using mock = await startMockUpstream({ chunks: 7 });
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const client = sdk(proxy.url);
  for (const multiline of [false, true]) {
    const params = {
      model: "gpt-4o",
      messages: [{ role: "user" as const, content: "hi" }],
      stream: true as const,
      stream_options: { include_usage: true },
      mock_multiline: multiline,
    };
    const stream = await client.chat.completions.create(params);
    const contents: string[] = [];
    let finish: string | null | undefined;
    let usage: number | undefined;
    let count = 0;
    for await (const chunk of stream) {
      count++;
      const choice = chunk.choices[0];
      if (choice?.delta.content) contents.push(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage.completion_tokens;
    }
    assert.equal(count, 7 + 1 + 1, `multiline ${multiline}`);
    assert.deepEqual(contents, ["Hello", " from", " the", " mock", " upstream", "!", " Have"]);
    assert.equal(finish, "stop");
    assert.equal(usage, 7);
  }
});

Deno.test("proxy relays stream chunks as they are sent, not at the end", async () => {
  await using mock = await startMockUpstream({ chunkDelayMs: 100, chunks: 5 });
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const t0 = performance.now();
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o", { stream: true }));
  const reader = res.body!.getReader();
  const arrivals: number[] = [];
  for (let i = 0; i < 100; i++) {
    const r = await reader.read();
    if (r.done) break;
    arrivals.push(performance.now() - t0);
  }
  // 7 events (5 contents, finish, [DONE]) sent 100 ms apart: the last leaves after ~600 ms
  assert.ok(arrivals.length >= 7, `${arrivals.length} reads`);
  const shown = arrivals.map(Math.round).join(", ");
  assert.ok(arrivals.at(-1)! - arrivals[0]! >= 450, `first chunk not ahead of the rest: ${shown}`);
  const gaps = arrivals.slice(1, 7).map((t, i) => t - arrivals[i]!).sort((a, b) => a - b);
  assert.ok(gaps[3]! >= 60, `chunks bunched together: ${shown}`);
});

Deno.test("proxy cancels the upstream stream at once when the client disconnects", async () => {
  const event = enc.encode('data: {"choices":[{"delta":{"content":"x"}}]}\n\n');
  const script = scriptedStream(Array.from({ length: 10_000 }, () => event), 20);
  await using up = startScriptedUpstream(() =>
    new Response(script.stream, { headers: SSE_HEADERS })
  );
  await using proxy = await startProxy(oneUpstream(up.baseUrl));
  const abort = new AbortController();
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(chat("gpt-4o", { stream: true })),
    signal: AbortSignal.any([abort.signal, AbortSignal.timeout(10_000)]),
  });
  const reader = res.body!.getReader();
  await reader.read();
  await reader.read();
  assert.equal(proxy.server.inFlight(), 1);
  const abortedAt = performance.now();
  abort.abort();
  await reader.read().catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancelled = await Promise.race([
    script.cancelled.then(() => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), 2000)),
  ]);
  clearTimeout(timer);
  assert.ok(cancelled, "the upstream's response stream was never cancelled");
  assert.ok(performance.now() - abortedAt < 1000);
  const sentAtCancel = script.sent();
  await waitFor(() => proxy.server.inFlight() === 0, "in-flight count back to 0");
  await waitFor(() => requestLines(proxy).length === 1, "the request log line");
  assert.equal(requestLines(proxy)[0]!.outcome, "client_abort");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(script.sent(), sentAtCancel);
  assert.ok(sentAtCancel < 100, `${sentAtCancel} events sent`);
});

Deno.test("proxy gives raw clients an error event and an error when the upstream dies mid-stream", async () => {
  await using mock = await startMockUpstream({ mode: "die_mid_stream" });
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o", { stream: true }));
  assert.equal(res.status, 200);
  const { chunks, error } = await readChunks(res.body!);
  assert.ok(error !== undefined, "the stream ended cleanly");
  const body = text(concatBytes(chunks));
  assert.ok(!body.includes("[DONE]"));
  const events = body.split("\n\n").filter((e) => e !== "");
  assert.equal(events.filter((e) => e.startsWith("data: {")).length, 2);
  const last = events.at(-1)!;
  assert.match(last, /^event: error\ndata: /);
  assert.equal(JSON.parse(last.split("\ndata: ")[1]!).error.code, "stream_interrupted");
  await waitFor(() => requestLines(proxy).length === 1, "the request log line");
  assert.equal(requestLines(proxy)[0]!.outcome, "server");
});

Deno.test("proxy makes the openai SDK throw when the upstream dies mid-stream", async () => {
  await using mock = await startMockUpstream({ mode: "die_mid_stream" });
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const stream = await sdk(proxy.url).chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "hi" }],
    stream: true,
  });
  let count = 0;
  await assert.rejects(async () => {
    for await (const _ of stream) count++;
  }, /Stream interrupted/);
  assert.equal(count, 2);
});

for (const waitMs of [0, 150]) {
  Deno.test(`proxy cancels the upstream request when the client leaves before the first byte (after ${waitMs} ms)`, async () => {
    let onAbort!: () => void;
    const upstreamAborted = new Promise<void>((r) => onAbort = r);
    await using up = startScriptedUpstream((req) =>
      new Promise<Response>((resolve) => {
        const t = setTimeout(() => resolve(new Response("late")), 5000);
        req.signal.addEventListener("abort", () => {
          clearTimeout(t);
          onAbort();
          resolve(new Response(null, { status: 499 }));
        }, { once: true });
      })
    );
    await using other = await startMockUpstream();
    await using proxy = await startProxy(`
upstreams:
  slow: { base_url: "${up.baseUrl}", key: sk-slow-000000000001 }
  other: { base_url: "${other.baseUrl}", key: sk-other-00000000001 }
pools:
  gpt-4o: { upstreams: [slow, other] }
`);
    const abort = new AbortController();
    const pending = fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat("gpt-4o", { stream: true })),
      signal: AbortSignal.any([abort.signal, AbortSignal.timeout(10_000)]),
    }).catch(() => undefined);
    await waitFor(() => up.requests.length === 1, "the upstream request");
    // early and late: an attempt watches for the client leaving only once it lasts
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
    abort.abort();
    await pending;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const aborted = await Promise.race([
      upstreamAborted.then(() => true),
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), 2000)),
    ]);
    clearTimeout(timer);
    assert.ok(aborted, "the upstream request was never cancelled");
    await waitFor(() => proxy.server.inFlight() === 0, "in-flight count back to 0");
    await waitFor(() => requestLines(proxy).length === 1, "the request log line");
    assert.equal(requestLines(proxy)[0]!.outcome, "client_abort");
    assert.equal(other.requests.length, 0, "a client that left was retried elsewhere");
  });
}

Deno.test("proxy never ends a JSON body the upstream cuts short cleanly", async () => {
  await using mock = await startMockUpstream({ mode: "die_mid_stream" });
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
  if (res.status === 200) {
    // already committed: the body must break, not end
    const { chunks, error } = await readChunks(res.body!);
    assert.ok(error !== undefined, `the body ended cleanly: ${text(concatBytes(chunks))}`);
  } else {
    // read whole before committing: an OpenAI-style error instead
    assert.ok(res.status >= 500, `status ${res.status}`);
    const body = await res.json();
    assert.equal(typeof body.error.message, "string");
  }
});

Deno.test("proxy relays a burst of many SSE events in one chunk without stalling", async () => {
  const events = Array.from({ length: 60_000 }, (_, i) => `data: {"i":${i}}\n\n`).join("");
  const burst = enc.encode(`${events}data: [DONE]\n\n`);
  await using up = startScriptedUpstream(() => new Response(burst, { headers: SSE_HEADERS }));
  await using proxy = await startProxy(oneUpstream(up.baseUrl));
  const t0 = performance.now();
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o", { stream: true }));
  const { chunks, error } = await readChunks(res.body!);
  const ms = performance.now() - t0;
  assert.equal(error, undefined);
  assert.deepEqual(concatBytes(chunks), burst);
  assert.ok(ms < 500, `${Math.round(ms)} ms to relay ${burst.length} bytes`);
});
