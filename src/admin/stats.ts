/**
 * @module
 * The stats views: Seed A's `/stats` (per masked key), Seed B's load-balancer and per-model
 * views, `/health`, and OpenAI's model list. Pure functions of the application's state; keys
 * appear only as masks and ids.
 */

import type { Runtime } from "../runtime.ts";
import type { StatsSource } from "./source.ts";
import { isAvailable, statusOf } from "../health/availability.ts";
import type { Candidate, ModelEntry, ModelList } from "../plugin.ts";

export type { ModelEntry, ModelList } from "../plugin.ts";
import type { Pool } from "../pool.ts";
import { SPENT_WHY } from "../budget/book.ts";
import { budgetViews } from "../budget/views.ts";
import type { ClusterSnapshot } from "./cluster_view.ts";
import { formatWithOffset } from "../budget/reset.ts";
import { affinityView, pinsByKey, poolsOf } from "./routing_view.ts";

function iso(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

/**
 * Why a candidate is not serving, in words.
 * @param c the candidate
 * @param now epoch ms
 * @returns e.g. `rate limited`, `spent its daily requests`, `disabled by operator`; null when
 *   it serves (or is half-open)
 */
export function reasonOf(c: Candidate, now: number): string | null {
  const s = c.state;
  const st = statusOf(s, now);
  if (st === "spent") return SPENT_WHY[s.budget.spentReason] ?? "spent its budget";
  if (st === "unhealthy") return s.unhealthyReason || "probe failed";
  if (st === "resting") return s.restReason.replace("_", " ");
  if (st === "ejected") return `${s.consecutiveFailures} consecutive failures (${s.lastError})`;
  if (st === "disabled") return "disabled by operator";
  return null;
}

/**
 * When a resting, spent or ejected candidate returns by itself.
 * @param c the candidate
 * @param now epoch ms
 * @returns epoch ms; null when it serves, or only an operator or a probe brings it back
 */
export function untilMsOf(c: Candidate, now: number): number | null {
  const s = c.state;
  const st = statusOf(s, now);
  const ms = st === "resting"
    ? s.restUntil
    : st === "spent"
    ? s.budget.spentUntil
    : st === "ejected"
    ? s.ejectedUntil
    : 0;
  return ms > 0 ? ms : null;
}

function untilOf(c: Candidate, now: number): string | null {
  const ms = untilMsOf(c, now);
  return ms === null ? null : iso(ms);
}

/**
 * One candidate's state, as every stats view shows it.
 * @param app the application (clock, latency)
 * @param c the candidate
 * @param cluster the cluster's budgets read from Redis, with `state.redis`
 * @param pins the affinity pins the key holds (left out when undefined)
 */
export function candidateView(
  app: StatsSource,
  c: Candidate,
  cluster?: ClusterSnapshot,
  pins?: number,
): Record<string, unknown> {
  const now = app.now();
  const s = c.state;
  const status = statusOf(s, now);
  const lat = app.latency.percentiles(c.id);
  return {
    id: c.id,
    key: c.mask,
    name: c.name ?? null,
    upstream: c.upstream.name,
    url: c.upstream.baseUrl,
    healthy: status === "healthy" || status === "half_open",
    available: isAvailable(s, now),
    state: status,
    reason: reasonOf(c, now),
    until: untilOf(c, now),
    last_used: iso(s.lastUsed),
    requests: s.requests,
    failures: s.failures,
    consecutive_failures: s.consecutiveFailures,
    last_error: s.lastError || null,
    in_flight: s.inFlight,
    weight: c.weight,
    priority: c.priority,
    latency_p50_ms: lat.p50,
    latency_p95_ms: lat.p95,
    latency_ewma_ms: app.latency.ewma(c.id),
    ...(pins === undefined ? {} : { pins }),
    prompt_tokens: s.promptTokens,
    completion_tokens: s.completionTokens,
    total_tokens: s.totalTokens,
    budgets: budgetsView(c, now),
    ...(cluster === undefined ? {} : { cluster_budgets: cluster.budgets.get(c.id) ?? null }),
  };
}

/** A key's budgets: limit, used, remaining (counted or the provider's word) and next reset. */
function budgetsView(c: Candidate, now: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(budgetViews(c, now))) {
    out[name] = {
      limit: v.limit,
      used: v.used,
      remaining: v.remaining,
      source: v.learned ? "provider" : "counted",
      resets_at: v.resetsAt > 0 ? formatWithOffset(v.resetsAt, c.quota.timeZone) : null,
    };
  }
  return out;
}

/**
 * Seed A's `/stats`: `{"<mask>": {"healthy", "last_used", "requests", ...}}` over every key.
 * @param app the application
 */
