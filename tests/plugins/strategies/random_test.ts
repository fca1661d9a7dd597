/**
 * @module
 * Tests of the `random` strategy plugin.
 */

import assert from "node:assert/strict";
import random from "../../../plugins/strategies/random.ts";
import {
  countPicks,
  makeCandidates,
  pickMany,
  seededRandom,
  sequenceRandom,
} from "../../helpers/candidates.ts";

Deno.test("random plugin is a strategy named random", () => {
  assert.equal(random.kind, "strategy");
  assert.equal(random.name, "random");
  assert.ok(random.description.length > 0);
});

Deno.test("random.pick() maps random() uniformly onto the available candidates", () => {
  const candidates = makeCandidates(6);
  const cases: { name: string; available: number[]; draws: number[]; want: number[] }[] = [
    {
      name: "all four",
      available: [0, 1, 2, 3],
      draws: [0, 0.2499, 0.25, 0.5, 0.7499, 0.75, 0.9999],
      want: [0, 0, 1, 2, 2, 3, 3],
    },
    {
      name: "a sparse subset",
      available: [1, 4, 5],
      draws: [0, 0.34, 0.67, 0.99],
      want: [1, 4, 5, 5],
    },
    { name: "a lone candidate", available: [2], draws: [0, 0.5, 0.99], want: [2, 2, 2] },
    { name: "an out-of-range 1 clamps to the last", available: [0, 3], draws: [1], want: [3] },
  ];
  for (const { name, available, draws, want } of cases) {
    const strategy = random.create({
      settings: {},
      candidates,
      now: () => 0,
      budgetLeft: () => 1,
      random: sequenceRandom(draws),
    });
    const list = candidates.filter((c) => available.includes(c.index));
    assert.deepEqual(pickMany(strategy, { available: list, count: draws.length }), want, name);
  }
});

Deno.test("random.pick() draws exactly one random number per pick", () => {
  const candidates = makeCandidates(3);
  let draws = 0;
  const strategy = random.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: () => {
      draws++;
      return 0.5;
    },
  });
  pickMany(strategy, { available: candidates, count: 7 });
  assert.equal(draws, 7);
});

Deno.test("random.pick() spreads 10,000 picks evenly, ignoring weights", () => {
  const candidates = makeCandidates([{ weight: 100 }, { weight: 1 }, { weight: 0 }, {}]);
  for (const c of candidates) Object.freeze(Object.freeze(c).state);
  const strategy = random.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(7),
  });
  const counts = countPicks(pickMany(strategy, { available: candidates, count: 10_000 }), 4);
  // Expected 2500 each; the standard deviation is about 43, so 2350..2650 is a wide margin.
  for (const [i, count] of counts.entries()) {
    assert.ok(count > 2350 && count < 2650, `candidate ${i} got ${count} of 10000`);
  }
});

Deno.test("random.pick() never picks an unavailable candidate", () => {
  const candidates = makeCandidates(5);
  const available = candidates.filter((c) => c.index !== 2);
  const strategy = random.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(3),
  });
  const counts = countPicks(pickMany(strategy, { available, count: 10_000 }), 5);
  assert.equal(counts[2], 0);
  for (const i of [0, 1, 3, 4]) assert.ok(counts[i]! > 2300 && counts[i]! < 2700, `${counts}`);
});
