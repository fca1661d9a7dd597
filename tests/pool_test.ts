/**
 * @module
 * Tests of {@linkcode Pool}: availability snapshot, exclusions, priority tiers, panic mode,
 * half-open trials and the summary, with an injected clock.
 */

import assert from "node:assert/strict";
import roundRobin from "../plugins/strategies/round_robin.ts";
import { HealthBoard } from "../src/health/board.ts";
import { Logger } from "../src/logger.ts";
import type { Candidate, CandidateState, PickContext, Strategy } from "../src/plugin.ts";
import { Pool } from "../src/pool.ts";
import { MemoryStateStore } from "../src/state_store.ts";
import { AffinityRouter } from "../src/routing/affinity.ts";
import { SlowStart } from "../src/routing/slow_start.ts";
import type { LeaseLedger } from "../src/proxy/lease.ts";
import { OpenAttempts } from "../src/proxy/attempt_control.ts";
import { LatencyTracker } from "../src/admin/latency.ts";
import { Budgets } from "../src/budget/book.ts";
import { type CandidateSpec, makeCandidates, seededRandom } from "./helpers/candidates.ts";

type Cand = Candidate & { state: CandidateState };

const CTX: PickContext = {
  model: "m",
  attempt: 1,
  client: undefined,
  affinityKey: undefined,
  headers: new Headers(),
};
const FIRST: Strategy = { pick: (list) => list[0]! };

function setup(
  specs: number | CandidateSpec[],
  strategy: Strategy = FIRST,
  routing: { affinity?: boolean; slowStartMs?: number } = {},
) {
  const clock = { t: 1_000_000 };
  const now = () => clock.t;
  const store = new MemoryStateStore();
  const logs: string[] = [];
  const logger = new Logger({ level: "debug", format: "json", now, sink: (l) => logs.push(l) });
  const board = new HealthBoard({
    store,
    logger,
    now,
    config: {
      ejectionBaseMs: 10_000,
      ejectionMaxMs: 60_000,
      rateLimitRestMs: 5_000,
      quotaRestMs: 60_000,
      authRestMs: 60_000,
    },
  });
  const candidates: Cand[] = makeCandidates(specs).map((c) => ({
    ...c,
    state: Object.assign(store.record(c.id), c.state),
  }));
  const errors: unknown[] = [];
  const pool = new Pool({
    model: "m",
    strategyName: "test",
    candidates,
    strategy,
    fallback: roundRobin.create({
      settings: {},
      candidates,
      now: () => 0,
      budgetLeft: () => 1,
      random: seededRandom(1),
    }),
    board,
    affinity: routing.affinity === true
      ? new AffinityRouter({ candidates, ttlMs: 600_000, maxLoad: 1.25, random: seededRandom(3) })
      : undefined,
    slowStart: routing.slowStartMs === undefined
      ? undefined
      : new SlowStart(candidates.length, routing.slowStartMs),
    onStrategyError: (err) => errors.push(err),
  });
  /** Fails a candidate `n` times (ejects it when n >= max_failures). */
  const fail = (c: Candidate, n = 3) => {
    for (let i = 0; i < n; i++) {
      board.begin(c);
      board.end(c, "server");
    }
  };
  const pickIndex = (exclude?: (c: Candidate) => boolean) => pool.pick(CTX, exclude)?.index;
  return { clock, board, candidates, pool, errors, fail, pickIndex };
}

Deno.test("Pool.pick() chooses among available candidates only", () => {
  const { candidates: [a, b, c, d, e], board, pool, fail, pickIndex } = setup(5);
  board.begin(a!);
  board.end(a!, "rate_limited");
  board.setDisabled(b!, true);
  fail(c!);
  board.probed(d!, { outcome: "server_error", status: 500, latencyMs: 1 });
  assert.equal(pickIndex(), e!.index);
  assert.deepEqual(pool.available(board.now()).map((x) => x.index), [4]);
});

