/** @module Tests of token usage read from passing response bytes. */

import assert from "node:assert/strict";
import { readUsage, type Usage, usageOfJson, UsageTap } from "../../src/proxy/usage.ts";

const enc = new TextEncoder();

function tap(sse: boolean, parts: readonly (string | Uint8Array)[]) {
  const t = new UsageTap(sse);
  for (const p of parts) t.push(typeof p === "string" ? enc.encode(p) : p);
  return t.finish();
}

Deno.test("readUsage() reads the OpenAI and the Anthropic shapes", () => {
  assert.deepEqual(readUsage({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }), {
    promptTokens: 3,
    completionTokens: 4,
    totalTokens: 7,
  });
  assert.deepEqual(readUsage({ input_tokens: 3, output_tokens: 4 }), {
    promptTokens: 3,
    completionTokens: 4,
    totalTokens: 7,
  });
  assert.deepEqual(readUsage({ prompt_tokens: 5, total_tokens: 5 }), {
    promptTokens: 5,
    completionTokens: 0,
    totalTokens: 5,
  });
});

Deno.test("readUsage() returns undefined for anything that is not a usage object", () => {
  for (
    const v of [undefined, null, 3, "x", [], {}, { prompt_tokens: "3" }, { prompt_tokens: NaN }]
  ) {
    assert.equal(readUsage(v), undefined, JSON.stringify(v));
  }
});

Deno.test("UsageTap reads the usage of a JSON body split over chunks", () => {
  const body = JSON.stringify({
    id: "x",
    usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
  });
  const u = tap(false, [body.slice(0, 7), body.slice(7, 30), body.slice(30)]);
  assert.deepEqual(u, { promptTokens: 10, completionTokens: 2, totalTokens: 12 });
});

Deno.test("UsageTap reads the top-level usage of a JSON body, not a nested one", () => {
  const body = JSON.stringify({
    usage: { prompt_tokens: 1, completion_tokens: 2 },
    data: [{ object: "result", usage: { prompt_tokens: 100, completion_tokens: 200 } }],
  });
  assert.deepEqual(tap(false, [body]), { promptTokens: 1, completionTokens: 2, totalTokens: 3 });
  const noTop = JSON.stringify({
    data: [{ usage: { prompt_tokens: 100, completion_tokens: 200 } }],
  });
  assert.equal(tap(false, [noTop]), undefined);
});

Deno.test("UsageTap returns undefined for an empty, non-JSON or usage-less JSON body", () => {
  assert.equal(tap(false, []), undefined);
  assert.equal(tap(false, ["not json"]), undefined);
  assert.equal(tap(false, ['{"id":"x"}']), undefined);
  assert.equal(tap(false, ["[1,2]"]), undefined);
});

Deno.test("UsageTap gives up on JSON bodies over 4 MiB", () => {
  const pad = "x".repeat(4 * 1024 * 1024);
  const body = `{"pad":"${pad}","usage":{"prompt_tokens":1,"completion_tokens":1}}`;
  assert.equal(tap(false, [body]), undefined);
});

Deno.test("UsageTap reads the final usage chunk of an OpenAI stream", () => {
  const u = tap(true, [
    'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
    'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}\n\n',
    "data: [DONE]\n\n",
  ]);
  assert.deepEqual(u, { promptTokens: 9, completionTokens: 3, totalTokens: 12 });
});

Deno.test("UsageTap reads a usage line split across chunks, mid UTF-8 character, with CRLF", () => {
  const line = enc.encode(
    'data: {"choices":[{"delta":{"content":"é"}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}\r\n\r\n',
  );
  const at = line.indexOf(0xc3) + 1; // inside the two bytes of "é"
  const u = tap(true, [line.subarray(0, at), line.subarray(at, at + 20), line.subarray(at + 20)]);
  assert.deepEqual(u, { promptTokens: 2, completionTokens: 1, totalTokens: 3 });
});

Deno.test("UsageTap reads a last line without a newline", () => {
  const u = tap(true, ['data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}']);
  assert.deepEqual(u, { promptTokens: 1, completionTokens: 1, totalTokens: 2 });
});

Deno.test("UsageTap adds up Anthropic's message_start and message_delta usage", () => {
  const u = tap(true, [
    "event: message_start\n",
    'data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n',
    'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n',
    'event: message_stop\ndata: {"type":"message_stop"}\n\n',
  ]);
  assert.deepEqual(u, { promptTokens: 25, completionTokens: 15, totalTokens: 40 });
});

