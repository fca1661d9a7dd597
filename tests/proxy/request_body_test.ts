import assert from "node:assert/strict";
import { bodyFor, isJson, readBody } from "../../src/proxy/request_body.ts";
import { ProxyError } from "../../src/errors.ts";
import { makeCandidates } from "../helpers/candidates.ts";
import type { Candidate } from "../../src/plugin.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("readBody() returns the bytes, or null for GET", async () => {
  const post = new Request("http://x/v1/chat/completions", { method: "POST", body: '{"a":1}' });
  assert.equal(dec.decode((await readBody(post, 100))!), '{"a":1}');
  assert.equal(await readBody(new Request("http://x/v1/models"), 100), null);
});

Deno.test("readBody() refuses a body over the limit with 413, declared or not", async () => {
  const big = new Request("http://x/", { method: "POST", body: "x".repeat(101) });
  await assert.rejects(
    () => readBody(big, 100),
    (e: unknown) => e instanceof ProxyError && e.status === 413,
  );
});

Deno.test("isJson() trusts JSON types and sniffs form-encoded and plain-text bodies", () => {
  assert.equal(isJson("application/json; charset=utf-8", enc.encode("x")), true);
  assert.equal(isJson(null, enc.encode("x")), true);
  assert.equal(isJson("application/x-www-form-urlencoded", enc.encode('  {"model":"m"}')), true);
  assert.equal(isJson("application/x-www-form-urlencoded", enc.encode("a=1&b=2")), false);
  assert.equal(isJson("multipart/form-data; boundary=x", enc.encode("{")), false);
});

Deno.test("bodyFor() rewrites only the model, once per upstream, for a mapping upstream", () => {
  const [plain, mapping] = makeCandidates([{ upstream: "plain" }, { upstream: "mapping" }]) as [
    Candidate,
    Candidate,
  ];
  (mapping.upstream.config as { models: Record<string, string> }).models = { "gpt-4o": "deep" };
  const text = '{"model": "gpt-4o", "n": 1.0, "x": "gpt-4o"}';
  const body = enc.encode(text);
  const cache = new Map<string, Uint8Array<ArrayBuffer> | null>();
  assert.equal(bodyFor(plain, body, text, "gpt-4o", cache), body);
  const mapped = bodyFor(mapping, body, text, "gpt-4o", cache)!;
  assert.equal(dec.decode(mapped), '{"model": "deep", "n": 1.0, "x": "gpt-4o"}');
  assert.equal(bodyFor(mapping, body, text, "gpt-4o", cache), mapped);
});