Deno.test("Pool.pick() skips excluded candidates and returns undefined when all are", () => {
  const { pickIndex } = setup(3);
  assert.equal(pickIndex((c) => c.index === 0), 1);
  assert.equal(pickIndex((c) => c.index < 2), 2);
  assert.equal(pickIndex(() => true), undefined, "no panic while candidates are available");
});

Deno.test("Pool.pick() uses a lower tier only while every higher one is unusable", () => {
  const { candidates: [p1, p2], board, fail, pickIndex } = setup([
    { priority: 0 },
    { priority: 0 },
    { priority: 1 },
    { priority: 2 },
  ]);
  assert.equal(pickIndex(), 0);
  fail(p1!);
  assert.equal(pickIndex(), 1, "one primary left: it serves");
  board.begin(p2!);
  board.end(p2!, "quota", { retryAt: board.now() + 1000 });
  assert.equal(pickIndex(), 2, "every primary unusable: the backup tier serves");
  assert.equal(pickIndex((c) => c.index === 2), 3, "a tried backup falls to the next tier");
});

Deno.test("Pool.pick() sends traffic back to the primary as soon as its rest ends", () => {
  const { candidates: [p], board, clock, pickIndex } = setup([{ priority: 0 }, { priority: 1 }]);
  board.begin(p!);
  board.end(p!, "rate_limited", { retryAt: clock.t + 2000 });
  assert.equal(pickIndex(), 1);
  const epoch = board.epoch;
  clock.t += 1999;
  assert.equal(pickIndex(), 1);
  clock.t += 1;
  assert.equal(board.epoch, epoch, "no event: the snapshot wakes up by itself");
  assert.equal(pickIndex(), 0);
});

Deno.test("Pool.pick() sends traffic back to the primary when a probe restores it", () => {
  const { candidates: [p], board, pickIndex } = setup([{ priority: 0 }, { priority: 1 }]);
  board.probed(p!, { outcome: "network", latencyMs: 1 });
  assert.equal(pickIndex(), 1);
  board.probed(p!, { outcome: "healthy", status: 200, latencyMs: 1 });
  assert.equal(pickIndex(), 0);
});

Deno.test("Pool.pick() lets one request through a half-open candidate, then others", () => {
  const { candidates: [a], board, clock, fail, pickIndex } = setup(2);
  fail(a!);
  assert.equal(pickIndex(), 1);
  clock.t += 10_000;
  assert.equal(pickIndex(), 0, "the ejection expired: a trial may go");
  assert.equal(board.begin(a!), true);
  assert.equal(pickIndex(), 1, "no second request while the trial runs");
  board.end(a!, "ok");
  assert.equal(pickIndex(), 0, "the trial succeeded: back in rotation");
});

Deno.test("Pool.pick() in panic tries the least recently failed ejected candidate", () => {
  const { candidates: [a, b, c], clock, fail, pickIndex } = setup(3);
  fail(b!);
  clock.t += 10;
  fail(a!);
  clock.t += 10;
  fail(c!);
  assert.equal(pickIndex(), 1, "b failed first");
  assert.equal(pickIndex((k) => k.index === 1), 0, "then a");
  assert.equal(pickIndex((k) => k.index !== 2), 2);
  assert.equal(pickIndex(() => true), undefined);
  clock.t += 10;
  fail(b!, 1);
  assert.equal(pickIndex(), 0, "b failed again in panic: a is now the least recent");
});

Deno.test("Pool.pick() panics over ejected candidates only, never resting or unhealthy ones", () => {
  const { candidates: [a, b, c], board, fail, pickIndex } = setup(3);
  board.begin(a!);
  board.end(a!, "rate_limited");
  board.probed(b!, { outcome: "server_error", latencyMs: 1 });
  fail(c!);
  assert.equal(pickIndex(), 2);
  board.probed(c!, { outcome: "network", latencyMs: 1 });
  assert.equal(pickIndex(), undefined);
});

