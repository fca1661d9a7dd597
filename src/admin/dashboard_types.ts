/**
 * @module
 * The dashboard's data, as `GET /dashboard/data` returns it: the contract between the server
 * (`src/admin/dashboard_view.ts`), the page (`src/admin/dashboard_page.ts`) and the terminal
 * view (`llm-balance status`). Plain JSON: times are ISO 8601 strings in UTC or epoch
 * milliseconds where a countdown needs them; keys appear only by mask, id and name.
 */

/** What a key is doing, in the words the dashboard shows. */
export type KeyState =
  | "serving"
  | "half_open"
  | "resting"
  | "rate_limited"
  | "spent"
  | "ejected"
  | "auth_failed"
  | "unhealthy"
  | "disabled";

/** One budget of a key, as a bar: used of limit. */
export interface BudgetBar {
  /** `requests_per_day`, `model_requests_per_day`, `tokens_per_day`, `requests_per_minute`, ... */
  name: string;
  /** The model of a per-model budget; null for a budget of every model. */
  model: string | null;
  used: number;
  /** The limit; 0 when only the provider's remaining count is known. */
  limit: number;
  remaining: number;
  /** `counted`, or `provider` while the provider's word holds. */
  source: "counted" | "provider";
  /** Epoch ms of the window's reset; null when it has none (max_concurrency). */
  resets_at_ms: number | null;
}

/** One key (a candidate: a key of an upstream). */
export interface DashboardKey {
  /** Stable id `<upstream>:<hash>`: what actions name. */
  id: string;
  mask: string;
  name: string | null;
  upstream: string;
  /** The pools (models) it serves; `default` for the default pool. */
  pools: string[];
  state: KeyState;
  /** Why it is not serving (`rate limited by the upstream`, `spent its daily requests`, ...). */
  reason: string | null;
  /** Epoch ms when it returns by itself; null when only an operator or a probe brings it back. */
  until_ms: number | null;
  in_flight: number;
  requests: number;
  failures: number;
  prompt_tokens: number;
  completion_tokens: number;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  latency_ewma_ms: number | null;
  /** Affinity pins it holds (0 without affinity routing). */
  pins: number;
  /** Its budgets of every model, and its fullest per-model ones ({@linkcode MODEL_BARS} at most). */
  budgets: BudgetBar[];
  /** Per-model budgets left out of `budgets` (the page says "+N more models"). */
  more_models: number;
}

/** The most per-model budget bars a key carries in the data (the fullest ones). */
export const MODEL_BARS = 3;

/** One pool (the keys serving one model, or every other model for `default`). */
export interface DashboardPool {
  /** The model, or `default`. */
  model: string;
  strategy: string;
  /** Keys that can serve now (some may be at their concurrency cap: a request waits for a slot). */
  usable: number;
  total: number;
  /** Requests and errors (answers of status >= 500 or 429, and failures) per second, last minute. */
  requests_per_s: number;
  errors_per_s: number;
  /** Over the pool's keys' recent answers; null without any. */
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  /** Requests waiting for a key now. */
  queue: number;
  /** Affinity routing's counts, or null without it. */
  affinity: { pins: number; hit: number; new: number; moved: number; detour: number } | null;
  /** The ids of its keys, in the pool's order. */
  keys: string[];
}

/** A recent change of a key's state (rest, ejection, spent, disable, ...). */
export interface DashboardEvent {
  /** Epoch ms. */
  at_ms: number;
  level: "info" | "warn" | "error";
  /** What happened, as the log says it (`key resting: rate limited by the upstream`). */
  message: string;
  upstream: string | null;
  /** The key's mask; null for an event of no single key. */
  key: string | null;
}

/** Everything the dashboard shows. */
export interface DashboardData {
  /** Epoch ms when the data was made (countdowns count from it, corrected by the page). */
  now_ms: number;
  version: string;
  /** Seconds since start. */
  uptime_s: number;
  /** Whether every pool has a usable key (what `status` exits 0 for). */
  ok: boolean;
  /** Shared state: null without `state.redis`. */
  redis: { up: boolean; required: boolean } | null;
  pools: DashboardPool[];
  /** Every key once, in the order of the pools. */
  keys: DashboardKey[];
  /** Requests and errors per bucket over the last 15 minutes, oldest first. */
  series: { step_s: number; requests: number[]; errors: number[] };
  /** The last state changes, newest first (at most 50). */
  events: DashboardEvent[];
  /** Whether this caller may act (disable, enable, reset). */
  can_act: boolean;
}
