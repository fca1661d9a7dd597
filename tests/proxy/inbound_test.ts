/**
 * @module Tests of src/proxy/inbound.ts: which methods are forwarded, what a request's body says
 * (model, affinity fields, injected usage), the limits it is held to, and its affinity key.
 */

import assert from "node:assert/strict";
import type { AffinitySource, ClientKeyConfig } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";
import type { RequestContext } from "../../src/plugin.ts";
import { hash53 } from "../../src/routing/hash.ts";
import {
  affinityKey,
  ALLOW,
  type Inbound,
  type InboundOptions,
  isForwarded,
  notAllowed,
  readInbound,
} from "../../src/proxy/inbound.ts";

const dec = new TextDecoder();
const CHAT = "/v1/chat/completions";
const OPTIONS: InboundOptions = { maxBodyBytes: 1_000, injectStreamUsage: false };

interface RequestShape {
  path?: string;
  method?: string;
  body?: string | ReadableStream<Uint8Array>;
  headers?: Record<string, string>;
  client?: ClientKeyConfig;
}

/** A request context as the chain hands it over, for a request to `shape.path`. */
function contextFor(shape: RequestShape = {}): RequestContext {
  const method = shape.method ?? "POST";
  const req = new Request(`http://proxy.test${shape.path ?? CHAT}`, {
    method,
    headers: { "content-type": "application/json", ...shape.headers },
    ...(shape.body === undefined ? {} : { body: shape.body }),
  });
  const url = new URL(req.url);
  return {
    req,
    url,
    path: url.pathname,
    search: url.search,
    startedAt: 0,
    remoteAddr: "127.0.0.1",
    requestId: "req-inbound",
    client: shape.client,
    res: undefined,
    log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
    done: undefined,
  };
}

