/** @module Tests of the prompt prefix that the `prefix` affinity source hashes. */

import assert from "node:assert/strict";
import { promptPrefix } from "../../src/proxy/prompt_prefix.ts";

const SEP = "\u0000";
const SYSTEM = { role: "system", content: "You are a terse assistant." };
const FIRST = { role: "user", content: "What is a prompt cache?" };

/** A body with the given fields, serialized as a client would send it. */
function body(fields: Record<string, unknown>): string {
  return JSON.stringify(fields);
}

/** An array's text through its first user message: the array without its closing `]`. */
function throughFirst(items: unknown[]): string {
  return JSON.stringify(items).slice(0, -1);
}

/** The prefix when only `messages` is present: its slot is the third of five. */
function messagesOnly(raw: string): string {
  return `${SEP}${SEP}${raw}${SEP}${SEP}`;
}

Deno.test("promptPrefix() returns the raw messages of an OpenAI chat body through the first user message", () => {
  const messages = [SYSTEM, FIRST, { role: "assistant", content: "x" }, FIRST];
  const text = body({ model: "gpt-4o", messages, temperature: 0.2 });
  assert.equal(promptPrefix(text, 4096), messagesOnly(throughFirst([SYSTEM, FIRST])));
});

Deno.test("promptPrefix() is the same on every turn of a short conversation", () => {
  const turn1 = body({ model: "gpt-4o", messages: [SYSTEM, FIRST] });
  const turn2 = body({
    model: "gpt-4o",
    max_tokens: 5,
    messages: [SYSTEM, FIRST, { role: "assistant", content: "A cache." }, FIRST],
  });
  assert.equal(promptPrefix(turn2, 4096), promptPrefix(turn1, 4096));
  // a role written with spaces, or a user message with its role last, still ends there
  const spaced =
    '{"messages":[ {"content":"s","role" : "system"} , {"content":"u","role":"user"} ,' +
    '{"role":"assistant","content":"a"}]}';
  assert.equal(
    promptPrefix(spaced, 4096),
    messagesOnly('[ {"content":"s","role" : "system"} , {"content":"u","role":"user"}'),
  );
  // "user" as a content value is not a role
  const tricky = body({ messages: [{ role: "system", content: "user" }, FIRST, FIRST] });
  assert.equal(
    promptPrefix(tricky, 4096),
    messagesOnly(throughFirst([{ role: "system", content: "user" }, FIRST])),
  );
});

Deno.test("promptPrefix() is the same one turn later when the cut lies in the first messages", () => {
  const turn1 = body({ model: "gpt-4o", messages: [SYSTEM, FIRST], max_tokens: 100 });
  const turn2 = body({
    model: "gpt-4o-mini",
    stream: true,
    temperature: 1,
    max_tokens: 900,
    messages: [
      SYSTEM,
      FIRST,
      { role: "assistant", content: "A store of computed prompt prefixes." },
      { role: "user", content: "How long does it last?" },
    ],
  });
  const max = 2 + JSON.stringify([SYSTEM, FIRST]).length - 1; // ends before turn 1's closing `]`
  const prefix = promptPrefix(turn1, max);
  assert.ok(prefix !== undefined && prefix.length === max);
  assert.equal(promptPrefix(turn2, max), prefix);
});

Deno.test("promptPrefix() tells apart conversations that share a system prompt", () => {
  const a = body({ messages: [SYSTEM, FIRST] });
  const b = body({ messages: [SYSTEM, { role: "user", content: "Translate this to French." }] });
  assert.notEqual(promptPrefix(a, 4096), promptPrefix(b, 4096));
  // a cut inside the shared system prompt pins both together
  const shared = 2 + JSON.stringify(SYSTEM).length;
  assert.equal(promptPrefix(a, shared), promptPrefix(b, shared));
});

Deno.test("promptPrefix() reads an Anthropic system string and system blocks", () => {
  const messages = [{ role: "user", content: "Hi" }];
  const asString = body({ model: "claude", system: "Be brief.", messages, max_tokens: 64 });
  assert.equal(
    promptPrefix(asString, 4096),
    `"Be brief."${SEP}${SEP}${throughFirst(messages)}${SEP}${SEP}`,
  );
  const blocks = [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }];
  const asBlocks = body({ model: "claude", system: blocks, messages, max_tokens: 64 });
  assert.equal(
    promptPrefix(asBlocks, 4096),
    `${JSON.stringify(blocks)}${SEP}${SEP}${throughFirst(messages)}${SEP}${SEP}`,
  );
});

