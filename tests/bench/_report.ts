/**
 * @module
 * Results of `deno task bench`: rows of measurements, medians and percentiles, the markdown
 * tables and the ratios checked against the project's targets.
 */

/** The scenarios of the bench, in report order. */
export const SCENARIOS = [
  "throughput",
  "paired",
  "latency",
  "ttfb",
  "streams",
  "pool",
  "budgets",
  "redis",
] as const;
/** One scenario. */
export type Scenario = typeof SCENARIOS[number];

/** One measured target in one scenario (medians over rounds). */
export interface Row {
  target: string;
  /** Requests (or streams) per second. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** User + system CPU time of the server process per request, in µs. */
  cpuUsPerReq: number;
  /** Peak RSS (VmHWM) of the server process during the measurement. */
  peakRssMb: number;
  /** Failed requests (socket errors, timeouts, non-2xx answers). */
  errors: number;
  requests: number;
  note?: string;
  /** Open streams only: how many streams were held at once. */
  streams?: number;
  /** Open streams only: RSS of the server process before the streams opened. */
  rssBeforeMb?: number;
  /** Open streams only: RSS at the end of the hold. */
  heldRssMb?: number;
  /** Open streams only: (peak RSS - RSS before) / streams open, in KB. */
  kbPerStream?: number;
  /** Open streams only: RSS growth during the hold (least-squares slope), in MB/s. */
  growthMbPerS?: number;
}

/** One measurement of one target. */
export type Sample = Omit<Row, "target" | "note">;

/** A measure derived from the rows, checked against a target when the project set one. */
export interface Check {
  measure: string;
  value: number;
  /** `x` for a ratio, else a unit such as `ms` or `MB`. */
  unit: string;
  target?: string;
  pass?: boolean;
}

/**
 * The median of the numbers that are not NaN.
 * @param values any order
 * @returns NaN when there is none
 */
