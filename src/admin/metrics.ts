/**
 * @module
 * Prometheus metrics: request counters, attempts, retries, latency and time-to-first-byte
 * histograms, tokens, in-flight and candidate states, and the proxy's own overhead. Labels
 * never hold keys: candidates appear by upstream and mask.
 */

import type { RequestContext } from "../context.ts";
import type { App } from "../app.ts";
import { statusOf } from "../health/availability.ts";
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

/** Collects request metrics and renders them in the Prometheus text format. */
export class Metrics {
  #requests = new Map<string, number>();
  #attempts = new Map<string, number>();
  #tokens = new Map<string, number>();
  #duration = new Map<string, Histogram>();
  #ttfb = new Map<string, Histogram>();
  #overhead = new Histogram(OVERHEAD_BUCKETS_MS);
  #retries = 0;
  #streamsBroken = 0;

  /**
   * Records a finished request.
   * @param ctx the request's context, after its response ended
   */
  observe(ctx: RequestContext): void {
    const l = ctx.log;
    if (l.attempts === 0) {
      const path = ctx.url.pathname;
      if (!path.startsWith("/v1/") || path.startsWith("/v1/stats")) return;
    }
    const model = l.model ?? "";
    const upstream = l.upstream ?? "";
    const statusClass = `${Math.floor(l.status / 100)}xx`;
    const key = `${model}\u0000${upstream}\u0000${statusClass}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    if (l.attempts > 0) {
      const ak = `${model}\u0000${upstream}`;
      this.#attempts.set(ak, (this.#attempts.get(ak) ?? 0) + l.attempts);
      if (l.attempts > 1) this.#retries += l.attempts - 1;
      const total = performance.now() - ctx.startedAt;
      let h = this.#duration.get(ak);
      if (h === undefined) this.#duration.set(ak, h = new Histogram(BUCKETS_MS));
      h.observe(total);
      if (l.ttfbMs !== undefined) {
        let t = this.#ttfb.get(ak);
        if (t === undefined) this.#ttfb.set(ak, t = new Histogram(BUCKETS_MS));
        t.observe(l.ttfbMs);
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
      for (
        const [type, n] of [["prompt", u.promptTokens], ["completion", u.completionTokens]] as const
      ) {
        const tk = `${model}\u0000${upstream}\u0000${ctx.client?.name ?? ""}\u0000${type}`;
        this.#tokens.set(tk, (this.#tokens.get(tk) ?? 0) + n);
      }
    }
  }

  /**
   * Renders every metric.
   * @param app for in-flight and candidate states
   * @returns the Prometheus text exposition
   */
  render(app: App): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    head("llm_balance_requests_total", "counter", "Requests by model, upstream and status class");
    for (const [k, v] of this.#requests) {
      const [model, upstream, status] = k.split("\u0000") as [string, string, string];
      out.push(`llm_balance_requests_total${labels({ model, upstream, status })} ${v}`);
    }
    head("llm_balance_attempts_total", "counter", "Upstream attempts by model and final upstream");
    for (const [k, v] of this.#attempts) {
      const [model, upstream] = k.split("\u0000") as [string, string];
      out.push(`llm_balance_attempts_total${labels({ model, upstream })} ${v}`);
    }
    head("llm_balance_retries_total", "counter", "Attempts beyond the first");
    out.push(`llm_balance_retries_total ${this.#retries}`);
    head("llm_balance_streams_interrupted_total", "counter", "Streams broken by the upstream");
    out.push(`llm_balance_streams_interrupted_total ${this.#streamsBroken}`);
    this.#histograms(
      out,
      "llm_balance_request_duration_seconds",
      "Request duration",
      this.#duration,
    );
    this.#histograms(out, "llm_balance_ttfb_seconds", "Time to first byte", this.#ttfb);
    head(
      "llm_balance_overhead_seconds",
      "histogram",
      "Time spent in llm-balance before the first byte, upstream time excluded",
    );
    writeHistogram(out, "llm_balance_overhead_seconds", {}, this.#overhead);
    head("llm_balance_tokens_total", "counter", "Tokens by model, upstream, client and type");
    for (const [k, v] of this.#tokens) {
      const [model, upstream, client, type] = k.split("\u0000") as [string, string, string, string];
      out.push(`llm_balance_tokens_total${labels({ model, upstream, client, type })} ${v}`);
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
    head("llm_balance_uptime_seconds", "gauge", "Seconds since start");
    out.push(`llm_balance_uptime_seconds ${((now - app.startedAt) / 1000).toFixed(3)}`);
    return out.join("\n") + "\n";
  }

  /** Counters kept in candidate state: the same numbers as `/stats` and `/v1/stats/*`. */
  #candidateCounters(out: string[], app: App): void {
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

  #histograms(out: string[], name: string, help: string, map: Map<string, Histogram>): void {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const [k, h] of map) {
      const [model, upstream] = k.split("\u0000") as [string, string];
      writeHistogram(out, name, { model, upstream }, h);
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
