/**
 * @module
 * Tests of active health: probe requests, {@linkcode runProbe} timeouts and failures, and the
 * {@linkcode ActiveHealth} scheduler (one probe at a time per key, results to the board,
 * clean stop).
 */

import assert from "node:assert/strict";
import httpProbe from "../../plugins/probes/http.ts";
import { ActiveHealth, probeRequest, runProbe } from "../../src/health/active.ts";
import { statusOf } from "../../src/health/availability.ts";
import { HealthBoard } from "../../src/health/board.ts";
import type { AuthStyle, HealthCheckConfig } from "../../src/config/types.ts";
import { Logger } from "../../src/logger.ts";
import type { Candidate, CandidateState, ProbePlugin, ProbeResult } from "../../src/plugin.ts";
import { Registry } from "../../src/registry.ts";
import { MemoryStateStore } from "../../src/state_store.ts";
import { makeCandidates, makeUpstream } from "../helpers/candidates.ts";

type Cand = Candidate & { state: CandidateState };

interface Options {
  /** Keys; one candidate each. @default 1 */
  keys?: number;
  auth?: AuthStyle;
  headers?: Record<string, string>;
  forceHeaders?: Record<string, string>;
  healthCheck?: Partial<HealthCheckConfig> | false;
  fetch?: typeof fetch;
  plugins?: ProbePlugin[];
}

function setup(o: Options = {}) {
  const clock = { t: 5_000_000 };
  const now = () => clock.t;
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger({
    level: "debug",
    format: "json",
    now,
    sink: (l) => logs.push(JSON.parse(l)),
  });
  logger.setSecrets(new Map([["sk-test-0", "sk-...0"]]));
  const store = new MemoryStateStore();
  const board = new HealthBoard({
    store,
    logger,
    now,
    config: {
      ejectionBaseMs: 10_000,
      ejectionMaxMs: 60_000,
      rateLimitRestMs: 5_000,
      quotaRestMs: 60_000,
      authRestMs: 60_000,
    },
  });
  const up = makeUpstream("up", "http://127.0.0.1:9/v1");
  const healthCheck = o.healthCheck === false ? undefined : {
    probe: "http",
    path: "/models",
    intervalMs: 20,
    timeoutMs: 200,
    ...o.healthCheck,
  };
  const config = {
    ...up.config,
    auth: o.auth ?? "bearer",
    headers: o.headers ?? {},
    forceHeaders: o.forceHeaders ?? {},
    ...(healthCheck ? { healthCheck } : {}),
  };
  const upstream = { ...up, auth: config.auth, config };
  const candidates: Cand[] = makeCandidates(o.keys ?? 1).map((c) => ({
    ...c,
    upstream,
    state: store.record(c.id),
  }));
  const registry = new Registry();
  registry.register(httpProbe, ...(o.plugins ?? []));
  const calls: { url: string; headers: Headers }[] = [];
  const fetchFn: typeof fetch = o.fetch ?? ((input, init) => {
    calls.push({ url: String(input), headers: new Headers(init?.headers) });
    return Promise.resolve(new Response("{}", { status: 200 }));
  });
  const countingFetch: typeof fetch = (input, init) => {
    if (o.fetch) calls.push({ url: String(input), headers: new Headers(init?.headers) });
    return fetchFn(input, init);
  };
  return { clock, logs, board, candidates, registry, logger, calls, fetch: countingFetch };
}

function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = performance.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (performance.now() > deadline) reject(new Error("Condition not met in time"));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

/** A fetch that never answers until its signal aborts. */
const hangingFetch: typeof fetch = (_input, init) =>
  new Promise((_resolve, reject) => {
    const signal = init?.signal;
    signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
  });

Deno.test("probeRequest() appends the health path and carries the key in the auth style", () => {
  const bearer = setup({ headers: { "anthropic-version": "2023-06-01" } }).candidates[0]!;
  const r = probeRequest(bearer);
  assert.equal(r.url, "http://127.0.0.1:9/v1/models");
  assert.equal(r.headers.get("authorization"), "Bearer sk-test-0");
  assert.equal(r.headers.get("anthropic-version"), "2023-06-01");
  const xKey = setup({ auth: "x-api-key", healthCheck: { path: "/health" } }).candidates[0]!;
  const r2 = probeRequest(xKey);
  assert.equal(r2.url, "http://127.0.0.1:9/v1/health");
  assert.equal(r2.headers.get("x-api-key"), "sk-test-0");
  assert.equal(r2.headers.get("authorization"), null);
});

Deno.test("probeRequest() sends forced configured headers under their own name", () => {
  const c = setup({
    headers: { "anthropic-version": "2023-06-01" },
    forceHeaders: { "x-team": "ops" },
  }).candidates[0]!;
  const r = probeRequest(c);
  assert.equal(r.headers.get("anthropic-version"), "2023-06-01");
  assert.equal(r.headers.get("x-team"), "ops");
});

Deno.test("runProbe() returns the plugin's result", async () => {
  const t = setup({ fetch: () => Promise.resolve(new Response("no", { status: 503 })) });
  const r = await runProbe(t.candidates[0]!, t);
  assert.equal(r.outcome, "server_error");
  assert.equal(r.status, 503);
  assert.equal(t.calls[0]?.url, "http://127.0.0.1:9/v1/models");
});

