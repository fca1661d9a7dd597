/**
 * @module
 * Tests of the `weighted` strategy plugin (nginx smooth weighted round robin).
 */

import assert from "node:assert/strict";
import weighted from "../../../plugins/strategies/weighted.ts";
import type { Candidate } from "../../../src/plugin.ts";
import {
  countPicks,
  makeCandidates,
  PICK_CONTEXT,
  pickMany,
  seededRandom,
} from "../../helpers/candidates.ts";

/** Builds a weighted strategy over candidates with the given weights. */
function setup(weights: number[]) {
  const candidates = makeCandidates(weights.map((weight) => ({ weight })));
  const strategy = weighted.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  return { candidates, strategy };
}

/** Turns indexes into letters: 0 → a, 1 → b, ... */
function letters(indexes: readonly number[]): string {
  return indexes.map((i) => String.fromCharCode(97 + i)).join(" ");
}

Deno.test("weighted plugin is a strategy named weighted", () => {
  assert.equal(weighted.kind, "strategy");
  assert.equal(weighted.name, "weighted");
  assert.ok(weighted.description.length > 0);
});

Deno.test("weighted.pick() gives the nginx smooth weighted sequences", () => {
  const cases: { weights: number[]; want: string }[] = [
    { weights: [5, 1, 1], want: "a a b a c a a" },
    { weights: [8, 2], want: "a a b a a a a b a a" },
    { weights: [1, 1, 1], want: "a b c" },
    { weights: [2, 1, 3], want: "c a b c a c" },
    { weights: [4, 2, 1], want: "a b a c a b a" },
    { weights: [0.5, 0.25, 0.25], want: "a b c a" },
    { weights: [7], want: "a" },
  ];
  for (const { weights, want } of cases) {
    const { candidates, strategy } = setup(weights);
    const period = want.split(" ").length;
    // Two full periods: the sequence repeats exactly.
    const got = letters(pickMany(strategy, { available: candidates, count: 2 * period }));
    assert.equal(got, `${want} ${want}`, `weights ${weights}`);
  }
});

Deno.test("weighted.pick() gives 8:2 exactly 8 and 2 picks in every window of 10", () => {
  const { candidates, strategy } = setup([8, 2]);
  const picks = pickMany(strategy, { available: candidates, count: 1000 });
  for (let start = 0; start + 10 <= picks.length; start++) {
    const window = picks.slice(start, start + 10);
    assert.equal(window.filter((i) => i === 0).length, 8, `window at ${start}`);
  }
});

Deno.test("weighted.pick() splits 10,000 picks in proportion to weight", () => {
  const cases: { weights: number[]; want: number[]; slack: number }[] = [
    { weights: [5, 1, 1], want: [7142, 1429, 1429], slack: 1 },
    { weights: [3, 1], want: [7500, 2500], slack: 0 },
    { weights: [1, 0, 2, 0], want: [3333, 0, 6667], slack: 1 },
    { weights: [0.1, 0.2, 0.7], want: [1000, 2000, 7000], slack: 1 },
    { weights: [1.5, 2.5, 6], want: [1500, 2500, 6000], slack: 0 },
    { weights: [1, 1, 1, 1, 96], want: [100, 100, 100, 100, 9600], slack: 0 },
  ];
  for (const { weights, want, slack } of cases) {
    const { candidates, strategy } = setup(weights);
    const counts = countPicks(
      pickMany(strategy, { available: candidates, count: 10_000 }),
      weights.length,
    );
    counts.forEach((count, i) => {
      const expected = want[i] ?? 0;
      assert.ok(Math.abs(count - expected) <= slack, `weights ${weights}: ${counts}`);
    });
  }
});

Deno.test("weighted.pick() never chooses weight 0 while a weighted candidate is available", () => {
  const { candidates, strategy } = setup([0, 2, 0, 1, 0]);
  for (const c of candidates) Object.freeze(Object.freeze(c).state);
  const counts = countPicks(pickMany(strategy, { available: candidates, count: 3000 }), 5);
  assert.deepEqual(counts, [0, 2000, 0, 1000, 0]);
});

