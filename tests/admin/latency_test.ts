/**
 * @module
 * Tests of {@linkcode LatencyTracker}: percentiles of recent latencies and their peak-EWMA.
 */

import assert from "node:assert/strict";
import { LatencyTracker } from "../../src/admin/latency.ts";

Deno.test("LatencyTracker.percentiles() is null without samples", () => {
  assert.deepEqual(new LatencyTracker().percentiles("x"), { p50: null, p95: null });
});

Deno.test("LatencyTracker.percentiles() uses the nearest rank", () => {
  const t = new LatencyTracker();
  t.record("a", 7.123);
  assert.deepEqual(t.percentiles("a"), { p50: 7.12, p95: 7.12 });
  for (const ms of [10, 20]) t.record("b", ms);
  assert.deepEqual(t.percentiles("b"), { p50: 10, p95: 20 });
  // 1..100 recorded in random order
  const values = Array.from({ length: 100 }, (_, i) => i + 1).sort((x, y) =>
    (x * 37) % 101 - (y * 37) % 101
  );
  for (const v of values) t.record("c", v);
  assert.deepEqual(t.percentiles("c"), { p50: 50, p95: 95 });
});

Deno.test("LatencyTracker.percentiles() sorts numerically", () => {
  const t = new LatencyTracker();
  for (const ms of [9, 100, 25]) t.record("a", ms);
  assert.deepEqual(t.percentiles("a"), { p50: 25, p95: 100 });
});

Deno.test("LatencyTracker.record() keeps only the recent samples of each candidate", () => {
  const t = new LatencyTracker();
  for (let i = 0; i < 256; i++) t.record("a", 1000);
  for (let i = 0; i < 256; i++) t.record("a", 5);
  assert.deepEqual(t.percentiles("a"), { p50: 5, p95: 5 });
  t.record("b", 42);
  assert.deepEqual(t.percentiles("b"), { p50: 42, p95: 42 });
  assert.deepEqual(t.percentiles("a"), { p50: 5, p95: 5 });
});

Deno.test("LatencyTracker keeps each candidate's samples apart as it grows past its first rings", () => {
  const t = new LatencyTracker();
  for (let i = 0; i < 1000; i++) t.record(`k${i}`, i);
  for (let i = 0; i < 1000; i += 97) {
    assert.deepEqual(t.percentiles(`k${i}`), { p50: i, p95: i });
  }
});

Deno.test("LatencyTracker.ewma() is null for a candidate never observed", () => {
  const t = new LatencyTracker();
  assert.equal(t.ewma("x"), null);
  t.record("a", 50); // the percentiles' samples do not feed the EWMA
  assert.equal(t.ewma("a"), null);
  assert.deepEqual(t.percentiles("a"), { p50: 50, p95: 50 });
});

Deno.test("LatencyTracker.ewma() jumps to a peak, blends faster samples in", () => {
  const t = new LatencyTracker();
  t.observe("a", 100.123, 1_000_000);
  assert.equal(t.ewma("a"), 100.12);
  t.observe("a", 900, 1_000_001);
  assert.equal(t.ewma("a"), 900, "a slower sample counts at once");
  // 10 s later (one decay period): 900·e^-1 + 100·(1 - e^-1)
  t.observe("a", 100, 1_010_001);
  const want = Math.round((900 * Math.exp(-1) + 100 * (1 - Math.exp(-1))) * 100) / 100;
  assert.equal(t.ewma("a"), want);
  // a view reads the value the last sample left, however much later (no decay while idle)
  assert.equal(t.ewma("a"), want);
  // the observed samples do not reach the percentiles
  assert.deepEqual(t.percentiles("a"), { p50: null, p95: null });
});

Deno.test("LatencyTracker.ewma() keeps each candidate's apart as it grows past its first rings", () => {
  const t = new LatencyTracker();
  for (let i = 0; i < 100; i++) {
    t.record(`k${i}`, i);
    if (i % 2 === 0) t.observe(`k${i}`, i + 1, 0);
  }
  for (let i = 0; i < 100; i++) {
    assert.equal(t.ewma(`k${i}`), i % 2 === 0 ? i + 1 : null, `k${i}`);
    assert.deepEqual(t.percentiles(`k${i}`), { p50: i, p95: i });
  }
});

Deno.test("LatencyTracker.percentilesOf() merges the samples of several candidates", () => {
  const t = new LatencyTracker();
  assert.deepEqual(t.percentilesOf(["a", "b"]), { p50: null, p95: null });
  for (let v = 1; v <= 50; v++) t.record("a", v);
  for (let v = 51; v <= 100; v++) t.record("b", v);
  t.record("c", 1000);
  assert.deepEqual(t.percentilesOf(["a", "b", "a", "missing"]), { p50: 50, p95: 95 });
  assert.deepEqual(t.percentilesOf(["b"]), t.percentiles("b"));
});
