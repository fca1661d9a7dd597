/** @module Tests of the prompt prefix that the `prefix` affinity source hashes. */

import assert from "node:assert/strict";
import { PARSE_MAX, promptPrefix } from "../../src/proxy/prompt_prefix.ts";

const SEP = "\u0000";
const SYSTEM = { role: "system", content: "You are a terse assistant." };
const FIRST = { role: "user", content: "What is a prompt cache?" };
const ANSWER = { role: "assistant", content: "A store of computed prompt prefixes." };

const body = (fields: Record<string, unknown>) => JSON.stringify(fields);

Deno.test("promptPrefix() is the system prompt and the first user message of an OpenAI chat", () => {
  const text = body({ model: "gpt-4o", messages: [SYSTEM, FIRST, ANSWER, FIRST], temperature: 0 });
  assert.equal(
    promptPrefix(text, 4096),
    `system: You are a terse assistant.${SEP}What is a prompt cache?`,
  );
});

Deno.test("promptPrefix() is the same on every turn of a conversation, whatever else changes", () => {
  const turn1 = body({ model: "gpt-4o", messages: [SYSTEM, FIRST] });
  const turn2 = body({
    model: "gpt-4o-mini",
    stream: true,
    max_tokens: 900,
    messages: [SYSTEM, FIRST, ANSWER, { role: "user", content: "How long does it last?" }],
  });
  assert.equal(promptPrefix(turn2, 4096), promptPrefix(turn1, 4096));
  // spacing and key order of the client's JSON do not matter
  const spaced = '{ "messages" : [ {"content":"You are a terse assistant.","role":"system"} ,\n' +
    ' {"content" : "What is a prompt cache?", "role" : "user"} ] }';
  assert.equal(promptPrefix(spaced, 4096), promptPrefix(turn1, 4096));
});

Deno.test("promptPrefix() tells apart conversations that share a long system prompt", () => {
  const agent = { role: "system", content: "You are a coding agent. ".repeat(400) };
  const a = body({ messages: [agent, FIRST] });
  const b = body({ messages: [agent, { role: "user", content: "Fix the failing test." }] });
  assert.notEqual(promptPrefix(a, 2048), promptPrefix(b, 2048));
  // each part is cut on its own
  assert.equal(promptPrefix(a, 2048)!.split(SEP)[0]!.length, 2048);
});

Deno.test("promptPrefix() reads Anthropic's system and ignores cache_control moving between turns", () => {
  const blocks = [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }];
  const turn1 = body({
    model: "claude",
    system: blocks,
    max_tokens: 64,
    messages: [{
      role: "user",
      content: [{ type: "text", text: "Hi", cache_control: { type: "ephemeral" } }],
    }],
  });
  const turn2 = body({
    model: "claude",
    system: "Be brief.",
    max_tokens: 64,
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello." },
      {
        role: "user",
        content: [{ type: "text", text: "And?", cache_control: { type: "ephemeral" } }],
      },
    ],
  });
  assert.equal(promptPrefix(turn1, 4096), `Be brief.${SEP}Hi`);
  assert.equal(promptPrefix(turn2, 4096), promptPrefix(turn1, 4096));
});

Deno.test("promptPrefix() reads Responses instructions and input, a string or a list alike", () => {
  const asString = body({ model: "gpt-4.1", instructions: "Be brief.", input: "Hello" });
  const asItems = body({
    model: "gpt-4.1",
    instructions: "Be brief.",
    input: [
      { type: "message", role: "user", content: [{ type: "input_text", text: "Hello" }] },
      { type: "message", role: "assistant", content: [{ type: "output_text", text: "Hi" }] },
    ],
  });
  assert.equal(promptPrefix(asString, 4096), `Be brief.${SEP}Hello`);
  assert.equal(promptPrefix(asItems, 4096), promptPrefix(asString, 4096));
});

Deno.test("promptPrefix() names blocks that are not text by their type", () => {
  const text = body({
    messages: [{
      role: "user",
      content: [{ type: "image_url", image_url: { url: "data:..." } }, { type: "text", text: "x" }],
    }],
  });
  assert.equal(promptPrefix(text, 4096), `${SEP}[image_url]\nx`);
});

Deno.test("promptPrefix() reads a legacy completions prompt", () => {
  const text = body({ model: "gpt-3.5-turbo-instruct", prompt: "Once upon a time", n: 2 });
  assert.equal(promptPrefix(text, 4096), `${SEP}Once upon a time`);
});

