/**
 * @module
 * Tests of the `http` probe plugin: how each answer (or none) maps to a probe outcome.
 */

import assert from "node:assert/strict";
import httpProbe from "../../../plugins/probes/http.ts";
import { startMockUpstream } from "../../../src/dev/mock_upstream.ts";
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

Deno.test("http probe counts any answer below 500 but 401/403/429 as healthy", async () => {
  for (const status of [200, 204, 301, 400, 404, 405]) {
    const r = await httpProbe.probe(target(answering(status)));
    assert.equal(r.outcome, "healthy", `HTTP ${status}`);
    assert.equal(r.status, status);
    assert.ok(r.latencyMs >= 0);
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
