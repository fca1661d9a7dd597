/**
 * @module
 * Tests of {@linkcode dashboardData}: the dashboard's data after real traffic through llm-balance
 * to a mock upstream (pools, keys, counters, latency, series), a 429 turning a key to
 * `rate_limited` with its return time, budgets as bars, key states, and the cost with 500 keys.
 */

import assert from "node:assert/strict";
import {
  budgetBars,
  dashboardData,
  fullestBars,
  keyState,
} from "../../src/admin/dashboard_view.ts";
import type { BudgetBar, DashboardData } from "../../src/admin/dashboard_types.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { Logger } from "../../src/logger.ts";
import { builtins } from "../../plugins/mod.ts";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { makeCandidates } from "../helpers/candidates.ts";
import type { CandidateState } from "../../src/state_store.ts";
import denoJson from "../../deno.json" with { type: "json" };

const K1 = "sk-dashboard-view-key-00000000000000001";
const K2 = "sk-dashboard-view-key-00000000000000002";
const K3 = "sk-dashboard-view-key-00000000000000003";

function chat(proxy: TestProxy, model: string): Promise<Response> {
  return fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
}

async function send(proxy: TestProxy, model: string, n: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await chat(proxy, model);
    await res.body?.cancel();
    statuses.push(res.status);
  }
  // the timeline counts a request once its response has ended (after the body is sent)
  await new Promise((r) => setTimeout(r, 20));
  return statuses;
}

function data(proxy: TestProxy, canAct = false): DashboardData {
  return dashboardData(proxy.app, { canAct });
}

function noSecrets(text: string): void {
  for (const k of [K1, K2, K3]) {
    assert.ok(!text.includes(k), "a key appears whole");
    assert.ok(!text.includes(k.slice(8, 28)), "a part of a key appears");
  }
}

