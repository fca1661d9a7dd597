/**
 * @module
 * The text view of `llm-balance status`: the dashboard's data (see
 * `src/admin/dashboard_types.ts`) as a header, one line per pool, the keys grouped by pool
 * (state, countdown, counts, budgets) and the last events, fitted to a width, colored on request,
 * and never passing the server's control characters to the terminal. The key table is drawn by
 * `status_keys.ts`, the small text tools are in `status_text.ts`.
 */

import type { DashboardData } from "../admin/dashboard_types.ts";
import { formatKeys } from "./status_keys.ts";
import {
  clean,
  type Column,
  formatCount,
  formatDuration,
  formatLatency,
  painter,
  row,
  truncate,
  widthsOf,
} from "./status_text.ts";

// what this module exported before the key table and the text tools moved out
export { formatBudgets, SUMMARIZE_OVER } from "./status_keys.ts";
export { clean, formatDuration, truncate } from "./status_text.ts";

/** Options of {@linkcode formatStatus}. */
export interface FormatOptions {
  /** The URL shown in the header. */
  url: string;
  /** Use ANSI colors. @default false */
  color?: boolean;
  /** Width to fit. @default 100 */
  columns?: number;
  /** List every key, even in pools of many keys. @default false */
  all?: boolean;
}

const EVENTS_SHOWN = 5;

/**
 * A URL as shown: without any user or password it may carry.
 * @param url the URL
 * @returns the URL without credentials or a trailing slash; as given when it does not parse
 */
export function shown(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.href.replace(/\/+$/, "");
  } catch {
    return url;
  }
}

function rate(n: number): string {
  if (n === 0) return "0";
  if (n < 10) return n.toFixed(1);
  return n < 1000 ? String(Math.round(n)) : `${(n / 1000).toFixed(1)}k`;
}

function spark(values: readonly number[], width: number): string {
  if (values.length === 0) return "";
  const per = Math.ceil(values.length / width);
  const sums: number[] = [];
  for (let i = 0; i < values.length; i += per) {
    sums.push(values.slice(i, i + per).reduce((a, b) => a + b, 0));
  }
  const top = Math.max(...sums);
  const bars = "▁▂▃▄▅▆▇█";
  return sums.map((v) => top === 0 ? bars[0] : bars[Math.round(v / top * 7)]).join("");
}

/**
 * Renders the data as text: a header, one line per pool, the keys grouped by pool (a pool of
 * more than {@linkcode SUMMARIZE_OVER} keys lists those not serving and sums up the others,
 * unless `all`), the last events. Every line fits `columns`; nothing but masks names a key.
 * @param data what `/dashboard/data` answered
 * @param options the URL shown, colors, width, whether to list every key
 * @returns the text, ending with a newline
 */
export function formatStatus(data: DashboardData, options: FormatOptions): string {
  const width = Math.max(40, options.columns ?? 100);
  const paint = painter(options.color ?? false);
  const lines: string[] = [];
  const fit = (text: string) => truncate(text, width);

  const verdict = data.ok ? "OK" : "NOT OK";
  const redis = data.redis === null ? "" : `  redis ${data.redis.up ? "up" : "DOWN"}`;
  const head = truncate(
    `${shown(options.url)}  llm-balance ${clean(data.version)}  up ${
      data.uptime_s < 1 ? "0s" : formatDuration(data.uptime_s * 1000)
    }${redis}`,
    width - verdict.length - 2,
  );
  lines.push(`${paint(data.ok ? "green" : "red", verdict)}  ${head}`);
  const stuck = data.pools.filter((p) => p.usable === 0).map((p) => clean(p.model));
  if (stuck.length > 0) lines.push(paint("red", fit(`no usable key in ${stuck.join(", ")}`)));

  // pools
  const poolCols: Column[] = [
    { head: "POOL", max: 28 },
    { head: "STRATEGY", max: 18 },
    { head: "KEYS", right: true, max: 11 },
    { head: "REQ/S", right: true, max: 6 },
    { head: "ERR/S", right: true, max: 6 },
    { head: "P50", right: true, max: 6 },
    { head: "P95", right: true, max: 6 },
    { head: "QUEUE", right: true, max: 6 },
  ];
  const poolRows = data.pools.map((p) => [
    clean(p.model),
    clean(p.strategy),
    `${p.usable}/${p.total}`,
    rate(p.requests_per_s),
    rate(p.errors_per_s),
    formatLatency(p.latency_p50_ms),
    formatLatency(p.latency_p95_ms),
    String(p.queue),
  ]);
  const pw = widthsOf(poolCols, poolRows);
  lines.push("", paint("bold", row(poolCols.map((c) => c.head), poolCols, pw)));
  for (const [i, cells] of poolRows.entries()) {
    const p = data.pools[i]!;
    lines.push(row(cells, poolCols, pw, (col, text) => {
      if (col === 2 && p.usable === 0) return paint("red", text);
      if (col === 4 && p.errors_per_s > 0) return paint("yellow", text);
      if (col === 7 && p.queue > 0) return paint("yellow", text);
      return text;
    }));
  }
  if (data.pools.length === 0) lines.push("(no pools)");
  // the shape check passes over the series: take them only when they are there
  const series: { requests?: unknown; errors?: unknown } | null | undefined = data.series;
  const requests = Array.isArray(series?.requests) ? series.requests : [];
  const errors = Array.isArray(series?.errors) ? series.errors : [];
  if (requests.length > 0) {
    const bars = Math.max(8, Math.min(30, Math.floor((width - 50) / 2)));
    const graph = (a: readonly number[]) => {
      const total = a.reduce((x, y) => x + y, 0);
      return total === 0 ? "0" : `${spark(a, bars)} ${formatCount(total)}`;
    };
    lines.push(fit(`last 15 min: requests ${graph(requests)}  errors ${graph(errors)}`));
  }

  lines.push("", ...formatKeys(data, { width, paint, all: options.all ?? false }));

  // events
  if (data.events.length > 0) {
    lines.push("", paint("bold", "LAST EVENTS"));
    for (const e of data.events.slice(0, EVENTS_SHOWN)) {
      const age = `${formatDuration(data.now_ms - e.at_ms)} ago`.padStart(10);
      const who = [e.upstream, e.key].filter((v) => v !== null && v !== undefined).join(" ");
      const level = truncate(clean(String(e.level ?? "info")), 5).padEnd(5);
      const text = truncate(
        clean(`${who === "" ? "" : `${who}  `}${e.message}`),
        width - 19,
      );
      const style = e.level === "error" ? "red" : e.level === "warn" ? "yellow" : "dim";
      lines.push(`${age}  ${paint(style, level)}  ${text}`);
    }
  }
  return lines.join("\n") + "\n";
}
