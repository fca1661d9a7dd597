/** @module Tests for src/admin/browser_guard.ts. */

import assert from "node:assert/strict";
import {
  hostPolicy,
  isForeignOrigin,
  isIpLiteral,
  needsPreflight,
  normalizeHostName,
  parseHost,
} from "../../src/admin/browser_guard.ts";

Deno.test("normalizeHostName() lowercases and drops one trailing dot", () => {
  assert.equal(normalizeHostName("LocalHost."), "localhost");
  assert.equal(normalizeHostName("llm.Example"), "llm.example");
  assert.equal(normalizeHostName("[::1]"), "[::1]");
});

Deno.test("parseHost() splits name and port and refuses anything else", () => {
  assert.deepEqual(parseHost("localhost:8080"), { name: "localhost", port: "8080" });
  assert.deepEqual(parseHost("127.0.0.1"), { name: "127.0.0.1", port: "" });
  assert.deepEqual(parseHost("[::1]:8080"), { name: "[::1]", port: "8080" });
  assert.deepEqual(parseHost("LLM.Internal.:80"), { name: "llm.internal", port: "80" });
  for (const bad of ["", ".", "a@b", "a/b", "a b", "[::1", "[zz]:1", "a:", "a:123456", "::1"]) {
    assert.equal(parseHost(bad), undefined, bad);
  }
});

Deno.test("isIpLiteral() knows dotted IPv4 and bracketed IPv6 only", () => {
  for (const ip of ["127.0.0.1", "0.0.0.0", "10.1.2.3", "255.255.255.255", "[::1]", "[::]"]) {
    assert.equal(isIpLiteral(ip), true, ip);
  }
  for (const name of ["localhost", "256.0.0.1", "1.2.3", "1.2.3.4.evil.example", "01.2.3.4"]) {
    assert.equal(isIpLiteral(name), false, name);
  }
});

Deno.test("hostPolicy() allows IP literals, localhost, the bound address and the listed names", () => {
  const allowed = hostPolicy("127.0.0.1", ["llm.internal"]);
  for (
    const host of [
      null,
      "127.0.0.1:8080",
      "127.0.0.1",
      "[::1]:8080",
      "192.168.1.20:8080",
      "localhost:8080",
      "LOCALHOST",
      "localhost.:8080",
      "llm.internal:9000",
      "LLM.internal.",
    ]
  ) {
    assert.equal(allowed(host), true, String(host));
  }
  for (
    const host of [
      "evil.example:8080",
      "localhost.evil.example",
      "127.0.0.1.nip.io:8080",
      "sub.llm.internal",
      "llm.internal.evil",
      "a@127.0.0.1",
      "",
    ]
  ) {
    assert.equal(allowed(host), false, host);
  }
});

Deno.test("hostPolicy() allows the bound name when the server binds one", () => {
  const allowed = hostPolicy("My-Host.lan", []);
  assert.equal(allowed("my-host.lan:8080"), true);
  assert.equal(allowed("other.lan:8080"), false);
  const wildcard = hostPolicy("0.0.0.0", []);
  assert.equal(wildcard("10.0.0.5:8080"), true);
  assert.equal(wildcard("box.lan:8080"), false, "the machine's names cannot be known");
});

Deno.test("isForeignOrigin() compares the Origin's host and port with the Host", () => {
  assert.equal(isForeignOrigin(null, "127.0.0.1:8080"), false);
  assert.equal(isForeignOrigin("http://127.0.0.1:8080", "127.0.0.1:8080"), false);
  assert.equal(isForeignOrigin("http://localhost:8080", "LOCALHOST:8080"), false);
  assert.equal(isForeignOrigin("http://[::1]:8080", "[::1]:8080"), false);
  assert.equal(isForeignOrigin("http://llm.example", "llm.example:80"), false);
  assert.equal(isForeignOrigin("https://llm.example", "llm.example"), false, "TLS proxy in front");
  assert.equal(isForeignOrigin("https://llm.example", "llm.example:443"), false);
  assert.equal(isForeignOrigin("http://localhost.:8080", "localhost:8080"), false);
  assert.equal(isForeignOrigin("http://localhost:3000", "localhost:8080"), true, "another port");
  assert.equal(isForeignOrigin("http://evil.example:8080", "127.0.0.1:8080"), true);
  assert.equal(isForeignOrigin("null", "127.0.0.1:8080"), true);
  assert.equal(isForeignOrigin("file://", "127.0.0.1:8080"), true);
  assert.equal(isForeignOrigin("chrome-extension://abc", "127.0.0.1:8080"), true);
  assert.equal(isForeignOrigin("not a url", "127.0.0.1:8080"), true);
  assert.equal(isForeignOrigin("http://127.0.0.1:8080", null), true);
  assert.equal(isForeignOrigin("http://127.0.0.1:8080", "a@127.0.0.1:8080"), true);
});

Deno.test("needsPreflight() accepts a key header or a JSON content type only", () => {
  const h = (init: Record<string, string>) => needsPreflight(new Headers(init));
  assert.equal(h({ authorization: "Bearer k" }), true);
  assert.equal(h({ "x-api-key": "k" }), true);
  assert.equal(h({ "api-key": "k" }), true);
  assert.equal(h({ "content-type": "application/json" }), true);
  assert.equal(h({ "content-type": "Application/JSON; charset=utf-8" }), true);
  assert.equal(h({}), false);
  for (
    const simple of [
      "text/plain",
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "text/plain; application/json",
      "application/jsonx",
    ]
  ) {
    assert.equal(h({ "content-type": simple }), false, simple);
  }
});
