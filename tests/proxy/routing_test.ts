/**
 * @module Tests of the forwarding step's pure helpers: upstream URL, backoff, 503 message, and
 * the table of final outcomes.
 */

import assert from "node:assert/strict";
import {
  backoffMs,
  describeUnavailable,
  FINAL_OUTCOMES,
  finalOutcome,
  retryAdvice,
  UNKNOWN_RETURN_S,
  upstreamUrl,
} from "../../src/proxy/routing.ts";
import type { CandidateSpec } from "../helpers/candidates.ts";
import { makeCandidates, makeUpstream } from "../helpers/candidates.ts";
import type { Upstream } from "../../src/plugin.ts";
import { Pool, type PoolSummary } from "../../src/pool.ts";
import { HealthBoard } from "../../src/health/board.ts";
import { Logger } from "../../src/logger.ts";
import { MemoryStateStore } from "../../src/state_store.ts";
import { baseConfig } from "../../src/config/defaults.ts";

function upstream(baseUrl: string, pathMode: "v1" | "full"): Upstream {
  return { ...makeUpstream("u", baseUrl), pathMode };
}

Deno.test("upstreamUrl() in v1 mode drops the client's /v1 (the base URL has it)", () => {
  const u = upstream("https://api.example/v1", "v1");
  assert.equal(
    upstreamUrl(u, "/v1/chat/completions", ""),
    "https://api.example/v1/chat/completions",
  );
  assert.equal(
    upstreamUrl(u, "/v1/models", "?limit=2&x=%20"),
    "https://api.example/v1/models?limit=2&x=%20",
  );
  assert.equal(upstreamUrl(u, "/v1", ""), "https://api.example/v1");
});

Deno.test("upstreamUrl() in v1 mode does not strip a path that only starts with /v1", () => {
  const u = upstream("https://api.example/v1", "v1");
  assert.equal(upstreamUrl(u, "/v1beta/models", ""), "https://api.example/v1/v1beta/models");
});

Deno.test("upstreamUrl() in full mode appends the client's path as is", () => {
  const u = upstream("https://api-inference.modelscope.cn", "full");
  assert.equal(
    upstreamUrl(u, "/v1/chat/completions", "?a=1"),
    "https://api-inference.modelscope.cn/v1/chat/completions?a=1",
  );
});

Deno.test("upstreamUrl() stays on the upstream's host whatever the path", () => {
  const cases = [
    "//evil.example/v1/x",
    "/@evil.example/",
    "/v1/..//evil.example",
    "/v1/%2F%2Fevil.example",
  ];
  for (const mode of ["v1", "full"] as const) {
    const u = upstream("http://127.0.0.1:9/v1", mode);
    for (const path of cases) {
      const url = new URL(upstreamUrl(u, path, "?next=http://evil.example"));
      assert.equal(url.host, "127.0.0.1:9", `${mode} ${path}`);
    }
  }
});

Deno.test("backoffMs() grows exponentially, jittered between half and all of the ceiling", () => {
  assert.equal(backoffMs(1, 100, 2000, () => 0), 50);
  assert.equal(backoffMs(1, 100, 2000, () => 0.999999), 100);
  assert.equal(backoffMs(2, 100, 2000, () => 0), 100);
  assert.equal(backoffMs(3, 100, 2000, () => 0.5), 300);
  assert.equal(backoffMs(4, 100, 2000, () => 0.999999), 800);
});

Deno.test("backoffMs() never exceeds the largest ceiling", () => {
  for (let retry = 1; retry <= 40; retry++) {
    const ms = backoffMs(retry, 100, 2000, () => 0.999999);
    assert.ok(ms <= 2000 && ms >= 50, `retry ${retry}: ${ms}`);
  }
  assert.equal(backoffMs(0, 100, 2000, () => 0.999999), 100);
});

function pool(model: string, specs: CandidateSpec[]): Pool {
  const logger = new Logger({ sink: () => {} });
  const board = new HealthBoard({
    store: new MemoryStateStore(),
    logger,
    config: baseConfig("t", "native").health,
    now: () => 1000,
  });
  const candidates = makeCandidates(specs);
  const strategy = { pick: (a: readonly (typeof candidates)[number][]) => a[0]! };
  return new Pool({
    model,
    strategyName: "round_robin",
    candidates,
    strategy,
    fallback: strategy,
    board,
    onStrategyError: () => {},
  });
}

Deno.test("describeUnavailable() counts the reasons of one upstream's keys", () => {
  const p = pool("gpt-4o", [
    { upstream: "modelscope", state: { restUntil: 5000, restReason: "rate_limited" } },
    { upstream: "modelscope", state: { restUntil: 5000, restReason: "rate_limited" } },
    { upstream: "modelscope", state: { healthy: false, unhealthyReason: "probe: HTTP 500" } },
  ]);
  assert.equal(
    describeUnavailable(p, p.summary(1000)),
    'No upstream key can serve this request: all 3 keys of upstream "modelscope" are unavailable: 2 rate limited, 1 unhealthy',
  );
});

Deno.test("describeUnavailable() names the model or the default pool when upstreams differ", () => {
  const specs: CandidateSpec[] = [
    { upstream: "a", state: { disabled: true } },
    { upstream: "b", state: { ejectedUntil: 9000, consecutiveFailures: 3 } },
    { upstream: "b", state: { restUntil: 9000, restReason: "quota" } },
    { upstream: "b", state: { restUntil: 9000, restReason: "auth" } },
  ];
  const named = pool("gpt-4o", specs);
  assert.equal(
    describeUnavailable(named, named.summary(1000)),
    'No upstream key can serve this request: all 4 keys of model "gpt-4o" are unavailable: ' +
      "1 out of quota, 1 refused by the upstream (401/403), 1 ejected after failures, 1 disabled",
  );
  const def = pool("*", specs);
  assert.match(describeUnavailable(def, def.summary(1000)), /all 4 keys of the default pool are/);
});

