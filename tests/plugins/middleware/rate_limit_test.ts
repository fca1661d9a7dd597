import assert from "node:assert/strict";
import rateLimit, { rateLimitHeaders } from "../../../plugins/middleware/rate_limit.ts";
import { parseConfigText } from "../../../src/config/mod.ts";
import type { Services } from "../../../src/plugin.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { startProxy } from "../../helpers/proxy.ts";

const UPSTREAM_KEY = "sk-upstream-ratelimit-test-000000000001";
const LIMITED = "cl-limited-ratelimit-test-00000000000001";
const FREE = "cl-free-ratelimit-test-000000000000000002";
const NARROW = "cl-narrow-ratelimit-test-0000000000000003";

function config(baseUrl: string): string {
  return `
auth:
  client_keys:
    - { key: ${LIMITED}, name: limited, rate_limit: 2 }
    - { key: ${FREE}, name: free }
    - { key: ${NARROW}, name: narrow, models: [allowed-model], rate_limit: 10 }
upstreams:
  m: { base_url: "${baseUrl}", keys: [${UPSTREAM_KEY}] }
`;
}

function chat(url: string, key: string, model = "gpt-x"): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
}

Deno.test("rateLimitHeaders() renders OpenAI's x-ratelimit headers", () => {
  const d = { allowed: true, limit: 60, remaining: 59, retryAfterMs: 0, resetMs: 1001 };
  assert.deepEqual(rateLimitHeaders(d), {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "2s",
  });
});

Deno.test("rate_limit answers 429 with Retry-After once a client key is over its limit", async () => {
  const clock = { t: 1_700_000_000_000 };
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl), { now: () => clock.t });
  for (const remaining of ["1", "0"]) {
    const res = await chat(proxy.url, LIMITED);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-ratelimit-limit-requests"), "2");
    assert.equal(res.headers.get("x-ratelimit-remaining-requests"), remaining);
    await res.body?.cancel();
  }
  const over = await chat(proxy.url, LIMITED);
  assert.equal(over.status, 429);
  assert.equal(over.headers.get("retry-after"), "30");
  assert.equal(over.headers.get("x-ratelimit-limit-requests"), "2");
  assert.equal(over.headers.get("x-ratelimit-remaining-requests"), "0");
  assert.equal(over.headers.get("x-ratelimit-reset-requests"), "60s");
  const body = await over.json();
  assert.equal(body.error.type, "rate_limit_error");
  assert.equal(body.error.code, "rate_limit_exceeded");
  assert.ok(body.error.message.includes('"limited"'));
  assert.equal(mock.requests.length, 2, "a refused request never reaches the upstream");
  clock.t += 30_000;
  const again = await chat(proxy.url, LIMITED);
  assert.equal(again.status, 200);
  await again.body?.cancel();
});

Deno.test("rate_limit counts each client key on its own", async () => {
  const clock = { t: 1_700_000_000_000 };
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl), { now: () => clock.t });
  for (let i = 0; i < 3; i++) await (await chat(proxy.url, LIMITED)).body?.cancel();
  for (let i = 0; i < 5; i++) {
    const res = await chat(proxy.url, FREE);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-ratelimit-limit-requests"), null, "no limit, no headers");
    await res.body?.cancel();
  }
});

Deno.test("rate_limit puts its headers on error responses too", async () => {
  const clock = { t: 1_700_000_000_000 };
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl), { now: () => clock.t });
  const res = await chat(proxy.url, NARROW, "forbidden-model");
  assert.equal(res.status, 403);
  assert.equal(res.headers.get("x-ratelimit-limit-requests"), "10");
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "9");
  await res.body?.cancel();
});

Deno.test("rate_limit never applies to /health or preflights", async () => {
  const clock = { t: 1_700_000_000_000 };
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl), { now: () => clock.t });
  for (let i = 0; i < 3; i++) await (await chat(proxy.url, LIMITED)).body?.cancel();
  for (let i = 0; i < 5; i++) {
    const h = await fetch(`${proxy.url}/health`, {
      headers: { authorization: `Bearer ${LIMITED}` },
    });
    assert.equal(h.status, 200);
    await h.body?.cancel();
  }
});

Deno.test("rate_limit stays out of the chain when no client key has a limit", () => {
  const parse = (limit: string) =>
    parseConfigText(
      `
auth:
  client_keys:
    - { key: ${FREE}, name: free${limit} }
upstreams:
  m: { base_url: "http://127.0.0.1:9/v1", keys: [${UPSTREAM_KEY}] }
`,
      "rate_limit_test.yaml",
      { env: () => undefined },
    );
  const services = {} as Services;
  assert.equal(rateLimit.create(parse(""), services), undefined);
  assert.equal(typeof rateLimit.create(parse(", rate_limit: 5"), services), "function");
});
