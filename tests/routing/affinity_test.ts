/**
 * @module
 * Tests of affinity routing: consistent hashing with bounded loads, pins that follow, move and
 * expire, and pins carried over a reload.
 */

import assert from "node:assert/strict";
import { AffinityRouter, MAX_PINS, type RouteTerms } from "../../src/routing/affinity.ts";
import type { Candidate } from "../../src/plugin.ts";
import { type FakeCandidate, makeCandidates, seededRandom } from "../helpers/candidates.ts";

/** Terms where the listed keys (all by default) take requests; pins stay on no other key. */
function terms(
  candidates: readonly Candidate[],
  options: {
    out?: readonly number[];
    busy?: readonly number[];
    hot?: readonly number[];
    share?: (c: Candidate) => number;
  } = {},
): RouteTerms {
  const out = new Set(options.out ?? []);
  const busy = new Set(options.busy ?? []);
  const hot = new Set(options.hot ?? []);
  return {
    keys: candidates.length - out.size,
    accept: (c) => !out.has(c.index) && !busy.has(c.index),
    keep: (c) => busy.has(c.index),
    overloaded: (c) => hot.has(c.index),
    share: options.share ?? (() => 1),
  };
}

function router(candidates: readonly Candidate[], maxLoad = 1.25, ttlMs = 600_000) {
  return new AffinityRouter({ candidates, ttlMs, maxLoad, random: seededRandom(7) });
}

/** Routes each value once; returns the key index each landed on. */
function routeAll(
  r: AffinityRouter,
  values: readonly string[],
  t: RouteTerms,
  now = 0,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const v of values) {
    const routed = r.route(v, now, t);
    assert.ok(routed !== undefined, `value ${v} was routed`);
    out.set(v, routed.candidate!.index);
  }
  return out;
}

const VALUES = Array.from({ length: 40 }, (_, i) => `conversation-${i}`);

function countBy(landed: Map<string, number>, keys: number): number[] {
  const counts = new Array<number>(keys).fill(0);
  for (const k of landed.values()) counts[k]!++;
  return counts;
}

Deno.test("AffinityRouter.route() spreads 40 values over 4 keys: every key used, none over max_load of its share", () => {
  for (const prefix of ["conversation-", "user-", "sess_", ""]) {
    const candidates = makeCandidates(4);
    const r = router(candidates);
    const values = VALUES.map((v) => v.replace("conversation-", prefix));
    const counts = countBy(routeAll(r, values, terms(candidates)), 4);
    assert.ok(counts.every((n) => n > 0), `every key holds pins (${counts})`);
    // the fair share is 10; 1.25 × 10 = 12.5
    assert.ok(counts.every((n) => n <= 12), `no key over 12.5 pins (${counts})`);
    assert.deepEqual(counts, [0, 1, 2, 3].map((i) => r.pinsOf(i)));
    assert.equal(r.size, 40);
  }
});

Deno.test("AffinityRouter.route() sends the same value to the same key, counting hits", () => {
  const candidates = makeCandidates(4);
  const r = router(candidates);
  const t = terms(candidates);
  const first = routeAll(r, VALUES, t);
  for (let round = 0; round < 3; round++) {
    for (const v of VALUES) {
      const routed = r.route(v, 1000 * round, t)!;
      assert.equal(routed.candidate!.index, first.get(v));
      assert.equal(routed.result, "hit");
    }
  }
  assert.deepEqual(r.counts, { hit: 120, new: 40, moved: 0, detour: 0 });
});

Deno.test("AffinityRouter.route() gives the same placement to routers built alike (instances agree)", () => {
  const a = router(makeCandidates(5));
  const b = router(makeCandidates(5));
  const ta = terms(a.candidates);
  const tb = terms(b.candidates);
  assert.deepEqual(routeAll(a, VALUES, ta), routeAll(b, VALUES, tb));
});

Deno.test("AffinityRouter.route() moves the pins of a key out of service, and they stay moved", () => {
  const candidates = makeCandidates(4);
  const r = router(candidates);
  const first = routeAll(r, VALUES, terms(candidates));
  const onKey1 = VALUES.filter((v) => first.get(v) === 1);
  assert.ok(onKey1.length > 0);
  // key 1 rests: its values walk on and their pins move
  const resting = terms(candidates, { out: [1] });
  const moved = new Map<string, number>();
  for (const v of onKey1) {
    const routed = r.route(v, 10, resting)!;
    assert.equal(routed.result, "moved");
    assert.notEqual(routed.candidate!.index, 1);
    moved.set(v, routed.candidate!.index);
  }
  assert.equal(r.pinsOf(1), 0);
  // key 1 is back: the moved values stay where their cache now is; the others never moved
  const back = terms(candidates);
  for (const v of VALUES) {
    const routed = r.route(v, 20, back)!;
    assert.equal(routed.result, "hit");
    assert.equal(routed.candidate!.index, moved.get(v) ?? first.get(v));
  }
  assert.equal(r.counts.moved, onKey1.length);
});

