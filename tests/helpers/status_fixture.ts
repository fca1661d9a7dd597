/**
 * @module
 * A small `DashboardData` and fake answers, shared by the tests of `llm-balance status`.
 */

import type { BudgetBar, DashboardData, DashboardKey } from "../../src/admin/dashboard_types.ts";

/** The fixture's time. */
export const NOW = 1_760_000_000_000;
/** An admin key for the tests. */
export const ADMIN = "ad-status-test-admin-key-000000000001";
/** A config's upstreams section. */
export const UPSTREAMS = "upstreams: { a: { base_url: http://127.0.0.1:9/v1, keys: [sk-a] } }\n";

/** A daily budget almost spent. */
export const DAY: BudgetBar = {
  name: "requests_per_day",
  model: null,
  used: 1999,
  limit: 2000,
  remaining: 1,
  source: "counted",
  resets_at_ms: NOW + 3 * 3600_000,
};

/** A key of one pool, serving unless told otherwise. */
export function key(id: string, pool: string, extra: Partial<DashboardKey> = {}): DashboardKey {
  return {
    id,
    mask: `sk-${id.slice(-4)}...${id.slice(-4)}`,
    name: null,
    upstream: id.split(":")[0]!,
    pools: [pool],
    state: "serving",
    reason: null,
    until_ms: null,
    in_flight: 0,
    requests: 10,
    failures: 0,
    prompt_tokens: 100,
    completion_tokens: 50,
    latency_p50_ms: 820,
    latency_p95_ms: 2100,
    latency_ewma_ms: 900,
    pins: 0,
    budgets: [],
    more_models: 0,
    ...extra,
  };
}

/** Three pools of one key each: gpt-4o (a budget), claude (disabled: not ok), default. */
export function fixture(): DashboardData {
  const keys = [
    key("modelscope:aaaa0001", "gpt-4o", { budgets: [DAY] }),
    key("anthropic:dddd0004", "claude", { state: "disabled", reason: "disabled by an operator" }),
    key("modelscope:eeee0005", "default"),
  ];
  return {
    now_ms: NOW,
    version: "0.1.0",
    uptime_s: 3 * 3600 + 12 * 60,
    ok: false,
    redis: { up: true, required: false },
    pools: keys.map((k) => ({
      model: k.pools[0]!,
      strategy: "round_robin",
      usable: k.state === "serving" ? 1 : 0,
      total: 1,
      requests_per_s: 12.4,
      errors_per_s: 0.2,
      latency_p50_ms: 820,
      latency_p95_ms: 2100,
      queue: 0,
      affinity: null,
      keys: [k.id],
    })),
    keys,
    series: { step_s: 60, requests: [1, 2, 3, 0, 8], errors: [0, 0, 1, 0, 0] },
    events: [{
      at_ms: NOW - 60_000,
      level: "warn",
      message: "key resting: rate limited by the upstream",
      upstream: "modelscope",
      key: "sk-0002...0002",
    }],
    can_act: true,
  };
}

/** A fetch answering every request with one response, recording the requests. */
export function answering(
  make: () => Response,
  seen: Request[] = [],
): typeof fetch {
  return (input, init) => {
    seen.push(new Request(input, init));
    return Promise.resolve(make());
  };
}

/** A JSON response. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}
