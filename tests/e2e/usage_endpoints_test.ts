/**
 * @module
 * End-to-end usage of every OpenAI and Anthropic endpoint that reports it, streamed and not:
 * chat completions, completions, embeddings, the Responses API (with the official SDK; its
 * streamed usage arrives in `response.completed`) and Anthropic messages (cache reads and
 * writes counted as prompt tokens). Each request's tokens are checked in the key's counters and
 * in the request's log line, and the client's bytes stay the upstream's.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { postJson, requestLines, startScriptedUpstream, waitFor } from "../helpers/e2e.ts";

const KEY = "sk-usage-endpoints-upstream-key-000000001";

function config(baseUrl: string): string {
  return `upstreams:\n  u: { base_url: "${baseUrl}", keys: [${KEY}] }\n`;
}

/** The key's token counters. */
function tokens(proxy: TestProxy): [number, number, number] {
  const s = [...proxy.app.rt.candidates.values()][0]!.state;
  return [s.promptTokens, s.completionTokens, s.totalTokens];
}

/** Waits for the n-th request's log line and returns its token fields. */
async function logged(proxy: TestProxy, n: number): Promise<[unknown, unknown]> {
  await waitFor(() => requestLines(proxy).length >= n, `${n} request log lines`);
  const line = requestLines(proxy)[n - 1]!;
  return [line.prompt_tokens, line.completion_tokens];
}

Deno.test("e2e usage: the Responses API is counted, streamed (response.completed) and not", async () => {
  await using mock = await startMockUpstream({ chunks: 4 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "unused", maxRetries: 0 });

  const plain = await client.responses.create({ model: "gpt-x", input: "Say hello, please" });
  assert.equal(plain.output_text, "Hello from the mock");
  const u = plain.usage!;
  assert.deepEqual(await logged(proxy, 1), [u.input_tokens, u.output_tokens]);
  assert.deepEqual(tokens(proxy), [u.input_tokens, u.output_tokens, u.total_tokens]);

  const stream = await client.responses.create({
    model: "gpt-x",
    input: "Say hello again, please",
    stream: true,
  });
  let text = "";
  let completed: OpenAI.Responses.ResponseUsage | undefined;
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") completed = event.response.usage;
  }
  assert.equal(text, "Hello from the mock");
  assert.ok(completed !== undefined);
  assert.deepEqual(await logged(proxy, 2), [completed.input_tokens, completed.output_tokens]);
  assert.deepEqual(tokens(proxy), [
    u.input_tokens + completed.input_tokens,
    u.output_tokens + completed.output_tokens,
    u.total_tokens + completed.total_tokens,
  ]);
  assert.equal(requestLines(proxy)[1]!.stream, true);
});

Deno.test("e2e usage: chat completions, completions, embeddings and messages are counted, streamed and not", async () => {
  await using mock = await startMockUpstream({ chunks: 3 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const cases: { what: string; path: string; body: Record<string, unknown> }[] = [
    {
      what: "chat",
      path: "/v1/chat/completions",
      body: { model: "m", messages: [{ role: "user", content: "a".repeat(40) }] },
    },
    {
      what: "chat streamed",
      path: "/v1/chat/completions",
      body: {
        model: "m",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "b".repeat(80) }],
      },
    },
    { what: "completions", path: "/v1/completions", body: { model: "m", prompt: "c".repeat(16) } },
    {
      what: "completions streamed",
      path: "/v1/completions",
      body: {
        model: "m",
        prompt: "d".repeat(24),
        stream: true,
        stream_options: { include_usage: true },
      },
    },
    { what: "embeddings", path: "/v1/embeddings", body: { model: "e", input: "e".repeat(36) } },
    {
      what: "messages",
      path: "/v1/messages",
      body: {
        model: "claude",
        max_tokens: 5,
        messages: [{ role: "user", content: "f".repeat(20) }],
      },
    },
    {
      what: "messages streamed",
      path: "/v1/messages",
      body: {
        model: "claude",
        max_tokens: 5,
        stream: true,
        messages: [{ role: "user", content: "g".repeat(28) }],
      },
    },
  ];
  const sum = [0, 0];
  for (const [i, c] of cases.entries()) {
    const res = await postJson(proxy.url + c.path, c.body);
    assert.equal(res.status, 200, c.what);
    const text = await res.text();
    // what the upstream reported, read from the bytes the client got
    const reported = c.body.stream === true
      ? text.split("\n").filter((l) => l.startsWith("data: {")).map((l) =>
        JSON.parse(l.slice(6)) as Record<string, Record<string, number> | undefined>
      ).map((e) => e.usage ?? (e.message as { usage?: Record<string, number> })?.usage)
        .filter((x) => x !== undefined && x !== null)
      : [JSON.parse(text).usage];
    const prompt = Math.max(...reported.map((r) => r!.prompt_tokens ?? r!.input_tokens ?? 0));
    const completion = Math.max(
      ...reported.map((r) => r!.completion_tokens ?? r!.output_tokens ?? 0),
    );
    assert.ok(prompt > 0, `${c.what}: the upstream reported usage`);
    assert.deepEqual(await logged(proxy, i + 1), [prompt, completion], c.what);
    sum[0]! += prompt;
    sum[1]! += completion;
    assert.deepEqual(tokens(proxy).slice(0, 2), sum, c.what);
  }
});

Deno.test("e2e usage: Anthropic's cache reads and writes count as prompt tokens, streamed and not", async () => {
  const usage = {
    input_tokens: 12,
    cache_creation_input_tokens: 200,
    cache_read_input_tokens: 3000,
  };
  const event = (type: string, data: Record<string, unknown>) =>
    `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  const streamed = [
    event("message_start", { message: { id: "m", usage: { ...usage, output_tokens: 1 } } }),
    event("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Hi" } }),
    event("message_delta", {
      delta: { stop_reason: "end_turn" },
      usage: { ...usage, output_tokens: 9 },
    }),
    event("message_stop", {}),
  ].join("");
  await using upstream = startScriptedUpstream((req) => {
    const stream = new TextDecoder().decode(req.body).includes('"stream":true');
    return stream
      ? new Response(streamed, { headers: { "content-type": "text/event-stream" } })
      : Response.json({
        type: "message",
        content: [{ type: "text", text: "Hi" }],
        usage: { ...usage, output_tokens: 9 },
      });
  });
  await using proxy = await startProxy(
    `upstreams:\n  claude: { base_url: "${upstream.baseUrl}", auth: x-api-key, keys: [${KEY}] }\n`,
  );
  const plain = await postJson(`${proxy.url}/v1/messages`, { model: "c", messages: [] });
  assert.equal(plain.status, 200);
  await plain.body?.cancel();
  assert.deepEqual(await logged(proxy, 1), [3212, 9]);
  const res = await postJson(`${proxy.url}/v1/messages`, {
    model: "c",
    stream: true,
    messages: [],
  });
  assert.equal(await res.text(), streamed, "the client's bytes are the upstream's");
  assert.deepEqual(await logged(proxy, 2), [3212, 9]);
  assert.deepEqual(tokens(proxy), [6424, 18, 6442]);
});
