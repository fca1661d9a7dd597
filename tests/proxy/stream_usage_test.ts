import assert from "node:assert/strict";
import {
  acceptsStreamOptions,
  injectIncludeUsage,
  isUsageEvent,
  UsageChunkStripper,
} from "../../src/proxy/stream_usage.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function chunkEvent(choices: unknown[], extra: Record<string, unknown> = {}): string {
  return `data: ${
    JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: "m", choices, ...extra })
  }\n\n`;
}

const DELTA_1 = chunkEvent([{ index: 0, delta: { content: "Hel" } }], { usage: null });
const DELTA_2 = chunkEvent([{ index: 0, delta: { content: "lo" }, finish_reason: "stop" }], {
  usage: null,
});
const USAGE = chunkEvent([], {
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
});
const DONE = "data: [DONE]\n\n";

/** Pushes `text` cut at `cuts`, returning every output and the flushed rest. */
function run(text: string, cuts: number[]): { outputs: string[]; all: string } {
  const s = new UsageChunkStripper();
  const bytes = enc.encode(text);
  const outputs: string[] = [];
  let prev = 0;
  for (const at of [...cuts, bytes.length]) {
    outputs.push(dec.decode(s.push(bytes.subarray(prev, at))));
    prev = at;
  }
  outputs.push(dec.decode(s.flush()));
  return { outputs, all: outputs.join("") };
}

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("acceptsStreamOptions() is true for OpenAI-style completion paths only", () => {
  assert.equal(acceptsStreamOptions("/v1/chat/completions"), true);
  assert.equal(acceptsStreamOptions("/v1/completions"), true);
  assert.equal(acceptsStreamOptions("/chat/completions"), true);
  assert.equal(acceptsStreamOptions("/v1/messages"), false);
  assert.equal(acceptsStreamOptions("/v1/embeddings"), false);
});

Deno.test("injectIncludeUsage() appends stream_options and keeps every other byte", () => {
  const text = '{"model":"m", "stream":true,"messages":[{"role":"user","content":"x}"}],"n":1.50}';
  const out = injectIncludeUsage(text);
  assert.equal(out, text.slice(0, -1) + ',"stream_options":{"include_usage":true}}');
  const parsed = JSON.parse(out!);
  assert.deepEqual(parsed.stream_options, { include_usage: true });
  assert.equal(parsed.messages[0].content, "x}");
});

Deno.test("injectIncludeUsage() handles pretty-printed bodies and trailing whitespace", () => {
  const text = '{\n  "stream": true,\n  "model": "m"\n}\n';
  const out = injectIncludeUsage(text)!;
  assert.deepEqual(JSON.parse(out), {
    stream: true,
    model: "m",
    stream_options: { include_usage: true },
  });
  assert.ok(out.startsWith('{\n  "stream": true,\n  "model": "m"'));
});

Deno.test("injectIncludeUsage() does nothing unless stream is the literal true", () => {
  assert.equal(injectIncludeUsage('{"model":"m"}'), undefined);
  assert.equal(injectIncludeUsage('{"model":"m","stream":false}'), undefined);
  assert.equal(injectIncludeUsage('{"model":"m","stream":"true"}'), undefined);
  assert.equal(injectIncludeUsage('{"model":"m","stream":1}'), undefined);
  // a nested "stream" is not the request's
  assert.equal(injectIncludeUsage('{"meta":{"stream":true},"model":"m"}'), undefined);
});

Deno.test("injectIncludeUsage() leaves a client's own stream_options alone", () => {
  for (const so of ['{"include_usage":false}', '{"include_usage":true}', "{}", "null"]) {
    assert.equal(injectIncludeUsage(`{"stream":true,"stream_options":${so}}`), undefined);
  }
});

Deno.test("injectIncludeUsage() refuses text that is not a JSON object", () => {
  assert.equal(injectIncludeUsage("[1,2]"), undefined);
  assert.equal(injectIncludeUsage(""), undefined);
  assert.equal(injectIncludeUsage('{"stream":true'), undefined);
  assert.equal(injectIncludeUsage('{"stream":true} trailing'), undefined);
});

Deno.test("isUsageEvent() recognizes only the empty-choices usage chunk", () => {
  assert.equal(isUsageEvent(enc.encode(USAGE)), true);
  assert.equal(isUsageEvent(enc.encode(DELTA_1)), false);
  assert.equal(isUsageEvent(enc.encode(DONE)), false);
  assert.equal(isUsageEvent(enc.encode(chunkEvent([], { usage: null }))), false);
  assert.equal(
    isUsageEvent(enc.encode(chunkEvent([{ index: 0 }], { usage: { total_tokens: 1 } }))),
    false,
  );
  assert.equal(isUsageEvent(enc.encode(': comment "usage" "choices"\n\n')), false);
  // data split over two lines, CRLF endings, no space after the colon
  const multi = 'data:{"choices":[],\r\ndata: "usage":{"total_tokens":1}}\r\n\r\n';
  assert.equal(isUsageEvent(enc.encode(multi)), true);
});

