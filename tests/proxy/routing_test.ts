/** @module Tests of the forwarding step's pure helpers: upstream URL, backoff, 503 message. */

import assert from "node:assert/strict";
import { backoffMs, describeUnavailable, upstreamUrl } from "../../src/proxy/routing.ts";
import type { CandidateSpec } from "../helpers/candidates.ts";
import { makeCandidates, makeUpstream } from "../helpers/candidates.ts";
import type { Upstream } from "../../src/plugin.ts";
import { Pool } from "../../src/pool.ts";
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
