/**
 * @module
 * Tests of {@linkcode Lease}: one attempt's hold on a candidate, ended exactly once. The paths
 * through the forwarding engine (failure, success, stream end, client abort, shutdown cut) are
 * proven in forward_test.ts; here the lease itself.
 */

import assert from "node:assert/strict";
import { LatencyTracker } from "../../src/admin/latency.ts";
import { HealthBoard } from "../../src/health/board.ts";
import { Logger } from "../../src/logger.ts";
import type { AttemptOutcome, Candidate, Strategy } from "../../src/plugin.ts";
import { AttemptControl, OpenAttempts } from "../../src/proxy/attempt_control.ts";
import { Lease, type LeaseLedger } from "../../src/proxy/lease.ts";
import { Watchdog } from "../../src/proxy/watchdog.ts";
import { type CandidateState, MemoryStateStore } from "../../src/state_store.ts";
import { baseConfig } from "../../src/config/defaults.ts";
import { ManualClock } from "../helpers/clock.ts";
import { Budgets } from "../../src/budget/book.ts";
import { makeCandidates, PICK_CONTEXT } from "../helpers/candidates.ts";

function ledgerOf(clock = new ManualClock()) {
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({ sink: (l) => lines.push(JSON.parse(l)), format: "json" });
  const store = new MemoryStateStore();
  const board = new HealthBoard({
    store,
    logger,
    config: baseConfig("t", "native").health,
    now: clock.now,
  });
  const ledger: LeaseLedger = {
    board,
    open: new OpenAttempts(),
    latency: new LatencyTracker(),
    budgets: new Budgets({ onChange: () => board.epoch++ }),
    clock,
    logger,
  };
  // candidates whose state is the store's record, as a runtime builds them
  const [c] = makeCandidates(1).map((c) => ({ ...c, state: store.record(c.id) }));
  return { ledger, clock, lines, candidate: c as Candidate };
}

function recording(): Strategy & { seen: AttemptOutcome[] } {
  const seen: AttemptOutcome[] = [];
  return { seen, pick: (a) => a[0], done: (_c, o) => void seen.push(o) };
}

Deno.test("Lease starts an attempt: in flight, counted, not a trial on a healthy key", () => {
  const { ledger, candidate } = ledgerOf();
  const lease = new Lease(ledger, candidate);
  assert.equal(candidate.state.inFlight, 1);
  assert.equal(candidate.state.requests, 1);
  assert.equal(lease.trial, false);
  assert.equal(lease.ended, false);
});

Deno.test("Lease.done() runs once: a second call changes nothing", () => {
  const { ledger, candidate } = ledgerOf();
  const strategy = recording();
  const lease = new Lease(ledger, candidate, { strategy, ctx: PICK_CONTEXT });
  lease.done({ cls: "server", status: 500 });
  lease.done({ cls: "ok", status: 200 });
  lease.done({ cls: "server", status: 502 });
  assert.equal(candidate.state.inFlight, 0);
  assert.equal(candidate.state.failures, 1);
  assert.equal(candidate.state.consecutiveFailures, 1);
  assert.deepEqual(strategy.seen.map((o) => o.cls), ["server"]);
  assert.equal(lease.ended, true);
});

Deno.test("Lease.done() releases the held control: disposed and no longer open", () => {
  const { ledger, candidate, clock } = ledgerOf();
  const lease = new Lease(ledger, candidate);
  const control = new AttemptControl(undefined, new Watchdog({ clock }));
  control.armTotal(1000);
  lease.hold(control);
  assert.equal(ledger.open.size, 1);
  lease.done({ cls: "ok" });
  assert.equal(ledger.open.size, 0);
  clock.advance(2000);
  control.check(clock.mono());
  assert.equal(control.signal.aborted, false, "a disposed control's limits are cleared");
});

Deno.test("Lease.hold() after done() disposes the control at once and keeps it out", () => {
  const { ledger, candidate, clock } = ledgerOf();
  const lease = new Lease(ledger, candidate);
  lease.done({ cls: "client_abort" });
  const control = new AttemptControl(undefined, new Watchdog({ clock }));
  control.armTotal(10);
  lease.hold(control);
  assert.equal(ledger.open.size, 0);
  clock.advance(20);
  control.check(clock.mono());
  assert.equal(control.signal.aborted, false);
});

