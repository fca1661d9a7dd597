/**
 * @module
 * Tests of `status_keys.ts`: budgets in a few words, and the key table (keys grouped by pool, the
 * NAME column only when a key is named, why a key rests and for how long, budgets under their key
 * when the line is narrow, the state colored, a pool of 500 keys summed up, the cap on the keys
 * listed, a pool without keys).
 */

import assert from "node:assert/strict";
import type { BudgetBar, DashboardData, DashboardKey } from "../../src/admin/dashboard_types.ts";
import { formatBudgets, formatKeys, SUMMARIZE_OVER } from "../../src/commands/status_keys.ts";
import { painter } from "../../src/commands/status_text.ts";
import { DAY, fixture, key, NOW } from "../helpers/status_fixture.ts";

/** The fixture with one pool, `p`, of these keys. */
function onePool(keys: DashboardKey[]): DashboardData {
  const data = fixture();
  const usable = keys.filter((k) => k.state === "serving" || k.state === "half_open").length;
  const pool = { ...data.pools[0]!, model: "p", usable, total: keys.length };
  return { ...data, pools: [{ ...pool, keys: keys.map((k) => k.id) }], keys };
}

/** The table as text, without colors, listing every key or not. */
function table(data: DashboardData, width = 100, all = false): string {
  return formatKeys(data, { width, paint: painter(false), all }).join("\n");
}

/** The listed key lines of a table. */
const listed = (text: string) => text.split("\n").filter((l) => /^ {2}sk-/.test(l));

/** `n` keys of pool `p`, each made by `make` from its index. */
function many(n: number, make: (id: string, i: number) => DashboardKey): DashboardKey[] {
  return Array.from({ length: n }, (_, i) => make(`big:${String(i).padStart(8, "0")}`, i));
}

Deno.test("formatBudgets() lists the fullest budget first with the time to its reset", () => {
  const budgets: BudgetBar[] = [
    { ...DAY, name: "requests_per_minute", used: 3, limit: 60, resets_at_ms: NOW + 12_000 },
    DAY,
    { ...DAY, name: "model_requests_per_day", model: "gpt-4o", used: 10, limit: 500 },
    {
      name: "max_concurrency",
      model: null,
      used: 1,
      limit: 4,
      remaining: 3,
      source: "counted",
      resets_at_ms: null,
    },
    { ...DAY, name: "tokens_per_day", used: 0, limit: 0, remaining: 250_000, source: "provider" },
  ];
  const text = formatBudgets(budgets, { nowMs: NOW });
  assert.equal(
    text,
    "day 1999/2000 (resets in 3h), conc 1/4, min 3/60 (resets in 12s), " +
      "gpt-4o day 10/500 (resets in 3h), tok/day 250k left (resets in 3h)",
  );
  assert.equal(
    formatBudgets(budgets, { nowMs: NOW, width: 50 }),
    "day 1999/2000 (3h), conc 1/4, min 3/60 (12s) +2",
  );
  assert.equal(formatBudgets(budgets, { nowMs: NOW, width: 21 }), "day 1999/2000 (3h) +4");
  assert.equal(formatBudgets(budgets, { nowMs: NOW, width: 12 }), "day 1999… +4");
  assert.equal(formatBudgets([], { nowMs: NOW }), "");
});

Deno.test("formatKeys() groups the keys by pool, with a NAME column only when a key is named", () => {
  const text = table(fixture());
  assert.match(text, /^ {2}KEY +UPSTREAM +STATE +IN +REQS +FAIL +P50 +BUDGETS$/m);
  assert.match(text, /^gpt-4o {2}1\/1 usable$/m);
  assert.match(
    text,
    /^ {2}sk-0001\.\.\.0001 +modelscope +serving +0 +10 +0 +820ms +day 1999\/2000 \(resets in 3h\)$/m,
  );
  assert.match(text, /^claude {2}0\/1 usable\n {2}sk-0004\.\.\.0004 .* disabled /m);
  assert.match(text, /^ {6}disabled by an operator$/m);
  const data = fixture();
  data.keys[0]!.name = "main";
  const named = table(data);
  assert.match(named, /^ {2}KEY +NAME +UPSTREAM +STATE /m);
  assert.match(named, /^ {2}sk-0001\.\.\.0001 +main +modelscope +serving /m);
});