Deno.test("Pool.pick() falls back when the strategy throws or returns a stranger", () => {
  const throwing: Strategy = {
    pick: () => {
      throw new Error("boom");
    },
  };
  const t = setup(2, throwing);
  assert.equal(t.pickIndex(), 0);
  assert.equal(t.errors.length, 1);
  const [stranger] = makeCandidates([{ upstream: "other" }]);
  const s = setup(2, { pick: () => stranger! });
  assert.ok([0, 1].includes(s.pickIndex()!));
  assert.match(String(s.errors[0]), /returned a non-candidate/);
  const chosen: { c?: Candidate } = {};
  const lowTier = setup([{ priority: 0 }, { priority: 1 }], { pick: () => chosen.c! });
  chosen.c = lowTier.candidates[1]!;
  assert.equal(lowTier.pickIndex(), 0, "a pick from another tier is refused");
});

Deno.test("Pool.pick() wakes up for a key whose rest ends after a probe restored it", () => {
  const { candidates: [a], board, clock, pickIndex } = setup([{ priority: 0 }, { priority: 1 }]);
  board.probed(a!, { outcome: "server_error", status: 500, latencyMs: 1 });
  board.begin(a!);
  board.end(a!, "rate_limited", { retryAt: clock.t + 1000 });
  assert.equal(pickIndex(), 1);
  board.probed(a!, { outcome: "healthy", status: 200, latencyMs: 1 });
  assert.equal(pickIndex(), 1, "still resting");
  clock.t += 1000;
  assert.equal(pickIndex(), 0);
});

Deno.test("Pool.summary() counts candidates by status and finds the earliest return", () => {
  const { candidates: [a, b, c, d, e, f], board, clock, fail, pool } = setup(7);
  board.begin(a!);
  board.end(a!, "rate_limited", { retryAt: clock.t + 4000 });
  board.begin(b!);
  board.end(b!, "quota", { retryAt: clock.t + 9000 });
  board.begin(c!);
  board.end(c!, "auth", { status: 401 });
  board.probed(d!, { outcome: "server_error", latencyMs: 1 });
  fail(e!);
  board.setDisabled(f!, true);
  const sum = pool.summary(clock.t);
  assert.deepEqual(sum, {
    total: 7,
    available: 1,
    disabled: 1,
    unhealthy: 1,
    ejected: 1,
    resting: 3,
    spent: 0,
    spentForModel: 0,
    busy: 0,
    rateLimited: 1,
    quota: 1,
    authFailed: 1,
    nextReturn: clock.t + 4000,
  });
});

Deno.test("Pool.summary() reports Infinity when nothing returns by time alone", () => {
  const { candidates: [a], board, clock, pool } = setup(1);
  board.probed(a!, { outcome: "auth", status: 401, latencyMs: 1 });
  const sum = pool.summary(clock.t);
  assert.equal(sum.authFailed, 1);
  assert.equal(sum.nextReturn, Infinity);
});

Deno.test("Pool.any() tells whether a pick would succeed without moving the strategy", () => {
  let picks = 0;
  const counting: Strategy = { pick: (list) => (picks++, list[0]!) };
  const { pool, board, candidates: [a, b] } = setup(2, counting);
  assert.equal(pool.any(), true);
  assert.equal(pool.any((c) => c.index === 0), true);
  assert.equal(pool.any(() => true), false);
  board.setDisabled(a!, true);
  board.setDisabled(b!, true);
  assert.equal(pool.any(), false);
  assert.equal(picks, 0);
});

Deno.test("Pool.pick() passes over a key spent for the request's model, not for another", () => {
  const { candidates: [a, b], board, clock, pool, pickIndex } = setup(2);
  a!.state.budget.modelSpentUntil.m = clock.t + 1000;
  board.epoch++;
  assert.equal(pickIndex(), 1, "a is spent for m");
  assert.equal(pool.pick({ ...CTX, model: "other" })?.index, 0, "a still serves other models");
  assert.deepEqual(pool.available(clock.t).map((c) => c.index), [0, 1], "a stays in the snapshot");
  assert.equal(pool.any(undefined, "m"), true);
  assert.equal(pool.any((c) => c.index === 1, "m"), false, "only a is left, and it is spent");
  b!.state.budget.modelSpentUntil.m = clock.t + 2000;
  board.epoch++;
  assert.equal(pickIndex(), undefined, "every key spent for m: no pick, no panic");
  assert.equal(pool.pick({ ...CTX, model: "other" })?.index, 0);
  clock.t += 1000;
  assert.equal(pickIndex(), 0, "a's spend for m is over");
});

