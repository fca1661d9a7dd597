/**
 * @module
 * Tests of the `http` probe plugin: how each answer (or none) maps to a probe outcome.
 */

import assert from "node:assert/strict";
import httpProbe, { connectionFailure } from "../../../plugins/probes/http.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import type { ProbeTarget } from "../../../src/plugin.ts";
import { makeCandidates } from "../../helpers/candidates.ts";

const NOW = 1_700_000_000_000;

function target(fetchFn: typeof fetch, extra: Partial<ProbeTarget> = {}): ProbeTarget {
  return {
    candidate: makeCandidates(1)[0]!,
    url: "http://127.0.0.1:9/v1/models",
    headers: new Headers({ authorization: "Bearer sk-test-0" }),
    signal: new AbortController().signal,
    fetch: fetchFn,
    now: () => NOW,
    ...extra,
  };
}

function answering(status: number, headers: Record<string, string> = {}): typeof fetch {
  return () => Promise.resolve(new Response(status === 204 ? null : "body", { status, headers }));
}

Deno.test("http probe plugin is a probe named http", () => {
  assert.equal(httpProbe.kind, "probe");
  assert.equal(httpProbe.name, "http");
});

Deno.test("http probe counts only a 2xx answer as healthy", async () => {
  for (const status of [200, 204]) {
    const r = await httpProbe.probe(target(answering(status)));
    assert.equal(r.outcome, "healthy", `HTTP ${status}`);
    assert.equal(r.status, status);
    assert.equal(r.detail, undefined);
    assert.ok(r.latencyMs >= 0);
  }
});

Deno.test("http probe reports any other answer but 401/403/429 as unhealthy, saying why", async () => {
  const cases: [number, string][] = [
    [301, "HTTP 301: not a success"],
    [400, "HTTP 400: not a success"],
    [404, "HTTP 404: nothing at the health path (health_check.path)"],
    [405, "HTTP 405: not a success"],
    [500, "HTTP 500: server error"],
  ];
  for (const [status, detail] of cases) {
    const r = await httpProbe.probe(target(answering(status)));
    assert.equal(r.outcome, "server_error", `HTTP ${status}`);
    assert.equal(r.status, status);
    assert.equal(r.detail, detail);
  }
});

Deno.test("http probe reports 401 and 403 as a refused key", async () => {
  for (const status of [401, 403]) {
    const r = await httpProbe.probe(target(answering(status)));
    assert.equal(r.outcome, "auth");
    assert.equal(r.status, status);
  }
});

Deno.test("http probe reports 429 with the reset time when the headers give one", async () => {
  const r = await httpProbe.probe(target(answering(429, { "retry-after": "7" })));
  assert.equal(r.outcome, "rate_limited");
  assert.equal(r.retryAt, NOW + 7000);
  const bare = await httpProbe.probe(target(answering(429)));
  assert.equal(bare.outcome, "rate_limited");
  assert.equal(bare.retryAt, undefined);
});

Deno.test("http probe reports 5xx as a server error", async () => {
  for (const status of [500, 502, 503]) {
    const r = await httpProbe.probe(target(answering(status)));
    assert.equal(r.outcome, "server_error");
    assert.equal(r.status, status);
  }
});

Deno.test("http probe reports a failed connection as a network failure", async () => {
  const r = await httpProbe.probe(
    target(() => Promise.reject(new TypeError("connection refused"))),
  );
  assert.equal(r.outcome, "network");
  assert.equal(r.detail, "connection refused");
});

