/** @module Tests of header hygiene: hop-by-hop headers, credentials and auth styles. */

import assert from "node:assert/strict";
import {
  applyAuth,
  configuredHeaders,
  copyResponseHeaders,
  forwardRequestHeaders,
  returnResponseHeaders,
} from "../../src/proxy/headers.ts";

Deno.test("forwardRequestHeaders() drops hop-by-hop headers and those named in Connection", () => {
  const out = forwardRequestHeaders(
    new Headers({
      connection: "close, X-Foo, x-bar",
      "keep-alive": "timeout=5",
      "proxy-connection": "keep-alive",
      "transfer-encoding": "chunked",
      upgrade: "websocket",
      te: "trailers",
      trailer: "x-checksum",
      "proxy-authorization": "Basic abc",
      "proxy-authenticate": "Basic",
      "x-foo": "1",
      "x-bar": "2",
      "x-kept": "3",
      "content-type": "application/json",
    }),
  );
  assert.deepEqual(Object.entries(out).sort(), [
    ["accept-encoding", "identity"],
    ["content-type", "application/json"],
    ["x-kept", "3"],
  ]);
});

Deno.test("forwardRequestHeaders() drops client credentials, routing hints and cookies", () => {
  const out = forwardRequestHeaders(
    new Headers({
      authorization: "Bearer client-key",
      "x-api-key": "client-key",
      "api-key": "client-key",
      host: "evil.example",
      "x-forwarded-host": "evil.example",
      "x-forwarded-for": "1.2.3.4",
      "x-forwarded-proto": "https",
      "x-forwarded-port": "443",
      "x-real-ip": "1.2.3.4",
      forwarded: "host=evil.example",
      cookie: "a=b",
      "content-length": "12",
      "x-request-id": "client-id",
      "openai-organization": "org-1",
      "anthropic-version": "2023-06-01",
    }),
  );
  assert.deepEqual(Object.entries(out).sort(), [
    ["accept-encoding", "identity"],
    ["anthropic-version", "2023-06-01"],
    ["openai-organization", "org-1"],
  ]);
});

Deno.test("forwardRequestHeaders() asks for an uncompressed response whatever the client accepts", () => {
  const out = forwardRequestHeaders(new Headers({ "accept-encoding": "gzip, br" }));
  assert.equal(out["accept-encoding"], "identity");
});

Deno.test("forwardRequestHeaders() sends configured headers as defaults the client's own override", () => {
  // an SDK's newer anthropic-version is kept; the config's older one fills in for clients
  // that send none
  const sdk = forwardRequestHeaders(
    new Headers({ "anthropic-version": "2024-10-22", "x-a": "1" }),
    { "anthropic-version": "2023-06-01", "X-B": "2" },
  );
  assert.deepEqual(Object.entries(sdk).sort(), [
    ["accept-encoding", "identity"],
    ["anthropic-version", "2024-10-22"],
    ["x-a", "1"],
    ["x-b", "2"],
  ]);
  const curl = forwardRequestHeaders(new Headers(), { "anthropic-version": "2023-06-01" });
  assert.equal(curl["anthropic-version"], "2023-06-01");
});

Deno.test("forwardRequestHeaders() lets forced headers replace the client's", () => {
  const out = forwardRequestHeaders(
    new Headers({ "openai-organization": "org-client", "x-a": "1" }),
    {},
    { "openai-organization": "org-ops", "X-Team": "ops" },
  );
  assert.deepEqual(Object.entries(out).sort(), [
    ["accept-encoding", "identity"],
    ["openai-organization", "org-ops"],
    ["x-a", "1"],
    ["x-team", "ops"],
  ]);
});

Deno.test("forwardRequestHeaders() fills a default the client could not send (a dropped header)", () => {
  const out = forwardRequestHeaders(new Headers({ "x-request-id": "client-id" }), {
    "x-request-id": "from-config",
  });
  assert.equal(out["x-request-id"], "from-config");
});

Deno.test("configuredHeaders() sends defaults and forced headers alike", () => {
  const h = configuredHeaders({ "anthropic-version": "2023-06-01" }, { "x-team": "ops" });
  assert.deepEqual([...h.entries()].sort(), [
    ["anthropic-version", "2023-06-01"],
    ["x-team", "ops"],
  ]);
});