Deno.test("UsageTap ignores usage text in comments, non-data lines and broken JSON", () => {
  const u = tap(true, [
    ': "usage" is a word\n',
    'event: "usage"\n',
    'data: {"content":"the \\"usage\\" field"}\n',
    'data: {"usage":{"prompt_tokens":1\n\n',
  ]);
  assert.equal(u, undefined);
});

Deno.test("UsageTap takes linear time over a chunk of many events", () => {
  // an upstream that sends many events in one read must not stall the relay
  const events = Array.from({ length: 20_000 }, (_, i) => `data: {"i":${i}}\n\n`);
  const text = events.join("") + 'data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n';
  const t0 = performance.now();
  const u = tap(true, [text]);
  const ms = performance.now() - t0;
  assert.deepEqual(u, { promptTokens: 1, completionTokens: 1, totalTokens: 2 });
  assert.ok(ms < 300, `${Math.round(ms)} ms for ${text.length} bytes`);
});

Deno.test("usageOfJson() reads the top-level usage of a whole JSON body, and nothing nested", () => {
  const enc = new TextEncoder();
  const body = enc.encode(JSON.stringify({
    choices: [{
      message: { content: '{"usage":{"prompt_tokens":99}}', usage: { prompt_tokens: 7 } },
    }],
    usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
  }));
  assert.deepEqual(usageOfJson(body), { promptTokens: 10, completionTokens: 2, totalTokens: 12 });
  assert.equal(usageOfJson(enc.encode('{"choices":[{"usage":{"prompt_tokens":3}}]}')), undefined);
  assert.equal(usageOfJson(new Uint8Array(0)), undefined);
  assert.equal(usageOfJson(enc.encode("not json")), undefined);
});

Deno.test('UsageTap skips `"usage": null` chunks and still finds the usage chunk after them', () => {
  const tap = new UsageTap(true);
  const enc = new TextEncoder();
  tap.push(enc.encode('data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'));
  tap.push(enc.encode('data: {"choices":[{"delta":{}}],"usage" : null}\n\n'));
  tap.push(
    enc.encode('data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'),
  );
  tap.push(enc.encode("data: [DONE]\n\n"));
  assert.deepEqual(tap.finish(), { promptTokens: 3, completionTokens: 2, totalTokens: 5 });
  assert.equal(tap.ended, true);
});

Deno.test("readUsage() counts Anthropic's cache reads and writes as prompt tokens", () => {
  assert.deepEqual(
    readUsage({
      input_tokens: 20,
      cache_creation_input_tokens: 300,
      cache_read_input_tokens: 1000,
      output_tokens: 7,
    }),
    { promptTokens: 1320, completionTokens: 7, totalTokens: 1327 },
  );
  // every input token read from the cache
  assert.deepEqual(readUsage({ input_tokens: 0, cache_read_input_tokens: 50, output_tokens: 0 }), {
    promptTokens: 50,
    completionTokens: 0,
    totalTokens: 50,
  });
  // OpenAI's cached tokens are part of prompt_tokens already: not added twice
  assert.deepEqual(
    readUsage({
      prompt_tokens: 100,
      completion_tokens: 2,
      total_tokens: 102,
      prompt_tokens_details: { cached_tokens: 64 },
    }),
    { promptTokens: 100, completionTokens: 2, totalTokens: 102 },
  );
});

Deno.test("readUsage() counts nothing for a transcription billed by duration", () => {
  assert.equal(readUsage({ type: "duration", seconds: 12 }), undefined);
});

