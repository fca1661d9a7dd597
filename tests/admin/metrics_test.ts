import { builtins } from "../../plugins/mod.ts";
import assert from "node:assert/strict";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import type { RequestContext, RequestLog } from "../../src/plugin.ts";
import { Logger } from "../../src/logger.ts";
import { configuredModels, Metrics, OTHER_MODEL } from "../../src/admin/metrics.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";

const CONFIG = `
upstreams:
  alpha: { base_url: "http://127.0.0.1:9/v1", keys: [sk-alpha-key-0000000000000001, sk-alpha-key-0000000000000002] }
  beta: { base_url: "http://127.0.0.1:9/v1", keys: [sk-beta-key-00000000000000001] }
pools:
  gpt-4o: { upstreams: [alpha, beta] }
`;

async function makeApp(text = CONFIG): Promise<App> {
  const config = parseConfigText(text, "metrics.yaml", { env: () => undefined });
  return await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
}

function ctxOf(
  path: string,
  log: Partial<RequestLog>,
  client?: string,
): RequestContext {
  return {
    req: new Request(`http://x${path}`),
    url: new URL(`http://x${path}`),
    path: new URL(`http://x${path}`).pathname,
    search: "",
    startedAt: performance.now() - 12,
    remoteAddr: "127.0.0.1",
    requestId: "r",
    client: client === undefined ? undefined : { key: "k", name: client },
    res: undefined,
    log: { status: 200, attempts: 0, stream: false, bytes: 0, upstreamMs: 0, ...log },
    done: undefined,
  } as unknown as RequestContext;
}

Deno.test("Metrics.render() output parses as Prometheus text with no traffic", async () => {
  const app = await makeApp();
  await using _ = { [Symbol.asyncDispose]: () => app.close() };
  const exp = parsePrometheus(app.metrics.render(app));
  assert.equal(exp.types.get("llm_balance_requests_total"), "counter");
  assert.equal(exp.types.get("llm_balance_overhead_seconds"), "histogram");
  assert.equal(exp.types.get("llm_balance_in_flight"), "gauge");
  assert.equal(exp.find("llm_balance_in_flight").length, 3);
  assert.equal(exp.sum("llm_balance_candidate_state", { state: "healthy" }), 3);
  assert.equal(exp.sum("llm_balance_key_attempts_total"), 0);
  assert.equal(exp.sum("llm_balance_retries_total"), 0);
});

Deno.test("Metrics.observe() counts requests by model, upstream and status class", async () => {
  const app = await makeApp();
  try {
    const m = app.metrics;
    const ok = { model: "gpt-4o", upstream: "alpha", attempts: 1, ttfbMs: 40, upstreamMs: 38 };
    m.observe(ctxOf("/v1/chat/completions", { ...ok, status: 200 }), app.rt, 12);
    m.observe(ctxOf("/v1/chat/completions", { ...ok, status: 201 }), app.rt, 12);
    m.observe(
      ctxOf("/v1/chat/completions", { ...ok, attempts: 3, status: 502, ttfbMs: undefined }),
      app.rt,
      12,
    );
    m.observe(ctxOf("/v1/chat/completions", { status: 401 }), app.rt, 12); // refused before any attempt
    m.observe(ctxOf("/health", { status: 200 }), app.rt, 12); // own endpoints are not counted
    m.observe(ctxOf("/v1/stats/load_balancers", { status: 200 }), app.rt, 12);
    const exp = parsePrometheus(m.render(app));
    const req = (labels: Record<string, string>) => exp.sum("llm_balance_requests_total", labels);
    assert.equal(req({ model: "gpt-4o", upstream: "alpha", status: "2xx" }), 2);
    assert.equal(req({ model: "gpt-4o", upstream: "alpha", status: "5xx" }), 1);
    assert.equal(req({ model: "", upstream: "", status: "4xx" }), 1);
    assert.equal(exp.sum("llm_balance_requests_total"), 4);
    assert.equal(exp.sum("llm_balance_attempts_total", { model: "gpt-4o", upstream: "alpha" }), 5);
    assert.equal(exp.sum("llm_balance_retries_total"), 2);
    assert.equal(exp.sum("llm_balance_request_duration_seconds_count"), 3);
    assert.equal(exp.sum("llm_balance_ttfb_seconds_count"), 2);
    assert.equal(exp.sum("llm_balance_overhead_seconds_count"), 2);
    const ttfbSum = exp.sum("llm_balance_ttfb_seconds_sum");
    assert.ok(Math.abs(ttfbSum - 0.08) < 1e-9, String(ttfbSum));
    const overhead = exp.sum("llm_balance_overhead_seconds_sum");
    assert.ok(Math.abs(overhead - 0.004) < 1e-9, String(overhead));
    const le = exp.find("llm_balance_ttfb_seconds_bucket", { le: "0.05" });
    assert.equal(le[0]?.value, 2);
  } finally {
    await app.close();
  }
});

