import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";

Deno.test("proxy answers 404 for a path outside /v1 when every upstream is in v1 mode", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [k-0000000000000001] }
`);
  const res = await fetch(`${proxy.url}/other/thing`, { method: "POST", body: "{}" });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "not_found");
  assert.equal(mock.requests.length, 0);
});

Deno.test("proxy forwards any path as is to a full-mode upstream (Seed A)", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    JSON.stringify({
      api_keys: ["seed-a-key-00000001"],
      target_url: mock.origin,
      health_check: false,
    }),
    { source: "config.json" },
  );
  const res = await fetch(`${proxy.url}/api/v2/thing?x=1`, { method: "GET" });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.equal(mock.requests[0]?.path, "/api/v2/thing");
  assert.equal(mock.requests[0]?.search, "?x=1");
});

Deno.test("proxy routes a JSON body sent as form data (curl -d) by its model", async () => {
  await using a = await startMockUpstream({ name: "a" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [ka-000000000000001] }
  b: { base_url: "${b.baseUrl}", keys: [kb-000000000000001] }
pools:
  special: { upstreams: [b] }
  default: { upstreams: [a] }
`);
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: '{"model":"special","messages":[]}',
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.equal(b.requests.length, 1);
  assert.equal(a.requests.length, 0);
  assert.equal(b.requests[0]?.text, '{"model":"special","messages":[]}');
});

Deno.test("proxy backs off before retrying on an upstream that just failed, even with another key", async () => {
  await using mock = await startMockUpstream({ mode: "error500" });
  await using proxy = await startProxy(
    JSON.stringify({
      api_keys: ["seed-a-key-00000001", "seed-a-key-00000002", "seed-a-key-00000003"],
      target_url: mock.origin,
      health_check: false,
    }),
    { source: "config.json" },
  );
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"model":"m","messages":[]}',
  });
  assert.equal(res.status, 500);
  await res.body?.cancel();
  const times = mock.requests.map((r) => r.receivedAt);
  assert.equal(times.length, 3);
  // equal jitter over a 100 ms ceiling, doubling: at least 50 ms, then at least 100 ms
  assert.ok(times[1]! - times[0]! >= 45, `first gap ${times[1]! - times[0]!} ms`);
  assert.ok(times[2]! - times[1]! >= 95, `second gap ${times[2]! - times[1]!} ms`);
  assert.equal(new Set(mock.requests.map((r) => r.key)).size, 3);
});

Deno.test("weighted never sends traffic to weight 0, not even as a retry", async () => {
  await using failing = await startMockUpstream({ mode: "error500" });
  await using standby = await startMockUpstream();
  await using proxy = await startProxy(`
models:
  m:
    load_balance_strategy: weighted
    upstreams:
      - { api_base: "${failing.baseUrl}", api_key: sk-weighted-a-0001, weight: 1 }
      - { api_base: "${standby.baseUrl}", api_key: sk-weighted-b-0002, weight: 0 }
  only-zero:
    load_balance_strategy: weighted
    upstreams:
      - { api_base: "${standby.baseUrl}", api_key: sk-weighted-c-0003, weight: 0 }
`);
  // the failing upstream answers 500 three times (then it is ejected, and weight 0 still never
  // serves: 503); a pool with only weight 0 answers 503 at once
  const expected: [string, number][] = [["m", 500], ["m", 503], ["only-zero", 503]];
  for (const [model, status] of expected) {
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [] }),
    });
    assert.equal(res.status, status, model);
    await res.body?.cancel();
  }
  assert.equal(standby.requests.length, 0);
});

Deno.test("503 for keys failing their health checks says when the next probe may bring one back", async () => {
  await using mock = await startMockUpstream({ mode: "error500" });
  await using proxy = await startProxy(
    `
upstreams:
  m:
    base_url: "${mock.baseUrl}"
    keys: [sk-probe-retry-after-1]
    health_check: { interval: 2, timeout: 1 }
`,
    { probes: true },
  );
  for (let i = 0; i < 100; i++) {
    const s = await (await fetch(`${proxy.url}/stats`)).json();
    if ((Object.values(s)[0] as { state: string }).state === "unhealthy") break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"model":"x","messages":[]}',
  });
  assert.equal(res.status, 503);
  const retryAfter = Number(res.headers.get("retry-after"));
  assert.ok(retryAfter >= 1 && retryAfter <= 2, `retry-after ${retryAfter}`);
  assert.match((await res.json()).error.message, /1 unhealthy/);
});
