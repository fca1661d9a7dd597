/** @module Tests for src/config/_schema.ts, the zod helpers shared by the config formats. */

import assert from "node:assert/strict";
import { z } from "zod";
import {
  atLeast,
  bool,
  check,
  duplicates,
  entriesInOrder,
  httpUrl,
  intRange,
  isHttpUrl,
  seconds,
  unknownField,
} from "../../src/config/_schema.ts";

Deno.test("check() turns zod issues into paths and readable messages", () => {
  const schema = z.strictObject({
    a: intRange(0, 9),
    b: z.array(z.string()),
    c: z.strictObject({ d: bool() }),
    e: atLeast(1, true),
  });
  const result = check(schema, { a: 1.5, b: [1], c: { d: "maybe", extra: 1 }, f: 2 });
  assert.ok(!result.ok);
  assert.deepEqual(result.issues, [
    { path: ["a"], message: "must be an integer from 0 to 9" },
    { path: ["b", 0], message: "must be a string" },
    { path: ["c", "d"], message: "must be true or false" },
    { path: ["c", "extra"], message: "unknown field" },
    { path: ["e"], message: "is required" },
    { path: ["f"], message: 'unknown field (did you mean "e"?)' },
  ]);
});

Deno.test("check() reports the issues of the one union branch of the value's type", () => {
  const schema = z.union([atLeast(0), z.strictObject({ x: atLeast(0) })], { error: "bad type" });
  assert.deepEqual(check(schema, { x: -1 }), {
    ok: false,
    issues: [{ path: ["x"], message: "must be >= 0" }],
  });
  assert.deepEqual(check(schema, "nope"), {
    ok: false,
    issues: [{ path: [], message: "bad type" }],
  });
});

Deno.test("numbers and booleans accept their string forms", () => {
  assert.deepEqual(check(atLeast(0), "1.5"), { ok: true, value: 1.5 });
  assert.deepEqual(check(bool(), "false"), { ok: true, value: false });
  assert.ok(!check(atLeast(0), "1.5s").ok);
});

Deno.test("seconds() converts to whole milliseconds", () => {
  assert.deepEqual(check(seconds(), 0.0015), { ok: true, value: 2 });
  assert.deepEqual(check(seconds(), 0), { ok: true, value: 0 });
  assert.ok(!check(seconds(true), 0).ok);
});

Deno.test("httpUrl() accepts http(s) only and drops trailing slashes", () => {
  assert.deepEqual(check(httpUrl(), " https://a.example/v1// "), {
    ok: true,
    value: "https://a.example/v1",
  });
  assert.equal(isHttpUrl("ftp://a"), false);
  assert.equal(isHttpUrl("a.example"), false);
  assert.equal(isHttpUrl("http://a/b c"), false);
});

Deno.test("unknownField() suggests only close names", () => {
  assert.equal(unknownField("prot", ["port", "host"]), 'unknown field (did you mean "port"?)');
  assert.equal(unknownField("base_ulr", ["base_url"]), 'unknown field (did you mean "base_url"?)');
  assert.equal(unknownField("colour", ["port", "host"]), "unknown field");
});

Deno.test("duplicates() finds repeats and skips empty strings", () => {
  assert.deepEqual(duplicates(["a", "", "b", "a", "", "b"]), [
    { index: 3, first: 0 },
    { index: 5, first: 2 },
  ]);
});

Deno.test("entriesInOrder() follows the file's order when known", () => {
  const record = { b: 1, "2": 2, "1": 3 };
  const context = { source: "x", baseDir: "/", keyOrder: () => ["b", "2", "1"] };
  assert.deepEqual(entriesInOrder(record, [], context).map(([k]) => k), ["b", "2", "1"]);
  assert.deepEqual(
    entriesInOrder(record, [], { source: "x", baseDir: "/" }).map(([k]) => k),
    ["1", "2", "b"],
  );
});