Deno.test("AffinityRouter.route() goes around a busy pinned key without moving its pin", () => {
  const candidates = makeCandidates(3);
  const r = router(candidates);
  const home = r.route("v", 0, terms(candidates))!.candidate!.index;
  const routed = r.route("v", 1, terms(candidates, { busy: [home] }))!;
  // the pool's strategy picks among the others, and says where it went
  assert.equal(routed.result, "detour");
  assert.equal(routed.candidate, undefined);
  assert.equal(routed.pinned?.index, home);
  r.detoured(true);
  assert.equal(r.pinsOf(home), 1);
  assert.equal(r.route("v", 2, terms(candidates))!.candidate!.index, home);
  assert.deepEqual(r.counts, { hit: 1, new: 1, moved: 0, detour: 1 });
  // no other key could take it: the pinned key after all, counted as a hit
  r.detoured(false);
  assert.equal(r.counts.hit, 2);
});

Deno.test("AffinityRouter.route() returns undefined when no key may take the request, pin kept", () => {
  const candidates = makeCandidates(2);
  const r = router(candidates);
  const home = r.route("v", 0, terms(candidates))!.candidate!.index;
  assert.equal(r.route("v", 1, terms(candidates, { out: [0, 1] })), undefined);
  assert.equal(r.route("w", 1, terms(candidates, { out: [0, 1] })), undefined);
  assert.equal(r.size, 1);
  assert.equal(r.pinsOf(home), 1);
});

Deno.test("AffinityRouter.adopt() keeps pins over a reload; adding a fifth key moves about a fifth", () => {
  const values = Array.from({ length: 2000 }, (_, i) => `v${i}`);
  const four = makeCandidates(4);
  const before = router(four, 1.25);
  const first = routeAll(before, values, terms(four));
  const five = makeCandidates(5);
  const after = router(five, 1.25);
  after.adopt(before);
  assert.deepEqual(after.counts, before.counts);
  const t = terms(five);
  const second = routeAll(after, values, t, 1);
  let moved = 0;
  for (const v of values) {
    const to = second.get(v)!;
    if (to !== first.get(v)) {
      moved++;
      assert.equal(to, 4, "a value that moves goes to the new key");
    }
  }
  const share = moved / values.length;
  assert.ok(share > 0.12 && share < 0.28, `about a fifth moved (${share})`);
  // the same 40 values as the test
  const small4 = router(four, 1.25);
  const f40 = routeAll(small4, VALUES, terms(four));
  const small5 = router(five, 1.25);
  small5.adopt(small4);
  const s40 = routeAll(small5, VALUES, terms(five), 1);
  const moved40 = VALUES.filter((v) => f40.get(v) !== s40.get(v)).length;
  assert.ok(moved40 >= 3 && moved40 <= 14, `about 8 of 40 moved (${moved40})`);
});

Deno.test("AffinityRouter.adopt() with the same keys keeps every pin; a removed key's pins go", () => {
  const four = makeCandidates(4);
  const a = router(four);
  const first = routeAll(a, VALUES, terms(four));
  const same = router(makeCandidates(4));
  same.adopt(a);
  assert.equal(same.size, 40);
  const three = makeCandidates(4).slice(0, 3);
  const fewer = router(three);
  fewer.adopt(a);
  const onKey3 = VALUES.filter((v) => first.get(v) === 3).length;
  assert.equal(fewer.size, 40 - onKey3);
  const again = routeAll(fewer, VALUES, terms(three), 1);
  for (const v of VALUES) {
    if (first.get(v) !== 3) assert.equal(again.get(v), first.get(v), `${v} stayed`);
  }
});