Deno.test("dashboardData() shows pools, keys, counters and the series after traffic", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${mock.baseUrl}", keys: [${K1}, { key: ${K2}, name: second }] }
  b: { base_url: "${mock.baseUrl}", keys: [${K3}] }
pools:
  gpt-4o: { upstreams: [a, b] }
  small: { upstreams: [a], strategy: random }
`);
  assert.deepEqual(await send(proxy, "gpt-4o", 6), [200, 200, 200, 200, 200, 200]);
  assert.deepEqual(await send(proxy, "small", 2), [200, 200]);
  const d = data(proxy, true);
  assert.equal(d.version, denoJson.version);
  assert.equal(d.ok, true);
  assert.equal(d.redis, null);
  assert.equal(d.can_act, true);
  assert.ok(Math.abs(d.now_ms - Date.now()) < 5_000);
  assert.deepEqual(d.pools.map((p) => [p.model, p.strategy, p.usable, p.total]), [
    ["gpt-4o", "round_robin", 3, 3],
    ["small", "random", 2, 2],
  ]);
  const [big, small] = d.pools;
  assert.ok(big!.requests_per_s > 0 && big!.errors_per_s === 0);
  assert.ok(big!.requests_per_s > small!.requests_per_s);
  assert.ok(big!.latency_p50_ms !== null && big!.latency_p95_ms! >= big!.latency_p50_ms);
  assert.equal(big!.queue, 0);
  assert.equal(big!.affinity, null);
  assert.equal(big!.keys.length, 3);
  // every key once, in the order of the pools, with the pools it serves
  assert.equal(d.keys.length, 3);
  assert.deepEqual(d.keys.map((k) => k.id), big!.keys);
  // the pool's order interleaves upstreams: a, b, a
  const [k1, k3, k2] = d.keys;
  assert.deepEqual(k1!.pools, ["gpt-4o", "small"]);
  assert.deepEqual(k3!.pools, ["gpt-4o"]);
  assert.equal(k2!.name, "second");
  assert.equal(k1!.name, null);
  assert.equal(k3!.upstream, "b");
  assert.equal(k1!.mask, [...proxy.app.rt.candidates.values()][0]!.mask);
  for (const k of d.keys) {
    assert.equal(k.state, "serving");
    assert.equal(k.reason, null);
    assert.equal(k.until_ms, null);
    assert.equal(k.in_flight, 0);
    assert.equal(k.failures, 0);
    assert.equal(k.pins, 0);
    assert.deepEqual(k.budgets, []);
    assert.ok(k.latency_p50_ms !== null && k.latency_ewma_ms !== null);
  }
  assert.equal(d.keys.reduce((n, k) => n + k.requests, 0), 8);
  assert.ok(d.keys.every((k) => k.prompt_tokens > 0 && k.completion_tokens > 0));
  // the series: 90 buckets of 10 s, this traffic in the last (or, across a boundary, the two last)
  assert.equal(d.series.step_s, 10);
  assert.equal(d.series.requests.length, 90);
  assert.equal(d.series.errors.length, 90);
  assert.equal(d.series.requests.reduce((a, b) => a + b, 0), 8);
  assert.equal(d.series.requests.slice(0, 88).reduce((a, b) => a + b, 0), 0);
  assert.equal(d.series.errors.reduce((a, b) => a + b, 0), 0);
  // llm-balance's own endpoints are not traffic
  await (await fetch(`${proxy.url}/stats`)).body?.cancel();
  await (await fetch(`${proxy.url}/dashboard/data`)).body?.cancel();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(data(proxy).series.requests.reduce((a, b) => a + b, 0), 8);
  assert.equal(data(proxy).can_act, false);
  noSecrets(JSON.stringify(d));
});

Deno.test("dashboardData() shows a key the upstream rate limited as rate_limited until its return", async () => {
  await using mock = await startMockUpstream({ mode: "rate_limit" });
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${mock.baseUrl}", keys: [${K1}] }
pools:
  gpt-4o: { upstreams: [a] }
`);
  const before = Date.now();
  assert.deepEqual(await send(proxy, "gpt-4o", 1), [429]);
  const d = data(proxy);
  const [k] = d.keys;
  assert.equal(k!.state, "rate_limited");
  assert.equal(k!.reason, "rate limited");
  // the mock says retry-after: 2
  assert.ok(k!.until_ms! >= before + 1_500 && k!.until_ms! <= Date.now() + 2_500, `${k!.until_ms}`);
  assert.equal(k!.failures, 1);
  assert.equal(d.pools[0]!.usable, 0);
  assert.equal(d.ok, false);
  assert.ok(d.pools[0]!.errors_per_s > 0);
  assert.equal(d.series.errors.reduce((a, b) => a + b, 0), 1);
  const rest = d.events.find((e) => e.message === "key resting: rate limited by the upstream");
  assert.ok(rest, JSON.stringify(d.events));
  assert.equal(rest.key, k!.mask);
  assert.equal(rest.upstream, "a");
  noSecrets(JSON.stringify(d));
});