Deno.test("Pool.pick() passes over a key spent for every model until the time passes", () => {
  const { candidates: [a], board, clock, pool, pickIndex } = setup(2);
  a!.state.budget.spentUntil = clock.t + 1000;
  a!.state.budget.spentReason = "day";
  board.epoch++;
  assert.equal(pickIndex(), 1);
  assert.equal(pool.pick({ ...CTX, model: "other" })?.index, 1);
  assert.equal(pool.pick({ ...CTX, model: undefined })?.index, 1);
  assert.deepEqual(pool.available(clock.t).map((c) => c.index), [1]);
  const epoch = board.epoch;
  clock.t += 999;
  assert.equal(pickIndex(), 1);
  clock.t += 1;
  assert.equal(board.epoch, epoch, "no event: the snapshot wakes up by itself");
  assert.equal(pickIndex(), 0);
});

Deno.test("Pool.pick() never panics over a spent key", () => {
  const { candidates: [a], board, clock, pickIndex } = setup(1);
  a!.state.budget.spentUntil = clock.t + 1000;
  board.epoch++;
  assert.equal(pickIndex(), undefined);
});

Deno.test("Pool.pick() skips a key at its concurrency cap until a slot frees", () => {
  const { candidates: [a], board, pool, pickIndex } = setup([
    { quota: { maxConcurrency: 1 }, inFlight: 1 },
    {},
  ]);
  assert.equal(pickIndex(), 1);
  // a full key stays in the snapshot (a pick passes over it): no rebuild per request
  assert.deepEqual(pool.available(board.now()).map((c) => c.index), [0, 1]);
  a!.state.inFlight = 0;
  board.epoch++;
  assert.equal(pickIndex(), 0);
  const full = setup([{ quota: { maxConcurrency: 2 }, inFlight: 2 }]);
  assert.equal(full.pickIndex(), undefined, "a full pool waits: no panic");
  assert.equal(full.pool.any(), false);
});

Deno.test("Pool.pick() refuses a strategy's pick of a key at its concurrency cap", () => {
  const chosen: { c?: Candidate } = {};
  const t = setup([{ quota: { maxConcurrency: 1 } }, {}], { pick: () => chosen.c! });
  chosen.c = t.candidates[0]!;
  assert.equal(t.pickIndex(), 0);
  t.candidates[0]!.state.inFlight = 1;
  t.board.epoch++;
  // a is full: the pool offers b only; the strategy names a anyway
  assert.equal(t.pickIndex(), 1);
  assert.equal(t.errors.length, 1);
  assert.match(String(t.errors[0]), /returned a non-candidate/);
});

Deno.test("Pool.summary() counts spent, spent-for-model and busy keys for a model", () => {
  const { candidates: [a, b, c, d], board, clock, pool } = setup([
    {},
    {},
    { quota: { maxConcurrency: 1 }, inFlight: 1 },
    { quota: { modelRequestsPerDay: 2 } },
    {},
  ]);
  const t = clock.t;
  a!.state.budget.spentUntil = t + 5000;
  a!.state.budget.spentReason = "day";
  b!.state.budget.modelSpentUntil.m = t + 3000;
  d!.state.budget.dayEnd = t + 7000;
  d!.state.budget.modelRequests.m = 2;
  board.epoch++;
  assert.equal(c!.state.inFlight, 1);
  assert.deepEqual(pool.summary(t, "m"), {
    total: 5,
    available: 1,
    disabled: 0,
    unhealthy: 0,
    ejected: 0,
    resting: 0,
    spent: 1,
    spentForModel: 2,
    busy: 1,
    rateLimited: 0,
    quota: 0,
    authFailed: 0,
    // a busy key may be back when a request ends: a second from now, the earliest
    nextReturn: t + 1000,
  });
  // another model: b and d serve it
  const other = pool.summary(t, "other");
  assert.deepEqual(
    [other.available, other.spent, other.spentForModel, other.busy, other.nextReturn],
    [3, 1, 0, 1, t + 1000],
  );
  // no busy key: the earliest return is b's for m, then d's at the day's end, then a's
  c!.state.inFlight = 0;
  board.epoch++;
  assert.equal(pool.summary(t, "m").nextReturn, t + 3000);
  b!.state.budget.modelSpentUntil = {};
  assert.equal(pool.summary(t, "m").nextReturn, t + 5000);
  assert.equal(pool.summary(t, "other").nextReturn, t + 5000);
  a!.state.budget.spentUntil = 0;
  assert.equal(pool.summary(t, "m").nextReturn, t + 7000, "d is back for m at its daily reset");
  assert.equal(pool.summary(t, "m").spentForModel, 1);
  assert.equal(pool.summary(t).nextReturn, Infinity, "without a model nothing is out");
  assert.equal(pool.summary(t).available, 5);
});

