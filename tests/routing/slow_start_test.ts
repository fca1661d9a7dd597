/**
 * @module
 * Tests of slow start: when a returning key is seen back, and its growing share.
 */

import assert from "node:assert/strict";
import { SlowStart } from "../../src/routing/slow_start.ts";
import { makeCandidates } from "../helpers/candidates.ts";

Deno.test("SlowStart.share() grows linearly from the end of a rest to the full share", () => {
  const [a, b] = makeCandidates(2);
  const slow = new SlowStart(2, 10_000);
  a!.state.restUntil = 5_000;
  slow.note([a!, b!], 1_000);
  assert.equal(slow.ramping(1_000), false);
  // the rest ended at 5 s; the snapshot after it sees key a back
  slow.note([a!, b!], 7_000);
  assert.equal(slow.ramping(7_000), true);
  assert.equal(slow.share(a!, 7_000), 0.2);
  assert.equal(slow.share(a!, 10_000), 0.5);
  assert.equal(slow.share(b!, 7_000), 1, "a key that never left is at full share");
  assert.equal(slow.share(a!, 15_000), 1);
  assert.equal(slow.ramping(15_000), false);
});

Deno.test("SlowStart.note() starts the ramp of a key enabled or probed back at the snapshot", () => {
  const [a] = makeCandidates(1);
  const slow = new SlowStart(1, 1_000);
  a!.state.disabled = true;
  a!.state.restUntil = 100; // an old rest, over long ago
  slow.note([a!], 0);
  slow.note([a!], 50_000);
  a!.state.disabled = false;
  slow.note([a!], 60_000);
  assert.equal(slow.share(a!, 60_000), 0);
  assert.equal(slow.share(a!, 60_500), 0.5);
});

Deno.test("SlowStart.note() ramps nobody at the first snapshot", () => {
  const keys = makeCandidates(3);
  const slow = new SlowStart(3, 1_000);
  slow.note(keys, 10);
  assert.equal(slow.ramping(10), false);
  assert.deepEqual(keys.map((k) => slow.share(k, 10)), [1, 1, 1]);
});

Deno.test("SlowStart.note() ramps again from the end of an ejection", () => {
  const [a] = makeCandidates(1);
  const slow = new SlowStart(1, 2_000);
  slow.note([a!], 0);
  a!.state.ejectedUntil = 3_000;
  slow.note([a!], 1_000);
  slow.note([a!], 4_000);
  assert.equal(slow.share(a!, 4_000), 0.5);
});

Deno.test("SlowStart.admit() holds a ramping key to its share of its fair part, whoever asks", () => {
  const [a, b] = makeCandidates(2);
  const slow = new SlowStart(2, 10_000);
  slow.note([a!, b!], 0);
  a!.state.disabled = true;
  slow.note([a!, b!], 1);
  a!.state.disabled = false;
  slow.note([a!, b!], 2);
  // a strategy that always offers key a (an idle key under least_connections): at 20% of the
  // ramp, key a keeps about 20% of its fair half of the picks in each window
  let kept = 0;
  for (let i = 0; i < 1000; i++) if (slow.admit(a!, 2_002 + i * 0.2, 0.5)) kept++;
  assert.ok(kept > 80 && kept < 130, `${kept}`);
  // a key at full share is always admitted
  assert.equal(slow.admit(b!, 2_300, 0.5), true);
});
