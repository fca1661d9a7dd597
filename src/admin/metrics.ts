/**
 * @module
 * Prometheus metrics: request counters, attempts, retries, latency and time-to-first-byte
 * histograms, tokens, in-flight and candidate states, and the proxy's own overhead. Labels
 * never hold keys: candidates appear by upstream and mask. Every label value comes from the
 * configuration (model pools and model names, upstreams, client key names) or is a fixed word:
 * a model the configuration does not name is counted as `other`, so what clients send can never
 * add a series.
 */

import type { Candidate, RequestContext } from "../plugin.ts";
import type { Runtime } from "../runtime.ts";
import type { StatsSource } from "./source.ts";
import { budgetViews } from "../budget/views.ts";
import type { ClusterSnapshot } from "./cluster_view.ts";
import type { QueueStats } from "../proxy/wait_queue.ts";
import { statusOf } from "../health/availability.ts";
import { pinsByKey, poolsOf } from "./routing_view.ts";
import type { CandidateState } from "../state_store.ts";

const BUCKETS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];
const OVERHEAD_BUCKETS_MS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(obj: Record<string, string>): string {
  const parts: string[] = [];
  for (const k in obj) parts.push(`${k}="${esc(obj[k]!)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/**
 * Rows of every key's budgets, labelled by upstream, key, budget and model (per model only for
 * the models the configuration names), and a writer of one gauge over them.
 * @param out the exposition's lines
 * @param app the keys
 * @param budgetsOf a key's budgets by name (`requests_per_day`, `model_requests_per_day:<model>`)
 */
function budgetGauges<V>(
  out: string[],
  app: StatsSource,
  budgetsOf: (c: Candidate) => Record<string, V>,
): (name: string, help: string, value: (v: V) => number) => void {
  const names = configuredModels(app.rt);
  const rows: [Record<string, string>, V][] = [];
  for (const c of app.rt.candidates.values()) {
    for (const [budget, v] of Object.entries(budgetsOf(c))) {
      const at = budget.indexOf(":");
      const model = at < 0 ? "" : budget.slice(at + 1);
      if (model !== "" && !names.has(model)) continue;
      rows.push([{
        upstream: c.upstream.name,
        key: c.mask,
        budget: at < 0 ? budget : budget.slice(0, at),
        model,
      }, v]);
    }
  }
  return (name, help, value) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [l, v] of rows) out.push(`${name}${labels(l)} ${value(v)}`);
  };
}

/** What is counted for one model and upstream (upstream "" for requests that made no attempt). */
class Series {
  /** Requests by status class: index 1 for 1xx ... 5 for 5xx, 0 for anything else. */
  readonly requests = [0, 0, 0, 0, 0, 0];
  /** Upstream attempts; rendered once the series saw one. */
  attempts = 0;
  duration: Histogram | undefined;
  ttfb: Histogram | undefined;
  /** Tokens by client name: [prompt, completion]. */
  readonly tokens = new Map<string, [number, number]>();
}

const STATUS_CLASSES = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];

/** The `model` label of every model the configuration does not name. */
export const OTHER_MODEL = "other";

/**
 * Whether a finished request counts in the request figures (metrics, the dashboard's
 * timeline): one that reached an upstream, or an API request refused before one (not
 * llm-balance's own endpoints).
 * @param ctx the request's context
 */
export function counted(ctx: RequestContext): boolean {
  if (ctx.log.attempts > 0) return true;
  const path = ctx.path;
  return path.startsWith("/v1/") && !path.startsWith("/v1/stats");
}

/**
 * The model names a configuration gives: its named pools, the client model names of upstreams'
 * `models` maps, and the models client keys are limited to.
 * @param rt the runtime of one configuration
 * @returns the names
 */
export function configuredModels(rt: Runtime): Set<string> {
  const names = new Set<string>(rt.pools.keys());
  for (const u of rt.config.upstreams) for (const m of Object.keys(u.models)) names.add(m);
  for (const c of rt.config.clientKeys) for (const m of c.models ?? []) names.add(m);
  names.delete("*");
  return names;
}

/** Collects request metrics and renders them in the Prometheus text format. */
export class Metrics {
  /** model → upstream → series: two lookups per request, no label strings built. */
  #series = new Map<string, Map<string, Series>>();
  #overhead = new Histogram(OVERHEAD_BUCKETS_MS);
  #retries = 0;
  #streamsBroken = 0;
  /** Model names each configuration gives (made once per runtime). */
  #models = new WeakMap<Runtime, Set<string>>();
  /** The last runtime seen and its names (every request but those around a reload). */
  #lastRt: Runtime | undefined;
  #lastNames = new Set<string>();

  /**
   * The `model` label of a request: its model when the configuration names it, "" when the
   * request named none, else `other`.
   */
  #modelLabel(ctx: RequestContext, rt: Runtime): string {
    const model = ctx.log.model;
    if (model === undefined) return "";
    if (rt !== this.#lastRt) {
      let names = this.#models.get(rt);
      if (names === undefined) this.#models.set(rt, names = configuredModels(rt));
      this.#lastRt = rt;
      this.#lastNames = names;
    }
    return this.#lastNames.has(model) ? model : OTHER_MODEL;
  }

  #seriesOf(model: string, upstream: string): Series {
    let byUpstream = this.#series.get(model);
    if (byUpstream === undefined) this.#series.set(model, byUpstream = new Map());
    let series = byUpstream.get(upstream);
    if (series === undefined) byUpstream.set(upstream, series = new Series());
    return series;
  }

  /**
   * Records a finished request.
   * @param ctx the request's context, after its response ended
   * @param rt the runtime the request ran on (its configuration names the models)
   * @param durationMs milliseconds from arrival to the end of the response
   */
  observe(ctx: RequestContext, rt: Runtime, durationMs: number): void {
    const l = ctx.log;
    if (!counted(ctx)) return;
    const series = this.#seriesOf(this.#modelLabel(ctx, rt), l.upstream ?? "");
    const cls = Math.floor(l.status / 100);
    series.requests[cls >= 1 && cls <= 5 ? cls : 0]!++;
    if (l.attempts > 0) {
      series.attempts += l.attempts;
      if (l.attempts > 1) this.#retries += l.attempts - 1;
      (series.duration ??= new Histogram(BUCKETS_MS)).observe(
        durationMs,
      );
      if (l.ttfbMs !== undefined) {
        (series.ttfb ??= new Histogram(BUCKETS_MS)).observe(l.ttfbMs);
        this.#overhead.observe(Math.max(0, l.ttfbMs - l.upstreamMs));
      }
    }
    if (
      l.outcome !== undefined && l.outcome !== "complete" && l.outcome !== "client_abort" &&
      l.stream
    ) {
      this.#streamsBroken++;
    }
    const u = l.usage;
    if (u !== undefined) {
      const client = ctx.client?.name ?? "";
      const t = series.tokens.get(client);
      if (t === undefined) series.tokens.set(client, [u.promptTokens, u.completionTokens]);
      else {
        t[0] += u.promptTokens;
        t[1] += u.completionTokens;
      }
    }
  }

  /** Every series with its labels. */
  *#each(): Generator<[{ model: string; upstream: string }, Series]> {
    for (const [model, byUpstream] of this.#series) {
      for (const [upstream, series] of byUpstream) yield [{ model, upstream }, series];
    }
  }

  /**
   * Renders every metric.
   * @param app for in-flight and candidate states
   * @returns the Prometheus text exposition
   */
  render(app: StatsSource, cluster?: ClusterSnapshot): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    head("llm_balance_requests_total", "counter", "Requests by model, upstream and status class");
    for (const [l, series] of this.#each()) {
      series.requests.forEach((n, i) => {
        if (n > 0) {
          out.push(
            `llm_balance_requests_total${labels({ ...l, status: STATUS_CLASSES[i]! })} ${n}`,
          );
        }
      });
    }
    head("llm_balance_attempts_total", "counter", "Upstream attempts by model and final upstream");
    for (const [l, series] of this.#each()) {
      if (series.attempts > 0) {
        out.push(`llm_balance_attempts_total${labels(l)} ${series.attempts}`);
      }
    }
    head("llm_balance_retries_total", "counter", "Attempts beyond the first");
    out.push(`llm_balance_retries_total ${this.#retries}`);
    head("llm_balance_streams_interrupted_total", "counter", "Streams broken by the upstream");
    out.push(`llm_balance_streams_interrupted_total ${this.#streamsBroken}`);
    this.#histograms(out, "llm_balance_request_duration_seconds", "Request duration", "duration");
    this.#histograms(out, "llm_balance_ttfb_seconds", "Time to first byte", "ttfb");
    head(
      "llm_balance_overhead_seconds",
      "histogram",
      "Time spent in llm-balance before the first byte, upstream time excluded",
    );
    writeHistogram(out, "llm_balance_overhead_seconds", {}, this.#overhead);
    head("llm_balance_tokens_total", "counter", "Tokens by model, upstream, client and type");
    for (const [l, series] of this.#each()) {
      for (const [client, [prompt, completion]] of series.tokens) {
        out.push(`llm_balance_tokens_total${labels({ ...l, client, type: "prompt" })} ${prompt}`);
        out.push(
          `llm_balance_tokens_total${labels({ ...l, client, type: "completion" })} ${completion}`,
        );
      }
    }
    const now = app.now();
    head("llm_balance_in_flight", "gauge", "Requests in flight per candidate");
    const stateLines: string[] = [];
    for (const c of app.rt.candidates.values()) {
      const l = { upstream: c.upstream.name, key: c.mask };
      out.push(`llm_balance_in_flight${labels(l)} ${c.state.inFlight}`);
      stateLines.push(
        `llm_balance_candidate_state${labels({ ...l, state: statusOf(c.state, now) })} 1`,
      );
    }
    head("llm_balance_candidate_state", "gauge", "Current state of each candidate");
    out.push(...stateLines);
    this.#candidateCounters(out, app);
    this.#budgets(out, app, now);
    if (cluster !== undefined) this.#cluster(out, app, cluster);
    this.#queues(out, app);
    this.#routing(out, app);
    head("llm_balance_uptime_seconds", "gauge", "Seconds since start");
    out.push(`llm_balance_uptime_seconds ${((now - app.startedAt) / 1000).toFixed(3)}`);
    return out.join("\n") + "\n";
  }

  /** Counters kept in candidate state: the same numbers as `/stats` and `/v1/stats/*`. */
  #candidateCounters(out: string[], app: StatsSource): void {
    const cands = [...app.rt.candidates.values()];
    const counter = (name: string, help: string, value: (s: CandidateState) => number) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const c of cands) {
        out.push(`${name}${labels({ upstream: c.upstream.name, key: c.mask })} ${value(c.state)}`);
      }
    };
    counter("llm_balance_key_attempts_total", "Upstream attempts per key", (s) => s.requests);
    counter(
      "llm_balance_key_failures_total",
      "Failed upstream attempts per key",
      (s) => s.failures,
    );
    const name = "llm_balance_key_tokens_total";
    out.push(`# HELP ${name} Tokens per key and type`, `# TYPE ${name} counter`);
    for (const c of cands) {
      const l = { upstream: c.upstream.name, key: c.mask };
      out.push(`${name}${labels({ ...l, type: "prompt" })} ${c.state.promptTokens}`);
      out.push(`${name}${labels({ ...l, type: "completion" })} ${c.state.completionTokens}`);
    }
  }

  /** Every key's budgets as gauges (per model only for the models the configuration names). */
  #budgets(out: string[], app: StatsSource, now: number): void {
    const gauge = budgetGauges(out, app, (c) => budgetViews(c, now));
    gauge(
      "llm_balance_budget_limit",
      "Each key's budget (0: learned, no configured limit)",
      (v) => v.limit,
    );
    gauge("llm_balance_budget_used", "Used of each key's budget in its window", (v) => v.used);
    gauge(
      "llm_balance_budget_remaining",
      "Left of each key's budget (counted, or the provider's word when lower)",
      (v) => v.remaining,
    );
    gauge(
      "llm_balance_budget_reset_seconds",
      "Seconds until each key's budget window resets",
      (v) => v.resetsAt > 0 ? Math.max(0, Math.round((v.resetsAt - now) / 1000)) : 0,
    );
  }

  /**
   * How the shared Redis is, and the cluster's budgets read from it: the same series on every
   * instance (aggregate with `max`; the per-instance series above sum across instances).
   */
  #cluster(out: string[], app: StatsSource, cluster: ClusterSnapshot): void {
    const st = cluster.status;
    out.push(
      "# HELP llm_balance_redis_up Whether this instance reaches the shared Redis (1) or not (0)",
      "# TYPE llm_balance_redis_up gauge",
      `llm_balance_redis_up ${st.up ? 1 : 0}`,
      "# HELP llm_balance_redis_down_total Times this instance lost the shared Redis",
      "# TYPE llm_balance_redis_down_total counter",
      `llm_balance_redis_down_total ${st.downs}`,
    );
    const gauge = budgetGauges(out, app, (c) => cluster.budgets.get(c.id) ?? {});
    const same = "; the same on every instance: aggregate with max, not sum";
    gauge("llm_balance_cluster_budget_limit", `Each key's budget${same}`, (v) => v.limit);
    gauge(
      "llm_balance_cluster_budget_used",
      `Used of each key's budget by every instance together${same}`,
      (v) => v.used,
    );
    gauge(
      "llm_balance_cluster_budget_remaining",
      `Left of each key's budget for every instance together${same}`,
      (v) => v.remaining,
    );
  }

  /**
   * Affinity routing per pool (requests by result: `hit` followed a pin, the others did not;
   * pins held) and every key's pins and peak-EWMA latency.
   */
  #routing(out: string[], app: StatsSource): void {
    const routed = poolsOf(app.rt).filter((p) => p.affinity !== undefined);
    if (routed.length > 0) {
      const name = "llm_balance_affinity_requests_total";
      out.push(
        `# HELP ${name} Requests with an affinity value, by how they were routed: hit (followed ` +
          "its pin), new (pinned), moved (its key was out), detour (its key was busy or tried)",
        `# TYPE ${name} counter`,
      );
      for (const p of routed) {
        const pool = p.model === "*" ? "default" : p.model;
        for (const [result, n] of Object.entries(p.affinity!.counts)) {
          out.push(`${name}${labels({ pool, result })} ${n}`);
        }
      }
      out.push(
        "# HELP llm_balance_affinity_pins Affinity values pinned to a key, per pool",
        "# TYPE llm_balance_affinity_pins gauge",
      );
      for (const p of routed) {
        const pool = p.model === "*" ? "default" : p.model;
        out.push(`llm_balance_affinity_pins${labels({ pool })} ${p.affinity!.size}`);
      }
      const pins = pinsByKey(app.rt);
      out.push(
        "# HELP llm_balance_key_pins Affinity values pinned to each key",
        "# TYPE llm_balance_key_pins gauge",
      );
      for (const c of app.rt.candidates.values()) {
        const l = { upstream: c.upstream.name, key: c.mask };
        out.push(`llm_balance_key_pins${labels(l)} ${pins.get(c.id) ?? 0}`);
      }
    }
    const ewma = "llm_balance_key_latency_ewma_seconds";
    out.push(
      `# HELP ${ewma} Each key's peak-EWMA latency at its last answer (time to first byte ` +
        "for streams, whole time otherwise)",
      `# TYPE ${ewma} gauge`,
    );
    for (const c of app.rt.candidates.values()) {
      const ms = app.latency.ewma(c.id);
      if (ms === null) continue;
      out.push(
        `${ewma}${labels({ upstream: c.upstream.name, key: c.mask })} ${
          Number((ms / 1000).toFixed(6))
        }`,
      );
    }
  }

  /** Requests waiting for a key, per pool, and how long they waited. */
  #queues(out: string[], app: StatsSource): void {
    const rows: [string, QueueStats, number][] = [];
    for (const [pool, stats, length] of app.queues.pools()) {
      rows.push([pool.model === "*" ? "default" : pool.model, stats, length]);
    }
    const series = (
      name: string,
      type: string,
      help: string,
      value: (s: QueueStats, length: number) => number,
    ) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [pool, s, length] of rows) {
        out.push(`${name}${labels({ pool })} ${value(s, length)}`);
      }
    };
    series("llm_balance_queue_length", "gauge", "Requests waiting for a key", (_s, n) => n);
    series(
      "llm_balance_queue_waited_total",
      "counter",
      "Requests that waited and got a key",
      (s) => s.waited,
    );
    series(
      "llm_balance_queue_wait_seconds_total",
      "counter",
      "Seconds requests waited for a key",
      (s) => Number((s.waitedMs / 1000).toFixed(3)),
    );
    series(
      "llm_balance_queue_refused_total",
      "counter",
      "Requests refused: queue full",
      (s) => s.refused,
    );
  }

  #histograms(out: string[], name: string, help: string, which: "duration" | "ttfb"): void {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const [l, series] of this.#each()) {
      const h = series[which];
      if (h !== undefined) writeHistogram(out, name, l, h);
    }
  }
}

function writeHistogram(
  out: string[],
  name: string,
  l: Record<string, string>,
  h: Histogram,
): void {
  let cum = 0;
  for (let i = 0; i < h.buckets.length; i++) {
    cum += h.counts[i]!;
    out.push(`${name}_bucket${labels({ ...l, le: String(h.buckets[i]! / 1000) })} ${cum}`);
  }
  out.push(`${name}_bucket${labels({ ...l, le: "+Inf" })} ${h.count}`);
  out.push(`${name}_sum${labels(l)} ${(h.sum / 1000).toFixed(6)}`);
  out.push(`${name}_count${labels(l)} ${h.count}`);
}