const withValue = (affinityKey: string): PickContext => ({ ...CTX, affinityKey });

Deno.test("Pool.pick() routes a request with an affinity value to its pin, on top of the strategy", () => {
  const { pool } = setup(4, FIRST, { affinity: true });
  const landed = new Set<number>();
  for (let i = 0; i < 40; i++) {
    const c = pool.pick(withValue(`v${i}`))!;
    landed.add(c.index);
    assert.equal(pool.pick(withValue(`v${i}`))!.index, c.index);
  }
  assert.equal(landed.size, 4, "pins spread over every key, though the strategy picks key 0");
  assert.equal(pool.pick(CTX)!.index, 0, "no affinity value: the strategy picks");
  assert.deepEqual(pool.affinity!.counts, { hit: 40, new: 40, moved: 0, detour: 0 });
});

Deno.test("Pool.lease() tells how affinity routing chose", () => {
  const { pool, board, candidates } = setup(3, FIRST, { affinity: true });
  const ledger: LeaseLedger = {
    board,
    open: new OpenAttempts(),
    latency: new LatencyTracker(),
    budgets: new Budgets({ onChange: () => board.epoch++ }),
    clock: { now: board.now, mono: () => 0 },
    logger: new Logger({ sink: () => {} }),
  };
  const pool2 = new Pool({
    model: "m",
    strategyName: "test",
    candidates,
    strategy: FIRST,
    fallback: FIRST,
    board,
    ledger,
    affinity: pool.affinity,
    onStrategyError: () => {},
  });
  const first = pool2.lease(withValue("v"))!;
  assert.equal(first.affinity, "new");
  first.withdraw();
  assert.equal(pool2.lease(withValue("v"))!.affinity, "hit");
  assert.equal(pool2.lease(CTX)!.affinity, undefined);
});

Deno.test("Pool.pick() moves a pin off a resting key and keeps it on a tried one", () => {
  const { pool, board, candidates } = setup(4, FIRST, { affinity: true });
  const home = pool.pick(withValue("conv"))!;
  // tried by this request (a retry): detour, the pin stays
  const retry = pool.pick(withValue("conv"), (c) => c === home)!;
  assert.notEqual(retry.index, home.index);
  assert.equal(pool.pick(withValue("conv"))!.index, home.index);
  // rate limited: the pin moves, and stays moved after the rest
  board.begin(home);
  board.end(home, "rate_limited", { retryAt: board.now() + 5_000 });
  const moved = pool.pick(withValue("conv"))!;
  assert.notEqual(moved.index, home.index);
  board.reset(candidates[home.index]!);
  assert.equal(pool.pick(withValue("conv"))!.index, moved.index);
  assert.deepEqual(pool.affinity!.counts, { hit: 2, new: 1, moved: 1, detour: 1 });
});

