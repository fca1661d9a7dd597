import { builtins } from "../../plugins/mod.ts";
import assert from "node:assert/strict";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { Logger } from "../../src/logger.ts";
import {
  candidateView,
  health,
  keyStats,
  loadBalancers,
  modelList,
  poolView,
} from "../../src/admin/stats.ts";

const K1 = "sk-alpha-secret-000000000000000001";
const K2 = "sk-alpha-secret-000000000000000002";
const K3 = "sk-beta-secret-0000000000000000003";
const T0 = Date.UTC(2025, 5, 1, 12, 0, 0);

const NAMED = `
upstreams:
  alpha: { base_url: "http://127.0.0.1:9/v1", keys: [${K1}, { key: ${K2}, name: backup }] }
  beta: { base_url: "http://127.0.0.1:9/v1", keys: [${K3}] }
pools:
  gpt-4o: { strategy: least_connections, upstreams: [alpha, beta] }
  small: { upstreams: [beta] }
`;

async function makeApp(text = NAMED): Promise<App & AsyncDisposable> {
  const config = parseConfigText(text, "stats.yaml", { env: () => undefined });
  const clock = { t: T0 };
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    now: () => clock.t,
    logger: new Logger({ sink: () => {} }),
  });
  return Object.assign(app, { [Symbol.asyncDispose]: () => app.close() });
}

function noSecrets(value: unknown): void {
  const text = JSON.stringify(value);
  for (const k of [K1, K2, K3]) assert.ok(!text.includes(k), `secret in ${text}`);
}

Deno.test("candidateView() shows a candidate's state, counters and latency by mask", async () => {
  await using app = await makeApp();
  const c = [...app.rt.candidates.values()].find((c) => c.name === "backup")!;
  const s = app.store.record(c.id);
  s.requests = 4;
  s.failures = 1;
  s.inFlight = 1;
  s.lastUsed = T0 - 1000;
  s.promptTokens = 10;
  s.completionTokens = 6;
  s.totalTokens = 16;
  app.latency.record(c.id, 100);
  app.latency.record(c.id, 300);
  const v = candidateView(app, c);
  assert.deepEqual(
    { ...v },
    {
      id: c.id,
      key: c.mask,
      name: "backup",
      upstream: "alpha",
      url: "http://127.0.0.1:9/v1",
      healthy: true,
      available: true,
      state: "healthy",
      reason: null,
      until: null,
      last_used: new Date(T0 - 1000).toISOString(),
      requests: 4,
      failures: 1,
      consecutive_failures: 0,
      last_error: null,
      in_flight: 1,
      weight: 1,
      priority: 0,
      latency_ewma_ms: null,
      latency_p50_ms: 100,
      latency_p95_ms: 300,
      prompt_tokens: 10,
      completion_tokens: 6,
      total_tokens: 16,
      budgets: {},
    },
  );
  noSecrets(v);
});

Deno.test("candidateView() explains why a candidate is out", async () => {
  await using app = await makeApp();
  const [c] = app.rt.candidates.values();
  app.board.setDisabled(c!, true);
  const v = candidateView(app, c!);
  assert.equal(v.state, "disabled");
  assert.equal(v.available, false);
  assert.equal(v.healthy, false);
  assert.equal(v.reason, "disabled by operator");
  app.board.setDisabled(c!, false);
  app.board.end(c!, "rate_limited", { status: 429, retryAt: T0 + 5000 });
  const rested = candidateView(app, c!);
  assert.equal(rested.state, "resting");
  assert.equal(rested.reason, "rate limited");
  assert.equal(rested.until, new Date(T0 + 5000).toISOString());
  assert.equal(rested.last_error, "rate_limited");
});

Deno.test("keyStats() is keyed by distinct masks and never shows a key", async () => {
  await using app = await makeApp();
  const stats = keyStats(app);
  assert.equal(Object.keys(stats).length, 3);
  for (const [mask, v] of Object.entries(stats)) {
    assert.equal(v.key, mask);
    assert.equal(typeof v.healthy, "boolean");
    assert.equal(v.last_used, null);
    assert.equal(v.requests, 0);
  }
  noSecrets(stats);
});

Deno.test("poolView() sums its candidates", async () => {
  await using app = await makeApp();
  const pool = app.rt.pools.get("gpt-4o")!;
  for (const [i, c] of pool.candidates.entries()) {
    const s = app.store.record(c.id);
    s.requests = i + 1;
    s.failures = i;
    s.inFlight = 1;
    s.promptTokens = 10;
    s.completionTokens = 1;
    s.totalTokens = 11;
  }
  const v = poolView(app, pool);
  assert.equal(v.model, "gpt-4o");
  assert.equal(v.strategy, "least_connections");
  assert.equal(v.total_servers, 3);
  assert.equal(v.healthy_servers, 3);
  assert.equal(v.active_connections, 3);
  assert.equal(v.total_requests, 6);
  assert.equal(v.total_failures, 3);
  assert.equal(v.prompt_tokens, 30);
  assert.equal(v.completion_tokens, 3);
  assert.equal(v.total_tokens, 33);
  assert.equal((v.servers as unknown[]).length, 3);
});

Deno.test("loadBalancers() lists every pool, the default pool as default", async () => {
  await using named = await makeApp();
  const lb = loadBalancers(named);
  assert.deepEqual(Object.keys(lb.load_balancers as object), ["gpt-4o", "small"]);
  assert.equal(lb.total_models, 2);
  await using withDefault = await makeApp(`
upstreams:
  alpha: { base_url: "http://127.0.0.1:9/v1", keys: [${K1}] }
`);
  const d = loadBalancers(withDefault);
  assert.deepEqual(Object.keys(d.load_balancers as object), ["default"]);
  const pool = (d.load_balancers as Record<string, Record<string, unknown>>).default!;
  assert.equal(pool.model, "default");
  assert.equal(pool.strategy, "round_robin");
});

Deno.test("health() is ok while any candidate is usable", async () => {
  await using app = await makeApp();
  const h = health(app);
  assert.equal(h.ok, true);
  assert.equal(h.body.status, "ok");
  assert.deepEqual(h.body.pools, {
    "gpt-4o": { available: 3, total: 3 },
    small: { available: 1, total: 1 },
  });
  for (const c of app.rt.candidates.values()) app.board.setDisabled(c, true);
  const down = health(app);
  assert.equal(down.ok, false);
  assert.equal(down.body.status, "unavailable");
});

Deno.test("modelList() lists the named pools in OpenAI's shape", async () => {
  await using app = await makeApp();
  const list = modelList(app);
  assert.deepEqual(list, {
    object: "list",
    data: [
      { id: "gpt-4o", object: "model", created: T0 / 1000, owned_by: "llm-balance" },
      { id: "small", object: "model", created: T0 / 1000, owned_by: "llm-balance" },
    ],
  });
  assert.deepEqual(modelList(app, { allowed: ["small", "other"] }).data.map((m) => m.id), [
    "small",
  ]);
  assert.deepEqual(modelList(app, { allowed: [] }).data, []);
});

Deno.test("modelList() leaves out the default pool", async () => {
  await using app = await makeApp(`
upstreams:
  alpha: { base_url: "http://127.0.0.1:9/v1", keys: [${K1}] }
pools:
  gpt-4o: { upstreams: [alpha] }
  default: { upstreams: [alpha] }
`);
  assert.deepEqual(modelList(app).data.map((m) => m.id), ["gpt-4o"]);
});
