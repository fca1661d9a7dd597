/**
 * @module
 * Tests of the `round_robin` strategy plugin and its `nextAfter` search.
 */

import assert from "node:assert/strict";
import roundRobin, { nextAfter } from "../../../plugins/strategies/round_robin.ts";
import type { Candidate } from "../../../src/plugin.ts";
import {
  countPicks,
  makeCandidates,
  PICK_CONTEXT,
  pickMany,
  seededRandom,
} from "../../helpers/candidates.ts";

/** Builds a round_robin strategy over `n` candidates. */
function setup(n: number) {
  const candidates = makeCandidates(n);
  const strategy = roundRobin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  /** Returns the candidates with the given indexes. */
  const only = (...indexes: number[]): Candidate[] =>
    candidates.filter((c) => indexes.includes(c.index));
  return { candidates, strategy, only };
}

Deno.test("round_robin plugin is a strategy named round_robin", () => {
  assert.equal(roundRobin.kind, "strategy");
  assert.equal(roundRobin.name, "round_robin");
  assert.ok(roundRobin.description.length > 0);
});

Deno.test("nextAfter() returns the first candidate after an index, wrapping around", () => {
  const all = makeCandidates(10);
  const sparse = all.filter((c) => [1, 4, 5, 9].includes(c.index));
  const cases: { available: readonly Candidate[]; after: number; want: number }[] = [
    { available: sparse, after: -1, want: 1 },
    { available: sparse, after: 0, want: 1 },
    { available: sparse, after: 1, want: 4 },
    { available: sparse, after: 2, want: 4 },
    { available: sparse, after: 4, want: 5 },
    { available: sparse, after: 5, want: 9 },
    { available: sparse, after: 8, want: 9 },
    { available: sparse, after: 9, want: 1 },
    { available: sparse, after: 100, want: 1 },
    { available: all.slice(3, 4), after: 3, want: 3 },
    { available: all.slice(3, 4), after: 7, want: 3 },
    { available: all.slice(3, 4), after: 0, want: 3 },
  ];
  for (const { available, after, want } of cases) {
    assert.equal(nextAfter(available, after).index, want, `after ${after}`);
  }
});

Deno.test("round_robin.pick() cycles through every candidate in order", () => {
  const { candidates, strategy } = setup(4);
  assert.deepEqual(
    pickMany(strategy, { available: candidates, count: 10 }),
    [0, 1, 2, 3, 0, 1, 2, 3, 0, 1],
  );
});

Deno.test("round_robin.pick() follows the pool order as availability changes", () => {
  // Each step: the available indexes, then the expected pick.
  const cases: { name: string; steps: [number[], number][] }[] = [
    {
      name: "skips a candidate that became unavailable after the previous pick",
      steps: [[[0, 1, 2, 3], 0], [[0, 1, 2, 3], 1], [[0, 1, 3], 3], [[0, 1, 3], 0]],
    },
    {
      name: "wraps to the lowest available when none is after the last pick",
      steps: [[[0, 1, 2, 3], 0], [[0, 1, 2, 3], 1], [[0, 1, 2, 3], 2], [[0, 1], 0]],
    },
    {
      name: "gives a returning candidate its turn",
      steps: [[[0, 2, 3], 0], [[0, 2, 3], 2], [[0, 1, 2, 3], 3], [[0, 1, 2, 3], 0], [
        [0, 1, 2, 3],
        1,
      ]],
    },
    {
      name: "keeps its place when the last pick becomes unavailable",
      steps: [[[0, 1, 2, 3], 0], [[0, 1, 2, 3], 1], [[0, 2, 3], 2], [[0, 3], 3], [[1], 1]],
    },
    {
      name: "repeats a lone candidate",
      steps: [[[2], 2], [[2], 2], [[2, 3], 3], [[2], 2]],
    },
  ];
  for (const { name, steps } of cases) {
    const { strategy, only } = setup(4);
    steps.forEach(([indexes, want], i) => {
      assert.equal(
        strategy.pick(only(...indexes), PICK_CONTEXT)!.index,
        want,
        `${name}, step ${i}`,
      );
    });
  }
});

Deno.test("round_robin.create() gives each pool its own cursor", () => {
  const candidates = makeCandidates(3);
  const a = roundRobin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  const b = roundRobin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  assert.deepEqual(pickMany(a, { available: candidates, count: 2 }), [0, 1]);
  assert.deepEqual(pickMany(b, { available: candidates, count: 2 }), [0, 1]);
  assert.deepEqual(pickMany(a, { available: candidates, count: 1 }), [2]);
});

Deno.test("round_robin.pick() shares 10,000 picks equally and never mutates candidates", () => {
  const candidates = makeCandidates(8);
  for (const c of candidates) Object.freeze(Object.freeze(c).state);
  const strategy = roundRobin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  const picks = pickMany(strategy, { available: candidates, count: 10_000 });
  assert.deepEqual(countPicks(picks, 8), new Array(8).fill(1250));
});

Deno.test("round_robin.pick() spreads evenly while a random third of the pool is unusable", () => {
  const n = 30;
  const candidates = makeCandidates(n);
  const strategy = roundRobin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  const random = seededRandom(42);
  let available: Candidate[] = candidates;
  // Re-draw the available set every 300 picks: each draw keeps every candidate with p = 2/3.
  const picks = pickMany(strategy, {
    available: (step) => {
      if (step % 300 === 0) {
        const drawn = candidates.filter(() => random() < 2 / 3);
        available = drawn.length > 0 ? drawn : candidates;
      }
      return available;
    },
    count: 30_000,
  });
  for (const [i, count] of countPicks(picks, n).entries()) {
    assert.ok(count > 700 && count < 1300, `candidate ${i} got ${count} of 30000`);
  }
});

Deno.test("round_robin.pick() reads O(log n) entries of a 10,000-candidate pool", () => {
  const n = 10_000;
  const candidates = makeCandidates(n);
  const strategy = roundRobin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  let reads = 0;
  const counted = new Proxy(candidates, {
    get(target, prop, receiver) {
      if (typeof prop === "string" && /^\d+$/.test(prop)) reads++;
      return Reflect.get(target, prop, receiver);
    },
  });
  const picks = pickMany(strategy, { available: counted, count: 2 * n });
  assert.deepEqual(picks.slice(0, 3), [0, 1, 2]);
  assert.deepEqual(picks.slice(n - 1, n + 2), [n - 1, 0, 1]);
  // ceil(log2(10000)) = 14 probes plus the returned entry per pick.
  assert.ok(reads <= 2 * n * 16, `${reads} reads for ${2 * n} picks`);
});