Deno.test("connectionFailure() says why fetch failed, from its cause, without the URL", () => {
  const fetchError = (cause: string) => new TypeError("fetch failed", { cause: new Error(cause) });
  const cases: [unknown, string][] = [
    [
      fetchError(
        "error sending request for url (http://127.0.0.1:1/v1/models): client error (Connect): tcp connect error: Connection refused (os error 111)",
      ),
      "cannot connect: Connection refused (os error 111)",
    ],
    [
      fetchError(
        "error sending request for url (http://x.invalid/v1/models): client error (Connect): dns error: failed to lookup address information: Name or service not known",
      ),
      "cannot resolve the host name: Name or service not known",
    ],
    [
      fetchError(
        "error sending request for url (https://127.0.0.1:4/): client error (Connect): invalid peer certificate: UnknownIssuer",
      ),
      "TLS failed: invalid peer certificate: UnknownIssuer",
    ],
    [
      fetchError(
        "error sending request from 127.0.0.1:39632 for http://127.0.0.1:36643/ (127.0.0.1:36643): client error (SendRequest): connection closed before message completed",
      ),
      "connection closed before message completed",
    ],
    [
      fetchError("error sending request for url (http://a/): client error (Connect): boom"),
      "cannot connect: boom",
    ],
    [
      new TypeError("Fetch failed: Requests to port 1 are blocked"),
      "Requests to port 1 are blocked",
    ],
    [new TypeError("fetch failed"), "connection failed"],
    ["a string", "a string"],
  ];
  for (const [err, expected] of cases) assert.equal(connectionFailure(err), expected);
});

Deno.test("http probe says why a real connection failed: refused, unknown host, bad certificate", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = listener.addr.port;
  listener.close();
  const refused = await httpProbe.probe(
    target(fetch, { url: `http://127.0.0.1:${closedPort}/v1/models` }),
  );
  assert.equal(refused.outcome, "network");
  assert.match(refused.detail ?? "", /^cannot connect: Connection refused/i);
  assert.doesNotMatch(refused.detail ?? "", /127\.0\.0\.1/);

  const unknown = await httpProbe.probe(target(fetch, { url: "http://no-such-host.invalid/v1" }));
  assert.equal(unknown.outcome, "network");
  assert.match(unknown.detail ?? "", /^cannot resolve the host name: /);

  const dir = new URL("../../fixtures/tls/", import.meta.url);
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(new URL("cert.pem", dir)),
    key: await Deno.readTextFile(new URL("key.pem", dir)),
    onListen() {},
    onError: () => new Response(null, { status: 500 }),
  }, () => new Response("ok"));
  const tls = await httpProbe.probe(
    target(fetch, { url: `https://127.0.0.1:${server.addr.port}/v1/models` }),
  );
  assert.equal(tls.outcome, "network");
  assert.match(tls.detail ?? "", /^TLS failed: invalid peer certificate/);
});

Deno.test("http probe reports an aborted probe as a timeout", async () => {
  const ctl = new AbortController();
  const hang: typeof fetch = (_i, init) =>
    new Promise((_resolve, reject) =>
      init?.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true })
    );
  const pending = httpProbe.probe(target(hang, { signal: ctl.signal }));
  ctl.abort(new DOMException("probe timed out", "TimeoutError"));
  const r = await pending;
  assert.equal(r.outcome, "timeout");
  assert.equal(r.detail, "probe timed out");
});

Deno.test("http probe sends a GET with the key and the mock's verdicts follow its mode", async () => {
  await using mock = await startMockUpstream({ name: "p", keys: ["sk-good"] });
  const real = (key: string) =>
    target(fetch, {
      url: `${mock.baseUrl}/models`,
      headers: new Headers({ authorization: `Bearer ${key}` }),
    });
  assert.equal((await httpProbe.probe(real("sk-good"))).outcome, "healthy");
  assert.equal(mock.requests[0]?.method, "GET");
  assert.equal(mock.requests[0]?.path, "/v1/models");
  assert.equal((await httpProbe.probe(real("sk-bad"))).outcome, "auth");
  await mock.setMode("error500");
  assert.equal((await httpProbe.probe(real("sk-good"))).outcome, "server_error");
  await mock.setMode("refuse");
  assert.equal((await httpProbe.probe(real("sk-good"))).outcome, "network");
});