Deno.test("promptPrefix() returns undefined without a prompt, or with empty ones", () => {
  assert.equal(promptPrefix(body({ model: "gpt-4o", temperature: 0 }), 4096), undefined);
  assert.equal(promptPrefix("{}", 4096), undefined);
  assert.equal(promptPrefix(body({ metadata: { messages: [FIRST] } }), 4096), undefined);
  const empty = '{"system":"","instructions":null,"messages":[ ],"input":"","prompt":""}';
  assert.equal(promptPrefix(empty, 4096), undefined);
});

Deno.test("promptPrefix() returns undefined for a body that is not a JSON object, or maxChars < 1", () => {
  assert.equal(promptPrefix("", 4096), undefined);
  assert.equal(promptPrefix("not json", 4096), undefined);
  assert.equal(promptPrefix(JSON.stringify([{ messages: [FIRST] }]), 4096), undefined);
  assert.equal(promptPrefix('"messages"', 4096), undefined);
  const text = body({ messages: [FIRST] });
  assert.equal(promptPrefix(text, 0), undefined);
  assert.equal(promptPrefix(text, NaN), undefined);
});

Deno.test("promptPrefix() falls back to the raw text of a list without a user message in reach", () => {
  const noUser = body({ messages: [SYSTEM] });
  assert.equal(promptPrefix(noUser, 4096), `system: You are a terse assistant.${SEP}`);
  // a first user message beyond the parse cap: the list's first characters
  const huge = { role: "system", content: "s".repeat(PARSE_MAX) };
  const far = body({ messages: [huge, FIRST] });
  assert.equal(promptPrefix(far, 100), `${far.slice(12, 112)}${SEP}`);
  // "user" as a content value is not a role
  const tricky = body({ messages: [{ role: "system", content: "user" }, FIRST, FIRST] });
  assert.equal(promptPrefix(tricky, 4096), `system: user${SEP}What is a prompt cache?`);
});

Deno.test("promptPrefix() reads a first message longer than its parse cap by its first characters", () => {
  const doc = "x".repeat(2_000_000);
  const text = body({ messages: [SYSTEM, { role: "user", content: doc }] });
  assert.equal(
    promptPrefix(text, 2048),
    `system: You are a terse assistant.${SEP}${"x".repeat(2048)}`,
  );
  // the same 300 KB document as a text block with cache_control, then as a string a turn later
  const big = "Chapter one. ".repeat(25_000);
  const turn1 = body({
    system: "Summarize.",
    messages: [{
      role: "user",
      content: [{ type: "text", text: big, cache_control: { type: "ephemeral" } }],
    }],
  });
  const turn2 = body({
    system: "Summarize.",
    messages: [
      { role: "user", content: big },
      { role: "assistant", content: "ok" },
      {
        role: "user",
        content: [{ type: "text", text: "More", cache_control: { type: "ephemeral" } }],
      },
    ],
  });
  assert.equal(promptPrefix(turn1, 2048), promptPrefix(turn2, 2048));
  // two long documents differ by their beginnings
  const other = body({ system: "Summarize.", messages: [{ role: "user", content: `B${big}` }] });
  assert.notEqual(promptPrefix(other, 2048), promptPrefix(turn2, 2048));
  const unterminated = '{"messages":[{"role":"user","content":"' + "y".repeat(1_000_000);
  assert.equal(promptPrefix(unterminated, 2048), undefined);
});

Deno.test("promptPrefix() reads Responses items without a role by their type and output", () => {
  const a = body({
    instructions: "Use tools.",
    input: [{ type: "function_call_output", call_id: "c1", output: "42 degrees" }],
  });
  const b = body({
    instructions: "Use tools.",
    input: [{ type: "function_call_output", call_id: "c2", output: "17 degrees" }],
  });
  assert.notEqual(promptPrefix(a, 4096), promptPrefix(b, 4096));
  assert.equal(promptPrefix(a, 4096), `Use tools.\nfunction_call_output: 42 degrees${SEP}`);
});

Deno.test("promptPrefix() never cuts a surrogate pair in half", () => {
  const text = body({ messages: [{ role: "user", content: "ab\u{1F600}" }] });
  assert.equal(promptPrefix(text, 3), `${SEP}ab`);
});

Deno.test("promptPrefix() resolves a repeated field as JSON.parse does: the last wins", () => {
  const text = '{"messages":[{"role":"user","content":"first"}],' +
    '"messages":[{"role":"user","content":"second"}]}';
  assert.equal(promptPrefix(text, 4096), `${SEP}second`);
});
