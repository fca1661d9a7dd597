/** @module Tests of token usage read from passing response bytes. */

import assert from "node:assert/strict";
import { readUsage, usageOfJson, UsageTap } from "../../src/proxy/usage.ts";

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
