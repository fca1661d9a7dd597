/**
 * @module
 * Builds what `GET /dashboard/data` answers ({@linkcode DashboardData}): every pool with its
 * usable keys, rates, latency, queue and affinity; every key once with its state, reason,
 * return time, counters, latency, pins and budgets; the 15-minute series and the last state
 * changes. One pass over the keys, no sorting but the latency percentiles: cheap with 500 keys.
 * Keys appear only by id, mask and name.
 */

import type { StatsSource } from "./source.ts";
import type {
  BudgetBar,
  DashboardData,
  DashboardKey,
  DashboardPool,
  KeyState,
} from "./dashboard_types.ts";
import { MODEL_BARS } from "./dashboard_types.ts";
import type { Candidate } from "../plugin.ts";
import type { Pool } from "../pool.ts";
import type { EventLog } from "./events.ts";
import { nameOf, type Timeline } from "./timeline.ts";
import { statusOf } from "../health/availability.ts";
import { reasonOf, untilMsOf } from "./stats.ts";
import { pinsByKey, poolsOf } from "./routing_view.ts";
import { budgetViews } from "../budget/views.ts";
import denoJson from "../../deno.json" with { type: "json" };

/** The version `llm-balance version` prints. */
const VERSION: string = denoJson.version;

/** What the dashboard reads beside the stats views' state. */
export interface DashboardSource extends StatsSource {
  /** Requests and errors over the last 15 minutes. */
  readonly timeline: Timeline;
  /** The last state changes. */
  readonly events: EventLog;
}

/** Options of {@linkcode dashboardData}. */
export interface DashboardOptions {
  /** Whether the caller may act (the page shows action buttons then). */
  canAct: boolean;
}

/**
 * What a key is doing, in the dashboard's words.
 * @param c the key
 * @param now epoch ms
 * @returns `serving` when healthy; a rest for a rate limit is `rate_limited`, for a refused key
 *   `auth_failed` (as is a probe's auth verdict), for an exhausted quota `spent`
 */
export function keyState(c: Candidate, now: number): KeyState {
  const s = c.state;
  const st = statusOf(s, now);
  switch (st) {
    case "healthy":
      return "serving";
    case "unhealthy":
      return s.unhealthyReason.startsWith("auth") ? "auth_failed" : "unhealthy";
    case "resting":
      return s.restReason === "rate_limited"
        ? "rate_limited"
        : s.restReason === "auth"
        ? "auth_failed"
        : s.restReason === "quota"
        ? "spent"
        : "resting";
    default:
      return st;
  }
}

/**
 * A key's budgets as bars.
 * @param c the key
 * @param now epoch ms
 * @returns one bar per budget; `model_requests_per_day:<model>` becomes name and model
 */
export function budgetBars(c: Candidate, now: number): BudgetBar[] {
  const out: BudgetBar[] = [];
  const views = budgetViews(c, now);
  for (const full in views) {
    const v = views[full]!;
    const at = full.indexOf(":");
    out.push({
      name: at < 0 ? full : full.slice(0, at),
      model: at < 0 ? null : full.slice(at + 1),
      used: v.used,
      limit: v.limit,
      remaining: v.remaining,
      source: v.learned ? "provider" : "counted",
      resets_at_ms: v.resetsAt > 0 ? v.resetsAt : null,
    });
  }
  return out;
}

/**
 * A key's bars as the data carries them: every budget of every model, and only its fullest
 * per-model ones (a key may count a hundred models: 500 keys would make megabytes every 2 s).
 * @param bars every bar
 * @returns the bars kept, and how many per-model ones were left out
 */
export function fullestBars(bars: BudgetBar[]): { budgets: BudgetBar[]; more_models: number } {
  const all = bars.filter((b) => b.model === null);
  const per = bars.filter((b) => b.model !== null);
  if (per.length <= MODEL_BARS) return { budgets: bars, more_models: 0 };
  const fill = (b: BudgetBar) => {
    const limit = b.limit > 0 ? b.limit : b.used + b.remaining;
    return limit > 0 ? b.used / limit : 0;
  };
  per.sort((a, b) => fill(b) - fill(a));
  return { budgets: [...all, ...per.slice(0, MODEL_BARS)], more_models: per.length - MODEL_BARS };
}