Deno.test("describeUnavailable() speaks of the only key in the singular", () => {
  const p = pool("m", [{ upstream: "solo", state: { disabled: true } }]);
  assert.equal(
    describeUnavailable(p, p.summary(1000)),
    'No upstream key can serve this request: the only key of upstream "solo" is unavailable: 1 disabled',
  );
});

function summary(over: Partial<PoolSummary> = {}): PoolSummary {
  return {
    total: 2,
    available: 0,
    disabled: 0,
    unhealthy: 0,
    ejected: 0,
    resting: 0,
    spent: 0,
    spentForModel: 0,
    busy: 0,
    rateLimited: 0,
    quota: 0,
    authFailed: 0,
    nextReturn: Infinity,
    ...over,
  };
}

Deno.test("finalOutcome() is a rate limit when every key that could serve rests after a 429", () => {
  assert.equal(finalOutcome(undefined, summary({ resting: 2, rateLimited: 2 })), "rate_limited");
  // a disabled key will not serve whatever the wait
  assert.equal(
    finalOutcome(undefined, summary({ total: 3, disabled: 1, rateLimited: 1, quota: 1 })),
    "rate_limited",
  );
  assert.equal(finalOutcome(undefined, summary({ quota: 2 })), "quota");
  // any other reason among them: unavailable
  assert.equal(finalOutcome(undefined, summary({ rateLimited: 1, ejected: 1 })), "unavailable");
  assert.equal(finalOutcome(undefined, summary({ disabled: 2 })), "unavailable");
});

Deno.test("finalOutcome() names the last attempt's class", () => {
  const s = summary();
  assert.equal(finalOutcome("rate_limited", s), "rate_limited");
  assert.equal(finalOutcome("quota", s), "quota");
  assert.equal(finalOutcome("auth", s), "auth_refused");
  assert.equal(finalOutcome("server", s), "server_error");
  assert.equal(finalOutcome("connect", s), "unreachable");
  assert.equal(finalOutcome("stale", s), "stale");
  assert.equal(finalOutcome("timeout", s), "timeout");
  assert.equal(finalOutcome("bad_request", s), "client_error");
});

Deno.test("FINAL_OUTCOMES gives every 5xx llm-balance writes a Retry-After", () => {
  for (const [outcome, rule] of Object.entries(FINAL_OUTCOMES)) {
    if (outcome === "client_error") continue;
    assert.notEqual(rule.after, "upstream", outcome);
    assert.notEqual(rule.retry, "upstream", outcome);
  }
  assert.equal(FINAL_OUTCOMES.rate_limited.status, 429);
  assert.equal(FINAL_OUTCOMES.unavailable.status, 503);
  assert.equal(FINAL_OUTCOMES.unreachable.status, 503);
  assert.equal(FINAL_OUTCOMES.timeout.status, 504);
});

Deno.test("retryAdvice() waits for the first key back, retryable only within the SDKs' 60 s", () => {
  const now = 1_000_000;
  const back = (s: number) => summary({ rateLimited: 2, nextReturn: now + s * 1000 });
  assert.deepEqual(retryAdvice("rate_limited", back(12), now), { afterSeconds: 12, retry: true });
  assert.deepEqual(retryAdvice("rate_limited", back(0.2), now), { afterSeconds: 1, retry: true });
  assert.deepEqual(retryAdvice("rate_limited", back(59.5), now), {
    afterSeconds: 60,
    retry: false,
  });
  assert.deepEqual(retryAdvice("quota", back(3600), now), { afterSeconds: 3600, retry: false });
  // a key usable now: a retry may go at once
  assert.deepEqual(
    retryAdvice("rate_limited", summary({ available: 1, nextReturn: now + 9000 }), now),
    { afterSeconds: 1, retry: true },
  );
  // nothing comes back by itself
  assert.deepEqual(retryAdvice("unavailable", summary({ disabled: 2 }), now), {
    afterSeconds: UNKNOWN_RETURN_S,
    retry: false,
  });
});

Deno.test("retryAdvice() never has an SDK retry what llm-balance already retried, but a stale connection", () => {
  const now = 0;
  const s = summary({ ejected: 2, nextReturn: 30_000 });
  for (const outcome of ["server_error", "unreachable", "timeout", "auth_refused"] as const) {
    assert.deepEqual(retryAdvice(outcome, s, now), { afterSeconds: 30, retry: false }, outcome);
  }
  assert.deepEqual(retryAdvice("stale", s, now), { afterSeconds: 1, retry: true });
  assert.equal(retryAdvice("client_error", s, now), undefined);
});

Deno.test("retryAdvice() leaves retries to the client when llm-balance makes none itself", () => {
  const s = summary({ available: 1 });
  assert.deepEqual(retryAdvice("server_error", s, 0, false), { afterSeconds: 1 });
  assert.deepEqual(retryAdvice("unreachable", s, 0, false), { afterSeconds: 1 });
  // a rest longer than SDKs wait is still no reason to retry at once
  const resting = summary({ rateLimited: 2, nextReturn: 120_000 });
  assert.deepEqual(retryAdvice("rate_limited", resting, 0, false), {
    afterSeconds: 120,
    retry: false,
  });
});
