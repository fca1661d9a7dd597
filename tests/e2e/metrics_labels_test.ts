/**
 * @module
 * End-to-end: `/metrics` stays the same size however many distinct model names clients send,
 * served by a default pool or refused, because every label value comes from the configuration.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";

const KEY = "sk-labels-key-0000000000001";
const HUGE = 1024 * 1024;
const NAMES = 24;

async function metrics(proxy: TestProxy): Promise<string> {
  const res = await fetch(`${proxy.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  return await res.text();
}

/** Sends a chat completion naming `model`; returns the status. */
async function send(proxy: TestProxy, model: string): Promise<number> {
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(30_000),
  });
  await res.body?.cancel();
  return res.status;
}

/** A distinct 1 MiB model name. */
function hugeName(i: number): string {
  return `m${i}-`.padEnd(HUGE, String.fromCharCode(97 + (i % 26)));
}

/** Sends {@linkcode NAMES} huge names after one; returns /metrics after the first and the last. */
async function flood(proxy: TestProxy, expected: number): Promise<[string, string]> {
  assert.equal(await send(proxy, hugeName(0)), expected);
  const first = await metrics(proxy);
  for (let i = 1; i < NAMES; i++) assert.equal(await send(proxy, hugeName(i)), expected);
  return [first, await metrics(proxy)];
}

function assertBounded(first: string, last: string): void {
  // the counters' digits may grow; no series, label or line is added
  assert.equal(last.split("\n").length, first.split("\n").length);
  assert.ok(last.length - first.length < 200, `grew ${last.length - first.length} bytes`);
  assert.ok(last.length < 64 * 1024, `${last.length} bytes`);
  for (const s of parsePrometheus(last).samples) {
    for (const v of Object.values(s.labels)) assert.ok(v.length < 100, `label of ${v.length}`);
  }
}

Deno.test("GET /metrics stays bounded when refused requests name many huge models", async () => {
  await using mock = await startMockUpstream({ record: false });
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${KEY}] }
pools:
  gpt-4o: { upstreams: [m] }
`);
  assert.equal(await send(proxy, "gpt-4o"), 200);
  const [first, last] = await flood(proxy, 404);
  assertBounded(first, last);
  const exp = parsePrometheus(last);
  assert.equal(exp.sum("llm_balance_requests_total", { model: "other", status: "4xx" }), NAMES);
  assert.equal(exp.sum("llm_balance_requests_total", { model: "gpt-4o", status: "2xx" }), 1);
});

Deno.test("GET /metrics stays bounded when a default pool serves many huge model names", async () => {
  await using mock = await startMockUpstream({ record: false });
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${KEY}] }
`);
  const [first, last] = await flood(proxy, 200);
  assertBounded(first, last);
  const exp = parsePrometheus(last);
  assert.equal(
    exp.sum("llm_balance_requests_total", { model: "other", upstream: "m", status: "2xx" }),
    NAMES,
  );
  assert.equal(
    exp.sum("llm_balance_tokens_total", { model: "other", type: "completion" }) > 0,
    true,
  );
});