Deno.test("Lease.done() tells the strategy the latency and time to first byte on its clock", () => {
  const { ledger, candidate, clock } = ledgerOf();
  const strategy = recording();
  const lease = new Lease(ledger, candidate, { strategy, ctx: PICK_CONTEXT });
  clock.advance(120);
  lease.firstByte();
  clock.advance(380);
  lease.firstByte(); // only the first counts
  lease.done({ cls: "ok", status: 200 });
  assert.deepEqual(strategy.seen, [{
    cls: "ok",
    status: 200,
    latencyMs: 500,
    ttfbMs: 120,
    usage: undefined,
    stream: false,
    telling: true,
  }]);
  assert.equal(ledger.latency.percentiles(candidate.id).p50, 500);
});

Deno.test("Lease.done() records latency for successes only", () => {
  const { ledger, candidate, clock } = ledgerOf();
  const lease = new Lease(ledger, candidate);
  clock.advance(40);
  lease.done({ cls: "timeout" });
  assert.equal(ledger.latency.percentiles(candidate.id).p50, null);
});

Deno.test("Lease.done() counts the tokens the upstream reported on the key", () => {
  const { ledger, candidate } = ledgerOf();
  new Lease(ledger, candidate).done({
    cls: "ok",
    usage: { promptTokens: 10, completionTokens: 5, totalTokens: 15 },
  });
  new Lease(ledger, candidate).done({
    cls: "server",
    usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 },
  });
  assert.equal(candidate.state.promptTokens, 11);
  assert.equal(candidate.state.completionTokens, 7);
  assert.equal(candidate.state.totalTokens, 18);
});

Deno.test("Lease.done() rests a key for the provider's reset time on a rate limit", () => {
  const { ledger, candidate, clock } = ledgerOf();
  new Lease(ledger, candidate).done({
    cls: "rate_limited",
    status: 429,
    retryAt: clock.now() + 7000,
  });
  assert.equal(candidate.state.restReason, "rate_limited");
  assert.equal(candidate.state.restUntil, clock.now() + 7000);
});

Deno.test("Lease.done() logs a strategy hook that throws and still ends the attempt", () => {
  const { ledger, candidate, lines } = ledgerOf();
  const lease = new Lease(ledger, candidate, {
    strategy: {
      pick: (a) => a[0],
      done: () => {
        throw new Error("hook broke");
      },
    },
    ctx: PICK_CONTEXT,
  });
  lease.done({ cls: "ok" });
  assert.equal(candidate.state.inFlight, 0);
  const line = lines.find((l) => l.msg === "strategy done() hook failed");
  assert.equal(line?.error, "hook broke");
});

Deno.test("Lease is the half-open trial when it starts on a key whose ejection expired", () => {
  const { ledger, candidate, clock } = ledgerOf();
  const s = candidate.state as { ejectedUntil: number; ejections: number };
  s.ejectedUntil = clock.now() - 1;
  s.ejections = 1;
  const trial = new Lease(ledger, candidate);
  const other = new Lease(ledger, candidate);
  assert.equal(trial.trial, true);
  assert.equal(other.trial, false);
  trial.done({ cls: "ok" });
  other.done({ cls: "ok" });
  assert.equal(candidate.state.ejectedUntil, 0);
  assert.equal(candidate.state.inFlight, 0);
});

Deno.test("Lease.reserved is true at once without a shared bank", () => {
  const { ledger, candidate } = ledgerOf();
  const lease = new Lease(ledger, candidate);
  assert.equal(lease.reserved, true);
});

Deno.test("Lease.withdraw() undoes the start: not in flight, not counted, trial free, once", () => {
  const { ledger, candidate, clock } = ledgerOf();
  const s = candidate.state as CandidateState;
  s.ejectedUntil = clock.now() - 1; // an expired ejection: this lease is the trial
  let released = 0;
  const lease = new Lease({ ...ledger, released: () => released++ }, candidate);
  assert.equal(lease.trial, true);
  assert.equal(s.trialInFlight, true);
  const control = new AttemptControl(undefined, new Watchdog({ clock }));
  lease.hold(control);
  lease.withdraw();
  lease.withdraw();
  lease.done({ cls: "server", status: 500 });
  assert.equal(s.inFlight, 0);
  assert.equal(s.requests, 0);
  assert.equal(s.failures, 0, "nothing was sent: no failure is recorded");
  assert.equal(s.trialInFlight, false, "the next request may be the trial");
  assert.equal(ledger.open.size, 0);
  assert.equal(released, 1, "waiters are told once");
  assert.equal(lease.ended, true);
});
