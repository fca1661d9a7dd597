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

function setup(specs: number | CandidateSpec[], strategy: Strategy = FIRST) {
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
    fallback: roundRobin.create({ candidates, now: () => 0, random: seededRandom(1) }),
    board,
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
