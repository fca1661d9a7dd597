/**
 * @module
 * The key table of `llm-balance status`: the keys grouped by pool, each with its state (and why,
 * and for how long), counts, latency and budgets, fitted to a width; a pool of many keys lists
 * only those not serving and sums up the others.
 */

import type { BudgetBar, DashboardData, DashboardKey, KeyState } from "../admin/dashboard_types.ts";
import {
  clean,
  type Column,
  formatCount,
  formatDuration,
  formatLatency,
  type Paint,
  row,
  type Style,
  truncate,
  widthsOf,
} from "./status_text.ts";

/** A pool with more keys than this lists only those not serving (unless `--all`). */
export const SUMMARIZE_OVER = 12;
/** At most this many keys not serving are listed per summarized pool. */
const LIST_AT_MOST = 40;

const STATE_STYLE: Record<KeyState, Style> = {
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
    const value = b.limit > 0
      ? `${formatCount(b.used)}/${formatCount(b.limit)}`
      : `${formatCount(b.remaining)} left`;
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

/**
 * The key table: a heading, then for each pool a line (its model, how many keys are usable) and
 * its keys, one line each, with a note under a key not serving (why, when it is back). Budgets
 * take what is left of the line, or go under their key when too little is left. A pool of more
 * than {@linkcode SUMMARIZE_OVER} keys lists at most 40 of those not serving and sums up the
 * serving ones, unless `all`. Every line fits `width`; nothing but masks names a key.
 * @param data what `/dashboard/data` answered
 * @param options the width to fit, the paint (colors or none), whether to list every key
 * @returns the table's lines
 */
export function formatKeys(
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
      formatCount(k.requests),
      formatCount(k.failures),
      formatLatency(k.latency_p50_ms),
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
          `  + ${g.rest.length} serving: ${formatCount(sum((k) => k.requests))} requests, ${
            formatCount(sum((k) => k.failures))
          } failures, ${sum((k) => k.in_flight)} in flight (--all lists them)`,
          width,
        ),
      ));
    }
    if (g.keys.length === 0) lines.push("  (no keys)");
  }
  return lines;
}