Deno.test("Metrics.observe() counts tokens by model, upstream, client and type", async () => {
  const app = await makeApp();
  try {
    const usage = { promptTokens: 7, completionTokens: 5, totalTokens: 12 };
    const log = { model: "gpt-4o", upstream: "beta", attempts: 1, usage };
    app.metrics.observe(ctxOf("/v1/chat/completions", log, "alice"), app.rt, 12);
    app.metrics.observe(ctxOf("/v1/chat/completions", log, "alice"), app.rt, 12);
    app.metrics.observe(ctxOf("/v1/chat/completions", log), app.rt, 12);
    const exp = parsePrometheus(app.metrics.render(app));
    const tokens = (labels: Record<string, string>) => exp.sum("llm_balance_tokens_total", labels);
    assert.equal(tokens({ client: "alice", type: "prompt" }), 14);
    assert.equal(tokens({ client: "alice", type: "completion" }), 10);
    assert.equal(tokens({ client: "", type: "prompt", model: "gpt-4o", upstream: "beta" }), 7);
  } finally {
    await app.close();
  }
});

Deno.test("Metrics.observe() counts streams broken by the upstream, not by the client", async () => {
  const app = await makeApp();
  try {
    const base = { model: "gpt-4o", upstream: "alpha", attempts: 1, stream: true };
    app.metrics.observe(
      ctxOf("/v1/chat/completions", { ...base, outcome: "server" }),
      app.rt,
      12,
    );
    app.metrics.observe(
      ctxOf("/v1/chat/completions", { ...base, outcome: "client_abort" }),
      app.rt,
      12,
    );
    app.metrics.observe(
      ctxOf("/v1/chat/completions", { ...base, outcome: "complete" }),
      app.rt,
      12,
    );
    const exp = parsePrometheus(app.metrics.render(app));
    assert.equal(exp.sum("llm_balance_streams_interrupted_total"), 1);
  } finally {
    await app.close();
  }
});

Deno.test("Metrics.render() shows per-key counters and states equal to candidate state", async () => {
  const app = await makeApp();
  try {
    const all = [...app.rt.candidates.values()];
    const [a1, a2] = all.filter((c) => c.upstream.name === "alpha");
    const b1 = all.find((c) => c.upstream.name === "beta");
    const s1 = app.store.record(a1!.id);
    s1.requests = 5;
    s1.failures = 2;
    s1.promptTokens = 30;
    s1.completionTokens = 20;
    app.store.record(b1!.id).inFlight = 2;
    app.board.setDisabled(a2!, true);
    const exp = parsePrometheus(app.metrics.render(app));
    const l1 = { upstream: "alpha", key: a1!.mask };
    assert.equal(exp.sum("llm_balance_key_attempts_total", l1), 5);
    assert.equal(exp.sum("llm_balance_key_failures_total", l1), 2);
    assert.equal(exp.sum("llm_balance_key_tokens_total", { ...l1, type: "prompt" }), 30);
    assert.equal(exp.sum("llm_balance_key_tokens_total", { ...l1, type: "completion" }), 20);
    assert.equal(exp.sum("llm_balance_in_flight", { upstream: "beta" }), 2);
    assert.equal(
      exp.sum("llm_balance_candidate_state", { key: a2!.mask, state: "disabled" }),
      1,
    );
    for (const s of exp.samples) {
      for (const v of Object.values(s.labels)) assert.ok(!v.includes("0000000"), v);
    }
  } finally {
    await app.close();
  }
});

Deno.test("Metrics.render() escapes label values", async () => {
  const app = await makeApp(`${CONFIG}  "we\\"ird\\\\mo\\ndel": { upstreams: [alpha] }\n`);
  try {
    const m = new Metrics();
    m.observe(
      ctxOf("/v1/x", { model: 'we"ird\\mo\ndel', upstream: "alpha", attempts: 1 }),
      app.rt,
      12,
    );
    const exp = parsePrometheus(m.render(app));
    assert.equal(exp.sum("llm_balance_requests_total", { model: 'we"ird\\mo\ndel' }), 1);
  } finally {
    await app.close();
  }
});

