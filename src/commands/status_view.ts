/**
 * @module
 * The text view of `llm-balance status`: the dashboard's data (see
 * `src/admin/dashboard_types.ts`) as a header, one line per pool, the keys grouped by pool
 * (state, countdown, counts, budgets) and the last events, fitted to a width, colored on request,
 * and never passing the server's control characters to the terminal.
 */

import type { BudgetBar, DashboardData, DashboardKey, KeyState } from "../admin/dashboard_types.ts";

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

/** A pool with more keys than this lists only those not serving (unless `--all`). */
export const SUMMARIZE_OVER = 12;
/** At most this many keys not serving are listed per summarized pool. */
const LIST_AT_MOST = 40;
const EVENTS_SHOWN = 5;

const ANSI = { red: 31, green: 32, yellow: 33, cyan: 36, dim: 2, bold: 1 } as const;
type Paint = (style: keyof typeof ANSI, text: string) => string;

const STATE_STYLE: Record<KeyState, keyof typeof ANSI> = {
  serving: "green",
  half_open: "cyan",
  resting: "yellow",
  rate_limited: "yellow",
  spent: "yellow",
  ejected: "red",
  auth_failed: "red",
  unhealthy: "red",
  disabled: "dim",
};

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

/**
 * Replaces control characters (a terminal would obey them) with `?`.
 * @param s text from the server or the network
 * @returns the text, safe to print
 */
