/**
 * @module
 * Tests of the `least_connections` strategy plugin.
 */

import assert from "node:assert/strict";
import leastConnections from "../../../plugins/strategies/least_connections.ts";
import {
  countPicks,
  makeCandidates,
  PICK_CONTEXT,
  pickMany,
  seededRandom,
} from "../../helpers/candidates.ts";

/** Builds a least_connections strategy over candidates with the given in-flight counts. */
function setup(loads: number[]) {
  const candidates = makeCandidates(loads.map((inFlight) => ({ inFlight })));
  const strategy = leastConnections.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  return { candidates, strategy };
}

Deno.test("least_connections plugin is a strategy named least_connections", () => {
  assert.equal(leastConnections.kind, "strategy");
  assert.equal(leastConnections.name, "least_connections");
  assert.ok(leastConnections.description.length > 0);
});

Deno.test("least_connections.pick() picks the fewest in flight, ties in turn", () => {
  const cases: { name: string; loads: number[]; available?: number[]; want: number[] }[] = [
    { name: "a single least loaded", loads: [3, 1, 2], want: [1, 1, 1] },
    { name: "least loaded last", loads: [2, 2, 0], want: [2, 2] },
    { name: "all idle is round robin", loads: [0, 0, 0], want: [0, 1, 2, 0, 1, 2] },
    { name: "ties share in turn", loads: [1, 0, 1, 0], want: [1, 3, 1, 3] },
    { name: "ties among many", loads: [2, 1, 1, 5, 1], want: [1, 2, 4, 1, 2, 4] },
    {
      name: "unavailable idle ones are ignored",
      loads: [5, 0, 3, 0],
      available: [0, 2],
      want: [2],
    },
    { name: "a lone candidate", loads: [9, 4], available: [0], want: [0, 0] },
  ];
  for (const { name, loads, available, want } of cases) {
    const { candidates, strategy } = setup(loads);
    const list = available === undefined
      ? candidates
      : candidates.filter((c) => available.includes(c.index));
    assert.deepEqual(pickMany(strategy, { available: list, count: want.length }), want, name);
  }
});

Deno.test("least_connections.pick() reads live in-flight counts on every pick", () => {
  const { candidates, strategy } = setup([0, 0, 0, 0]);
  const [a, b, c, d] = candidates;
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), a);
  a!.state.inFlight = 2;
  b!.state.inFlight = 1;
  // c and d tie at 0: the first after the last pick (a) wins, then the other.
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), c);
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), d);
  c!.state.inFlight = 3;
  d!.state.inFlight = 3;
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), b);
  b!.state.inFlight = 2;
  // a and b tie at 2; the last pick was b, so the turn wraps to a.
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), a);
  assert.equal(strategy.pick(candidates, PICK_CONTEXT), b);
});

Deno.test("least_connections.pick() shares 10,000 picks equally among idle candidates", () => {
  const { candidates, strategy } = setup([0, 0, 0, 0, 0]);
  for (const c of candidates) Object.freeze(Object.freeze(c).state);
  const counts = countPicks(pickMany(strategy, { available: candidates, count: 10_000 }), 5);
  assert.deepEqual(counts, [2000, 2000, 2000, 2000, 2000]);
});

Deno.test("least_connections.pick() sends less traffic to a slower candidate", () => {
  // One request arrives per tick; a request on candidate i lasts durations[i] ticks.
  const durations = [8, 2, 2, 2];
  const { candidates, strategy } = setup([0, 0, 0, 0]);
  const finishing: number[][] = Array.from({ length: 10_010 }, () => []);
  const picks: number[] = [];
  let maxSpread = 0;
  for (let tick = 0; tick < 10_000; tick++) {
    for (const i of finishing[tick]!) candidates[i]!.state.inFlight--;
    const chosen = strategy.pick(candidates, PICK_CONTEXT)!;
    candidates[chosen.index]!.state.inFlight++;
    finishing[tick + durations[chosen.index]!]!.push(chosen.index);
    picks.push(chosen.index);
    const loads = candidates.map((c) => c.state.inFlight);
    maxSpread = Math.max(maxSpread, Math.max(...loads) - Math.min(...loads));
  }
  const [slow, ...fast] = countPicks(picks, 4);
  for (const count of fast) assert.ok(count > 2 * slow!, `slow ${slow}, fast ${fast}`);
  assert.ok(fast.every((count) => Math.abs(count - fast[0]!) <= 1), `fast ${fast}`);
  assert.ok(maxSpread <= 1, `in-flight counts spread by ${maxSpread}`);
});
