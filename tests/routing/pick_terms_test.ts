/**
 * @module
 * Tests of the terms a pool gives affinity routing for one pick.
 */

import assert from "node:assert/strict";
import { PickTerms } from "../../src/routing/pick_terms.ts";
import { SlowStart } from "../../src/routing/slow_start.ts";
import { makeCandidates } from "../helpers/candidates.ts";

Deno.test("PickTerms.accept() takes keys of the tier that are usable, not excluded, not full", () => {
  const [a, b, c, d] = makeCandidates([
    {},
    { priority: 1 },
    { state: { restUntil: 10_000 } },
    { quota: { maxConcurrency: 1 }, inFlight: 1 },
  ]);
  const t = new PickTerms(undefined).set([a!], 1_000, "m", (k) => k === a);
  assert.equal(t.keys, 1);
  assert.equal(t.accept(a!), false, "excluded");
  t.set([a!], 1_000, "m", undefined);
  assert.equal(t.accept(a!), true);
  assert.equal(t.accept(b!), false, "another tier");
  assert.equal(t.accept(c!), false, "resting");
  assert.equal(t.accept(d!), false, "at its cap");
  // a pin stays on a busy key of this tier or a better one, not on a key that is out
  assert.equal(t.keep(d!), true);
  assert.equal(t.keep(c!), false);
  assert.equal(t.keep(b!), false, "a worse tier: the pin comes back to this one");
});

Deno.test("PickTerms.overloaded() flags only a load that even traffic would hardly reach", () => {
  const keys = makeCandidates(4);
  const t = new PickTerms(undefined, 1.25).set(keys, 0, undefined, undefined);
  assert.equal(t.overloaded(keys[0]!), false, "no request in flight");
  // 8 requests over 4 keys (mean 2.25 with this one): the bound is 1.25 × 2.25 + 2 × 1.5 + 1 = 6
  for (const k of keys) k.state.inFlight = 2;
  assert.equal(t.overloaded(keys[0]!), false);
  // a hot key: 12 in flight while the others hold 2 (mean 4.75: bound 1.25 × 4.75 + 4.36 + 1)
  keys[0]!.state.inFlight = 12;
  t.set(keys, 1, undefined, undefined);
  assert.equal(t.overloaded(keys[0]!), true);
  assert.equal(t.overloaded(keys[1]!), false);
});

Deno.test("PickTerms.share() is slow start's share, and none for a key of weight 0", () => {
  const [a, b] = makeCandidates([{}, { weight: 0 }]);
  const slow = new SlowStart(2, 1_000);
  a!.state.restUntil = 500;
  slow.note([a!, b!], 0);
  slow.note([a!, b!], 600);
  const t = new PickTerms(slow).set([a!, b!], 1_000, undefined, undefined);
  assert.equal(t.share(a!), 0.5);
  assert.equal(t.share(b!), 0);
  assert.equal(new PickTerms(undefined).set([a!], 0, undefined, undefined).share(a!), 1);
});
