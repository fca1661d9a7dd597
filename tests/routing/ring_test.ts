/**
 * @module
 * Tests of the consistent-hash ring and the string hash it is built on.
 */

import assert from "node:assert/strict";
import { HashRing, MAX_VNODES } from "../../src/routing/ring.ts";
import { hash53, ringPoint } from "../../src/routing/hash.ts";

const ids = (n: number) => Array.from({ length: n }, (_, i) => `up:key${i}`);

Deno.test("hash53() is stable, spreads, and depends on its seed", () => {
  assert.equal(hash53("abc"), hash53("abc"));
  assert.notEqual(hash53("abc"), hash53("abd"));
  assert.notEqual(hash53("abc"), hash53("abc", 1));
  assert.ok(Number.isSafeInteger(hash53("x".repeat(1000))));
  const buckets = new Array<number>(16).fill(0);
  for (let i = 0; i < 16_000; i++) buckets[ringPoint(hash53(`v${i}`)) >>> 28]!++;
  assert.ok(buckets.every((n) => n > 800 && n < 1200), `${buckets}`);
});

Deno.test("HashRing.home() shares values evenly among owners", () => {
  const ring = new HashRing(ids(4));
  assert.equal(ring.size, 4 * MAX_VNODES);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 40_000; i++) counts[ring.home(ringPoint(hash53(`v${i}`)))]!++;
  assert.ok(counts.every((n) => n > 8_000 && n < 12_000), `${counts}`);
});

Deno.test("HashRing.home() moves only the new owner's share when an owner is added", () => {
  const four = new HashRing(ids(4));
  const five = new HashRing(ids(5));
  let moved = 0;
  for (let i = 0; i < 10_000; i++) {
    const p = ringPoint(hash53(`v${i}`));
    const to = five.home(p);
    if (to !== four.home(p)) {
      moved++;
      assert.equal(to, 4);
    }
  }
  assert.ok(moved > 1_400 && moved < 2_600, `${moved}`);
});

Deno.test("HashRing.first() wraps around past the last point", () => {
  const ring = new HashRing(["a"], 3);
  assert.equal(ring.first(0xffffffff), ring.first(0));
  assert.equal(ring.first(0), 0);
  assert.equal(new HashRing([]).home(5), -1);
});

Deno.test("HashRing takes fewer points per owner in a large pool", () => {
  assert.equal(new HashRing(ids(1000)).size, 40_000);
  assert.equal(new HashRing(ids(20_000)).size, 80_000);
});
