import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { requestLines, waitFor } from "../helpers/e2e.ts";

/** An upstream that keeps the connection open a while after `[DONE]`, as real providers do. */
function lingeringUpstream(): { baseUrl: string; close: () => Promise<void> } {
  const enc = new TextEncoder();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    let step = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const events = [
      `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n`,
      `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}\n\n`,
      "data: [DONE]\n\n",
    ];
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        await new Promise((r) => timer = setTimeout(r, 20));
        if (step < events.length) c.enqueue(enc.encode(events[step++]!));
        else c.close();
      },
      cancel() {
        clearTimeout(timer);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/v1`,
    close: () => server.shutdown(),
  };
}

Deno.test("a stream the SDK stops reading at [DONE] counts as complete, with its usage", async () => {
  const up = lingeringUpstream();
  try {
    await using proxy = await startProxy(`
upstreams:
  u: { base_url: "${up.baseUrl}", keys: [sk-stream-end-00000001] }
`);
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "x", maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage = 0;
    for await (const chunk of stream) usage += chunk.usage?.total_tokens ?? 0;
    assert.equal(usage, 13);
    await waitFor(() => requestLines(proxy).length > 0, "request log line");
    const line = requestLines(proxy)[0]!;
    assert.equal(line.outcome, "complete");
    assert.equal(line.prompt_tokens, 9);
    const stats = await (await fetch(`${proxy.url}/stats`)).json();
    const key = Object.values(stats)[0] as Record<string, unknown>;
    assert.equal(key.total_tokens, 13);
    assert.equal(key.failures, 0);
  } finally {
    await up.close();
  }
});

Deno.test("an upstream dying mid-stream is logged once, as the upstream's failure", async () => {
  await using mock = await startMockUpstream({ mode: "die_mid_stream", chunkDelayMs: 10 });
  await using proxy = await startProxy(`
upstreams:
  u: { base_url: "${mock.baseUrl}", keys: [sk-stream-end-00000002] }
`);
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", stream: true, messages: [] }),
  });
  const text = await res.text().catch(() => "");
  assert.ok(!text.includes("[DONE]"));
  await waitFor(() => requestLines(proxy).length > 0, "request log line");
  const line = requestLines(proxy)[0]!;
  assert.notEqual(line.outcome, "complete");
  const records = proxy.logRecords();
  assert.ok(!records.some((r) => r.msg === "unhandled error in request handler"));
});
