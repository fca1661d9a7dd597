/**
 * @module
 * End-to-end stats and metrics: the numbers of `/stats`, `/v1/stats/load_balancers` and
 * `/v1/stats/models/{model}` match the traffic the upstreams really received (requests,
 * failures, in-flight, latency, tokens), `/metrics` parses as Prometheus text and agrees with
 * them, and the `x-llm-balance-overhead-ms` header appears only when configured.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";
import { waitFor } from "../helpers/e2e.ts";

const KA1 = "sk-stats-e2e-alpha-key-00000000000000001";
const KA2 = "sk-stats-e2e-alpha-key-00000000000000002";
const KB1 = "sk-stats-e2e-beta-key-000000000000000001";
const ADMIN = "ad-stats-e2e-admin-key-00000000000000001";

interface Server {
  id: string;
  key: string;
  upstream: string;
  state: string;
  requests: number;
  failures: number;
  in_flight: number;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

interface PoolStats {
  model: string;
  strategy: string;
  total_servers: number;
  healthy_servers: number;
  active_connections: number;
  total_requests: number;
  total_failures: number;
  total_tokens: number;
  servers: Server[];
}

function config(alpha: string, beta: string, extra = ""): string {
  return `
${extra}
auth: { admin_key: ${ADMIN} }
upstreams:
  alpha: { base_url: "${alpha}", keys: [${KA1}, ${KA2}] }
  beta: { base_url: "${beta}", keys: [${KB1}] }
pools:
  gpt-4o: { strategy: round_robin, upstreams: [beta, alpha] }
  small: { strategy: least_connections, upstreams: [alpha] }
`;
}

async function admin<T>(proxy: TestProxy, path: string): Promise<T> {
  const res = await fetch(proxy.url + path, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(res.status, 200, path);
  return path === "/metrics" ? await res.text() as T : await res.json() as T;
}

Deno.test("e2e stats: numbers match the traffic and /metrics agrees", async () => {
  await using alpha = await startMockUpstream({ name: "alpha", latencyMs: 25 });
  await using beta = await startMockUpstream({ name: "beta", mode: "error500" });
  await using proxy = await startProxy(config(alpha.baseUrl, beta.baseUrl));
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "unused", maxRetries: 0 });
  const hi = [{ role: "user" as const, content: "count my tokens please" }];
  let prompt = 0;
  let completion = 0;
  for (let i = 0; i < 6; i++) {
    const r = await client.chat.completions.create({
      model: i < 4 ? "gpt-4o" : "small",
      messages: hi,
    });
    prompt += r.usage!.prompt_tokens;
    completion += r.usage!.completion_tokens;
  }
  for (let i = 0; i < 2; i++) {
    const stream = await client.chat.completions.create({
      model: "small",
      messages: hi,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      if (chunk.usage) {
        prompt += chunk.usage.prompt_tokens;
        completion += chunk.usage.completion_tokens;
      }
    }
  }
  // the streams' log lines (and their counters) are written when they end
  await waitFor(() => proxy.logRecords().filter((l) => l.msg === "request").length === 8, "logs");

  const lb = await admin<{ load_balancers: Record<string, PoolStats>; total_models: number }>(
    proxy,
    "/v1/stats/load_balancers",
  );
  assert.equal(lb.total_models, 2);
  const gpt = lb.load_balancers["gpt-4o"]!;
  assert.equal(gpt.strategy, "round_robin");
  assert.equal(gpt.total_servers, 3);
  const seen = (mockKey: string, m: typeof alpha) =>
    m.requests.filter((r) => r.key === mockKey).length;
  const servers = [...lb.load_balancers["small"]!.servers, ...gpt.servers];
  const find = (upstream: string, n: number) =>
    [...new Map(servers.map((s) => [s.id, s])).values()].filter((s) => s.upstream === upstream)[n]!;
  const b1 = find("beta", 0);
  assert.equal(b1.requests, beta.requests.length, "beta's attempts");
  assert.equal(b1.failures, beta.requests.length, "every beta attempt failed");
  assert.ok(beta.requests.length >= 1);
  assert.equal(b1.prompt_tokens, 0);
  const a1 = find("alpha", 0);
  const a2 = find("alpha", 1);
  assert.equal(a1.requests + a2.requests, alpha.requests.length);
  assert.deepEqual(
    [a1.requests, a2.requests].sort(),
    [seen(KA1, alpha), seen(KA2, alpha)].sort(),
  );
  assert.equal(a1.failures + a2.failures, 0);
  assert.equal(a1.prompt_tokens + a2.prompt_tokens, prompt);
  assert.equal(a1.completion_tokens + a2.completion_tokens, completion);
  assert.equal(a1.total_tokens + a2.total_tokens, prompt + completion);
  for (const s of [a1, a2]) {
    assert.equal(s.in_flight, 0);
    if (s.requests > 0) {
      assert.ok(s.latency_p50_ms! >= 25, `p50 ${s.latency_p50_ms}`);
      assert.ok(s.latency_p95_ms! >= s.latency_p50_ms!);
      assert.ok(s.latency_p95_ms! < 5000);
    }
  }

  const small = await admin<PoolStats>(proxy, "/v1/stats/models/small");
  assert.equal(small.model, "small");
  assert.equal(small.strategy, "least_connections");
  assert.deepEqual(small, lb.load_balancers["small"]);
  assert.equal(small.total_requests, small.servers.reduce((n, s) => n + s.requests, 0));

  const seedA = await admin<Record<string, Server>>(proxy, "/stats");
  assert.equal(Object.keys(seedA).length, 3);
  for (const [mask, s] of Object.entries(seedA)) {
    assert.equal(s.key, mask);
    const same = servers.find((x) => x.id === s.id)!;
    assert.equal(s.requests, same.requests);
  }

  const exp = parsePrometheus(await admin<string>(proxy, "/metrics"));
  assert.equal(exp.sum("llm_balance_requests_total"), 8);
  assert.equal(exp.sum("llm_balance_requests_total", { model: "gpt-4o", status: "2xx" }), 4);
  assert.equal(exp.sum("llm_balance_requests_total", { model: "small", status: "2xx" }), 4);
  const attempts = alpha.requests.length + beta.requests.length;
  assert.equal(exp.sum("llm_balance_attempts_total"), attempts);
  assert.equal(exp.sum("llm_balance_retries_total"), attempts - 8);
  for (const s of [a1, a2, b1]) {
    const l = { upstream: s.upstream, key: s.key };
    assert.equal(exp.sum("llm_balance_key_attempts_total", l), s.requests);
    assert.equal(exp.sum("llm_balance_key_failures_total", l), s.failures);
    assert.equal(
      exp.sum("llm_balance_key_tokens_total", { ...l, type: "prompt" }),
      s.prompt_tokens,
    );
    assert.equal(exp.sum("llm_balance_in_flight", l), 0);
    assert.equal(exp.sum("llm_balance_candidate_state", { ...l, state: s.state }), 1);
  }
  assert.equal(exp.sum("llm_balance_tokens_total", { type: "prompt" }), prompt);
  assert.equal(exp.sum("llm_balance_tokens_total", { type: "completion" }), completion);
  assert.equal(
    exp.sum("llm_balance_tokens_total", { model: "small", upstream: "alpha" }) > 0,
    true,
  );
  assert.equal(exp.sum("llm_balance_request_duration_seconds_count"), 8);
  assert.equal(exp.sum("llm_balance_ttfb_seconds_count"), 8);
  assert.equal(exp.sum("llm_balance_overhead_seconds_count"), 8);
  const ttfb = exp.sum("llm_balance_ttfb_seconds_sum");
  const overhead = exp.sum("llm_balance_overhead_seconds_sum");
  assert.ok(ttfb >= 8 * 0.025, `ttfb sum ${ttfb}`);
  assert.ok(overhead >= 0 && overhead < ttfb, `overhead ${overhead} of ${ttfb}`);
});

Deno.test("e2e stats: in-flight requests show while they run", async () => {
  await using alpha = await startMockUpstream({ name: "alpha", latencyMs: 400 });
  await using beta = await startMockUpstream({ name: "beta" });
  await using proxy = await startProxy(config(alpha.baseUrl, beta.baseUrl));
  const pending = fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "small", messages: [{ role: "user", content: "hi" }] }),
  });
  await waitFor(() => alpha.requestCount === 1, "the upstream request");
  const during = await admin<PoolStats>(proxy, "/v1/stats/models/small");
  assert.equal(during.active_connections, 1);
  assert.equal(during.servers.reduce((n, s) => n + s.in_flight, 0), 1);
  const exp = parsePrometheus(await admin<string>(proxy, "/metrics"));
  assert.equal(exp.sum("llm_balance_in_flight", { upstream: "alpha" }), 1);
  const res = await pending;
  assert.equal(res.status, 200);
  await res.body?.cancel();
  await waitFor(() => proxy.logRecords().some((l) => l.msg === "request"), "the log line");
  const after = await admin<PoolStats>(proxy, "/v1/stats/models/small");
  assert.equal(after.active_connections, 0);
  assert.equal(after.total_requests, 1);
});

Deno.test("e2e stats: x-llm-balance-overhead-ms appears only when configured", async () => {
  await using alpha = await startMockUpstream({ name: "alpha" });
  await using beta = await startMockUpstream({ name: "beta" });
  const body = JSON.stringify({ model: "small", messages: [{ role: "user", content: "hi" }] });
  const post = (url: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
  {
    await using proxy = await startProxy(config(alpha.baseUrl, beta.baseUrl));
    const res = await post(proxy.url);
    assert.equal(res.headers.get("x-llm-balance-overhead-ms"), null);
    await res.body?.cancel();
  }
  await using proxy = await startProxy(
    config(alpha.baseUrl, beta.baseUrl, "server: { overhead_header: true }"),
  );
  for (const stream of [false, true]) {
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "small", stream, messages: [{ role: "user", content: "hi" }] }),
    });
    const value = res.headers.get("x-llm-balance-overhead-ms");
    assert.match(value ?? "", /^\d+(\.\d+)?$/, `header ${value}`);
    assert.ok(Number(value) >= 0 && Number(value) < 1000);
    await res.body?.cancel();
  }
});

Deno.test("e2e stats: Seed A's /stats counts requests per masked key", async () => {
  await using mock = await startMockUpstream();
  const keys = ["sk-seed-a-stats-key-000000000001", "sk-seed-a-stats-key-000000000002", "short"];
  await using proxy = await startProxy(
    JSON.stringify({ api_keys: keys, target_url: mock.origin, health_check: false }),
    { source: "config.json" },
  );
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  const res = await fetch(`${proxy.url}/stats`);
  const text = await res.text();
  for (const k of keys) assert.ok(!text.includes(`"${k}"`), k);
  for (const k of keys.slice(0, 2)) assert.ok(!text.includes(k.slice(4, -4)), k);
  const stats = JSON.parse(text) as Record<
    string,
    Server & { healthy: boolean; last_used: string }
  >;
  assert.equal(Object.keys(stats).length, 3);
  const counts = Object.values(stats).map((s) => s.requests).sort();
  assert.deepEqual(counts, [1, 2, 2]);
  const perKey = keys.map((k) => mock.requests.filter((r) => r.key === k).length).sort();
  assert.deepEqual(counts, perKey);
  for (const s of Object.values(stats)) {
    assert.equal(s.healthy, true);
    assert.match(s.last_used, /^\d{4}-\d\d-\d\dT/);
  }
});