Deno.test("dashboardData() shows each budget as a bar, per model where it applies", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  a:
    base_url: "${mock.baseUrl}"
    keys: [${K1}]
    quota: { requests_per_day: 10, model_requests_per_day: 4, requests_per_minute: 5, max_concurrency: 2 }
pools:
  gpt-4o: { upstreams: [a] }
`);
  await send(proxy, "gpt-4o", 3);
  const now = Date.now();
  const bars = data(proxy).keys[0]!.budgets;
  const byName = new Map(bars.map((b) => [`${b.name}/${b.model}`, b]));
  const day = byName.get("requests_per_day/null")!;
  assert.deepEqual([day.used, day.limit, day.remaining, day.source], [3, 10, 7, "counted"]);
  assert.ok(day.resets_at_ms! > now && day.resets_at_ms! <= now + 86_400_000);
  const model = byName.get("model_requests_per_day/gpt-4o")!;
  assert.deepEqual([model.used, model.limit, model.remaining], [3, 4, 1]);
  const minute = byName.get("requests_per_minute/null")!;
  assert.deepEqual([minute.used, minute.limit], [3, 5]);
  assert.ok(minute.resets_at_ms! > now - 1_000 && minute.resets_at_ms! <= now + 60_000);
  const slots = byName.get("max_concurrency/null")!;
  assert.deepEqual([slots.used, slots.limit, slots.resets_at_ms], [0, 2, null]);
});

Deno.test("keyState() tells every state in the dashboard's words", () => {
  const now = 1_700_000_000_000;
  const cases: [Partial<CandidateState>, string][] = [
    [{}, "serving"],
    [{ disabled: true }, "disabled"],
    [{ healthy: false, unhealthyReason: "probe: HTTP 500" }, "unhealthy"],
    [{ healthy: false, unhealthyReason: "auth (HTTP 401)" }, "auth_failed"],
    [{ restUntil: now + 1000, restReason: "rate_limited" }, "rate_limited"],
    [{ restUntil: now + 1000, restReason: "auth" }, "auth_failed"],
    [{ restUntil: now + 1000, restReason: "quota" }, "spent"],
    [{ ejectedUntil: now + 1000 }, "ejected"],
    [{ ejectedUntil: now - 1000 }, "half_open"],
    [{ restUntil: now - 1000, restReason: "rate_limited" }, "serving"],
  ];
  for (const [state, want] of cases) {
    const [c] = makeCandidates([{ state }]);
    assert.equal(keyState(c!, now), want, JSON.stringify(state));
  }
  const [spent] = makeCandidates(1);
  spent!.state.budget.spentUntil = now + 1000;
  assert.equal(keyState(spent!, now), "spent");
  assert.deepEqual(budgetBars(spent!, now), []);
});

Deno.test("dashboardData() stays cheap with 500 keys", async () => {
  const keys = Array.from(
    { length: 500 },
    (_, i) => `sk-dashboard-many-${String(i).padStart(20, "0")}`,
  );
  const config = parseConfigText(
    `
upstreams:
  a:
    base_url: "http://127.0.0.1:9/v1"
    keys: [${keys.slice(0, 250).join(", ")}]
    quota: { requests_per_day: 1000, model_requests_per_day: 100 }
  b: { base_url: "http://127.0.0.1:9/v1", keys: [${keys.slice(250).join(", ")}] }
pools:
  gpt-4o: { upstreams: [a, b] }
  small: { upstreams: [a] }
`,
    "many.yaml",
    { env: () => undefined },
  );
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
  try {
    // every key's latency ring full
    for (const c of app.rt.candidates.values()) {
      for (let i = 0; i < 256; i++) app.latency.record(c.id, 10 + (i % 50));
    }
    const d = dashboardData(app, { canAct: true });
    assert.equal(d.keys.length, 500);
    assert.equal(d.pools[0]!.keys.length, 500);
    assert.equal(d.pools[0]!.latency_p95_ms, 57);
    const runs = 20;
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) dashboardData(app, { canAct: true });
    const ms = (performance.now() - t0) / runs;
    // a few ms on a laptop; a loose bound for slow CI machines
    assert.ok(ms < 100, `${ms.toFixed(1)} ms to build the data for 500 keys`);
    for (const k of keys) assert.ok(!JSON.stringify(d).includes(k));
  } finally {
    await app.close();
  }
});

Deno.test("fullestBars() keeps every budget of every model and the three fullest per-model ones", () => {
  const bar = (model: string | null, used: number): BudgetBar => ({
    name: model === null ? "requests_per_day" : "model_requests_per_day",
    model,
    used,
    limit: 100,
    remaining: 100 - used,
    source: "counted",
    resets_at_ms: 1,
  });
  const bars = [bar(null, 5), ...Array.from({ length: 100 }, (_, i) => bar(`m${i}`, i))];
  const kept = fullestBars(bars);
  assert.equal(kept.more_models, 97);
  assert.deepEqual(kept.budgets.map((b) => b.model), [null, "m99", "m98", "m97"]);
  assert.deepEqual(fullestBars(bars.slice(0, 3)), { budgets: bars.slice(0, 3), more_models: 0 });
});
