/**
 * @module
 * End-to-end active health: probes mark a failing key unhealthy and restore it when it
 * recovers, take a refused key out until a probe that validates keys succeeds (see
 * auth_probes_test.ts for probes that cannot), end an ejected key's cool-down, and stop with
 * the server.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { KEY_A, KEY_B, MASK_A, MESSAGES, sdk } from "../helpers/failures.ts";

async function stateOf(proxy: TestProxy, mask: string): Promise<Record<string, unknown>> {
  const all: Record<string, Record<string, unknown>> = await (await fetch(`${proxy.url}/stats`))
    .json();
  return all[mask] ?? {};
}

/** Polls the stats until the key is in `state` (about 5 s at most). */
async function waitForState(proxy: TestProxy, mask: string, state: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await stateOf(proxy, mask)).state === state) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`Key ${mask} never became ${state}`);
}

async function upstreamOf(proxy: TestProxy): Promise<string | null> {
  const { response } = await sdk(proxy).chat.completions
    .create({ model: "gpt-x", messages: MESSAGES })
    .withResponse();
  return response.headers.get("x-llm-balance-upstream");
}

Deno.test("probes mark a key answering 500 unhealthy and restore it when it recovers", async () => {
  await using a = await startMockUpstream({ name: "a", mode: "error500" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(
    `
upstreams:
  a:
    base_url: "${a.baseUrl}"
    keys: [${KEY_A}]
    health_check: { interval: 0.2, timeout: 1 }
  b: { base_url: "${b.baseUrl}", keys: [${KEY_B}] }
`,
    { probes: true },
  );
  await waitForState(proxy, MASK_A, "unhealthy");
  const s = await stateOf(proxy, MASK_A);
  assert.equal(s.reason, "probe: HTTP 500");
  assert.equal(a.requests[0]?.method, "GET");
  assert.equal(a.requests[0]?.path, "/v1/models");
  assert.equal(a.requests[0]?.key, KEY_A);
  for (let i = 0; i < 3; i++) assert.equal(await upstreamOf(proxy), "b");
  assert.equal(a.requests.filter((r) => r.method === "POST").length, 0);
  await a.setMode("ok");
  await waitForState(proxy, MASK_A, "healthy");
  const served = new Set<string | null>();
  for (let i = 0; i < 4; i++) served.add(await upstreamOf(proxy));
  assert.ok(served.has("a"), "traffic returns to the recovered key");
  const logs = proxy.logRecords();
  assert.equal(logs.filter((l) => l.msg === "candidate unhealthy (probe)").length, 1);
  assert.equal(logs.filter((l) => l.msg === "candidate healthy again (probe)").length, 1);
});

Deno.test("probes that validate keys keep a key refused with 401 out until a probe succeeds", async () => {
  let refuse = true;
  await using a = await startMockUpstream({ name: "a" });
  await using b = await startMockUpstream({ name: "b" });
  const fetchFn: typeof fetch = (input, init) =>
    refuse && String(input).startsWith(a.baseUrl)
      ? Promise.resolve(
        new Response('{"error":{"message":"Incorrect API key provided"}}', { status: 401 }),
      )
      : fetch(input, init);
  await using proxy = await startProxy(
    `
upstreams:
  a:
    base_url: "${a.baseUrl}"
    keys: [${KEY_A}]
    health_check: { interval: 0.2, timeout: 1, validates_key: true }
  b: { base_url: "${b.baseUrl}", keys: [${KEY_B}] }
`,
    { probes: true, fetch: fetchFn },
  );
  assert.equal(await upstreamOf(proxy), "b");
  await waitForState(proxy, MASK_A, "unhealthy");
  assert.equal((await stateOf(proxy, MASK_A)).reason, "auth (HTTP 401)");
  const out = proxy.logRecords().filter((l) =>
    l.level === "warn" && l.key === MASK_A && l.reason === "auth (HTTP 401)"
  );
  assert.equal(out.length, 1, "the key, masked, and why: logged once");
  assert.equal(await upstreamOf(proxy), "b");
  refuse = false;
  await waitForState(proxy, MASK_A, "healthy");
  assert.equal(a.requestCount > 0, true);
});

Deno.test("probes end an ejected key's cool-down and a trial request restores it", async () => {
  let broken = true;
  await using a = await startMockUpstream({ name: "a" });
  await using b = await startMockUpstream({ name: "b" });
  const fetchFn: typeof fetch = (input, init) =>
    broken && init?.method === "POST" && String(input).startsWith(a.baseUrl)
      ? Promise.resolve(new Response('{"error":{"message":"boom"}}', { status: 500 }))
      : fetch(input, init);
  await using proxy = await startProxy(
    `
upstreams:
  a:
    base_url: "${a.baseUrl}"
    keys: [${KEY_A}]
    health_check: { interval: 0.2, timeout: 1 }
  b: { base_url: "${b.baseUrl}", keys: [${KEY_B}] }
health: { max_failures: 1, ejection_base: 600 }
`,
    { probes: true, fetch: fetchFn },
  );
  assert.equal(await upstreamOf(proxy), "b");
  const ejected = await stateOf(proxy, MASK_A);
  assert.ok(ejected.state === "ejected" || ejected.state === "half_open");
  await waitForState(proxy, MASK_A, "half_open");
  broken = false;
  const served = new Set<string | null>();
  for (let i = 0; i < 4; i++) served.add(await upstreamOf(proxy));
  assert.ok(served.has("a"), "the trial went to the key, 10 minutes early");
  assert.equal((await stateOf(proxy, MASK_A)).state, "healthy");
});

Deno.test("probes stop when the server stops", async () => {
  await using a = await startMockUpstream({ name: "a" });
  const proxy = await startProxy(
    `
upstreams:
  a:
    base_url: "${a.baseUrl}"
    keys: [${KEY_A}]
    health_check: { interval: 0.05, timeout: 1 }
`,
    { probes: true },
  );
  for (let i = 0; i < 200 && a.requestCount < 3; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(a.requestCount >= 3);
  await proxy.close();
  const count = a.requestCount;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.requestCount, count);
});
