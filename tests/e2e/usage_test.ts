/**
 * @module
 * End-to-end usage accounting: tokens read from JSON bodies and from streamed usage chunks are
 * added per key, upstream, model and client key, while the bytes a streaming client gets stay
 * exactly the upstream's. With `usage.inject_stream_usage`, the proxy asks OpenAI-style streams
 * for usage and strips the extra chunk it caused (and only that one).
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";
import { concatBytes, readChunks, startScriptedUpstream, waitFor } from "../helpers/e2e.ts";

const KEY = "sk-usage-e2e-upstream-key-000000000000001";
const ALICE = "cl-usage-e2e-alice-key-00000000000000001";
const BOB = "cl-usage-e2e-bob-key-0000000000000000002";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Whether plugins/middleware/proxy.ts uses src/proxy/stream_usage.ts yet. */
const INJECTION_WIRED = (await Deno.readTextFile(
  new URL("../../plugins/middleware/proxy.ts", import.meta.url),
)).includes("injectIncludeUsage");

function config(baseUrl: string, extra = ""): string {
  return `
${extra}
auth:
  client_keys: [{ key: ${ALICE}, name: alice }, { key: ${BOB}, name: bob }]
upstreams:
  u: { base_url: "${baseUrl}", keys: [${KEY}] }
`;
}

function post(proxy: TestProxy, body: unknown, path = "/v1/chat/completions", key = ALICE) {
  return fetch(proxy.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

function tokens(proxy: TestProxy): { prompt: number; completion: number; total: number } {
  const s = [...proxy.app.rt.candidates.values()][0]!.state;
  return { prompt: s.promptTokens, completion: s.completionTokens, total: s.totalTokens };
}

async function settled(proxy: TestProxy, n: number): Promise<void> {
  await waitFor(() => proxy.logRecords().filter((l) => l.msg === "request").length >= n, "logs");
}

const usageChunk = (p: number, c: number) =>
  `data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":${p},"completion_tokens":${c},"total_tokens":${
    p + c
  }}}\n\n`;
const delta = (text: string) =>
  `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${text}"}}]}\n\n`;

/** An upstream that streams `parts` (each its own chunk, a few ms apart, no length). */
function scripted(parts: () => string[], contentType = "text/event-stream") {
  return startScriptedUpstream(() => {
    const queue = parts();
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          await new Promise((r) => setTimeout(r, 3));
          const next = queue.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(enc.encode(next));
        },
      }, { highWaterMark: 0 }),
      { headers: { "content-type": contentType } },
    );
  });
}

Deno.test("e2e usage: JSON usage is counted per key, model and client key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const expected = { alice: { p: 0, c: 0 }, bob: { p: 0, c: 0 } };
  for (
    const [who, key, model] of [["alice", ALICE, "m1"], ["bob", BOB, "m2"], [
      "alice",
      ALICE,
      "m2",
    ]] as const
  ) {
    const res = await post(
      proxy,
      { model, messages: [{ role: "user", content: "a".repeat(40) }] },
      undefined,
      key,
    );
    const u = (await res.json()).usage;
    expected[who].p += u.prompt_tokens;
    expected[who].c += u.completion_tokens;
  }
  const emb = await post(proxy, { model: "e", input: "some text to embed" }, "/v1/embeddings");
  const embUsage = (await emb.json()).usage;
  expected.alice.p += embUsage.prompt_tokens;
  await settled(proxy, 4);
  const t = tokens(proxy);
  const prompt = expected.alice.p + expected.bob.p;
  const completion = expected.alice.c + expected.bob.c;
  assert.deepEqual(t, { prompt, completion, total: prompt + completion });
  const exp = parsePrometheus(
    await (await fetch(`${proxy.url}/metrics`, {
      headers: { authorization: `Bearer ${ALICE}` },
    })).text(),
  );
  assert.equal(
    exp.sum("llm_balance_tokens_total", { client: "alice", type: "prompt" }),
    expected.alice.p,
  );
  assert.equal(
    exp.sum("llm_balance_tokens_total", { client: "bob", type: "completion" }),
    expected.bob.c,
  );
  // no pool names m2: the default pool served it, counted under `other` (labels come from config)
  assert.equal(
    exp.sum("llm_balance_tokens_total", { model: "other", type: "completion" }) > 0,
    true,
  );
  const line = proxy.logRecords().find((l) => l.msg === "request" && l.model === "m1")!;
  assert.equal(typeof line.prompt_tokens, "number");
});

Deno.test("e2e usage: a streamed usage chunk is counted and the client's bytes stay identical", async () => {
  // awkward framing on purpose: CRLF line ends, a comment, multi-line data, and the usage
  // event cut in three chunks
  const usage = usageChunk(11, 4).replaceAll("\n", "\r\n");
  const parts = [
    ": hello\r\n\r\n",
    delta("Hel").replaceAll("\n", "\r\n"),
    'data: {"id":"x","object":"chat.completion.chunk",\r\ndata: "choices":[{"index":0,"delta":{"content":"lo"}}]}\r\n\r\n',
    usage.slice(0, 20),
    usage.slice(20, 60),
    usage.slice(60),
    "data: [DONE]\r\n\r\n",
  ];
  await using upstream = scripted(() => [...parts]);
  await using proxy = await startProxy(config(upstream.baseUrl));
  const body = { model: "m", stream: true, stream_options: { include_usage: true }, messages: [] };
  const res = await post(proxy, body);
  assert.equal(res.status, 200);
  const { chunks, error } = await readChunks(res.body!);
  assert.equal(error, undefined);
  assert.equal(dec.decode(concatBytes(chunks)), parts.join(""));
  await settled(proxy, 1);
  assert.deepEqual(tokens(proxy), { prompt: 11, completion: 4, total: 15 });
  // the request went upstream byte for byte
  assert.deepEqual(JSON.parse(dec.decode(upstream.requests[0]!.body)), body);
});