Deno.test("Pool.pick() keeps pins to the best tier, and off keys spent for the model", () => {
  const { pool, board, candidates, fail } = setup(
    [{ priority: 0 }, { priority: 1 }, { priority: 1 }],
    FIRST,
    { affinity: true },
  );
  assert.equal(pool.pick(withValue("a"))!.index, 0, "the only primary takes every pin");
  fail(candidates[0]!);
  const backup = pool.pick(withValue("a"))!;
  assert.equal(backup.priority, 1);
  board.reset(candidates[0]!);
  assert.equal(pool.pick(withValue("a"))!.index, 0, "the primary is back: the pin returns");
  // spent for this model: out for it, so the pin moves
  candidates[0]!.state.budget.modelSpentUntil = { m: board.now() + 60_000 };
  board.epoch++;
  assert.equal(pool.pick(withValue("a"))!.priority, 1);
});

Deno.test("Pool.pick() detours around a key at its concurrency cap without moving the pin", () => {
  const { pool, candidates } = setup(
    [{ quota: { maxConcurrency: 1 } }, { quota: { maxConcurrency: 1 } }],
    FIRST,
    { affinity: true },
  );
  const home = pool.pick(withValue("x"))!;
  candidates[home.index]!.state.inFlight = 1;
  assert.notEqual(pool.pick(withValue("x"))!.index, home.index);
  candidates[home.index]!.state.inFlight = 0;
  assert.equal(pool.pick(withValue("x"))!.index, home.index);
  assert.equal(pool.affinity!.counts.detour, 1);
});

Deno.test("Pool.pick() slow-starts a key back from a rest under any strategy", () => {
  const rr = roundRobin.create({
    settings: {},
    candidates: makeCandidates(2),
    now: () => 0,
    budgetLeft: () => 1,
    random: seededRandom(1),
  });
  const { pool, board, candidates, clock } = setup(2, rr, { slowStartMs: 10_000 });
  pool.pick(CTX);
  board.begin(candidates[0]!);
  board.end(candidates[0]!, "rate_limited", { retryAt: clock.t + 1_000 });
  assert.equal(pool.pick(CTX)!.index, 1);
  const shareAt = (offsetMs: number) => {
    clock.t = candidates[0]!.state.restUntil + offsetMs;
    let n = 0;
    for (let i = 0; i < 2000; i++) if (pool.pick(CTX)!.index === 0) n++;
    return n / 2000;
  };
  // round robin gives each key half; key 0 ramps linearly from its return (the rest's end)
  const early = shareAt(1_000);
  const mid = shareAt(5_000);
  const done = shareAt(10_000);
  assert.ok(early < 0.08, `10% into the ramp: ${early}`);
  assert.ok(mid > 0.2 && mid < 0.3, `half way: ${mid}`);
  assert.equal(done, 0.5);
  assert.equal(pool.slowStart!.share(candidates[0]!, clock.t), 1);
});

Deno.test("Pool.pick() slow-starts an enabled key from the moment it is seen back", () => {
  const { pool, board, candidates, clock } = setup(2, FIRST, { slowStartMs: 4_000 });
  board.setDisabled(candidates[0]!, true);
  assert.equal(pool.pick(CTX)!.index, 1);
  clock.t += 60_000;
  board.setDisabled(candidates[0]!, false);
  let first = 0;
  for (let i = 0; i < 1000; i++) if (pool.pick(CTX)!.index === 0) first++;
  assert.ok(first < 20, `at the start of its ramp key 0 takes almost nothing (${first})`);
  clock.t += 2_000;
  let half = 0;
  for (let i = 0; i < 1000; i++) if (pool.pick(CTX)!.index === 0) half++;
  // its fair part is half the picks: half way through the ramp, a quarter
  assert.ok(half > 200 && half < 300, `half way, half its fair part (${half})`);
});

Deno.test("Pool.pick() pins to a key of weight 0 only when no other key can serve", () => {
  const { pool, board, candidates } = setup([{ weight: 0 }, { weight: 1 }], FIRST, {
    affinity: true,
  });
  for (let i = 0; i < 20; i++) assert.equal(pool.pick(withValue(`w${i}`))!.index, 1);
  board.setDisabled(candidates[1]!, true);
  assert.equal(pool.pick(withValue("w0"))!.index, 0, "the only usable key serves");
});