Deno.test("formatKeys() says why a key is not serving and when it is back", () => {
  const data = onePool([
    key("a:cccc0003", "p", { state: "half_open", reason: null }),
    key("a:aaaa0001", "p", { state: "resting", reason: "rate limited", until_ms: NOW + 252_000 }),
    key("a:bbbb0002", "p", { state: "ejected", reason: null, until_ms: NOW + 30_000 }),
  ]);
  const lines = table(data).split("\n");
  const after = (mask: string) => lines[lines.findIndex((l) => l.includes(mask)) + 1];
  assert.equal(after("sk-0001"), "      rate limited, back in 4m12s");
  assert.equal(after("sk-0002"), "      back in 30s");
  assert.match(after("sk-0003")!, /^ {2}sk-0001/, "no note without a reason or a countdown");
});

Deno.test("formatKeys() moves the budgets under their key when the line is narrow", () => {
  const data = fixture();
  data.keys[0]!.upstream = "an-upstream-with-a-long-name";
  for (const width of [100, 80, 60]) {
    for (const l of table(data, width).split("\n")) {
      assert.ok(l.length <= width, `${width}: too wide (${l.length}): ${l}`);
    }
  }
  // the upstreams give way first: the budgets stay on the line
  assert.match(
    table(data, 88),
    /^ {2}sk-0001\.\.\.0001 +an-upstrea… +serving .* day 1999\/2000 \(3h\)$/m,
  );
  const narrow = table(data, 60);
  assert.doesNotMatch(narrow, /BUDGETS/);
  assert.match(narrow, /^ {2}sk-0001\.\.\.0001 +an-up\S*… +serving +0 +10 +0 +820ms$/m);
  assert.match(narrow, /^ {6}day 1999\/2000 \(resets in 3h\)$/m);
});

Deno.test("formatKeys() paints the headings, the pool lines and the state cells", () => {
  const lines = formatKeys(fixture(), { width: 100, paint: painter(true), all: false });
  assert.ok(lines[0]!.startsWith("\x1b[1m  KEY"));
  assert.ok(lines.includes("\x1b[1mclaude\x1b[0m  \x1b[31m0/1 usable\x1b[0m"));
  assert.ok(lines.some((l) => l.includes("\x1b[32mserving")));
  assert.ok(lines.some((l) => l.includes("\x1b[2mdisabled")));
  // deno-lint-ignore no-control-regex
  const plain = lines.map((l) => l.replace(/\x1b\[[0-9;]*m/g, "")).join("\n");
  assert.equal(plain, table(fixture()));
});

Deno.test("formatKeys() lists the keys not serving of a pool of 500 and sums up the rest", () => {
  const keys = many(
    500,
    (id, i) =>
      i % 100 === 7
        ? key(id, "p", {
          state: "spent",
          reason: "spent its daily requests",
          until_ms: NOW + 3600_000,
        })
        : key(id, "p", { requests: 100, failures: 1, in_flight: i % 2 }),
  );
  const data = onePool(keys);
  const text = table(data);
  assert.equal(listed(text).length, 5, "only the 5 spent keys");
  assert.ok(listed(text).every((l) => / spent /.test(l)));
  assert.match(text, /^ {2}\+ 495 serving: 49500 requests, 495 failures, 245 in flight/m);
  assert.ok(text.split("\n").length < 20, text);
  const all = table(data, 100, true);
  assert.equal(listed(all).length, 500);
  assert.doesNotMatch(all, /serving: /);
  // a pool of just over the limit is summed up too; one at it is listed whole
  assert.equal(listed(table(onePool(keys.slice(0, SUMMARIZE_OVER)))).length, SUMMARIZE_OVER);
  assert.equal(listed(table(onePool(keys.slice(0, SUMMARIZE_OVER + 1)))).length, 1);
});

Deno.test("formatKeys() caps the keys listed when most of a big pool is out", () => {
  const text = table(onePool(many(300, (id) => key(id, "p", { state: "ejected" }))));
  assert.equal(listed(text).length, 40);
  assert.match(text, /^ {2}… and 260 more not serving \(--all lists every key\)$/m);
});

Deno.test("formatKeys() says so of a pool without keys and skips ids it does not know", () => {
  const data = onePool([]);
  data.pools[0]!.keys = ["nowhere:00000001"];
  const lines = formatKeys(data, { width: 100, paint: painter(false), all: false });
  assert.deepEqual(lines.slice(1), ["p  0/0 usable", "  (no keys)"]);
});