Deno.test("e2e usage: the SDK sees the usage chunk it asked for", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: BOB, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "m",
    messages: [{ role: "user", content: "hello there" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
  assert.ok(usage !== undefined);
  await settled(proxy, 1);
  assert.deepEqual(tokens(proxy), {
    prompt: usage.prompt_tokens,
    completion: usage.completion_tokens,
    total: usage.total_tokens,
  });
});

Deno.test("e2e usage: Anthropic-style streamed usage is counted", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await post(
    proxy,
    { model: "claude", stream: true, max_tokens: 9, messages: [{ role: "user", content: "hey" }] },
    "/v1/messages",
  );
  const text = await res.text();
  assert.match(text, /message_delta/);
  await settled(proxy, 1);
  const t = tokens(proxy);
  assert.equal(t.completion, 5);
  assert.ok(t.prompt >= 1);
  assert.equal(t.total, t.prompt + t.completion);
});

Deno.test("e2e usage: a stream without usage counts nothing and passes through", async () => {
  const parts = [delta("a"), delta("b"), "data: [DONE]\n\n"];
  await using upstream = scripted(() => [...parts]);
  await using proxy = await startProxy(config(upstream.baseUrl));
  const res = await post(proxy, { model: "m", stream: true, messages: [] });
  assert.equal(await res.text(), parts.join(""));
  await settled(proxy, 1);
  assert.deepEqual(tokens(proxy), { prompt: 0, completion: 0, total: 0 });
});

Deno.test({
  name: "e2e usage: inject_stream_usage asks for usage and strips only the extra chunk",
  ignore: !INJECTION_WIRED,
  async fn() {
    const parts = [delta("Hi"), delta("!"), usageChunk(7, 2), "data: [DONE]\n\n"];
    await using upstream = scripted(() => [...parts]);
    await using proxy = await startProxy(
      config(upstream.baseUrl, "usage: { inject_stream_usage: true }"),
    );
    const text = '{"model":"m","stream":true,"messages":[]}';
    const res = await post(proxy, text);
    assert.equal(await res.text(), delta("Hi") + delta("!") + "data: [DONE]\n\n");
    const sent = JSON.parse(dec.decode(upstream.requests[0]!.body));
    assert.deepEqual(sent.stream_options, { include_usage: true });
    await settled(proxy, 1);
    assert.deepEqual(tokens(proxy), { prompt: 7, completion: 2, total: 9 });
    const line = proxy.logRecords().find((l) => l.msg === "request")!;
    assert.equal(line.prompt_tokens, 7);
  },
});

Deno.test({
  name:
    "e2e usage: inject_stream_usage leaves a client's own stream_options and other requests alone",
  ignore: !INJECTION_WIRED,
  async fn() {
    const parts = [delta("Hi"), usageChunk(7, 2), "data: [DONE]\n\n"];
    await using upstream = scripted(() => [...parts]);
    await using proxy = await startProxy(
      config(upstream.baseUrl, "usage: { inject_stream_usage: true }"),
    );
    const bodies = [
      '{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}',
      '{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[]}',
      '{"model":"m","stream":false,"messages":[]}',
    ];
    for (const [i, text] of bodies.entries()) {
      const res = await post(proxy, text);
      assert.equal(await res.text(), parts.join(""), `body ${i}: nothing stripped`);
      assert.equal(dec.decode(upstream.requests[i]!.body), text, `body ${i}: sent unchanged`);
    }
    const anthropic = '{"model":"m","stream":true,"messages":[]}';
    await (await post(proxy, anthropic, "/v1/messages")).text();
    assert.equal(dec.decode(upstream.requests[3]!.body), anthropic);
  },
});

Deno.test({
  name: "e2e usage: with inject_stream_usage the SDK gets no usage chunk it did not ask for",
  ignore: !INJECTION_WIRED,
  async fn() {
    await using mock = await startMockUpstream();
    await using proxy = await startProxy(
      config(mock.baseUrl, "usage: { inject_stream_usage: true }"),
    );
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: ALICE, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "hello there" }],
      stream: true,
    });
    let text = "";
    let sawEmptyChoices = false;
    for await (const chunk of stream) {
      if (chunk.choices.length === 0) sawEmptyChoices = true;
      text += chunk.choices[0]?.delta.content ?? "";
    }
    assert.equal(text, "Hello from the mock upstream");
    assert.equal(sawEmptyChoices, false);
    await settled(proxy, 1);
    assert.ok(tokens(proxy).total > 0, "usage counted from the injected chunk");
  },
});

Deno.test("e2e usage: a JSON body sent in chunks of unknown length arrives whole and is counted", async () => {
  const body = JSON.stringify({
    id: "chatcmpl-chunked",
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(20_000) } }],
    usage: { prompt_tokens: 11, completion_tokens: 22, total_tokens: 33 },
  });
  // no content-length: the upstream's server sends it chunked, in three pieces
  await using up = scripted(
    () => [body.slice(0, 7), body.slice(7, 15_000), body.slice(15_000)],
    "application/json",
  );
  await using proxy = await startProxy(config(up.baseUrl));
  const res = await post(proxy, { model: "m1", messages: [] });
  assert.equal(res.status, 200);
  assert.equal(await res.text(), body);
  await settled(proxy, 1);
  assert.deepEqual(tokens(proxy), { prompt: 11, completion: 22, total: 33 });
});