Deno.test("weighted.pick() chooses none when every available weight is 0", () => {
  const cases: { name: string; weights: number[]; available: number[] }[] = [
    { name: "all zero", weights: [0, 0, 0], available: [0, 1, 2] },
    { name: "weighted one unavailable", weights: [3, 0, 0], available: [1, 2] },
    {
      name: "invalid weights count as 0",
      weights: [-1, Number.NaN, Infinity],
      available: [0, 1, 2],
    },
  ];
  for (const { name, weights, available } of cases) {
    const { candidates, strategy } = setup(weights);
    const list = candidates.filter((c) => available.includes(c.index));
    assert.equal(strategy.pick(list, PICK_CONTEXT), undefined, name);
  }
});

Deno.test("weighted.pick() skips unavailable candidates and keeps their current value", () => {
  // Weights a=2 b=1 c=3; c is unavailable for picks 4-6. c comes back owed more traffic than a
  // fresh start would give it (c c after its return, instead of c b).
  const { candidates, strategy } = setup([2, 1, 3]);
  const ab: Candidate[] = candidates.slice(0, 2);
  const picks = pickMany(strategy, {
    available: (step) => (step >= 3 && step < 6 ? ab : candidates),
    count: 10,
  });
  assert.equal(letters(picks), "c a b a a a c c a b");
});

Deno.test("weighted.pick() follows weights while availability keeps changing", () => {
  const { candidates, strategy } = setup([1, 2, 3, 4]);
  // A fresh available set every 50 picks: each candidate kept with p = 3/4.
  const random = seededRandom(9);
  const schedule: Candidate[][] = [];
  for (let step = 0; step < 20_000; step++) {
    const previous = schedule[step - 1];
    if (step % 50 !== 0 && previous !== undefined) {
      schedule.push(previous);
      continue;
    }
    const drawn = candidates.filter(() => random() < 0.75);
    schedule.push(drawn.length > 0 ? drawn : candidates);
  }
  const picks = pickMany(strategy, { available: (step) => schedule[step]!, count: 20_000 });
  // Each candidate's expected picks: its weight's share of every pick it was available for.
  const expected = [0, 0, 0, 0];
  for (const list of schedule) {
    const total = list.reduce((sum, c) => sum + c.weight, 0);
    for (const c of list) expected[c.index]! += c.weight / total;
  }
  countPicks(picks, 4).forEach((count, i) => {
    const want = expected[i]!;
    assert.ok(Math.abs(count - want) / want < 0.05, `candidate ${i}: ${count} vs ${want}`);
  });
});

Deno.test("weighted.pick() in a large pool splits picks in proportion to weight, interleaved", () => {
  const n = 600;
  const candidates = makeCandidates(Array.from({ length: n }, (_, i) => ({ weight: (i % 3) + 1 })));
  const strategy = weighted.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  const picks = pickMany(strategy, { available: candidates, count: 12_000 });
  const byWeight = [0, 0, 0];
  for (const i of picks) byWeight[i % 3]!++;
  // weights 1:2:3 over 200 keys each: 2,000 / 4,000 / 6,000 picks
  assert.deepEqual(byWeight, [2000, 4000, 6000]);
  // interleaved: no key is picked twice within any window of 100 picks
  for (let s = 0; s + 100 <= picks.length; s += 100) {
    const window = picks.slice(s, s + 100);
    assert.equal(new Set(window).size, window.length);
  }
});

Deno.test("weighted.pick() in a large pool skips unavailable keys, with no burst on return", () => {
  const n = 400;
  const candidates = makeCandidates(n);
  const strategy = weighted.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(2),
  });
  const without0 = candidates.slice(1);
  const during = pickMany(strategy, { available: without0, count: 2_000 });
  assert.ok(!during.includes(0));
  const after = pickMany(strategy, { available: candidates, count: 400 });
  // back in rotation, key 0 gets its fair share (once per round), not the turns it missed
  assert.equal(after.filter((i) => i === 0).length, 1);
});

Deno.test("weighted.pick() in a large pool chooses none when every weight is 0", () => {
  const candidates = makeCandidates(Array.from({ length: 300 }, () => ({ weight: 0 })));
  const strategy = weighted.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(3),
  });
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), undefined);
});
