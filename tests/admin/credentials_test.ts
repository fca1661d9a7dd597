import assert from "node:assert/strict";
import { credentialOf, timingSafeEqual } from "../../src/admin/credentials.ts";

Deno.test("credentialOf() reads a Bearer token, case-insensitively and trimmed", () => {
  assert.equal(credentialOf(new Headers({ authorization: "Bearer sk-abc" })), "sk-abc");
  assert.equal(credentialOf(new Headers({ authorization: "bearer   sk-abc  " })), "sk-abc");
  assert.equal(credentialOf(new Headers({ authorization: "BEARER sk-abc" })), "sk-abc");
});

Deno.test("credentialOf() accepts x-api-key and api-key", () => {
  assert.equal(credentialOf(new Headers({ "x-api-key": "sk-x" })), "sk-x");
  assert.equal(credentialOf(new Headers({ "api-key": "sk-azure" })), "sk-azure");
});

Deno.test("credentialOf() prefers Authorization, then x-api-key, then api-key", () => {
  const all = new Headers({ authorization: "Bearer a", "x-api-key": "b", "api-key": "c" });
  assert.equal(credentialOf(all), "a");
  assert.equal(credentialOf(new Headers({ "x-api-key": "b", "api-key": "c" })), "b");
});

Deno.test("credentialOf() ignores non-Bearer authorization and missing headers", () => {
  assert.equal(credentialOf(new Headers()), undefined);
  assert.equal(credentialOf(new Headers({ authorization: "Basic dXNlcjpwYXNz" })), undefined);
  assert.equal(credentialOf(new Headers({ authorization: "Bearer " })), undefined);
  assert.equal(
    credentialOf(new Headers({ authorization: "Basic x", "x-api-key": "k" })),
    "k",
  );
});

Deno.test("timingSafeEqual() compares whole strings", () => {
  assert.equal(timingSafeEqual("sk-same", "sk-same"), true);
  assert.equal(timingSafeEqual("", ""), true);
  assert.equal(timingSafeEqual("sk-same", "sk-samf"), false);
  assert.equal(timingSafeEqual("sk-same", "sk-same-longer"), false);
  assert.equal(timingSafeEqual("sk-same-longer", "sk-same"), false);
  assert.equal(timingSafeEqual("", "x"), false);
  assert.equal(timingSafeEqual("ключ", "ключ"), true);
  assert.equal(timingSafeEqual("ключ", "ключа"), false);
  // a prefix padded with NUL bytes must not pass as equal
  assert.equal(timingSafeEqual("ab", "ab\u0000"), false);
});
