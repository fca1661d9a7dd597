/** @module Tests of src/proxy/request_body.ts: reading within the limit, JSON, model mapping. */

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

/** A body of `chunks` chunks of `size` bytes, counting what was pulled and whether cancelled. */
function counted(chunks: number, size: number) {
  const seen = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (seen.pulled === chunks) return c.close();
      seen.pulled++;
      c.enqueue(new Uint8Array(size).fill(120));
    },
    cancel() {
      seen.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, seen };
}

function isTooLarge(e: unknown): boolean {
  return e instanceof ProxyError && e.status === 413 && e.code === "request_too_large";
}

Deno.test("readBody() refuses a declared Content-Length over the limit before reading", async () => {
  const { stream, seen } = counted(1000, 1000);
  const req = new Request("http://x/", {
    method: "POST",
    body: stream,
    headers: { "content-length": "1000000" },
  });
  await assert.rejects(() => readBody(req, 999_999), isTooLarge);
  assert.equal(seen.pulled, 0);
});

Deno.test("readBody() stops reading a body without a length as soon as it passes the limit", async () => {
  // an endless client: the read must end by itself, holding no more than the limit
  const { stream, seen } = counted(Infinity, 1000);
  const req = new Request("http://x/", { method: "POST", body: stream });
  assert.equal(req.headers.get("content-length"), null);
  await assert.rejects(() => readBody(req, 4500), isTooLarge);
  assert.equal(seen.pulled, 5);
  assert.equal(seen.cancelled, true);
});

Deno.test("readBody() reads a body without a length up to the limit, whole", async () => {
  const { stream } = counted(3, 1000);
  const body = await readBody(new Request("http://x/", { method: "POST", body: stream }), 3000);
  assert.equal(body?.length, 3000);
  assert.ok(body!.every((b) => b === 120));
  const empty = counted(0, 0);
  assert.equal(
    await readBody(new Request("http://x/", { method: "POST", body: empty.stream }), 10),
    null,
  );
});

Deno.test("readBody() joins a body without a length from many uneven chunks, byte for byte", async () => {
  const sizes = Array.from({ length: 3000 }, (_, i) => (i * 7919) % 97 + 1);
  const total = sizes.reduce((a, b) => a + b, 0);
  let k = 0;
  let byte = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (k === sizes.length) return c.close();
      c.enqueue(new Uint8Array(sizes[k++]!).map(() => byte++ % 251));
    },
  });
  const body = await readBody(new Request("http://x/", { method: "POST", body: stream }), total);
  assert.equal(body?.length, total);
  assert.equal(body!.buffer.byteLength, total, "no slack kept");
  assert.ok(body!.every((b, i) => b === i % 251));
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
