/**
 * @module
 * Tests of `status_view.ts`: the text view of a dashboard fixture (header, pools, the key table
 * in place, a resting key's countdown, budgets, `--all` handed to the key table, colors only when
 * asked, the 100-column fit, the server's control characters kept from the terminal), and URLs
 * shown without credentials. The key table alone: `status_keys_test.ts`; the text tools:
 * `status_text_test.ts`.
 */

import assert from "node:assert/strict";
import type {
  BudgetBar,
  DashboardData,
  DashboardKey,
  DashboardPool,
} from "../../src/admin/dashboard_types.ts";
import { formatStatus, shown, SUMMARIZE_OVER } from "../../src/commands/status_view.ts";
import { key as fixtureKey } from "../helpers/status_fixture.ts";

const NOW = 1_760_000_000_000;

/** A key of the gpt-4o pool (the shared fixture's key). */
function key(id: string, extra: Partial<DashboardKey> = {}): DashboardKey {
  return fixtureKey(id, "gpt-4o", extra);
}

function pool(model: string, keys: DashboardKey[], extra: Partial<DashboardPool> = {}) {
  const usable = keys.filter((k) => k.state === "serving" || k.state === "half_open").length;
  return {
    model,
    strategy: "round_robin",
    usable,
    total: keys.length,
    requests_per_s: 12.4,
    errors_per_s: 0.2,
    latency_p50_ms: 820,
    latency_p95_ms: 2100,
    queue: 0,
    affinity: null,
    keys: keys.map((k) => k.id),
    ...extra,
  } satisfies DashboardPool;
}

const DAY: BudgetBar = {
  name: "requests_per_day",
  model: null,
  used: 1999,
  limit: 2000,
  remaining: 1,
  source: "counted",
  resets_at_ms: NOW + 3 * 3600_000,
};