Deno.test("forwardRequestHeaders() leaves its input unchanged", () => {
  const src = new Headers({ authorization: "Bearer x", "x-a": "1" });
  forwardRequestHeaders(src);
  assert.equal(src.get("authorization"), "Bearer x");
});

Deno.test("applyAuth() sets the key in the upstream's auth style", () => {
  const cases = [
    { style: "bearer", header: "authorization", value: "Bearer sk-1" },
    { style: "x-api-key", header: "x-api-key", value: "sk-1" },
    { style: "api-key", header: "api-key", value: "sk-1" },
  ] as const;
  for (const { style, header, value } of cases) {
    const h = new Headers({ "content-type": "application/json" });
    applyAuth(h, style, "sk-1");
    assert.equal(h.get(header), value, style);
    const names = [...h.keys()].filter((k) => k !== "content-type");
    assert.deepEqual(names, [header], `${style} sets exactly one credential header`);
  }
});

Deno.test("applyAuth() also sets the key in a header record", () => {
  const h: Record<string, string> = { "content-type": "application/json" };
  applyAuth(h, "x-api-key", "sk-1");
  assert.deepEqual(h, { "content-type": "application/json", "x-api-key": "sk-1" });
});

Deno.test("applyAuth() replaces a credential already set", () => {
  const h = new Headers({ authorization: "Bearer old" });
  applyAuth(h, "bearer", "new");
  assert.equal(h.get("authorization"), "Bearer new");
});

Deno.test("returnResponseHeaders() drops hop-by-hop headers and those named in Connection", () => {
  const out = returnResponseHeaders(
    new Headers({
      connection: "x-hop",
      "keep-alive": "timeout=5",
      upgrade: "h2c",
      "proxy-authenticate": "Basic",
      trailer: "x-t",
      "transfer-encoding": "chunked",
      "x-hop": "1",
      "content-type": "text/event-stream",
    }),
  );
  assert.deepEqual([...out], [["content-type", "text/event-stream"]]);
});

Deno.test("returnResponseHeaders() keeps rate-limit headers and renames the upstream's request id", () => {
  const out = returnResponseHeaders(
    new Headers({
      "x-request-id": "req_abc",
      "x-ratelimit-remaining-requests": "99",
      "x-ratelimit-reset-tokens": "6m0s",
      "retry-after": "2",
      "openai-processing-ms": "12",
      "set-cookie": "s=1",
      server: "nginx",
      date: "Mon, 01 Jan 2024 00:00:00 GMT",
      "content-length": "10",
    }),
  );
  assert.equal(out.get("x-upstream-request-id"), "req_abc");
  assert.equal(out.get("x-request-id"), null);
  assert.equal(out.get("x-ratelimit-remaining-requests"), "99");
  assert.equal(out.get("x-ratelimit-reset-tokens"), "6m0s");
  assert.equal(out.get("retry-after"), "2");
  assert.equal(out.get("openai-processing-ms"), "12");
  assert.equal(out.get("content-length"), "10");
  assert.equal(out.get("set-cookie"), null);
  assert.equal(out.get("server"), null);
  assert.equal(out.get("date"), null);
});

Deno.test("returnResponseHeaders() keeps content-encoding and content-length of an encoded body", () => {
  // the upstream was asked for identity, so fetch leaves an encoded body as it came
  const out = returnResponseHeaders(
    new Headers({ "content-encoding": "gzip", "content-length": "10", "content-type": "x/y" }),
  );
  assert.deepEqual([...out], [
    ["content-encoding", "gzip"],
    ["content-length", "10"],
    ["content-type", "x/y"],
  ]);
});

Deno.test("copyResponseHeaders() drops headers named in Connection whatever their order, and skips invalid names", () => {
  const src = new Headers({
    "a-hop": "1",
    connection: "a-hop, zz-hop, not a name, x-request-id",
    "content-type": "application/json",
    "x-request-id": "up-1",
    "zz-hop": "2",
  });
  const dst = new Headers();
  copyResponseHeaders(src, dst);
  assert.deepEqual([...dst], [
    ["content-type", "application/json"],
    ["x-upstream-request-id", "up-1"],
  ]);
});