Deno.test("AffinityRouter.route() forgets a pin ttl after its last use", () => {
  const candidates = makeCandidates(4);
  const r = router(candidates, 1.25, 1000);
  const t = terms(candidates);
  const home = r.route("v", 0, t)!.candidate!;
  assert.equal(r.route("v", 999, t)!.result, "hit");
  // a use keeps it alive: 999 + 1000 > 1998
  assert.equal(r.route("v", 1998, t)!.result, "hit");
  assert.equal(r.route("v", 2999, t)!.result, "new");
  assert.equal(r.pinsOf(home.index), 1);
  // a sweep drops pins nobody asks for again
  for (let i = 0; i < 10; i++) r.route(`other-${i}`, 3000, t);
  assert.equal(r.size, 11);
  r.route("late", 10_000, t);
  assert.equal(r.size, 1);
  assert.equal([0, 1, 2, 3].reduce((n, i) => n + r.pinsOf(i), 0), 1);
});

Deno.test("AffinityRouter.route() holds at most maxPins, dropping the earliest placed", () => {
  const candidates = makeCandidates(2);
  const r = new AffinityRouter({
    candidates,
    ttlMs: 600_000,
    maxLoad: 2,
    random: () => 0,
    maxPins: 100,
  });
  for (let i = 0; i < 250; i++) r.route(`v${i}`, i, terms(candidates));
  assert.equal(r.size, 100);
  assert.equal(r.pinsOf(0) + r.pinsOf(1), 100);
  assert.equal(r.route("v249", 300, terms(candidates))!.result, "hit");
  assert.equal(r.route("v0", 300, terms(candidates))!.result, "new");
  // of the earliest placed, the least recently used goes: a conversation still going stays
  const s = new AffinityRouter({
    candidates,
    ttlMs: 600_000,
    maxLoad: 2,
    random: () => 0,
    maxPins: 20,
  });
  for (let i = 0; i < 20; i++) s.route(`w${i}`, i, terms(candidates));
  s.route("w0", 100, terms(candidates));
  s.route("new-1", 101, terms(candidates));
  assert.equal(s.route("w0", 102, terms(candidates))!.result, "hit", "w0 was used lately");
  assert.equal(s.size, 20);
  assert.equal(MAX_PINS, 100_000);
});

Deno.test("AffinityRouter.route() passes over a slow-starting key with its share's probability", () => {
  const candidates = makeCandidates(4);
  const r = router(candidates, 4); // a loose bound: only the slow start decides
  const values = Array.from({ length: 4000 }, (_, i) => `s${i}`);
  const counts = countBy(
    routeAll(r, values, terms(candidates, { share: (c) => c.index === 0 ? 0.25 : 1 })),
    4,
  );
  // key 0 keeps a quarter of the values it would have had (~1000 → ~250)
  assert.ok(counts[0]! > 120 && counts[0]! < 420, `key 0 took ${counts[0]}`);
  const r2 = router(candidates, 4);
  const none = countBy(
    routeAll(r2, values, terms(candidates, { share: (c) => c.index === 0 ? 0 : 1 })),
    4,
  );
  assert.equal(none[0], 0);
  // alone, a key at share 0 still serves
  const lone = makeCandidates(1);
  const r3 = router(lone);
  assert.equal(r3.route("x", 0, terms(lone, { share: () => 0 }))!.candidate!.index, 0);
});

Deno.test("AffinityRouter.route() with max_load 1 balances pins exactly", () => {
  const candidates: FakeCandidate[] = makeCandidates(4);
  const r = router(candidates, 1);
  const counts = countBy(routeAll(r, VALUES, terms(candidates)), 4);
  assert.deepEqual(counts, [10, 10, 10, 10]);
});

Deno.test("AffinityRouter.route() goes around a pinned key with too many requests in flight, keeping the pin", () => {
  const candidates = makeCandidates(4);
  const r = router(candidates);
  const home = r.route("hot-user", 0, terms(candidates))!.candidate!.index;
  const around = r.route("hot-user", 1, terms(candidates, { hot: [home] }))!;
  assert.equal(around.result, "detour");
  assert.equal(around.pinned?.index, home);
  assert.equal(r.route("hot-user", 2, terms(candidates))!.candidate!.index, home);
  // a new value skips an overloaded key on its walk
  for (let i = 0; i < 40; i++) {
    assert.notEqual(
      r.route(`n${i}`, 3, terms(candidates, { hot: [home] }))!.candidate!.index,
      home,
    );
  }
});

Deno.test("AffinityRouter.route() keeps its counts exact through evictions, expiries and moves", () => {
  const candidates = makeCandidates(3);
  const r = new AffinityRouter({
    candidates,
    ttlMs: 50,
    maxLoad: 1.25,
    random: seededRandom(4),
    maxPins: 64,
  });
  const random = seededRandom(9);
  for (let i = 0; i < 20_000; i++) {
    const value = `v${Math.floor(random() * 200)}`;
    const out = random() < 0.1 ? [Math.floor(random() * 3)] : [];
    r.route(value, i, terms(candidates, { out }));
    const held = [0, 1, 2].reduce((n, k) => n + r.pinsOf(k), 0);
    assert.equal(held, r.size, `step ${i}`);
    assert.ok(r.size <= 64);
  }
});

