/** @module Tests for src/config/env.ts. */

import assert from "node:assert/strict";
import { emptyVariables, expandEnv, substituteEnv } from "../../src/config/env.ts";

const vars: Record<string, string> = { KEY: "sk-1", EMPTY: "", LIST: "a,b" };
const env = (name: string) => vars[name];

Deno.test("expandEnv() replaces ${VAR} with its value", () => {
  assert.deepEqual(expandEnv("Bearer ${KEY}!", env), { value: "Bearer sk-1!", problems: [] });
});

Deno.test("expandEnv() keeps an empty value of a set variable", () => {
  assert.deepEqual(expandEnv("[${EMPTY}]", env), { value: "[]", problems: [] });
});

Deno.test("expandEnv() uses the default when the variable is unset or empty", () => {
  assert.equal(expandEnv("${NOPE:-x}", env).value, "x");
  assert.equal(expandEnv("${EMPTY:-y}", env).value, "y");
  assert.equal(expandEnv("${KEY:-z}", env).value, "sk-1");
  assert.equal(expandEnv("${NOPE:-}", env).value, "");
  assert.equal(expandEnv("${NOPE:-a b:c}", env).value, "a b:c");
});

Deno.test("expandEnv() reports a missing variable by name", () => {
  assert.deepEqual(expandEnv("${NOPE}", env).problems, [
    'environment variable "NOPE" is not set',
  ]);
});

Deno.test("expandEnv() turns $${X} into a literal ${X}", () => {
  assert.deepEqual(expandEnv("$${KEY} and ${KEY}", env), {
    value: "${KEY} and sk-1",
    problems: [],
  });
});

Deno.test("expandEnv() leaves other dollar signs alone", () => {
  assert.equal(expandEnv("$5 $KEY $", env).value, "$5 $KEY $");
});

Deno.test("expandEnv() reports malformed references", () => {
  assert.match(
    expandEnv("${KEY", env).problems[0] ?? "",
    /invalid environment reference "\$\{KEY"/,
  );
  assert.match(expandEnv("${1X}", env).problems[0] ?? "", /invalid environment reference/);
  assert.match(expandEnv("${}", env).problems[0] ?? "", /invalid environment reference/);
});

Deno.test("substituteEnv() substitutes strings at any depth and leaves other values", () => {
  const tree = { a: ["${KEY}", 1, true, null], b: { c: "${LIST}" }, "${KEY}": "k" };
  const { value, issues } = substituteEnv(tree, env);
  assert.deepEqual(value, { a: ["sk-1", 1, true, null], b: { c: "a,b" }, "${KEY}": "k" });
  assert.deepEqual(issues, []);
});

Deno.test("substituteEnv() reports each missing variable with its path", () => {
  const tree = { upstreams: { ms: { keys: ["${MODELSCOPE_KEY_1}", "${A}${B}"] } } };
  const { issues } = substituteEnv(tree, env);
  assert.deepEqual(issues, [
    {
      path: ["upstreams", "ms", "keys", 0],
      message: 'environment variable "MODELSCOPE_KEY_1" is not set',
    },
    { path: ["upstreams", "ms", "keys", 1], message: 'environment variable "A" is not set' },
    { path: ["upstreams", "ms", "keys", 1], message: 'environment variable "B" is not set' },
  ]);
});

Deno.test("substituteEnv() does not substitute twice", () => {
  const { value } = substituteEnv({ a: "${X}" }, (n) => n === "X" ? "${KEY}" : undefined);
  assert.deepEqual(value, { a: "${KEY}" });
});

Deno.test("substituteEnv() keeps a __proto__ key as plain data", () => {
  const tree = JSON.parse('{"__proto__": {"polluted": "${KEY}"}}');
  const { value } = substituteEnv(tree, env);
  assert.deepEqual(Object.keys(value as object), ["__proto__"]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("emptyVariables() names the referenced variables that are set but empty", () => {
  const more = (name: string) => ({ ...vars, OTHER: "" })[name];
  assert.deepEqual(emptyVariables("${EMPTY}", env), ["EMPTY"]);
  assert.deepEqual(emptyVariables("${KEY},${EMPTY},${OTHER},${EMPTY}", more), ["EMPTY", "OTHER"]);
  // unset, set, defaulted and literal references are not "set but empty"
  assert.deepEqual(emptyVariables("${UNSET}${KEY}${EMPTY:-x}${EMPTY:-}$${EMPTY}", env), []);
  assert.deepEqual(emptyVariables("no references", env), []);
});