export function keyStats(
  app: StatsSource,
  cluster?: ClusterSnapshot,
): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  const routed = poolsOf(app.rt).some((p) => p.affinity !== undefined);
  const pins = routed ? pinsByKey(app.rt) : undefined;
  for (const c of app.rt.candidates.values()) {
    // one key on two upstreams is two candidates: the second is told apart by its upstream
    const name = out[c.mask] === undefined ? c.mask : `${c.mask}@${c.upstream.name}`;
    out[name] = candidateView(
      app,
      c,
      cluster,
      pins === undefined ? undefined : pins.get(c.id) ?? 0,
    );
  }
  return out;
}

/**
 * One pool, Seed B style.
 * @param app the application
 * @param pool the pool
 */
export function poolView(app: StatsSource, pool: Pool): Record<string, unknown> {
  const now = app.now();
  const router = pool.affinity;
  const servers = pool.candidates.map((c) =>
    candidateView(app, c, undefined, router?.pinsOf(c.index))
  );
  const sum = pool.summary(now);
  return {
    model: pool.model === "*" ? "default" : pool.model,
    strategy: pool.strategyName,
    affinity: affinityView(pool),
    slow_start_seconds: pool.slowStart === undefined ? 0 : pool.slowStart.periodMs / 1000,
    total_servers: sum.total,
    healthy_servers: sum.available,
    active_connections: sumOf(servers, "in_flight"),
    total_requests: sumOf(servers, "requests"),
    total_failures: sumOf(servers, "failures"),
    prompt_tokens: sumOf(servers, "prompt_tokens"),
    completion_tokens: sumOf(servers, "completion_tokens"),
    total_tokens: sumOf(servers, "total_tokens"),
    servers,
  };
}

function sumOf(rows: readonly Record<string, unknown>[], field: string): number {
  let n = 0;
  for (const r of rows) n += typeof r[field] === "number" ? r[field] : 0;
  return n;
}

/**
 * Seed B's `/v1/stats/load_balancers`: every pool.
 * @param app the application
 */
export function loadBalancers(app: StatsSource): Record<string, unknown> {
  const rt = app.rt;
  const pools: Record<string, unknown> = {};
  for (const [model, pool] of rt.pools) pools[model] = poolView(app, pool);
  if (rt.defaultPool) pools["default"] = poolView(app, rt.defaultPool);
  return { load_balancers: pools, total_models: Object.keys(pools).length };
}

/**
 * `/health`: ok when at least one candidate of any pool is usable.
 * @param app the application
 * @returns the body and whether it is healthy
 */
export function health(app: StatsSource): { ok: boolean; body: Record<string, unknown> } {
  const now = app.now();
  const rt = app.rt;
  const pools: Record<string, unknown> = {};
  let ok = false;
  const all = [...rt.pools.values(), ...(rt.defaultPool ? [rt.defaultPool] : [])];
  for (const pool of all) {
    const sum = pool.summary(now);
    const usable = sum.available > 0 || pool.available(now).length > 0;
    if (usable) ok = true;
    pools[pool.model === "*" ? "default" : pool.model] = {
      available: sum.available,
      total: sum.total,
    };
  }
  const cluster = app.cluster;
  const shared = cluster === undefined
    ? undefined
    : { redis: cluster.up ? "up" : "down", required: cluster.required };
  // required and unreachable: every request is refused, whatever the keys
  if (cluster !== undefined && cluster.required && !cluster.up) ok = false;
  return {
    ok,
    body: {
      status: ok ? "ok" : "unavailable",
      uptime_s: Math.round((now - app.startedAt) / 1000),
      pools,
      ...(shared === undefined ? {} : { shared_state: shared }),
    },
  };
}

/** Options of {@linkcode modelList}. */
export interface ModelListOptions {
  /** The runtime whose pools are listed. @default app.rt */
  rt?: Runtime;
  /** Only these models (a client key's allow-list); undefined lists every model. @default undefined */
  allowed?: readonly string[] | undefined;
}

/**
 * OpenAI's model list over the configured named pools (the default pool serves "any other
 * model", so it has no entry), in configuration order.
 * @param app the application (start time)
 * @param options the runtime and an allow-list
 * @returns `{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}`
 */
export function modelList(app: StatsSource, options: ModelListOptions = {}): ModelList {
  const created = Math.floor(app.startedAt / 1000);
  const rt = options.rt ?? app.rt;
  const allowed = options.allowed;
  return {
    object: "list",
    data: [...rt.pools.keys()].filter((id) => allowed === undefined || allowed.includes(id)).map((
      id,
    ): ModelEntry => ({ id, object: "model", created, owned_by: "llm-balance" })),
  };
}