/** Three pools: gpt-4o (a resting key with a countdown, budgets), claude (all disabled), default. */
function fixture(): DashboardData {
  const gpt = [
    key("modelscope:aaaa0001", { name: "main", budgets: [DAY], requests: 1234, failures: 5 }),
    key("modelscope:bbbb0002", {
      name: "spare",
      state: "resting",
      reason: "rate limited by the upstream",
      until_ms: NOW + 252_000,
      budgets: [
        { ...DAY, name: "requests_per_minute", used: 3, limit: 60, resets_at_ms: NOW + 12_000 },
      ],
    }),
    key("openai:cccc0003", { in_flight: 2 }),
  ];
  const claude = [
    key("anthropic:dddd0004", {
      pools: ["claude"],
      state: "disabled",
      reason: "disabled by an operator",
    }),
  ];
  const def = [key("modelscope:eeee0005", { pools: ["default"], latency_p50_ms: null })];
  return {
    now_ms: NOW,
    version: "0.1.0",
    uptime_s: 3 * 3600 + 12 * 60,
    ok: false,
    redis: { up: true, required: false },
    pools: [
      pool("gpt-4o", gpt, { strategy: "p2c", queue: 3 }),
      pool("claude", claude, { requests_per_s: 0, errors_per_s: 0 }),
      pool("default", def),
    ],
    keys: [...gpt, ...claude, ...def],
    series: { step_s: 60, requests: [1, 2, 3, 0, 8], errors: [0, 0, 1, 0, 0] },
    events: Array.from({ length: 7 }, (_, i) => ({
      at_ms: NOW - (i + 1) * 60_000,
      level: i === 0 ? "warn" as const : "info" as const,
      message: i === 0 ? "key resting: rate limited by the upstream" : `event ${i}`,
      upstream: "modelscope",
      key: "sk-0002...0002",
    })),
    can_act: true,
  };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

Deno.test("formatStatus() shows the header, every pool, the keys by pool and the last events", () => {
  const text = formatStatus(fixture(), { url: "http://127.0.0.1:8080" });
  const lines = text.split("\n");
  assert.match(
    lines[0]!,
    /^NOT OK {2}http:\/\/127\.0\.0\.1:8080 {2}llm-balance 0\.1\.0 {2}up 3h12m {2}redis up$/,
  );
  assert.equal(lines[1], "no usable key in claude");
  assert.match(text, /^POOL +STRATEGY +KEYS +REQ\/S +ERR\/S +P50 +P95 +QUEUE$/m);
  assert.match(text, /^gpt-4o +p2c +2\/3 +12 +0\.2 +820ms +2\.1s +3$/m);
  assert.match(text, /^claude +round_robin +0\/1 +0 +0 /m);
  assert.match(text, /^last 15 min: requests [▁-█]+ 14 {2}errors [▁-█]+ 1$/m);
  // keys: grouped by pool, the resting key with its reason and countdown, budgets inline
  assert.match(text, /^ {2}KEY +NAME +UPSTREAM +STATE +IN +REQS +FAIL +P50 +BUDGETS$/m);
  assert.match(text, /^gpt-4o {2}2\/3 usable$/m);
  assert.match(
    text,
    /^ {2}sk-0001\.\.\.0001 +main +modelscope +serving +0 +1234 +5 +820ms +day 1999\/2000 \(resets in 3h\)$/m,
  );
  assert.match(
    text,
    /^ {2}sk-0002\.\.\.0002 +spare +modelscope +resting +0 +10 +0 +820ms +min 3\/60/m,
  );
  assert.match(text, /^ {6}rate limited by the upstream, back in 4m12s$/m);
  assert.match(text, /^claude {2}0\/1 usable$/m);
  assert.match(text, /^ {2}sk-0004\.\.\.0004 .* disabled /m);
  assert.match(text, /^ {6}disabled by an operator$/m);
  assert.match(text, /^ {2}sk-0005\.\.\.0005 .* - *$/m);
  // the last five events, newest first
  assert.match(text, /^LAST EVENTS$/m);
  assert.match(text, /^ +1m ago {2}warn {3}modelscope sk-0002\.\.\.0002 {2}key resting/m);
  assert.match(text, /5m ago .*event 4$/m);
  assert.doesNotMatch(text, /event 5/);
  for (const l of lines) assert.ok(l.length <= 100, `too wide (${l.length}): ${l}`);
  assert.doesNotMatch(text, ANSI, "no colors unless asked");
});

Deno.test("formatStatus() colors states only when asked and keeps the widths", () => {
  const plain = formatStatus(fixture(), { url: "http://x" });
  const colored = formatStatus(fixture(), { url: "http://x", color: true });
  assert.ok(colored.includes("\x1b[31mNOT OK\x1b[0m"));
  assert.ok(colored.includes("\x1b[33mresting"));
  assert.ok(colored.includes("\x1b[32mserving"));
  assert.equal(colored.replace(ANSI, ""), plain);
});

Deno.test("formatStatus() fits narrow widths and truncates long cells", () => {
  const data = fixture();
  data.keys[0]!.name = "a-very-long-key-name-that-goes-on";
  data.keys[0]!.upstream = "an-upstream-with-a-long-name";
  data.keys[1]!.reason = "r".repeat(300);
  data.events[0]!.message = "m".repeat(300);
  for (const columns of [100, 80, 60]) {
    const text = formatStatus(data, { url: "http://127.0.0.1:8080", columns });
    for (const l of text.split("\n")) {
      assert.ok(l.length <= columns, `${columns}: too wide (${l.length}): ${l}`);
    }
    if (columns === 60) continue;
    assert.match(text, /a-very-\S*…/);
    assert.match(text, /day 1999\/2000 \((resets in )?3h\)/, `${columns}: budgets:\n${text}`);
  }
  // at 60 columns the budgets move under their key
  const narrow = formatStatus(data, { url: "http://x", columns: 60 });
  assert.match(narrow, /^ {6}day 1999\/2000 \(resets in 3h\)$/m);
  assert.doesNotMatch(narrow, /BUDGETS/);
});

Deno.test("formatStatus() never lets the server's text drive the terminal", () => {
  const data = fixture();
  data.keys[0]!.name = "evil\x1b]0;pwned\x07";
  data.events[0]!.message = "clear\x1b[2J";
  const text = formatStatus(data, { url: "http://x" });
  assert.ok(!text.includes("\x1b"));
  assert.match(text, /evil\?\]/);
  assert.match(text, /clear\?\[2J/);
});

Deno.test("shown() drops the user and password of a URL", () => {
  assert.equal(shown("http://user:pw@127.0.0.1:1/"), "http://127.0.0.1:1");
  assert.equal(shown("https://lb.example/llm/"), "https://lb.example/llm");
  assert.equal(shown("not a url"), "not a url");
});

Deno.test("formatStatus() passes no control character of the server's to the terminal", () => {
  const data = fixture();
  const esc = "\u001b]0;owned\u0007";
  data.keys[0] = { ...data.keys[0]!, state: `${esc}resting` as DashboardKey["state"] };
  data.events = [{
    at_ms: NOW,
    level: `\u001b[41m${esc}` as "info",
    message: `hello${esc}`,
    upstream: null,
    key: null,
  }];
  const text = formatStatus(data, { url: "http://127.0.0.1:8080", all: true });
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
});

Deno.test("formatStatus() hands --all to the key table", () => {
  const keys = Array.from({ length: SUMMARIZE_OVER + 1 }, (_, i) => key(`k:${1000 + i}`));
  const data: DashboardData = { ...fixture(), pools: [pool("many", keys)], keys, events: [] };
  const rows = (all: boolean) =>
    formatStatus(data, { url: "http://x", all }).split("\n").filter((l) => /^ {2}sk-/.test(l));
  assert.equal(rows(false).length, 0);
  assert.equal(rows(true).length, SUMMARIZE_OVER + 1);
});