function keyView(
  app: StatsSource,
  c: Candidate,
  now: number,
  pins: ReadonlyMap<string, number> | undefined,
): DashboardKey {
  const s = c.state;
  const lat = app.latency.percentiles(c.id);
  return {
    id: c.id,
    mask: c.mask,
    name: c.name ?? null,
    upstream: c.upstream.name,
    pools: [],
    state: keyState(c, now),
    reason: reasonOf(c, now),
    until_ms: untilMsOf(c, now),
    in_flight: s.inFlight,
    requests: s.requests,
    failures: s.failures,
    prompt_tokens: s.promptTokens,
    completion_tokens: s.completionTokens,
    latency_p50_ms: lat.p50,
    latency_p95_ms: lat.p95,
    latency_ewma_ms: app.latency.ewma(c.id),
    pins: pins?.get(c.id) ?? 0,
    ...fullestBars(budgetBars(c, now)),
  };
}

function poolView(
  app: DashboardSource,
  pool: Pool,
  now: number,
  queued: ReadonlyMap<Pool, number>,
): DashboardPool {
  const name = nameOf(pool);
  const lat = app.latency.percentilesOf(pool.candidates.map((c) => c.id));
  const router = pool.affinity;
  const sum = pool.summary(now);
  return {
    model: name,
    strategy: pool.strategyName,
    // keys at their concurrency cap serve too (the next request waits for a slot)
    usable: sum.available + sum.busy,
    total: pool.candidates.length,
    ...app.timeline.rates(name, now),
    latency_p50_ms: lat.p50,
    latency_p95_ms: lat.p95,
    queue: queued.get(pool) ?? 0,
    affinity: router === undefined ? null : { pins: router.size, ...router.counts },
    keys: pool.candidates.map((c) => c.id),
  };
}

/**
 * Everything the dashboard shows, now.
 * @param app the application's state, timeline and events
 * @param options whether the caller may act
 * @returns the data, keys only by id, mask and name
 */
export function dashboardData(app: DashboardSource, options: DashboardOptions): DashboardData {
  const now = app.now();
  const rt = app.rt;
  const pools = poolsOf(rt);
  const pins = pools.some((p) => p.affinity !== undefined) ? pinsByKey(rt) : undefined;
  const queued = new Map<Pool, number>();
  for (const [pool, , length] of app.queues.pools()) queued.set(pool, length);
  const keys = new Map<string, DashboardKey>();
  const poolViews: DashboardPool[] = [];
  let ok = pools.length > 0;
  for (const pool of pools) {
    const view = poolView(app, pool, now, queued);
    poolViews.push(view);
    // as /health: a pool in panic (every key out, the threshold lets some serve) still serves
    if (view.usable === 0 && pool.available(now).length === 0) ok = false;
    for (const c of pool.candidates) {
      let k = keys.get(c.id);
      // the runtime's view of a key (its first pool's) holds its budgets
      if (k === undefined) {
        keys.set(c.id, k = keyView(app, rt.candidates.get(c.id) ?? c, now, pins));
      }
      k.pools.push(view.model);
    }
  }
  const cluster = app.cluster;
  if (cluster !== undefined && cluster.required && !cluster.up) ok = false;
  return {
    now_ms: now,
    version: VERSION,
    uptime_s: Math.max(0, Math.round((now - app.startedAt) / 1000)),
    ok,
    redis: cluster === undefined ? null : { up: cluster.up, required: cluster.required },
    pools: poolViews,
    keys: [...keys.values()],
    series: app.timeline.series(undefined, now),
    events: app.events.recent(),
    can_act: options.canAct,
  };
}