export function clean(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/**
 * Cuts text to a width, ending it with `…` when cut.
 * @param s the text
 * @param width the most characters to keep
 * @returns the text, at most `width` long (empty for a width of 0 or less)
 */
export function truncate(s: string, width: number): string {
  if (s.length <= width) return s;
  return width <= 0 ? "" : s.slice(0, width - 1) + "…";
}

/**
 * A duration, two units at most: `45s`, `4m12s`, `3h`, `3h05m`, `2d4h`; `now` for none left.
 * @param ms milliseconds (seconds are rounded up, as a countdown should)
 */
export function formatDuration(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (!(s > 0)) return "now";
  if (s < 60) return `${s}s`;
  const two = (a: number, ua: string, b: number, ub: string) =>
    b === 0 ? `${a}${ua}` : `${a}${ua}${String(b).padStart(2, "0")}${ub}`;
  if (s < 3600) return two(Math.floor(s / 60), "m", s % 60, "s");
  if (s < 86400) return two(Math.floor(s / 3600), "h", Math.floor(s % 3600 / 60), "m");
  const d = Math.floor(s / 86400);
  const h = Math.floor(s % 86400 / 3600);
  return h === 0 ? `${d}d` : `${d}d${h}h`;
}

function count(n: number): string {
  if (n < 100_000) return String(Math.round(n));
  if (n < 1e6) return `${Math.round(n / 1e3)}k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)}M`;
  return `${(n / 1e9).toFixed(1)}G`;
}

function rate(n: number): string {
  if (n === 0) return "0";
  if (n < 10) return n.toFixed(1);
  return n < 1000 ? String(Math.round(n)) : `${(n / 1000).toFixed(1)}k`;
}

function latency(ms: number | null): string {
  if (ms === null) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

const BUDGET_NAMES: Record<string, string> = {
  requests_per_day: "day",
  requests_per_minute: "min",
  tokens_per_day: "tok/day",
  tokens_per_minute: "tok/min",
  model_requests_per_day: "day",
  max_concurrency: "conc",
};

function usedShare(b: BudgetBar): number {
  if (b.limit > 0) return b.used / b.limit;
  return b.remaining <= 0 ? 1 : 0;
}

/**
 * A key's budgets in a few words, the fullest first: `day 1999/2000 (resets in 3h), min 3/60
 * (resets in 12s)`; when that does not fit `width`, shorter, and those that still do not fit
 * counted: `day 1999/2000 (3h) +1`.
 * @param budgets the key's budgets
 * @param options the data's time (resets count from it), the width to fit @default Infinity
 */
export function formatBudgets(
  budgets: readonly BudgetBar[],
  options: { nowMs: number; width?: number },
): string {
  const width = options.width ?? Infinity;
  const sorted = [...budgets].sort((a, b) => usedShare(b) - usedShare(a));
  const say = (b: BudgetBar, short: boolean) => {
    const name = BUDGET_NAMES[b.name] ?? b.name;
    const label = b.model === null ? name : `${b.model} ${name}`;
    const value = b.limit > 0 ? `${count(b.used)}/${count(b.limit)}` : `${count(b.remaining)} left`;
    const left = b.resets_at_ms === null ? "" : formatDuration(b.resets_at_ms - options.nowMs);
    const reset = left === "" ? "" : short ? ` (${left})` : ` (resets in ${left})`;
    return clean(`${label} ${value}${reset}`);
  };
  const long = sorted.map((b) => say(b, false));
  if (long.join(", ").length <= width) return long.join(", ");
  // too long: the short form, as many as fit, and how many more
  const parts = sorted.map((b) => say(b, true));
  for (let n = parts.length; n > 0; n--) {
    const more = n < parts.length ? ` +${parts.length - n}` : "";
    const text = parts.slice(0, n).join(", ") + more;
    if (text.length <= width) return text;
    if (n === 1) return truncate(parts[0]!, width - more.length) + more;
  }
  return "";
}

interface Column {
  head: string;
  right?: boolean;
  max: number;
}

/** Pads each cell to its column's width (cells are plain text), then paints some. */
function row(
  cells: readonly string[],
  cols: readonly Column[],
  widths: readonly number[],
  paint: (i: number, padded: string) => string = (_, p) => p,
): string {
  return cells.map((c, i) => {
    const w = widths[i]!;
    const t = truncate(c, w);
    const padded = cols[i]!.right ? t.padStart(w) : i === cells.length - 1 ? t : t.padEnd(w);
    return paint(i, padded);
  }).join("  ").trimEnd();
}

function widthsOf(cols: readonly Column[], rows: readonly (readonly string[])[]): number[] {
  return cols.map((c, i) =>
    Math.min(c.max, Math.max(c.head.length, ...rows.map((r) => r[i]!.length)))
  );
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
  const paint: Paint = options.color
    ? (style, text) => `\x1b[${ANSI[style]}m${text}\x1b[0m`
    : (_, text) => text;
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
    latency(p.latency_p50_ms),
    latency(p.latency_p95_ms),
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
      return total === 0 ? "0" : `${spark(a, bars)} ${count(total)}`;
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

const KEY_COLS: Column[] = [
  { head: "KEY", max: 20 },
  { head: "NAME", max: 14 },
  { head: "UPSTREAM", max: 14 },
  { head: "STATE", max: 12 },
  { head: "IN", right: true, max: 4 },
  { head: "REQS", right: true, max: 6 },
  { head: "FAIL", right: true, max: 6 },
  { head: "P50", right: true, max: 6 },
  { head: "BUDGETS", max: 200 },
];

const BUDGETS_AT_LEAST = 24;

/** Narrows the widest of some columns, one character at a time, until `over()` is 0 or less. */
function shrink(widths: number[], which: readonly number[], over: () => number, least: number) {
  while (over() > 0) {
    const widest = which.reduce((a, b) => widths[b]! > widths[a]! ? b : a, which[0]!);
    if (widths[widest]! <= least) return;
    widths[widest]!--;
  }
}

function formatKeys(
  data: DashboardData,
  options: { width: number; paint: Paint; all: boolean },
): string[] {
  const { width, paint } = options;
  const byId = new Map(data.keys.map((k) => [k.id, k]));
  const groups = data.pools.map((pool) => {
    const keys = pool.keys.map((id) => byId.get(id)).filter((k) => k !== undefined);
    const small = options.all || keys.length <= SUMMARIZE_OVER;
    const listed = small ? keys : keys.filter((k) => k.state !== "serving");
    const rest = small ? [] : keys.filter((k) => k.state === "serving");
    return { pool, listed: listed.slice(0, small ? undefined : LIST_AT_MOST), rest, keys };
  });
  const named = data.keys.some((k) => k.name !== null && k.name !== "");
  const cols = named ? KEY_COLS : KEY_COLS.filter((c) => c.head !== "NAME");
  const cellsOf = (k: DashboardKey): string[] => {
    const cells = [
      clean(k.mask),
      clean(k.name ?? ""),
      clean(k.upstream),
      clean(k.state).replace("_", " "),
      String(k.in_flight),
      count(k.requests),
      count(k.failures),
      latency(k.latency_p50_ms),
      formatBudgets(k.budgets, { nowMs: data.now_ms }),
    ];
    if (!named) cells.splice(1, 1);
    return cells;
  };
  const all = groups.flatMap((g) => g.listed.map(cellsOf));
  const widths = widthsOf(cols, all);
  // the budgets take what is left of the line (names and upstreams give way first, down to
  // 8); too little left: they go under the key, and the other columns give way further
  const texts = cols.flatMap((c, i) => c.head === "NAME" || c.head === "UPSTREAM" ? [i] : []);
  const fixed = () => 2 + widths.slice(0, -1).reduce((a, b) => a + b + 2, 0);
  const natural = [...widths];
  shrink(widths, texts, () => fixed() + BUDGETS_AT_LEAST - width, 8);
  const inline = width - fixed() >= BUDGETS_AT_LEAST;
  if (!inline) {
    widths.splice(0, widths.length, ...natural);
    shrink(widths, texts, () => fixed() - 2 - width, 4);
    shrink(widths, [0], () => fixed() - 2 - width, 8);
  }
  const used = fixed();
  widths[widths.length - 1] = inline ? width - used : 0;
  const shownCols = inline ? cols : cols.slice(0, -1);
  const lines = [paint("bold", "  " + row(shownCols.map((c) => c.head), shownCols, widths))];
  const stateCol = shownCols.findIndex((c) => c.head === "STATE");
  for (const g of groups) {
    const usable = `${g.pool.usable}/${g.pool.total} usable`;
    lines.push(
      paint("bold", truncate(clean(g.pool.model), width - usable.length - 2)) + "  " +
        paint(g.pool.usable === 0 ? "red" : "dim", usable),
    );
    for (const k of g.listed) {
      const cells = cellsOf(k);
      cells.pop();
      const budgets = formatBudgets(k.budgets, {
        nowMs: data.now_ms,
        width: inline ? width - used : width - 6,
      });
      if (inline) cells.push(budgets);
      lines.push(
        "  " +
          row(
            cells,
            shownCols,
            widths,
            (i, t) => i === stateCol ? paint(STATE_STYLE[k.state] ?? "dim", t) : t,
          ),
      );
      const notes: string[] = [];
      if (k.state !== "serving") {
        const back = k.until_ms === null
          ? ""
          : `back in ${formatDuration(k.until_ms - data.now_ms)}`;
        const why = [k.reason === null ? "" : clean(k.reason), back].filter((s) => s !== "");
        if (why.length > 0) notes.push(why.join(", "));
      }
      if (!inline && budgets !== "") notes.push(budgets);
      for (const n of notes) lines.push(paint("dim", truncate(`      ${n}`, width)));
    }
    const hidden = g.keys.length - g.listed.length - g.rest.length;
    if (hidden > 0) {
      lines.push(truncate(`  … and ${hidden} more not serving (--all lists every key)`, width));
    }
    if (g.rest.length > 0) {
      const sum = (f: (k: DashboardKey) => number) => g.rest.reduce((a, k) => a + f(k), 0);
      lines.push(paint(
        "dim",
        truncate(
          `  + ${g.rest.length} serving: ${count(sum((k) => k.requests))} requests, ${
            count(sum((k) => k.failures))
          } failures, ${sum((k) => k.in_flight)} in flight (--all lists them)`,
          width,
        ),
      ));
    }
    if (g.keys.length === 0) lines.push("  (no keys)");
  }
  return lines;
}
