/**
 * @module
 * The small text tools of `llm-balance status`'s view, shared by its pool lines
 * (`status_view.ts`) and its key table (`status_keys.ts`): colors, control characters kept from
 * the terminal, cutting to a width, durations, counts and latencies in a few characters, and
 * padded table rows.
 */

const ANSI = { red: 31, green: 32, yellow: 33, cyan: 36, dim: 2, bold: 1 } as const;

/** A style a {@linkcode Paint} knows: a color, `dim` or `bold`. */
export type Style = keyof typeof ANSI;

/** Paints text in a style (or leaves it plain: see {@linkcode painter}). */
export type Paint = (style: Style, text: string) => string;

/**
 * The paint of a view: ANSI colors, or none.
 * @param color whether to use ANSI colors
 * @returns a {@linkcode Paint} wrapping text in the style's escape and a reset, or one returning
 * the text as given
 */
export function painter(color: boolean): Paint {
  return color ? (style, text) => `\x1b[${ANSI[style]}m${text}\x1b[0m` : (_, text) => text;
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

/**
 * A count in a few characters: `1234`, `250k`, `1.5M`, `12M`, `3.0G`.
 * @param n the count
 * @returns the count, whole below 100,000, else in k, M or G
 */
export function formatCount(n: number): string {
  if (n < 100_000) return String(Math.round(n));
  if (n < 1e6) return `${Math.round(n / 1e3)}k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)}M`;
  return `${(n / 1e9).toFixed(1)}G`;
}

/**
 * A latency in a few characters: `820ms`, `2.1s`, `12s`; `-` for none.
 * @param ms milliseconds, or `null` when nothing was measured
 */
export function formatLatency(ms: number | null): string {
  if (ms === null) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

/** A column of a table drawn by {@linkcode row}. */
export interface Column {
  /** The column's heading. */
  head: string;
  /** Align the cells to the right. @default false */
  right?: boolean;
  /** The widest the column grows. */
  max: number;
}

/**
 * One line of a table: each cell cut and padded to its column's width (the last is not padded),
 * then painted, two spaces apart.
 * @param cells the plain-text cells
 * @param cols the columns
 * @param widths each column's width
 * @param paint paints a padded cell, given its index @default leaves it as is
 * @returns the line, without trailing spaces
 */
export function row(
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

/**
 * The width of each column: its widest cell or heading, at most its `max`.
 * @param cols the columns
 * @param rows the rows' cells
 * @returns one width per column
 */
export function widthsOf(cols: readonly Column[], rows: readonly (readonly string[])[]): number[] {
  return cols.map((c, i) =>
    Math.min(c.max, Math.max(c.head.length, ...rows.map((r) => r[i]!.length)))
  );
}