Deno.test("promptPrefix() reads Responses instructions and input as a string or items", () => {
  const asString = body({ model: "gpt-4.1", instructions: "Be brief.", input: "Hello" });
  assert.equal(promptPrefix(asString, 4096), `${SEP}"Be brief."${SEP}${SEP}"Hello"${SEP}`);
  const items = [{ role: "user", content: [{ type: "input_text", text: "Hello" }] }];
  const asItems = body({ model: "gpt-4.1", input: items });
  assert.equal(promptPrefix(asItems, 4096), `${SEP}${SEP}${SEP}${throughFirst(items)}${SEP}`);
});

Deno.test("promptPrefix() reads a legacy completions prompt", () => {
  const text = body({ model: "gpt-3.5-turbo-instruct", prompt: "Once upon a time", n: 2 });
  assert.equal(promptPrefix(text, 4096), `${SEP}${SEP}${SEP}${SEP}"Once upon a time"`);
});

Deno.test("promptPrefix() returns undefined without a prompt field", () => {
  assert.equal(promptPrefix(body({ model: "gpt-4o", temperature: 0 }), 4096), undefined);
  assert.equal(promptPrefix("{}", 4096), undefined);
  // nested fields of the same name are not the prompt
  assert.equal(promptPrefix(body({ metadata: { messages: [FIRST] } }), 4096), undefined);
});

Deno.test("promptPrefix() returns undefined when every prompt field is empty", () => {
  const text = '{"system":"","instructions":null,"messages":[ ],"input":{},"prompt":""}';
  assert.equal(promptPrefix(text, 4096), undefined);
  // an empty field keeps its place empty, as an absent one does
  assert.equal(
    promptPrefix('{"system":"","messages":[1]}', 4096),
    promptPrefix('{"messages":[1]}', 4096),
  );
});

Deno.test("promptPrefix() returns undefined for a body that is not a JSON object", () => {
  assert.equal(promptPrefix("", 4096), undefined);
  assert.equal(promptPrefix("not json", 4096), undefined);
  assert.equal(promptPrefix(JSON.stringify([{ messages: [FIRST] }]), 4096), undefined);
  assert.equal(promptPrefix('"messages"', 4096), undefined);
});

Deno.test("promptPrefix() returns undefined when maxChars is below 1", () => {
  const text = body({ messages: [FIRST] });
  assert.equal(promptPrefix(text, 0), undefined);
  assert.equal(promptPrefix(text, -5), undefined);
  assert.equal(promptPrefix(text, Number.NaN), undefined);
});

Deno.test("promptPrefix() cuts the joined text to maxChars", () => {
  const text = body({ system: "abcdef", messages: [FIRST] });
  const full = promptPrefix(text, 4096)!;
  for (const max of [1, 3, 8, 9, 10, 20, full.length, full.length + 1]) {
    const cut = promptPrefix(text, max);
    assert.equal(cut, full.slice(0, max), `maxChars ${max}`);
  }
  assert.equal(promptPrefix(text, 9), `"abcdef"${SEP}`);
  assert.equal(promptPrefix(text, 10.9), `"abcdef"${SEP}${SEP}`);
});

Deno.test("promptPrefix() never ends on half a surrogate pair", () => {
  const text = '{"prompt":"ab\u{1F600}c"}';
  // slots 1-4 are empty: 4 separators, then `"ab` and the emoji's two code units
  assert.equal(promptPrefix(text, 9), `${SEP.repeat(4)}"ab\u{1F600}`);
  assert.equal(promptPrefix(text, 8), `${SEP.repeat(4)}"ab`);
});

Deno.test("promptPrefix() copies only maxChars of a huge body", () => {
  const huge = "x".repeat(2 * 1024 * 1024);
  const text = body({ model: "gpt-4o", messages: [SYSTEM, { role: "user", content: huge }] });
  const prefix = promptPrefix(text, 2048);
  assert.ok(prefix !== undefined);
  assert.ok(prefix.length <= 2048);
  assert.equal(prefix, messagesOnly(text.slice(text.indexOf("["))).slice(0, 2048));
});

Deno.test("promptPrefix() does not depend on the order of fields in the body", () => {
  const system = '"Be brief."';
  const messages = '[{"role":"user","content":"Hi"}]';
  const a = `{"messages":${messages},"model":"claude","system":${system}}`;
  const b = `{"system":${system},"model":"claude","messages":${messages}}`;
  assert.equal(promptPrefix(a, 4096), promptPrefix(b, 4096));
  assert.equal(promptPrefix(a, 4096), `${system}${SEP}${SEP}${messages.slice(0, -1)}${SEP}${SEP}`);
});

Deno.test("promptPrefix() resolves a repeated field as JSON.parse does: the last wins", () => {
  const text = '{"messages":[{"role":"user","content":"first"}],"messages":["second"]}';
  assert.equal(promptPrefix(text, 4096), messagesOnly(JSON.stringify(JSON.parse(text).messages)));
  assert.equal(promptPrefix(text, 4096), messagesOnly('["second"]'));
});