Deno.test("AffinityRouter tells where it pins, and applies pins told by other instances", () => {
  const candidates = makeCandidates(4);
  const told: [number, string, string][] = [];
  const a = new AffinityRouter({
    candidates,
    ttlMs: 600_000,
    maxLoad: 1.25,
    random: seededRandom(1),
    onPlaced: (hash, c, kind) => told.push([hash, c.id, kind]),
  });
  const b = router(makeCandidates(4));
  const home = a.route("conv", 0, terms(candidates))!.candidate!;
  assert.equal(told.length, 1);
  a.route("conv", 1, terms(candidates));
  assert.equal(told.length, 1, "a hit is not told");
  const moved = a.route("conv", 2, terms(candidates, { out: [home.index] }))!.candidate!;
  assert.deepEqual(told.map(([, id, kind]) => [id, kind]), [[home.id, "new"], [moved.id, "moved"]]);
  // b hears both, in order: it follows the move, though the old key is back
  for (const [hash, id, kind] of told) b.apply(hash, id, 3, kind === "new" ? "new" : "moved");
  const there = b.route("conv", 4, terms(b.candidates))!;
  assert.equal(there.result, "hit");
  assert.equal(there.candidate!.id, moved.id);
  assert.equal(b.pinsOf(moved.index), 1);
  assert.equal(b.size, 1);
  // a key this pool does not have is ignored
  b.apply(123, "other:key", 5);
  assert.equal(b.size, 1);
});

Deno.test("AffinityRouter.apply() keeps a settled pin against a new placement elsewhere, and says where it stands", () => {
  const candidates = makeCandidates(4);
  const told: [number, string, string][] = [];
  const a = new AffinityRouter({
    candidates,
    ttlMs: 600_000,
    maxLoad: 1.25,
    random: seededRandom(1),
    onPlaced: (hash, c, kind) => told.push([hash, c.id, kind]),
  });
  const home = a.route("conv", 0, terms(candidates))!.candidate!;
  const [hash] = told[0]!;
  a.apply(hash, home.id, 1, "new"); // its own placement, heard back: settled
  const moved = a.route("conv", 2, terms(candidates, { out: [home.index] }))!.candidate!;
  told.length = 0;
  // an instance that just started places the value at its ring home, as new
  a.apply(hash, home.id, 3, "new");
  assert.equal(a.route("conv", 4, terms(candidates))!.candidate!.id, moved.id, "the pin stays");
  assert.deepEqual(told, [[hash, moved.id, "moved"]], "and a says where it stands");
  // a moved pin told by another instance is followed
  a.apply(hash, home.id, 5, "moved");
  assert.equal(a.route("conv", 6, terms(candidates))!.candidate!.id, home.id);
});

Deno.test("AffinityRouter.apply(): of two placements at once, the first in Redis's order wins", () => {
  const make = () => {
    const told: [number, string, string][] = [];
    const r = new AffinityRouter({
      candidates: makeCandidates(4),
      ttlMs: 600_000,
      maxLoad: 1.25,
      random: seededRandom(1),
      onPlaced: (hash, c, kind) => told.push([hash, c.id, kind]),
    });
    return { r, told };
  };
  const x = make();
  const y = make();
  // both place the value at once, on different keys (x's home was out for y): both pending
  const xKey = x.r.route("v", 0, terms(x.r.candidates))!.candidate!;
  const yKey = y.r.route("v", 0, terms(y.r.candidates, { out: [xKey.index] }))!.candidate!;
  assert.notEqual(xKey.id, yKey.id);
  // Redis delivers every message to both, in its order: x's new, y's new, then whatever they
  // say on hearing them
  const queue = [x.told[0]!, y.told[0]!];
  const sent = [1, 1];
  for (let i = 0; i < queue.length && i < 20; i++) {
    const [hash, id, kind] = queue[i]!;
    [x, y].forEach((r, n) => {
      r.r.apply(hash, id, 1, kind === "new" ? "new" : "moved");
      while (sent[n]! < r.told.length) queue.push(r.told[sent[n]!++]!);
    });
  }
  assert.ok(queue.length < 20, "the exchange ends");
  for (const r of [x.r, y.r]) {
    assert.equal(r.route("v", 3, terms(r.candidates))!.candidate!.id, xKey.id);
  }
});
