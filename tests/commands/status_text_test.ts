/**
 * @module
 * Tests of `status_text.ts`: colors only when asked, control characters replaced, cutting to a
 * width, durations, counts and latencies in a few characters, and padded table rows.
 */

import assert from "node:assert/strict";
import { clean, formatDuration, painter, truncate } from "../../src/commands/status_text.ts";
import { formatCount, formatLatency } from "../../src/commands/status_text.ts";
import { type Column, row, widthsOf } from "../../src/commands/status_text.ts";

Deno.test("painter() wraps text in ANSI colors only when asked", () => {
  assert.equal(painter(true)("red", "NOT OK"), "\x1b[31mNOT OK\x1b[0m");
  assert.equal(painter(true)("bold", "KEY"), "\x1b[1mKEY\x1b[0m");
  assert.equal(painter(false)("red", "NOT OK"), "NOT OK");
});

Deno.test("clean() replaces control characters with ?", () => {
  assert.equal(clean("a\x1b[2Jb\nc\x7f\x9bd"), "a?[2Jb?c??d");
  assert.equal(clean("plain … text"), "plain … text");
});

Deno.test("truncate() cuts to the width with an ellipsis", () => {
  assert.equal(truncate("abcdef", 6), "abcdef");
  assert.equal(truncate("abcdef", 4), "abc…");
  assert.equal(truncate("abcdef", 1), "…");
  assert.equal(truncate("abcdef", 0), "");
});

Deno.test("formatDuration() shows two units at most and rounds up", () => {
  const cases: [number, string][] = [
    [0, "now"],
    [-5, "now"],
    [400, "1s"],
    [45_000, "45s"],
    [252_000, "4m12s"],
    [240_000, "4m"],
    [3 * 3600_000, "3h"],
    [3 * 3600_000 + 5 * 60_000, "3h05m"],
    [2 * 86400_000 + 4 * 3600_000 + 1, "2d4h"],
  ];
  for (const [ms, want] of cases) assert.equal(formatDuration(ms), want, String(ms));
});

Deno.test("formatCount() keeps small counts whole and shortens big ones", () => {
  const shown = [0, 1234.4, 99_999, 250_000, 1_500_000, 12_000_000, 3e9].map(formatCount);
  assert.deepEqual(shown, ["0", "1234", "99999", "250k", "1.5M", "12M", "3.0G"]);
});

Deno.test("formatLatency() shows ms below a second, seconds above, - for none", () => {
  assert.equal(formatLatency(null), "-");
  assert.equal(formatLatency(820.4), "820ms");
  assert.equal(formatLatency(2100), "2.1s");
  assert.equal(formatLatency(12_400), "12s");
});

Deno.test("row() pads cells to their columns, cuts long ones and paints them", () => {
  const cols: Column[] = [{ head: "NAME", max: 6 }, { head: "N", right: true, max: 4 }, {
    head: "NOTE",
    max: 10,
  }];
  const rows = [["a-long-name", "7", "x"], ["b", "1234", "a note"]];
  const widths = widthsOf(cols, rows);
  assert.deepEqual(widths, [6, 4, 6]);
  assert.equal(row(cols.map((c) => c.head), cols, widths), "NAME       N  NOTE");
  assert.equal(row(rows[0]!, cols, widths), "a-lon…     7  x");
  assert.equal(
    row(rows[1]!, cols, widths, (i, t) => i === 1 ? `[${t}]` : t),
    "b       [1234]  a note",
  );
  assert.equal(row(["b", "", ""], cols, widths), "b", "no trailing spaces");
});
