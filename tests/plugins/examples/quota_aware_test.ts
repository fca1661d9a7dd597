/**
 * @module
 * Tests of the worked example strategy `daily_quota` (plugins/examples/quota_aware.ts).
 */

import assert from "node:assert/strict";
import quotaAwareDefault, { quotaAware } from "../../../plugins/examples/quota_aware.ts";
import {
  type FakeCandidate,
  makeCandidates,
  PICK_CONTEXT,
  seededRandom,
} from "../../helpers/candidates.ts";
import type { Strategy } from "../../../src/plugin.ts";

const DAY = 86_400_000;

/** Picks `count` times, counting each pick as a request the way the health board does. */
function use(strategy: Strategy, candidates: FakeCandidate[], count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const c = strategy.pick(candidates, PICK_CONTEXT) as FakeCandidate;
    c.state.requests++;
    out.push(c.index);
  }
  return out;
}

Deno.test("daily_quota default export is a strategy named daily_quota", () => {
  assert.equal(quotaAwareDefault.kind, "strategy");
  assert.equal(quotaAwareDefault.name, "daily_quota");
  assert.notEqual(quotaAwareDefault.name, "quota_aware", "the built-in strategy's name");
  assert.match(quotaAwareDefault.description ?? "", /2000 × weight/);
  assert.equal(quotaAware({ name: "quota_500", dailyQuota: 500 }).name, "quota_500");
});

Deno.test("daily_quota.pick() shares equal quotas in turn", () => {
  const candidates = makeCandidates(3);
  const s = quotaAware({ now: () => 0 }).create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  assert.deepEqual(use(s, candidates, 6), [0, 1, 2, 0, 1, 2]);
});

Deno.test("daily_quota.pick() prefers the key with the most quota left (quota × weight)", () => {
  const candidates = makeCandidates([{ weight: 1 }, { weight: 3 }]);
  const s = quotaAware({ dailyQuota: 2, now: () => 0 }).create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  // left: [2, 6] → key 1 until both have 2 left, then in turn
  assert.deepEqual(use(s, candidates, 7), [1, 1, 1, 1, 0, 1, 0]);
});

Deno.test("daily_quota.pick() counts requests made elsewhere with the key", () => {
  const candidates = makeCandidates(2);
  const s = quotaAware({ now: () => 0 }).create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  use(s, candidates, 1); // first sight of both keys: today's count starts
  candidates[1]!.state.requests += 5; // another pool used key 1
  assert.deepEqual(use(s, candidates, 3), [0, 0, 0]);
});

Deno.test("daily_quota.pick() starts counting again on a new UTC day", () => {
  let now = 10 * DAY + 1000;
  const candidates = makeCandidates(2);
  const plugin = quotaAware({ now: () => now });
  const s = plugin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  candidates[0]!.state.requests = 0;
  use(s, candidates, 1); // key 0 used once today
  candidates[1]!.state.requests += 10; // key 1 heavily used today, after its count began
  assert.deepEqual(use(s, candidates, 2), [0, 0]);
  now = 11 * DAY; // midnight UTC: every key has its full quota again
  assert.deepEqual(use(s, candidates, 2), [1, 0]);
});

Deno.test("daily_quota counts survive a new strategy instance (a config reload)", () => {
  const candidates = makeCandidates(2);
  const plugin = quotaAware({ now: () => 0 });
  use(
    plugin.create({
      settings: {},
      candidates,
      now: () => 0,
      budgetLeft: () => 1,
      random: seededRandom(1),
    }),
    candidates,
    3,
  ); // 0, 1, 0
  const after = plugin.create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  assert.deepEqual(use(after, candidates, 1), [1]);
});

Deno.test("daily_quota.pick() only picks among the available candidates", () => {
  const candidates = makeCandidates([{ weight: 5 }, { weight: 1 }, { weight: 1 }]);
  const s = quotaAware({ now: () => 0 }).create({
    settings: {},
    candidates,
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  const available = [candidates[1]!, candidates[2]!];
  for (let i = 0; i < 4; i++) assert.notEqual(s.pick(available, PICK_CONTEXT)!.index, 0);
});

Deno.test("quotaAware() rejects a quota that is not positive", () => {
  assert.throws(
    () => quotaAware({ dailyQuota: 0 }),
    /^TypeError: Cannot build daily_quota: dailyQuota must be > 0, got 0$/,
  );
  assert.throws(() => quotaAware({ dailyQuota: Number.NaN }), /dailyQuota must be > 0/);
});