export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * A percentile by the nearest-rank method.
 * @param values any order
 * @param p from 0 to 100
 * @returns NaN for no values
 */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[
    Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/**
 * Sums up rounds: medians of rates, latencies and CPU, the highest peak RSS, summed counts.
 * @param target the row's name
 * @param samples one per round
 */
export function medianRow(target: string, samples: Sample[]): Row {
  return {
    target,
    rps: median(samples.map((s) => s.rps)),
    p50Ms: median(samples.map((s) => s.p50Ms)),
    p99Ms: median(samples.map((s) => s.p99Ms)),
    cpuUsPerReq: median(samples.map((s) => s.cpuUsPerReq)),
    peakRssMb: Math.max(...samples.map((s) => s.peakRssMb)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
    requests: samples.reduce((sum, s) => sum + s.requests, 0),
  };
}

/**
 * The least-squares slope of points, e.g. RSS over time.
 * @param points `[x, y]` pairs
 * @returns dy/dx, or NaN with fewer than two distinct x
 */
export function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  let sx = 0;
  let sy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

function fmt(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

/**
 * A markdown table of one scenario.
 * @param title the heading
 * @param rows one per target
 */
export function table(title: string, rows: Row[]): string {
  const line = (r: Row) =>
    `| ${r.target} | ${fmt(r.rps, 0)} | ${fmt(r.p50Ms, 3)} | ${fmt(r.p99Ms, 3)} | ` +
    `${fmt(r.cpuUsPerReq, 1)} | ${fmt(r.peakRssMb, 1)} | ${r.errors} | ${r.note ?? ""} |`;
  return [
    `### ${title}`,
    "",
    "| target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | errors | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map(line),
    "",
  ].join("\n");
}

/**
 * The markdown table of the open-streams scenario: per target and number of streams, how fast
 * they opened, time to first byte, CPU per relayed event during the hold, and memory.
 * @param title the heading
 * @param rows one per target and number of streams
 */
export function streamsTable(title: string, rows: Row[]): string {
  const mb = (v: number | undefined) => fmt(v ?? NaN, 1);
  const line = (r: Row) =>
    `| ${r.target} | ${r.streams ?? "-"} | ${fmt(r.rps, 0)} | ${fmt(r.p50Ms, 1)} | ` +
    `${fmt(r.p99Ms, 1)} | ${fmt(r.cpuUsPerReq, 1)} | ${mb(r.rssBeforeMb)} | ` +
    `${mb(r.peakRssMb)} | ${mb(r.kbPerStream)} | ${mb(r.heldRssMb)} | ` +
    `${fmt(r.growthMbPerS ?? NaN, 2)} | ${r.errors} | ${r.note ?? ""} |`;
  return [
    `### ${title}`,
    "",
    "| target | streams | opened/s | TTFB p50 ms | TTFB p99 ms | CPU µs/event | RSS before MB | " +
    "peak RSS MB | KB/stream | RSS at end MB | growth MB/s | errors | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map(line),
    "",
  ].join("\n");
}

/**
 * The markdown table of the checks.
 * @param checks from {@link ratioChecks}
 */
export function checksTable(checks: Check[]): string {
  const value = (c: Check) =>
    c.unit === "x" ? `${fmt(c.value, 2)}x` : `${fmt(c.value, 3)} ${c.unit}`;
  const result = (c: Check) => c.pass === undefined ? "" : c.pass ? "PASS" : "FAIL";
  return [
    "### Ratios and targets",
    "",
    "| measure | value | target | result |",
    "|---|---:|---|---|",
    ...checks.map((c) => `| ${c.measure} | ${value(c)} | ${c.target ?? ""} | ${result(c)} |`),
    "",
  ].join("\n");
}

/**
 * The median over rounds of one target's requests per second over another's.
 * @param base the baseline's samples, one per round
 * @param other the other target's samples, in the same rounds
 * @returns NaN when no round has both
 */
export function roundRatio(base: readonly Sample[], other: readonly Sample[]): number {
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(base.length, other.length); i++) {
    ratios.push(other[i]!.rps / base[i]!.rps);
  }
  return median(ratios.filter(Number.isFinite));
}

/** Median per-round ratios (see {@linkcode roundRatio}). */
export interface PairedRatios {
  /**
   * llm-balance / passthrough requests in the rounds taken in turn, each round's two measured
   * one right after the other (steadier than the ratio of medians on a machine whose speed
   * drifts within minutes).
   */
  inTurn?: number;
  /** llm-balance / passthrough requests, both under load at the same time. */
  throughput?: number;
  /** large pool / small pool requests. */
  pool?: number;
  /** budgets and the persisted store on / off requests. */
  budgets?: number;
  /** budgets with state shared in Redis / the same budgets with the embedded store. */
  redis?: number;
}

/**
 * Derives the ratios of the targets from the rows: llm-balance vs the pass-through and
 * the mock directly, added latency and TTFB, memory with open streams, pool scale, budgets and
 * the embedded store vs Redis.
 * @param results rows by scenario (targets named `direct`, `passthrough`, `llm-balance`; the
 *   pool scenario's first row is the small pool, its second the large one; the budgets
 *   scenario's first row is off, its second on; the redis scenario's first row is the embedded
 *   store, its second Redis)
 * @param extra checks computed elsewhere, appended
 * @param paired ratios measured side by side; the pool's replaces the ratio of its rows
 */
export function ratioChecks(
  results: Partial<Record<Scenario, Row[]>>,
  extra: Check[],
  paired: PairedRatios = {},
): Check[] {
  const checks: Check[] = [];
  const row = (scenario: Scenario, target: string) =>
    results[scenario]?.find((r) => r.target === target);
  const add = (measure: string, value: number, unit: string, target?: string, pass?: boolean) =>
    checks.push({
      measure,
      value,
      unit,
      ...(target === undefined ? {} : { target }),
      ...(pass === undefined ? {} : { pass }),
    });

  const [proxy, pass, direct] = ["llm-balance", "passthrough", "direct"].map((t) =>
    row("throughput", t)
  );
  if (proxy && pass) {
    const ratio = paired.inTurn ?? proxy.rps / pass.rps;
    add("throughput llm-balance / passthrough", ratio, "x", ">= 0.8x (issue 3)", ratio >= 0.8);
    if (paired.inTurn !== undefined) {
      add("throughput llm-balance / passthrough, ratio of the medians", proxy.rps / pass.rps, "x");
    }
    add("CPU per request llm-balance / passthrough", proxy.cpuUsPerReq / pass.cpuUsPerReq, "x");
  }
  if (paired.throughput !== undefined) {
    const ratio = paired.throughput;
    add(
      "throughput llm-balance / passthrough, side by side (paired)",
      ratio,
      "x",
      ">= 0.8x (issue 3), >= 0.9x (issue 7)",
      ratio >= 0.8,
    );
  }
  if (proxy && direct) add("throughput llm-balance / direct", proxy.rps / direct.rps, "x");
  if (pass && direct) add("throughput passthrough / direct", pass.rps / direct.rps, "x");

  const [latProxy, latPass, latDirect] = ["llm-balance", "passthrough", "direct"].map((t) =>
    row("latency", t)
  );
  if (latProxy && latDirect) {
    const p50 = latProxy.p50Ms - latDirect.p50Ms;
    const p99 = latProxy.p99Ms - latDirect.p99Ms;
    add("1 connection: p50 added vs direct", p50, "ms", "<= 0.3 ms (issue 7)", p50 <= 0.3);
    add("1 connection: p99 added vs direct", p99, "ms", "<= 1.5 ms (issue 7)", p99 <= 1.5);
  }
  if (latProxy && latPass) {
    add("1 connection: p50 added vs passthrough", latProxy.p50Ms - latPass.p50Ms, "ms");
  }

  const [ttfbProxy, ttfbPass, ttfbDirect] = ["llm-balance", "passthrough", "direct"].map((t) =>
    row("ttfb", t)
  );
  if (ttfbProxy && ttfbDirect) {
    const added = ttfbProxy.p50Ms - ttfbDirect.p50Ms;
    add("streaming TTFB added vs direct (p50)", added, "ms", "< 1 ms", added < 1);
  }
  if (ttfbProxy && ttfbPass) {
    add("streaming TTFB added vs passthrough (p50)", ttfbProxy.p50Ms - ttfbPass.p50Ms, "ms");
  }

  const streamRows = results.streams ?? [];
  const sizes = [...new Set(streamRows.map((r) => r.streams ?? 0))].sort((a, b) => a - b);
  for (const n of sizes) {
    const at = (target: string) => streamRows.find((r) => r.target === target && r.streams === n);
    const [lb, pt] = [at("llm-balance"), at("passthrough")];
    const held = n > 0 ? `${n} open streams` : "open streams";
    if (lb && n === sizes[0]) {
      add(
        `peak RSS with ${held}, llm-balance`,
        lb.peakRssMb,
        "MB",
        "<= 100 MB at 1,000 (issue 7)",
        n === 1000 ? lb.peakRssMb <= 100 : undefined,
      );
    }
    if (lb?.kbPerStream !== undefined) {
      add(
        `KB per stream with ${held}, llm-balance`,
        lb.kbPerStream,
        "KB",
        "<= 120 KB (issue 15)",
        lb.kbPerStream <= 120,
      );
    }
    if (lb?.growthMbPerS !== undefined) {
      add(
        `RSS growth while ${held} are held, llm-balance`,
        lb.growthMbPerS,
        "MB/s",
        "flat: <= 0.5 MB/s (issue 15)",
        lb.growthMbPerS <= 0.5,
      );
    }
    if (lb && pt) {
      add(`peak RSS with ${held}, llm-balance / passthrough`, lb.peakRssMb / pt.peakRssMb, "x");
    }
  }

  const [small, large] = results.pool ?? [];
  if (small && large) {
    const names = `${large.target} / ${small.target}`;
    const ratio = paired.pool ?? large.rps / small.rps;
    add(`throughput ${names}`, ratio, "x", ">= 0.95x (issue 7)", ratio >= 0.95);
    add(`CPU per request ${names}`, large.cpuUsPerReq / small.cpuUsPerReq, "x");
  }
  const [off, on] = results.budgets ?? [];
  if (off && on) {
    const names = `${on.target} / ${off.target}`;
    const ratio = paired.budgets ?? on.rps / off.rps;
    add(`throughput ${names}`, ratio, "x", ">= 0.95x (issue 17)", ratio >= 0.95);
    add(`CPU per request ${names}`, on.cpuUsPerReq / off.cpuUsPerReq, "x");
  }
  const [embedded, shared] = results.redis ?? [];
  if (embedded && shared) {
    const names = `${shared.target} / ${embedded.target}`;
    const ratio = paired.redis ?? shared.rps / embedded.rps;
    add(`throughput ${names}`, ratio, "x", ">= 0.90x (issue 18)", ratio >= 0.9);
    add(`CPU per request ${names}`, shared.cpuUsPerReq / embedded.cpuUsPerReq, "x");
  }
  return [...checks, ...extra];
}
