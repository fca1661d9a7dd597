/**
 * @module
 * Tests of {@linkcode Timeline} (90 buckets of 10 s per pool and in all) and
 * {@linkcode entryOf} (what a finished request adds to it).
 */

import assert from "node:assert/strict";
import { BUCKETS, entryOf, nameOf, STEP_MS, Timeline } from "../../src/admin/timeline.ts";
import type { RequestContext, RequestLog } from "../../src/plugin.ts";
import type { Pool } from "../../src/pool.ts";

/** A clock at the start of a bucket. */
function clock(start = 1_700_000_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => t += ms };
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

Deno.test("Timeline.series() has 90 buckets of 10 s, oldest first, the current one last", () => {
  const c = clock();
  const t = new Timeline({ now: c.now });
  const empty = t.series();
  assert.equal(empty.step_s, 10);
  assert.equal(empty.requests.length, BUCKETS);
  assert.equal(sum(empty.requests) + sum(empty.errors), 0);
  t.record("gpt-4o", false);
  t.record("gpt-4o", true);
  c.advance(STEP_MS);
  t.record("small", false);
  const all = t.series();
  assert.deepEqual(all.requests.slice(-2), [2, 1]);
  assert.deepEqual(all.errors.slice(-2), [1, 0]);
  assert.equal(sum(all.requests), 3);
  assert.deepEqual(t.series("gpt-4o").requests.slice(-2), [2, 0]);
  assert.deepEqual(t.series("small").requests.slice(-2), [0, 1]);
  assert.equal(sum(t.series("unknown").requests), 0);
});

Deno.test("Timeline.series() forgets buckets older than 15 minutes, even when the slot is reused", () => {
  const c = clock();
  const t = new Timeline({ now: c.now });
  t.record("p", true);
  c.advance(STEP_MS * (BUCKETS - 1));
  // still the oldest bucket
  assert.equal(t.series("p").requests[0], 1);
  assert.equal(t.series("p").errors[0], 1);
  c.advance(STEP_MS);
  assert.equal(sum(t.series("p").requests), 0);
  // the same slot, 15 minutes later: counted afresh
  t.record("p", false);
  assert.deepEqual([sum(t.series("p").requests), sum(t.series("p").errors)], [1, 0]);
  assert.equal(t.series("p").requests[BUCKETS - 1], 1);
  // an hour of silence
  c.advance(3_600_000);
  assert.equal(sum(t.series().requests), 0);
});

Deno.test("Timeline.rates() averages over about the last minute, or the time since start", () => {
  const c = clock();
  const t = new Timeline({ now: c.now });
  assert.deepEqual(t.rates("p"), { requests_per_s: 0, errors_per_s: 0 });
  for (let i = 0; i < 10; i++) t.record("p", i < 2);
  c.advance(5_000);
  // 5 s since start
  assert.deepEqual(t.rates("p"), { requests_per_s: 2, errors_per_s: 0.4 });
  assert.deepEqual(t.rates(), { requests_per_s: 2, errors_per_s: 0.4 });
  c.advance(55_000);
  // a full minute since start: 6 whole buckets and the current, empty one
  assert.deepEqual(t.rates("p"), { requests_per_s: 0.167, errors_per_s: 0.033 });
  c.advance(STEP_MS * 2);
  assert.deepEqual(t.rates("p"), { requests_per_s: 0, errors_per_s: 0 });
});

Deno.test("Timeline.record() counts a request no pool took in the total only", () => {
  const c = clock();
  const t = new Timeline({ now: c.now });
  t.record(undefined, false);
  assert.equal(sum(t.series().requests), 1);
  assert.equal(sum(t.series("default").requests), 0);
});

function ctx(path: string, log: Partial<RequestLog>): RequestContext {
  return {
    path,
    log: { status: 200, attempts: 1, stream: false, bytes: 0, upstreamMs: 0, ...log },
  } as RequestContext;
}

Deno.test("entryOf() counts proxied requests by the pool that served, and tells errors", () => {
  const pools = new Map([["gpt-4o", { model: "gpt-4o" }], ["*", { model: "*" }]]);
  const poolFor = (m: string | undefined) =>
    (m === undefined ? undefined : pools.get(m) ?? pools.get("*")) as Pool | undefined;
  const entry = (path: string, log: Partial<RequestLog>) => entryOf(ctx(path, log), poolFor);
  assert.deepEqual(entry("/v1/chat/completions", { model: "gpt-4o" }), {
    pool: "gpt-4o",
    error: false,
  });
  // a fallback served: its pool
  assert.deepEqual(entry("/v1/chat/completions", { model: "x", servedModel: "gpt-4o" }), {
    pool: "gpt-4o",
    error: false,
  });
  assert.equal(entry("/v1/chat/completions", { model: "other" })?.pool, "default");
  for (const status of [429, 500, 503]) {
    assert.equal(entry("/v1/chat/completions", { model: "gpt-4o", status })?.error, true);
  }
  assert.equal(entry("/v1/chat/completions", { model: "gpt-4o", status: 400 })?.error, false);
  assert.equal(
    entry("/v1/x", { model: "gpt-4o", status: 499, outcome: "client_abort" })?.error,
    false,
  );
  // a stream that broke after its 200
  assert.equal(entry("/v1/x", { model: "gpt-4o", outcome: "server" })?.error, true);
  // answered without an attempt: /v1 requests count, llm-balance's own endpoints do not
  assert.deepEqual(entry("/v1/models", { attempts: 0 }), { pool: undefined, error: false });
  assert.equal(entry("/v1/chat/completions", { attempts: 0, status: 401 })?.pool, undefined);
  for (const path of ["/stats", "/dashboard/data", "/health", "/v1/stats/load_balancers", "/"]) {
    assert.equal(entry(path, { attempts: 0 }), undefined, path);
  }
  assert.equal(nameOf({ model: "*" } as Pool), "default");
});