/** Rejects with a ProxyError of this status and code. */
async function refuses(
  promise: Promise<unknown>,
  status: number,
  code: string,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof ProxyError, `expected a ProxyError, got ${e}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code);
    if (message !== undefined) assert.match(e.message, message);
    return true;
  });
}

/** A body that arrives in chunks, without a declared length. */
function chunked(...parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return ReadableStream.from(parts.map((p) => enc.encode(p)));
}

Deno.test("isForwarded() accepts the six API methods, case-sensitively", () => {
  for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]) {
    assert.equal(isForwarded(method), true, method);
  }
  for (const method of ["OPTIONS", "TRACE", "CONNECT", "get", "Post", "delete", "PROPFIND", ""]) {
    assert.equal(isForwarded(method), false, method);
  }
});

Deno.test("notAllowed() is a 405 with an Allow header listing the API methods", () => {
  const err = notAllowed("TRACE");
  assert.ok(err instanceof ProxyError);
  assert.equal(err.status, 405);
  assert.equal(err.type, "invalid_request_error");
  assert.equal(err.code, "method_not_allowed");
  assert.equal(err.headers.allow, ALLOW);
  assert.equal(ALLOW, "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
  assert.match(err.message, /"TRACE"/);
  // a client's method is quoted, cut short
  assert.ok(!notAllowed("X".repeat(1_000)).message.includes("X".repeat(21)));
});

Deno.test("readInbound() reads the model and records it in ctx.log.model", async () => {
  const body = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}';
  const ctx = contextFor({ body });
  const inbound = await readInbound(ctx, OPTIONS);
  assert.equal(inbound.model, "gpt-4o");
  assert.equal(ctx.log.model, "gpt-4o");
  assert.equal(inbound.text, body);
  assert.equal(dec.decode(inbound.body!), body);
  assert.equal(inbound.injected, false);
  assert.equal(inbound.promptCacheKey, undefined);
  assert.equal(inbound.user, undefined);
});

Deno.test("readInbound() reads a body sent in chunks without a length", async () => {
  const ctx = contextFor({ body: chunked('{"model":', '"chunky"}') });
  assert.equal((await readInbound(ctx, OPTIONS)).model, "chunky");
});

Deno.test("readInbound() reads prompt_cache_key and user only when they are strings", async () => {
  const read = async (body: string) => await readInbound(contextFor({ body }), OPTIONS);
  const both = await read('{"model":"m","prompt_cache_key":"conv-1","user":"alice"}');
  assert.equal(both.promptCacheKey, "conv-1");
  assert.equal(both.user, "alice");
  const escaped = await read(String.raw`{"user":"a\"b"}`);
  assert.equal(escaped.user, 'a"b');
  for (const value of ["42", "null", "true", '{"id":"alice"}', '["alice"]']) {
    const odd = await read(`{"model":"m","prompt_cache_key":${value},"user":${value}}`);
    assert.equal(odd.user, undefined, value);
    assert.equal(odd.promptCacheKey, undefined, value);
    assert.equal(odd.model, "m", value);
  }
  // nested fields are not the request's own
  const nested = await read('{"metadata":{"user":"bob","prompt_cache_key":"k"}}');
  assert.equal(nested.user, undefined);
  assert.equal(nested.promptCacheKey, undefined);
});

Deno.test("readInbound() injects stream_options.include_usage into a streamed chat request when asked", async () => {
  const ctx = contextFor({ body: '{"model":"m","stream":true}' });
  const inbound = await readInbound(ctx, { ...OPTIONS, injectStreamUsage: true });
  assert.equal(inbound.injected, true);
  const sent: unknown = JSON.parse(dec.decode(inbound.body!));
  assert.deepEqual(sent, { model: "m", stream: true, stream_options: { include_usage: true } });
  // the text and the bytes agree
  assert.equal(inbound.text, dec.decode(inbound.body!));
  assert.equal(inbound.model, "m");

  const completions = contextFor({ path: "/v1/completions", body: '{"stream":true}' });
  const legacy = await readInbound(completions, { ...OPTIONS, injectStreamUsage: true });
  assert.equal(legacy.injected, true);
});

Deno.test("readInbound() leaves the body alone unless injection is asked, streamed and accepted", async () => {
  const cases: [string, RequestShape, boolean][] = [
    ["injection off", { body: '{"stream":true}' }, false],
    ["not streamed", { body: '{"stream":false}' }, true],
    ["no stream field", { body: '{"model":"m"}' }, true],
    ["stream_options present", {
      body: '{"stream":true,"stream_options":{"include_usage":false}}',
    }, true],
    ["path without stream_options", { path: "/v1/embeddings", body: '{"stream":true}' }, true],
    ["responses API", { path: "/v1/responses", body: '{"stream":true}' }, true],
    ["not JSON", {
      body: '{"stream":true}',
      headers: { "content-type": "application/octet-stream" },
    }, true],
  ];
  for (const [what, shape, inject] of cases) {
    const inbound = await readInbound(contextFor(shape), { ...OPTIONS, injectStreamUsage: inject });
    assert.equal(inbound.injected, false, what);
    assert.equal(dec.decode(inbound.body!), shape.body, what);
  }
});

Deno.test("readInbound() refuses a model-limited client key naming another model with 403", async () => {
  const client: ClientKeyConfig = { key: "ck-1", name: "alice", models: ["gpt-4o", "cheap"] };
  const ctx = contextFor({ body: '{"model":"o1-pro"}', client });
  await refuses(readInbound(ctx, OPTIONS), 403, "model_not_allowed", /"alice".*"o1-pro"/);
  // the log names the refused model
  assert.equal(ctx.log.model, "o1-pro");

  const allowed = await readInbound(contextFor({ body: '{"model":"cheap"}', client }), OPTIONS);
  assert.equal(allowed.model, "cheap");
  // a key without a model list may use any model
  const free = await readInbound(
    contextFor({ body: '{"model":"o1-pro"}', client: { key: "ck-2", name: "bob" } }),
    OPTIONS,
  );
  assert.equal(free.model, "o1-pro");
  // a request without a body names no model and uses none
  const get = await readInbound(
    contextFor({ method: "GET", path: "/v1/models", client }),
    OPTIONS,
  );
  assert.equal(get.model, undefined);
});

Deno.test("readInbound() refuses a model-limited client key whose body hides its model", async () => {
  const client: ClientKeyConfig = { key: "ck-1", name: "alice", models: ["gpt-4o"] };
  const cases = [
    '{"model":"gpt-4o","Model":"o1-pro"}',
    '{"model":"gpt-4o","model":"o1-pro"}',
    '{"messages":[]}',
  ];
  for (const body of cases) {
    await refuses(readInbound(contextFor({ body, client }), OPTIONS), 403, "model_unverifiable");
  }
});

Deno.test("readInbound() refuses a body over maxBodyBytes with 413, declared or chunked", async () => {
  const options = { ...OPTIONS, maxBodyBytes: 16 };
  const big = `{"model":"${"m".repeat(20)}"}`;
  await refuses(readInbound(contextFor({ body: big }), options), 413, "request_too_large");
  const declared = contextFor({ body: "{}", headers: { "content-length": "17" } });
  await refuses(readInbound(declared, options), 413, "request_too_large");
  const stream = contextFor({ body: chunked('{"model":', '"0123456789"}') });
  await refuses(readInbound(stream, options), 413, "request_too_large", /16 bytes/);
  // exactly at the limit is fine
  const atLimit = '{"model":"abcd"}';
  assert.equal(atLimit.length, 16);
  assert.equal((await readInbound(contextFor({ body: atLimit }), options)).model, "abcd");
});

Deno.test("readInbound() leaves the model undefined for a body that is not JSON", async () => {
  const cases: RequestShape[] = [
    { body: '{"model":"m"}', headers: { "content-type": "application/octet-stream" } },
    { body: "model=m", headers: { "content-type": "application/x-www-form-urlencoded" } },
    { body: "not json at all" },
    { body: "" },
    { method: "GET", path: "/v1/models" },
  ];
  for (const shape of cases) {
    const ctx = contextFor(shape);
    const inbound = await readInbound(ctx, OPTIONS);
    const what = JSON.stringify(shape);
    assert.equal(inbound.model, undefined, what);
    assert.equal(ctx.log.model, undefined, what);
    assert.equal(inbound.injected, false, what);
    assert.equal(inbound.promptCacheKey, undefined, what);
  }
  const octet = await readInbound(contextFor(cases[0]!), OPTIONS);
  assert.equal(octet.text, undefined);
  assert.equal(dec.decode(octet.body!), '{"model":"m"}');
});

function inboundWith(promptCacheKey?: string, user?: string): Inbound {
  return {
    body: null,
    text: undefined,
    model: undefined,
    injected: false,
    promptCacheKey,
    user,
  };
}

Deno.test("affinityKey() takes the first source present, in the given order", () => {
  const headers = new Headers({ "x-session-id": "sess-9" });
  const all = inboundWith("pck-1", "alice");
  const key = (inbound: Inbound, sources: AffinitySource[]) =>
    affinityKey(inbound, headers, sources);
  assert.equal(key(all, ["prompt_cache_key", "user"]), "pck-1");
  assert.equal(key(all, ["user", "prompt_cache_key"]), "alice");
  assert.equal(key(all, ["header:x-session-id", "prompt_cache_key"]), "sess-9");
  assert.equal(key(inboundWith(undefined, "alice"), ["prompt_cache_key", "user"]), "alice");
  assert.equal(
    key(inboundWith(), ["prompt_cache_key", "user", "header:x-session-id"]),
    "sess-9",
  );
  // header names are case-insensitive
  assert.equal(key(inboundWith(), ["header:X-Session-Id"]), "sess-9");
});

Deno.test("affinityKey() skips empty values", () => {
  const headers = new Headers({ "x-empty": "", "x-team": "blue" });
  const sources: AffinitySource[] = ["prompt_cache_key", "header:x-empty", "user", "header:x-team"];
  assert.equal(affinityKey(inboundWith("", "alice"), headers, sources), "alice");
  assert.equal(affinityKey(inboundWith("", ""), headers, sources), "blue");
});

Deno.test("affinityKey() cuts a value to 256 characters", () => {
  const long = "k".repeat(300);
  const headers = new Headers({ "x-long": "h".repeat(1_000) });
  assert.equal(affinityKey(inboundWith(long), headers, ["prompt_cache_key"]), "k".repeat(256));
  assert.equal(affinityKey(inboundWith(), headers, ["header:x-long"]), "h".repeat(256));
  const exact = "e".repeat(256);
  assert.equal(affinityKey(inboundWith(undefined, exact), headers, ["user"]), exact);
});

Deno.test("affinityKey() returns undefined when no source is present", () => {
  const headers = new Headers({ "x-other": "v" });
  assert.equal(
    affinityKey(inboundWith(), headers, ["prompt_cache_key", "user", "header:x-session"]),
    undefined,
  );
  assert.equal(affinityKey(inboundWith("pck", "alice"), headers, []), undefined);
});

Deno.test("affinityKey() hashes the prompt's beginning for the prefix source", () => {
  const headers = new Headers();
  const body = (msgs: string[], extra = "") =>
    `{"model":"m"${extra},"messages":[${msgs.map((m) => `{"role":"user","content":"${m}"}`)}]}`;
  const withText = (text: string): Inbound => ({ ...inboundWith(), text });
  const turn1 = affinityKey(withText(body(["hello"])), headers, ["prefix"], 40);
  assert.match(turn1 ?? "", /^prefix:[0-9a-z]+$/);
  // the same conversation a turn later (and other fields changed): the same key
  const turn2 = affinityKey(
    withText(body(["hello", "more"], ',"max_tokens":9')),
    headers,
    ["prefix"],
    40,
  );
  assert.equal(turn2, turn1);
  assert.notEqual(affinityKey(withText(body(["other"])), headers, ["prefix"], 40), turn1);
  // no prompt (or no JSON text): the next source
  assert.equal(affinityKey(withText('{"model":"m"}'), headers, ["prefix", "user"]), undefined);
  assert.equal(affinityKey(inboundWith(undefined, "bob"), headers, ["prefix", "user"]), "bob");
  // a client's own key comes first when listed first
  assert.equal(
    affinityKey({ ...withText(body(["hello"])), promptCacheKey: "p" }, headers, [
      "prompt_cache_key",
      "prefix",
    ]),
    "p",
  );
});

Deno.test("affinityKey() reads the prefix from the body's one scan, include_usage added or not", async () => {
  const body = '{"stream":true,"model":"m",' +
    '"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}';
  const headers = new Headers();
  const plain = await readInbound(contextFor({ body }), OPTIONS);
  const injected = await readInbound(contextFor({ body }), {
    ...OPTIONS,
    injectStreamUsage: true,
  });
  assert.equal(injected.injected, true);
  assert.notEqual(injected.text, body);
  const want = `prefix:${hash53(`system: Be brief.\u0000hi`).toString(36)}`;
  assert.equal(affinityKey(plain, headers, ["prefix"]), want);
  assert.equal(affinityKey(injected, headers, ["prefix"]), want);
});