/** Non-streamed bodies of every endpoint that reports usage, and what they count. */
const JSON_BODIES: [string, unknown, Usage | undefined][] = [
  ["chat completions", {
    object: "chat.completion",
    choices: [{ message: { content: "hi" } }],
    usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 },
  }, { promptTokens: 9, completionTokens: 2, totalTokens: 11 }],
  ["completions", {
    object: "text_completion",
    choices: [{ text: "hi" }],
    usage: { prompt_tokens: 4, completion_tokens: 1, total_tokens: 5 },
  }, { promptTokens: 4, completionTokens: 1, totalTokens: 5 }],
  ["embeddings", {
    object: "list",
    data: [{ embedding: [0.1] }],
    usage: { prompt_tokens: 6, total_tokens: 6 },
  }, { promptTokens: 6, completionTokens: 0, totalTokens: 6 }],
  ["responses", {
    object: "response",
    status: "completed",
    output: [{ type: "message", content: [{ type: "output_text", text: '"usage"' }] }],
    usage: {
      input_tokens: 36,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 87,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 123,
    },
  }, { promptTokens: 36, completionTokens: 87, totalTokens: 123 }],
  ["audio transcriptions", {
    text: "hello",
    usage: {
      type: "tokens",
      input_tokens: 14,
      input_token_details: { text_tokens: 0, audio_tokens: 14 },
      output_tokens: 45,
      total_tokens: 59,
    },
  }, { promptTokens: 14, completionTokens: 45, totalTokens: 59 }],
  ["audio transcriptions by duration", {
    text: "hello",
    usage: { type: "duration", seconds: 3 },
  }, undefined],
  ["image generations", {
    created: 1,
    data: [{ b64_json: "AAAA" }],
    usage: { input_tokens: 50, output_tokens: 4160, total_tokens: 4210 },
  }, { promptTokens: 50, completionTokens: 4160, totalTokens: 4210 }],
  ["Anthropic messages", {
    type: "message",
    content: [{ type: "text", text: "hi" }],
    usage: {
      input_tokens: 10,
      cache_creation_input_tokens: 5,
      cache_read_input_tokens: 100,
      output_tokens: 3,
    },
  }, { promptTokens: 115, completionTokens: 3, totalTokens: 118 }],
  ["Anthropic count_tokens (a count, not usage)", { input_tokens: 2095 }, undefined],
  ["moderations (no usage)", { id: "modr-1", results: [{ flagged: false }] }, undefined],
];

Deno.test("usageOfJson() and UsageTap read the usage of every endpoint's JSON body", () => {
  for (const [what, body, expected] of JSON_BODIES) {
    const bytes = enc.encode(JSON.stringify(body));
    assert.deepEqual(usageOfJson(bytes), expected, what);
    assert.deepEqual(tap(false, [bytes.subarray(0, 10), bytes.subarray(10)]), expected, what);
  }
});

/** An SSE event with an `event:` line, as the Responses and Anthropic APIs send them. */
function sse(type: string, data: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

Deno.test("UsageTap reads response.completed's usage of a streamed Responses API call", () => {
  const response = (status: string, usage: unknown) => ({
    id: "resp_1",
    object: "response",
    status,
    output: status === "completed"
      ? [{ type: "message", content: [{ type: "output_text", text: "Hi there" }] }]
      : [],
    usage,
  });
  const completed = sse("response.completed", {
    sequence_number: 5,
    response: response("completed", {
      input_tokens: 12,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 2 },
      total_tokens: 17,
    }),
  });
  const t = new UsageTap(true);
  for (
    const part of [
      sse("response.created", { sequence_number: 0, response: response("in_progress", null) }),
      sse("response.in_progress", { sequence_number: 1, response: response("in_progress", null) }),
      sse("response.output_text.delta", { sequence_number: 2, delta: "Hi" }),
      sse("response.output_text.delta", { sequence_number: 3, delta: ' "usage" there' }),
      sse("response.output_text.done", { sequence_number: 4, text: "Hi there" }),
      completed.slice(0, 40),
      completed.slice(40),
    ]
  ) {
    assert.equal(t.ended, false);
    t.push(enc.encode(part));
  }
  assert.equal(t.ended, true);
  assert.deepEqual(t.finish(), { promptTokens: 12, completionTokens: 5, totalTokens: 17 });
});

Deno.test("UsageTap reads the usage of a Responses API stream that ended incomplete", () => {
  const t = new UsageTap(true);
  t.push(enc.encode(sse("response.incomplete", {
    response: { status: "incomplete", usage: { input_tokens: 3, output_tokens: 16 } },
  })));
  assert.equal(t.ended, true);
  assert.deepEqual(t.finish(), { promptTokens: 3, completionTokens: 16, totalTokens: 19 });
});

Deno.test("UsageTap reads the usage chunk of a streamed legacy completion", () => {
  const u = tap(true, [
    'data: {"object":"text_completion","choices":[{"text":"a"}],"usage":null}\n\n',
    'data: {"object":"text_completion","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n',
    "data: [DONE]\n\n",
  ]);
  assert.deepEqual(u, { promptTokens: 5, completionTokens: 1, totalTokens: 6 });
});

