/**
 * @module
 * Tests of the `quota_aware` strategy plugin.
 */

import assert from "node:assert/strict";
import quotaAware, { TIE_EPSILON } from "../../../plugins/strategies/quota_aware.ts";
import type { Candidate, PickContext, StrategyOptions } from "../../../src/plugin.ts";
import {
  countPicks,
  makeCandidates,
  PICK_CONTEXT,
  pickMany,
  seededRandom,
} from "../../helpers/candidates.ts";

/**
 * Builds a quota_aware strategy over `n` candidates.
 * @param n the pool size
 * @param budgetLeft the fake budget; every key has all of it left by default
 */
function setup(n: number, budgetLeft: StrategyOptions["budgetLeft"] = () => 1) {
  const candidates = makeCandidates(n);
  const strategy = quotaAware.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft,
    random: seededRandom(1),
  });
  /** Returns the candidates with the given indexes. */
  const only = (...indexes: number[]): Candidate[] =>
    candidates.filter((c) => indexes.includes(c.index));
  return { candidates, strategy, only };
}

/** A fake `budgetLeft` reading each candidate's share from a list, by `index`. */
function sharesOf(shares: readonly number[]): StrategyOptions["budgetLeft"] {
  return (c) => shares[c.index] ?? 1;
}

Deno.test("quota_aware plugin is a strategy named quota_aware", () => {
  assert.equal(quotaAware.kind, "strategy");
  assert.equal(quotaAware.name, "quota_aware");
  assert.ok(quotaAware.description.length > 0);
});

Deno.test("quota_aware.pick() takes the key with the largest share left", () => {
  const cases: { shares: number[]; want: number }[] = [
    { shares: [0.2, 0.9, 0.5], want: 1 },
    { shares: [0.9, 0.2, 0.5], want: 0 },
    { shares: [0, 0, 0.01], want: 2 },
    { shares: [0.5, 0.5 + 10 * TIE_EPSILON, 0.5], want: 1 },
    { shares: [Number.NaN, 0.1, -1], want: 1 },
  ];
  for (const { shares, want } of cases) {
    const { candidates, strategy } = setup(shares.length, sharesOf(shares));
    assert.equal(strategy.pick(candidates, PICK_CONTEXT)!.index, want, `shares ${shares}`);
  }
});

Deno.test("quota_aware.pick() gives equal shares turns in pool order, after the previous pick", () => {
  const { candidates, strategy } = setup(5, sharesOf([0.5, 0.8, 0.8, 0.3, 0.8]));
  assert.deepEqual(
    pickMany(strategy, { available: candidates, count: 7 }),
    [1, 2, 4, 1, 2, 4, 1],
  );
});

Deno.test("quota_aware.pick() counts shares within TIE_EPSILON as equal", () => {
  const near = 0.7 + TIE_EPSILON / 2;
  const { candidates, strategy } = setup(3, sharesOf([0.7, near, 0.1]));
  assert.deepEqual(pickMany(strategy, { available: candidates, count: 4 }), [0, 1, 0, 1]);
});

Deno.test("quota_aware.pick() asks budgetLeft once per available key, for the request's model", () => {
  const asked: [number, string | undefined][] = [];
  const { strategy, only } = setup(4, (c, model) => {
    asked.push([c.index, model]);
    return 1;
  });
  const ctx: PickContext = { ...PICK_CONTEXT, model: "qwen-max" };
  strategy.pick(only(0, 2, 3), ctx);
  assert.deepEqual(asked, [[0, "qwen-max"], [2, "qwen-max"], [3, "qwen-max"]]);
  asked.length = 0;
  strategy.pick(only(1), PICK_CONTEXT);
  assert.deepEqual(asked, [[1, undefined]]);
});

