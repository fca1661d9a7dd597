/** @module Tests of the top-level JSON field scanner that reads and rewrites `model`. */

import assert from "node:assert/strict";
import {
  appendField,
  findTopLevel,
  readTopLevelString,
  replaceValue,
} from "../../src/proxy/json_scan.ts";

Deno.test("findTopLevel() returns the raw text and span of a top-level value", () => {
  const text = '{"a":1,"model":"gpt-4o","b":[1,2]}';
  const span = findTopLevel(text, "model");
  assert.deepEqual(span, { raw: '"gpt-4o"', start: 15, end: 23 });
  assert.equal(text.slice(span!.start, span!.end), '"gpt-4o"');
});

Deno.test("findTopLevel() reads every kind of value", () => {
  const text = '{"s":"x","n":-1.0e2,"t":true,"f":false,"z":null,"o":{"k":[1]},"a":[{"b":"]"}]}';
  const want: Record<string, string> = {
    s: '"x"',
    n: "-1.0e2",
    t: "true",
    f: "false",
    z: "null",
    o: '{"k":[1]}',
    a: '[{"b":"]"}]',
  };
  for (const [key, raw] of Object.entries(want)) {
    assert.equal(findTopLevel(text, key)?.raw, raw, key);
  }
});

Deno.test("findTopLevel() ignores nested fields of the same name", () => {
  const text = '{"messages":[{"model":"inner"}],"tools":{"model":"deep"},"model":"outer"}';
  assert.equal(readTopLevelString(text, "model"), "outer");
  assert.equal(readTopLevelString('{"messages":[{"model":"inner"}]}', "model"), undefined);
});

Deno.test("findTopLevel() skips strings holding quotes, braces and backslashes", () => {
  const text = String.raw`{"a":"}\"{[","b":"\\","c":"\\\"","model":"m"}`;
  assert.equal(readTopLevelString(text, "model"), "m");
});

Deno.test("findTopLevel() allows whitespace anywhere JSON does", () => {
  const text = '\r\n {\n\t"a" :\t1 ,\r\n  "model"  :\n "m" \n}\n';
  assert.equal(readTopLevelString(text, "model"), "m");
});

Deno.test("findTopLevel() does not match a key that only starts with the name", () => {
  assert.equal(findTopLevel('{"models":"x","model_x":"y"}', "model"), undefined);
});

Deno.test("findTopLevel() returns undefined for non-objects and broken JSON", () => {
  for (
    const text of [
      '["model","x"]',
      '"model"',
      "",
      "{",
      '{"model"',
      '{"model":',
      '{"a":1 "model":"x"}',
      '{"a":"unterminated',
    ]
  ) {
    assert.equal(findTopLevel(text, "model"), undefined, JSON.stringify(text));
  }
});

Deno.test("readTopLevelString() decodes escapes in the value", () => {
  assert.equal(readTopLevelString(String.raw`{"model":"a\"b\u00e9"}`, "model"), 'a"bé');
  assert.equal(readTopLevelString('{"model":"qwen/Qwen2.5"}', "model"), "qwen/Qwen2.5");
});

Deno.test("readTopLevelString() returns undefined when the value is not a string", () => {
  for (const text of ['{"model":5}', '{"model":null}', '{"model":["a"]}', '{"model":{"a":"b"}}']) {
    assert.equal(readTopLevelString(text, "model"), undefined, text);
  }
});

// A client key limited to some models is checked against the model this scanner reads, while
// the upstream parses the body with JSON.parse: both must see the same model.
Deno.test("readTopLevelString() reads the value JSON.parse sees when a key repeats", () => {
  const text = '{"model":"allowed-model","messages":[],"model":"other-model"}';
  assert.equal(JSON.parse(text).model, "other-model");
  assert.equal(readTopLevelString(text, "model"), "other-model");
});

Deno.test("readTopLevelString() reads a key name written with escapes, as JSON.parse does", () => {
  const text = String.raw`{"\u006dodel":"other-model"}`;
  assert.equal(JSON.parse(text).model, "other-model");
  assert.equal(readTopLevelString(text, "model"), "other-model");
});

Deno.test("replaceValue() changes only the value's bytes", () => {
  const text = '{ "tools" : [ {"type":"function"} ],\n"model":  "gpt-4o" , "x":1.0, "y":1e2 }';
  const span = findTopLevel(text, "model")!;
  const out = replaceValue(text, span, "deepseek-ai/DeepSeek-V3.1");
  assert.equal(
    out,
    '{ "tools" : [ {"type":"function"} ],\n"model":  "deepseek-ai/DeepSeek-V3.1" , "x":1.0, "y":1e2 }',
  );
});

Deno.test("replaceValue() escapes the new value as JSON", () => {
  const text = '{"model":"a"}';
  assert.equal(replaceValue(text, findTopLevel(text, "model")!, 'q"\\'), '{"model":"q\\"\\\\"}');
});

Deno.test("appendField() adds a field before the closing brace", () => {
  assert.equal(appendField("{}", "k", true), '{"k":true}');
  assert.equal(appendField("{ }", "k", 1), '{"k":1}');
  assert.equal(appendField('{"a":1}', "k", { b: 2 }), '{"a":1,"k":{"b":2}}');
  assert.equal(appendField('{"a":1 }\n', "k", "v"), '{"a":1,"k":"v"}\n');
});

Deno.test("appendField() leaves text without a closing brace unchanged", () => {
  assert.equal(appendField("[1,2]", "k", 1), "[1,2]");
});

Deno.test("findTopLevel() takes linear time over a body of many top-level fields", () => {
  // a body any client may send: quadratic scanning would block every request for seconds
  const fields = Array.from({ length: 150_000 }, (_, i) => `"k${i}":1`);
  const text = `{${fields.join(",")},"model":"m"}`;
  const t0 = performance.now();
  assert.equal(readTopLevelString(text, "model"), "m");
  const ms = performance.now() - t0;
  assert.ok(ms < 400, `${Math.round(ms)} ms for ${text.length} bytes`);
});