Deno.test("UsageTap reads the usage of streamed transcription, speech and image events", () => {
  const transcript = tap(true, [
    sse("transcript.text.delta", { delta: "Hel" }),
    sse("transcript.text.done", {
      text: "Hello",
      usage: { type: "tokens", input_tokens: 14, output_tokens: 3, total_tokens: 17 },
    }),
  ]);
  assert.deepEqual(transcript, { promptTokens: 14, completionTokens: 3, totalTokens: 17 });
  const speech = tap(true, [
    sse("speech.audio.delta", { audio: "AAAA" }),
    sse("speech.audio.done", { usage: { input_tokens: 8, output_tokens: 90, total_tokens: 98 } }),
  ]);
  assert.deepEqual(speech, { promptTokens: 8, completionTokens: 90, totalTokens: 98 });
  const image = tap(true, [
    sse("image_generation.partial_image", { b64_json: "AAAA", partial_image_index: 0 }),
    sse("image_generation.completed", {
      b64_json: "AAAA",
      usage: { input_tokens: 50, output_tokens: 4160, total_tokens: 4210 },
    }),
  ]);
  assert.deepEqual(image, { promptTokens: 50, completionTokens: 4160, totalTokens: 4210 });
});

Deno.test("UsageTap counts Anthropic's streamed cache tokens once, whatever message_delta repeats", () => {
  const usage = {
    input_tokens: 20,
    cache_creation_input_tokens: 300,
    cache_read_input_tokens: 1000,
  };
  const u = tap(true, [
    sse("message_start", { message: { id: "m", usage: { ...usage, output_tokens: 1 } } }),
    sse("content_block_delta", { delta: { type: "text_delta", text: "hi" } }),
    // the current API repeats the input counts in message_delta (cumulative, not added)
    sse("message_delta", {
      delta: { stop_reason: "end_turn" },
      usage: { ...usage, output_tokens: 42 },
    }),
    sse("message_stop", {}),
  ]);
  assert.deepEqual(u, { promptTokens: 1320, completionTokens: 42, totalTokens: 1362 });
  // older message_delta events carry output_tokens only (other counts null or absent)
  const older = tap(true, [
    sse("message_start", { message: { usage: { ...usage, output_tokens: 1 } } }),
    sse("message_delta", {
      usage: { output_tokens: 42, input_tokens: null, cache_read_input_tokens: null },
    }),
  ]);
  assert.deepEqual(older, { promptTokens: 1320, completionTokens: 42, totalTokens: 1362 });
});

const USAGE_EVENT = 'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n';

Deno.test("UsageTap reads a usage line held over many chunks, byte by byte", () => {
  const bytes = enc.encode(`data: {"choices":[{"delta":{"content":"é"}}]}\n\n${USAGE_EVENT}`);
  const parts = [...bytes].map((b) => Uint8Array.of(b));
  assert.deepEqual(tap(true, parts), { promptTokens: 3, completionTokens: 4, totalTokens: 7 });
});

Deno.test("UsageTap reads usage after a line too long to keep, and sees [DONE] after it", () => {
  const t = new UsageTap(true);
  const long = enc.encode(`data: {"usage":{"prompt_tokens":9},"x":"${"x".repeat(1 << 20)}`);
  for (let i = 0; i < 5; i++) t.push(long);
  t.push(enc.encode(`"}\n\n${USAGE_EVENT}data: [DONE]\n\n`));
  assert.equal(t.ended, true);
  assert.deepEqual(t.finish(), { promptTokens: 3, completionTokens: 4, totalTokens: 7 });
});

Deno.test("UsageTap keeps nothing of a body that does not open as a JSON object", () => {
  const usage = '{"usage":{"prompt_tokens":3,"completion_tokens":4}}';
  assert.equal(tap(false, [Uint8Array.of(0xff, 0xfb), enc.encode(usage)]), undefined);
  assert.equal(tap(false, [`[${usage}]`]), undefined);
  assert.deepEqual(tap(false, [" \r\n\t", usage]), {
    promptTokens: 3,
    completionTokens: 4,
    totalTokens: 7,
  });
});

Deno.test("readUsage() counts no token for a negative, fractional-garbage or huge count", () => {
  assert.equal(readUsage({ prompt_tokens: -5, completion_tokens: -1 }), undefined);
  assert.deepEqual(readUsage({ prompt_tokens: 10, completion_tokens: -5 }), {
    promptTokens: 10,
    completionTokens: 0,
    totalTokens: 10,
  });
  assert.equal(readUsage({ prompt_tokens: 1e300 }), undefined);
  assert.deepEqual(readUsage({ prompt_tokens: 2.9, completion_tokens: 1 }), {
    promptTokens: 2,
    completionTokens: 1,
    totalTokens: 3,
  });
});