Deno.test("UsageChunkStripper removes the usage chunk and nothing else", () => {
  const stream = DELTA_1 + DELTA_2 + USAGE + DONE;
  const { all } = run(stream, []);
  assert.equal(all, DELTA_1 + DELTA_2 + DONE);
});

Deno.test("UsageChunkStripper returns the same chunk when it holds and removes nothing", () => {
  const s = new UsageChunkStripper();
  const chunk = enc.encode(DELTA_1 + DELTA_2);
  assert.equal(s.push(chunk), chunk);
  assert.equal(s.flush().length, 0);
  assert.equal(s.stripped, false);
});

Deno.test("UsageChunkStripper gives the same bytes for every way of cutting the stream", () => {
  const stream = ": keep-alive\n\n" + DELTA_1 + DELTA_2 + USAGE + DONE;
  const expected = ": keep-alive\n\n" + DELTA_1 + DELTA_2 + DONE;
  const n = enc.encode(stream).length;
  for (let at = 0; at <= n; at++) assert.equal(run(stream, [at]).all, expected, `cut at ${at}`);
  const random = prng(7);
  for (let round = 0; round < 200; round++) {
    const cuts = new Set<number>();
    const k = 1 + Math.floor(random() * 12);
    for (let i = 0; i < k; i++) cuts.add(Math.floor(random() * n));
    const sorted = [...cuts].sort((a, b) => a - b);
    assert.equal(run(stream, sorted).all, expected, `cuts ${sorted.join(",")}`);
  }
  const everyByte = Array.from({ length: n - 1 }, (_, i) => i + 1);
  assert.equal(run(stream, everyByte).all, expected);
});

Deno.test("UsageChunkStripper never delays a complete event", () => {
  const events = [DELTA_1, DELTA_2, USAGE, DONE];
  const kept = [DELTA_1, DELTA_2, "", DONE];
  const s = new UsageChunkStripper();
  let sent = "";
  let expected = "";
  for (const [i, ev] of events.entries()) {
    const bytes = enc.encode(ev);
    // everything but the last byte: the event is incomplete, so it may be held
    sent += dec.decode(s.push(bytes.subarray(0, bytes.length - 1)));
    expected += kept[i];
    assert.ok(expected.startsWith(sent), `event ${i} released wrongly`);
    sent += dec.decode(s.push(bytes.subarray(bytes.length - 1)));
    assert.equal(sent, expected, `event ${i} delayed`);
  }
  assert.equal(s.flush().length, 0);
});

Deno.test("UsageChunkStripper handles CRLF and CR line endings", () => {
  for (const nl of ["\r\n", "\r"]) {
    const fix = (t: string) => t.replaceAll("\n", nl);
    const stream = fix(DELTA_1 + USAGE + DONE);
    const expected = fix(DELTA_1 + DONE);
    const n = enc.encode(stream).length;
    for (let at = 0; at <= n; at++) {
      assert.equal(run(stream, [at]).all, expected, `${JSON.stringify(nl)} cut at ${at}`);
    }
  }
});

Deno.test("UsageChunkStripper removes only the first usage chunk", () => {
  const stream = DELTA_1 + USAGE + USAGE + DONE;
  assert.equal(run(stream, []).all, DELTA_1 + USAGE + DONE);
});

Deno.test("UsageChunkStripper passes streams without a usage chunk through unchanged", () => {
  const anthropic = 'event: message_start\ndata: {"type":"message_start","message":' +
    '{"usage":{"input_tokens":3,"output_tokens":0}}}\n\nevent: ping\ndata: {"type":"ping"}\n\n';
  const stream = DELTA_1 + anthropic + DELTA_2 + DONE;
  const n = enc.encode(stream).length;
  for (let at = 0; at <= n; at += 7) assert.equal(run(stream, [at]).all, stream);
});

Deno.test("UsageChunkStripper.flush() returns an unterminated tail unchanged", () => {
  const { outputs, all } = run(DELTA_1 + "data: partial", []);
  assert.equal(all, DELTA_1 + "data: partial");
  assert.equal(outputs.at(-1), "data: partial");
});

Deno.test("UsageChunkStripper.flush() drops an unterminated usage chunk", () => {
  const s = new UsageChunkStripper();
  const out = dec.decode(s.push(enc.encode(DELTA_1 + USAGE.trimEnd())));
  assert.equal(out, DELTA_1);
  assert.equal(s.flush().length, 0);
  assert.equal(s.stripped, true);
});

Deno.test("UsageChunkStripper passes every chunk after the removal as is", () => {
  const s = new UsageChunkStripper();
  s.push(enc.encode(USAGE));
  const later = enc.encode(DONE);
  assert.equal(s.push(later), later);
});