Deno.test("quota_aware.pick() prefers the key with most left for the model asked", () => {
  const left: Record<string, number[]> = { a: [0.9, 0.1], b: [0.1, 0.9] };
  const { candidates, strategy } = setup(2, (c, model) => left[model ?? ""]?.[c.index] ?? 1);
  assert.equal(strategy.pick(candidates, { ...PICK_CONTEXT, model: "a" })!.index, 0);
  assert.equal(strategy.pick(candidates, { ...PICK_CONTEXT, model: "b" })!.index, 1);
});

Deno.test("quota_aware.pick() without budgets visits every key in turn, like round_robin", () => {
  const { candidates, strategy, only } = setup(4);
  assert.deepEqual(
    pickMany(strategy, { available: candidates, count: 9 }),
    [0, 1, 2, 3, 0, 1, 2, 3, 0],
  );
  // skips a key that became unavailable, and wraps around
  assert.deepEqual(pickMany(strategy, { available: only(0, 2, 3), count: 4 }), [2, 3, 0, 2]);
});

Deno.test("quota_aware.pick() drains equal budgets evenly", () => {
  const used = [0, 0, 0, 0];
  const { candidates, strategy } = setup(4, (c) => (100 - used[c.index]!) / 100);
  for (let i = 0; i < 300; i++) used[strategy.pick(candidates, PICK_CONTEXT)!.index]!++;
  for (const [i, n] of used.entries()) {
    assert.ok(Math.abs(n - 75) <= 1, `key ${i} used ${n} of 300`);
  }
});

Deno.test("quota_aware.pick() drains unequal budgets at the same pace", () => {
  const limits = [100, 200, 300, 400];
  const used = [30, 0, 0, 0]; // key 0 was used before
  const { candidates, strategy } = setup(4, (c) => {
    const limit = limits[c.index]!;
    return Math.max(0, limit - used[c.index]!) / limit;
  });
  const picks: number[] = [];
  for (let i = 0; i < 470; i++) {
    const chosen = strategy.pick(candidates, PICK_CONTEXT)!.index;
    used[chosen]!++;
    picks.push(chosen);
  }
  // 500 of 1000 used: half of every budget
  for (const [i, n] of used.entries()) {
    assert.ok(Math.abs(n - limits[i]! / 2) <= 1, `key ${i} used ${n} of ${limits[i]}`);
  }
  assert.ok(!picks.slice(0, 10).includes(0), "the key used before waits for the others");
});

Deno.test("quota_aware.pick() only returns available candidates and never mutates them", () => {
  const n = 12;
  const shares = seededRandom(7);
  const { candidates, strategy } = setup(n, () => Math.round(shares() * 4) / 4);
  for (const c of candidates) Object.freeze(Object.freeze(c).state);
  const random = seededRandom(42);
  for (let i = 0; i < 2000; i++) {
    const drawn = candidates.filter(() => random() < 0.4);
    const available = drawn.length > 0 ? drawn : candidates.slice(i % n, i % n + 1);
    const chosen = strategy.pick(available, PICK_CONTEXT);
    assert.ok(chosen !== undefined && available.includes(chosen), `pick ${i}`);
  }
});

Deno.test("quota_aware.pick() returns the only available key, even with nothing left", () => {
  const { strategy, only } = setup(3, () => 0);
  assert.deepEqual(pickMany(strategy, { available: only(1), count: 3 }), [1, 1, 1]);
  assert.deepEqual(countPicks(pickMany(strategy, { available: only(0, 2), count: 4 }), 3), [
    2,
    0,
    2,
  ]);
});

Deno.test("quota_aware.create() gives each pool its own cursor", () => {
  const candidates = makeCandidates(3);
  const options = {
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
    settings: {},
  };
  const a = quotaAware.create(options);
  const b = quotaAware.create(options);
  assert.deepEqual(pickMany(a, { available: candidates, count: 2 }), [0, 1]);
  assert.deepEqual(pickMany(b, { available: candidates, count: 2 }), [0, 1]);
  assert.deepEqual(pickMany(a, { available: candidates, count: 1 }), [2]);
});
