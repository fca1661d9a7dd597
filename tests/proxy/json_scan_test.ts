/** @module Tests of the top-level JSON field scanner that reads and rewrites `model`. */

import assert from "node:assert/strict";
import {
  appendField,
  fieldsNamedLike,
  findTopLevel,
  fold,
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

Deno.test("fieldsNamedLike() lists every spelling some parser could read as the name", () => {
  const text = String.raw`{"model":"a","MODEL":"b","Model":"c","mod\u0065l":"d",` +
    '"\uff4d\uff4f\uff44\uff45\uff4c":"e","model\u0000x":"f","models":"g","mode":"h"}';
  const found = fieldsNamedLike(text, "model")!;
  assert.deepEqual(
    found.map((f) => [f.name, f.exact, f.span.raw]),
    [
      ["model", true, '"a"'],
      ["MODEL", false, '"b"'],
      ["Model", false, '"c"'],
      ["model", true, '"d"'],
      ["\uff4d\uff4f\uff44\uff45\uff4c", false, '"e"'],
      ["model\0x", false, '"f"'],
    ],
  );
});

Deno.test("fieldsNamedLike() lists a repeated name each time and ignores nested fields", () => {
  const text = '{"model":"a","messages":[{"model":"x"}],"tools":{"MODEL":"y"},"model":"b"}';
  assert.deepEqual(fieldsNamedLike(text, "model")!.map((f) => f.span.raw), ['"a"', '"b"']);
  assert.deepEqual(fieldsNamedLike('{"messages":[]}', "model"), []);
  assert.deepEqual(fieldsNamedLike(" { } \n", "model"), []);
});

Deno.test("fieldsNamedLike() returns undefined unless the text is exactly one object", () => {
  for (
    const text of [
      "",
      "[]",
      '"model"',
      "{",
      '{"model":"a"',
      '{"model":"a",}',
      '{"model":"a"} {"model":"b"}',
      '{"model":"a"}x',
      '{"model":"a" /* "model":"b" */}',
      '{"model":"a",,"x":1}',
      "{'model':'a'}",
      '{"model"}',
      '{"a":1 "model":"x"}',
    ]
  ) {
    assert.equal(fieldsNamedLike(text, "model"), undefined, JSON.stringify(text));
  }
});

Deno.test("fold() cuts at a NUL, folds compatibility forms and ignores case", () => {
  assert.equal(fold("MoDeL"), "model");
  assert.equal(fold("\uff2d\uff4f\uff44\uff45\uff4c"), "model");
  assert.equal(fold("model\0anything"), "model");
  assert.equal(fold("\u017fize"), "size"); // long s, which Go folds to s
  assert.equal(fold("\u212aey"), "key"); // Kelvin sign
});