Deno.test("runProbe() reports an unknown probe plugin as a network failure", async () => {
  const t = setup({ healthCheck: { probe: "nope" } });
  const r = await runProbe(t.candidates[0]!, t);
  assert.equal(r.outcome, "network");
  assert.match(r.detail ?? "", /unknown probe "nope"/);
});

Deno.test("runProbe() times out a hung upstream", async () => {
  const t = setup({ fetch: hangingFetch, healthCheck: { timeoutMs: 30 } });
  const started = performance.now();
  const r = await runProbe(t.candidates[0]!, t);
  assert.equal(r.outcome, "timeout");
  assert.ok(performance.now() - started < 1000);
});

Deno.test("runProbe() does not wait for a plugin that ignores its signal", async () => {
  let release!: () => void;
  const stuck: ProbePlugin = {
    kind: "probe",
    name: "stuck",
    probe: () =>
      new Promise<ProbeResult>((resolve) => {
        release = () => resolve({ outcome: "healthy", latencyMs: 0 });
      }),
  };
  const t = setup({ plugins: [stuck], healthCheck: { probe: "stuck", timeoutMs: 30 } });
  const r = await runProbe(t.candidates[0]!, t);
  assert.equal(r.outcome, "timeout");
  release();
});

Deno.test("runProbe() turns a throwing plugin into a failure and logs it masked", async () => {
  const broken: ProbePlugin = {
    kind: "probe",
    name: "broken",
    probe: () => Promise.reject(new Error("bad key sk-test-0")),
  };
  const t = setup({ plugins: [broken], healthCheck: { probe: "broken" } });
  const r = await runProbe(t.candidates[0]!, t);
  assert.equal(r.outcome, "network");
  assert.equal(r.detail, "bad key sk-...0");
  const line = t.logs.find((l) => l.msg === "probe plugin failed");
  assert.equal(line?.error, "bad key sk-...0");
});

Deno.test("runProbe() gives the plugin the injected clock", async () => {
  const t = setup({
    fetch: () =>
      Promise.resolve(new Response("", { status: 429, headers: { "retry-after": "3" } })),
  });
  const r = await runProbe(t.candidates[0]!, { ...t, now: t.board.now });
  assert.equal(r.outcome, "rate_limited");
  assert.equal(r.retryAt, t.clock.t + 3000);
});

Deno.test("ActiveHealth.probeNow() applies the result and never overlaps probes of one key", async () => {
  let answer!: (r: Response) => void;
  const t = setup({
    fetch: () => new Promise<Response>((resolve) => answer = resolve),
  });
  const c = t.candidates[0]!;
  const active = new ActiveHealth({ ...t, candidates: t.candidates });
  const first = active.probeNow(c);
  assert.equal(await active.probeNow(c), undefined, "a probe of that key is running");
  answer(new Response("", { status: 500 }));
  assert.equal((await first)?.outcome, "server_error");
  assert.equal(statusOf(c.state, t.clock.t), "unhealthy");
  assert.equal(t.calls.length, 1);
  await active.stop();
});

Deno.test("ActiveHealth probes each key on its own schedule and results drive recovery", async () => {
  let status = 500;
  const t = setup({
    keys: 2,
    fetch: () => Promise.resolve(new Response("", { status })),
  });
  const [a, b] = t.candidates;
  const active = new ActiveHealth({ ...t, candidates: t.candidates, random: () => 0 });
  active.start();
  try {
    await waitFor(() => statusOf(a!.state, t.clock.t) === "unhealthy");
    await waitFor(() => statusOf(b!.state, t.clock.t) === "unhealthy");
    const keys = new Set(t.calls.map((c) => c.headers.get("authorization")));
    assert.deepEqual([...keys].sort(), ["Bearer sk-test-0", "Bearer sk-test-1"]);
    status = 200;
    await waitFor(() => statusOf(a!.state, t.clock.t) === "healthy");
    await waitFor(() => statusOf(b!.state, t.clock.t) === "healthy");
    const before = t.calls.length;
    await waitFor(() => t.calls.length >= before + 4);
  } finally {
    await active.stop();
  }
  const after = t.calls.length;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(t.calls.length, after, "no probe after stop");
});

Deno.test("ActiveHealth skips upstreams without a health check", async () => {
  const t = setup({ healthCheck: false });
  const active = new ActiveHealth({ ...t, candidates: t.candidates, random: () => 0 });
  active.start();
  await new Promise((r) => setTimeout(r, 30));
  await active.stop();
  assert.equal(t.calls.length, 0);
});

Deno.test("ActiveHealth.stop() aborts a probe in flight and drops its result", async () => {
  const t = setup({ fetch: hangingFetch, healthCheck: { timeoutMs: 60_000 } });
  const c = t.candidates[0]!;
  const active = new ActiveHealth({ ...t, candidates: t.candidates, random: () => 0 });
  active.start();
  await waitFor(() => t.calls.length === 1);
  const started = performance.now();
  await active.stop();
  assert.ok(performance.now() - started < 1000);
  assert.equal(statusOf(c.state, t.clock.t), "healthy", "a stopped probe says nothing");
  assert.equal(await active.probeNow(c), undefined);
});