Deno.test("Metrics histograms put values above the last bucket only in +Inf", async () => {
  const app = await makeApp();
  try {
    const m = new Metrics();
    m.observe(
      ctxOf("/v1/x", { model: "m", upstream: "alpha", attempts: 1, ttfbMs: 120_000 }),
      app.rt,
      12,
    );
    const exp = parsePrometheus(m.render(app));
    assert.equal(exp.sum("llm_balance_ttfb_seconds_bucket", { le: "60" }), 0);
    assert.equal(exp.sum("llm_balance_ttfb_seconds_bucket", { le: "+Inf" }), 1);
  } finally {
    await app.close();
  }
});

const NAMED = `
auth:
  client_keys:
    - { key: sk-client-key-0000000000001, name: alice, models: [gpt-4o, o3-mini] }
upstreams:
  alpha:
    base_url: "http://127.0.0.1:9/v1"
    keys: [sk-alpha-key-0000000000000001]
    models: { claude-sonnet: anthropic/claude-sonnet-4 }
pools:
  gpt-4o: { upstreams: [alpha] }
  default: { upstreams: [alpha] }
`;

Deno.test("configuredModels() gives pools, upstream model names and client key models", async () => {
  const app = await makeApp(NAMED);
  try {
    assert.deepEqual(
      [...configuredModels(app.rt)].sort(),
      ["claude-sonnet", "gpt-4o", "o3-mini"],
    );
  } finally {
    await app.close();
  }
});

Deno.test("Metrics.observe() counts every model the config does not name as other", async () => {
  const app = await makeApp(NAMED);
  try {
    const m = new Metrics();
    const served = { upstream: "alpha", attempts: 1, status: 200 };
    for (let i = 0; i < 50; i++) {
      // served by the default pool, or refused before any attempt: the same two series
      m.observe(
        ctxOf("/v1/chat/completions", { ...served, model: `free-${i}-${"x".repeat(5000)}` }),
        app.rt,
        12,
      );
      m.observe(
        ctxOf("/v1/chat/completions", { model: `refused-${i}`, status: 404 }),
        app.rt,
        12,
      );
    }
    m.observe(ctxOf("/v1/chat/completions", { ...served, model: "gpt-4o" }), app.rt, 12);
    m.observe(
      ctxOf("/v1/chat/completions", { ...served, model: "claude-sonnet" }),
      app.rt,
      12,
    );
    m.observe(ctxOf("/v1/chat/completions", { ...served, model: "o3-mini" }), app.rt, 12);
    m.observe(ctxOf("/v1/embeddings", { status: 400 }), app.rt, 12); // no model named
    const text = m.render(app);
    assert.ok(text.length < 20_000, `${text.length} bytes`);
    const exp = parsePrometheus(text);
    const models = new Set(exp.find("llm_balance_requests_total").map((s) => s.labels.model));
    assert.deepEqual([...models].sort(), ["", "claude-sonnet", "gpt-4o", "o3-mini", OTHER_MODEL]);
    const req = (labels: Record<string, string>) => exp.sum("llm_balance_requests_total", labels);
    assert.equal(req({ model: OTHER_MODEL, upstream: "alpha", status: "2xx" }), 50);
    assert.equal(req({ model: OTHER_MODEL, upstream: "", status: "4xx" }), 50);
    assert.equal(req({ model: "gpt-4o", status: "2xx" }), 1);
  } finally {
    await app.close();
  }
});

Deno.test("Metrics labels follow the configuration in force when the request came", async () => {
  const app = await makeApp();
  try {
    const m = new Metrics();
    const log = { model: "gpt-4o", upstream: "alpha", attempts: 1, status: 200 };
    m.observe(ctxOf("/v1/chat/completions", log), app.rt, 12);
    const other = await makeApp(NAMED.replace("gpt-4o: { upstreams: [alpha] }", ""));
    try {
      const ctx = { ...ctxOf("/v1/chat/completions", { ...log, model: "o4" }), rt: other.rt };
      m.observe(ctx, app.rt, 12);
    } finally {
      await other.close();
    }
    const exp = parsePrometheus(m.render(app));
    assert.equal(exp.sum("llm_balance_requests_total", { model: "gpt-4o" }), 1);
    assert.equal(exp.sum("llm_balance_requests_total", { model: OTHER_MODEL }), 1);
  } finally {
    await app.close();
  }
});
