/**
 * @module
 * Tests of {@linkcode PeakEwma}, the peak-sensitive EWMA of latency per slot.
 */

import assert from "node:assert/strict";
import { latencySample, PeakEwma } from "../../src/routing/peak_ewma.ts";

/** Asserts `actual` is within `tolerance` of `expected`. */
function near(actual: number, expected: number, message = "", tolerance = 1e-9): void {
  assert.ok(Math.abs(actual - expected) < tolerance, `${message} ${actual} != ${expected}`);
}

Deno.test("PeakEwma constructor refuses a decay that is not a finite number > 0", () => {
  for (const bad of [0, -1, NaN, Infinity]) {
    assert.throws(() => new PeakEwma(bad), RangeError, String(bad));
  }
  assert.equal(new PeakEwma(1).decayMs, 1);
});

Deno.test("PeakEwma.cost() is 0 and observed() false for a slot never observed", () => {
  const e = new PeakEwma(1000, 4);
  assert.equal(e.cost(0, 0), 0);
  assert.equal(e.cost(99, 0), 0);
  assert.equal(e.observed(0), false);
  assert.equal(e.observed(99), false);
});

Deno.test("PeakEwma.observe() takes the first sample as the cost", () => {
  const e = new PeakEwma(1000);
  e.observe(2, 120, 5000);
  assert.equal(e.observed(2), true);
  assert.equal(e.cost(2, 5000), 120);
  assert.equal(e.observed(1), false);
});

Deno.test("PeakEwma.observe() jumps up to a slower sample at once", () => {
  const e = new PeakEwma(1000);
  e.observe(0, 100, 0);
  e.observe(0, 900, 1); // 1 ms later: a plain EWMA would barely move
  assert.equal(e.cost(0, 1), 900);
});

Deno.test("PeakEwma.observe() falls smoothly to faster samples, by the time between them", () => {
  const e = new PeakEwma(1000);
  e.observe(0, 1000, 0);
  e.observe(0, 100, 1000); // w = e^-1: the old cost decays, the sample takes the rest
  const w = Math.exp(-1);
  const first = 1000 * w + 100 * (1 - w);
  near(e.cost(0, 1000), first);
  assert.ok(first > 100 && first < 1000);
  // samples close together move it little; many of them converge on the sample
  e.observe(0, 100, 1001);
  assert.ok(e.cost(0, 1001) < first && e.cost(0, 1001) > first - 1);
  for (let t = 2000; t <= 20_000; t += 1000) e.observe(0, 100, t);
  near(e.cost(0, 20_000), 100, "converged", 1e-3);
});

Deno.test("PeakEwma.cost() decays toward 0 without samples and does not change the state", () => {
  const e = new PeakEwma(10_000);
  e.observe(0, 500, 1_000_000);
  near(e.cost(0, 1_010_000), 500 * Math.exp(-1));
  near(e.cost(0, 1_030_000), 500 * Math.exp(-3));
  assert.ok(e.cost(0, 1_200_000) < 0.001);
  // reading did not move the stamp: an earlier read still sees the undecayed cost
  assert.equal(e.cost(0, 1_000_000), 500);
  // the next sample blends with the cost decayed from the last sample's stamp, not the read
  e.observe(0, 200, 1_010_000);
  near(e.cost(0, 1_010_000), 500 * Math.exp(-1) + 200 * (1 - Math.exp(-1)));
});

Deno.test("PeakEwma treats a clock that goes back as no time passing", () => {
  const e = new PeakEwma(1000);
  e.observe(0, 300, 10_000);
  assert.equal(e.cost(0, 9_000), 300);
  e.observe(0, 100, 9_000); // w = 1: the faster sample has no weight
  assert.equal(e.cost(0, 9_000), 300);
});

Deno.test("PeakEwma.observe() ignores samples that are not finite numbers >= 0", () => {
  const e = new PeakEwma(1000);
  e.observe(0, 50, 0);
  for (const bad of [NaN, -1, Infinity]) e.observe(0, bad, 0);
  assert.equal(e.cost(0, 0), 50);
  e.observe(1, NaN, 0);
  assert.equal(e.observed(1), false);
});

Deno.test("PeakEwma.observe() refuses a slot that is not an integer >= 0", () => {
  const e = new PeakEwma(1000);
  for (const bad of [-1, 1.5, NaN]) assert.throws(() => e.observe(bad, 1, 0), RangeError);
});

Deno.test("PeakEwma grows past its first slots and keeps each slot's cost", () => {
  const e = new PeakEwma(1000, 2);
  for (let slot = 0; slot < 100; slot += 3) e.observe(slot, slot + 1, 0);
  e.observe(1000, 7, 0);
  for (let slot = 0; slot < 100; slot++) {
    assert.equal(e.observed(slot), slot % 3 === 0, `slot ${slot}`);
    assert.equal(e.cost(slot, 0), slot % 3 === 0 ? slot + 1 : 0, `slot ${slot}`);
  }
  assert.equal(e.cost(1000, 0), 7);
});

Deno.test("PeakEwma.reset() forgets a slot's samples", () => {
  const e = new PeakEwma(1000);
  e.observe(0, 900, 0);
  e.observe(1, 40, 0);
  e.reset(0);
  e.reset(5);
  assert.equal(e.observed(0), false);
  assert.equal(e.cost(0, 0), 0);
  assert.equal(e.cost(1, 0), 40);
  e.observe(0, 10, 1);
  assert.equal(e.cost(0, 1), 10, "starts afresh, not from the 900 peak");
});

Deno.test("PeakEwma.last() is the cost the last sample left, without decay", () => {
  const e = new PeakEwma(1_000, 2);
  assert.equal(e.last(0), 0);
  e.observe(0, 50, 0);
  assert.equal(e.last(0), 50);
  assert.ok(e.cost(0, 5_000) < 1);
  assert.equal(e.last(0), 50);
});

Deno.test("latencySample() takes a stream's first event, a whole answer, a slow failure; nothing else", () => {
  assert.equal(latencySample("ok", false, 20, 900), 900);
  assert.equal(latencySample("ok", true, 20, 900), 20);
  assert.equal(latencySample("ok", true, undefined, 900), 900);
  assert.equal(latencySample("server", true, 5, 30_000), 30_000);
  assert.equal(latencySample("timeout", false, undefined, 60_000), 60_000);
  for (const cls of ["connect", "auth", "rate_limited", "quota", "client_abort", "bad_request"]) {
    assert.equal(latencySample(cls, false, 1, 2), undefined, cls);
  }
});
