import assert from "node:assert/strict";
import { HealthBoard } from "../../src/health/board.ts";
import { isAvailable, statusOf } from "../../src/health/availability.ts";
import type { HealthCheckConfig, HealthConfig } from "../../src/config/types.ts";
import { Logger } from "../../src/logger.ts";
import type { Candidate, ProbeResult } from "../../src/plugin.ts";
import { type CandidateState, MemoryStateStore } from "../../src/state_store.ts";
import { makeCandidates, makeUpstream } from "../helpers/candidates.ts";

const HEALTH: HealthConfig = {
  ejectionBaseMs: 10_000,
  ejectionMaxMs: 35_000,
  rateLimitRestMs: 60_000,
  quotaRestMs: 3_600_000,
  authRestMs: 600_000,
};

interface Setup {
  board: HealthBoard;
  c: Candidate & { state: CandidateState };
  /** The fake clock. */
  clock: { t: number };
  advance(ms: number): void;
  logs: Record<string, unknown>[];
  /** Log messages so far. */
  msgs(): string[];
}

function setup(options: {
  maxFailures?: number;
  healthCheck?: boolean;
  /** Whether the health check validates keys. @default false */
  validatesKey?: boolean;
  probes?: boolean;
} = {}): Setup {
  const clock = { t: 1_000_000 };
  const now = () => clock.t;
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger({
    level: "debug",
    format: "json",
    now,
    sink: (line) => logs.push(JSON.parse(line)),
  });
  const store = new MemoryStateStore();
  const up = makeUpstream("up");
  const healthCheck: HealthCheckConfig = {
    probe: "http",
    path: "/models",
    intervalMs: 1000,
    timeoutMs: 500,
    ...(options.validatesKey ? { validatesKey: true } : {}),
  };
  const config = {
    ...up.config,
    maxFailures: options.maxFailures ?? 3,
    ...(options.healthCheck ? { healthCheck } : {}),
  };
  const [fake] = makeCandidates(1);
  const c = { ...fake!, upstream: { ...up, config }, state: store.record("up#k0") };
  const board = new HealthBoard({
    store,
    logger,
    config: HEALTH,
    now,
    ...(options.probes === undefined ? {} : { probes: options.probes }),
  });
  return {
    board,
    c,
    clock,
    advance: (ms) => clock.t += ms,
    logs,
    msgs: () => logs.map((l) => String(l.msg)),
  };
}

/** One attempt: begin, then end with the class. */
function attempt(
  b: HealthBoard,
  c: Candidate,
  cls: Parameters<HealthBoard["end"]>[1],
  info?: Parameters<HealthBoard["end"]>[2],
): boolean {
  const trial = b.begin(c);
  b.end(c, cls, info);
  return trial;
}

function probe(outcome: ProbeResult["outcome"], extra: Partial<ProbeResult> = {}): ProbeResult {
  return { outcome, latencyMs: 1, ...extra };
}

Deno.test("HealthBoard.begin() and end() count requests, in-flight and last use", () => {
  const { board, c, clock } = setup();
  board.begin(c);
  board.begin(c);
  assert.equal(c.state.inFlight, 2);
  assert.equal(c.state.requests, 2);
  assert.equal(c.state.lastUsed, clock.t);
  board.end(c, "ok");
  board.end(c, "ok");
  board.end(c, "ok");
  assert.equal(c.state.inFlight, 0);
});

Deno.test("HealthBoard ejects after max_failures consecutive failures, not before", () => {
  const { board, c, clock, msgs } = setup({ maxFailures: 3 });
  attempt(board, c, "server");
  attempt(board, c, "connect");
  assert.equal(isAvailable(c.state, clock.t), true);
  assert.equal(c.state.consecutiveFailures, 2);
  attempt(board, c, "timeout");
  assert.equal(statusOf(c.state, clock.t), "ejected");
  assert.equal(c.state.ejectedUntil, clock.t + HEALTH.ejectionBaseMs);
  assert.equal(c.state.ejections, 1);
  assert.equal(c.state.lastError, "timeout");
  assert.equal(msgs().filter((m) => m === "candidate ejected").length, 1);
});

Deno.test("HealthBoard resets the failure streak on a success", () => {
  const { board, c, clock } = setup({ maxFailures: 2 });
  attempt(board, c, "server");
  attempt(board, c, "ok");
  attempt(board, c, "server");
  assert.equal(isAvailable(c.state, clock.t), true);
  assert.equal(c.state.consecutiveFailures, 1);
  assert.equal(c.state.failures, 2);
});

Deno.test("HealthBoard does not count client aborts or 4xx towards ejection", () => {
  const { board, c, clock } = setup({ maxFailures: 1 });
  attempt(board, c, "client_abort");
  attempt(board, c, "bad_request");
  attempt(board, c, "rate_limited", { retryAt: clock.t });
  attempt(board, c, "quota", { retryAt: clock.t });
  attempt(board, c, "auth", { status: 401 });
  assert.equal(c.state.ejectedUntil, 0);
  assert.equal(c.state.consecutiveFailures, 0);
});

Deno.test("HealthBoard grows the cool-down with each ejection, capped", () => {
  const { board, c, clock, advance, msgs } = setup({ maxFailures: 1 });
  const lengths: number[] = [];
  attempt(board, c, "server");
  for (let i = 0; i < 5; i++) {
    lengths.push(c.state.ejectedUntil - clock.t);
    advance(c.state.ejectedUntil - clock.t);
    assert.equal(statusOf(c.state, clock.t), "half_open");
    assert.equal(
      attempt(board, c, "server"),
      true,
      "the first request after the cool-down is the trial",
    );
  }
  assert.deepEqual(lengths, [10_000, 20_000, 30_000, 35_000, 35_000]);
  assert.equal(c.state.ejections, 6);
  assert.equal(msgs().filter((m) => m === "candidate ejected again after failed trial").length, 5);
});

Deno.test("HealthBoard lets exactly one half-open trial through; success restores", () => {
  const { board, c, clock, advance, msgs } = setup({ maxFailures: 1 });
  attempt(board, c, "server");
  advance(HEALTH.ejectionBaseMs);
  assert.equal(isAvailable(c.state, clock.t), true);
  const epoch = board.epoch;
  assert.equal(board.begin(c), true);
  assert.ok(board.epoch > epoch, "pools must drop the candidate while its trial runs");
  assert.equal(isAvailable(c.state, clock.t), false);
  assert.equal(statusOf(c.state, clock.t), "half_open");
  board.end(c, "ok", { trial: true });
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.equal(c.state.ejections, 0);
  assert.equal(c.state.trialInFlight, false);
  assert.equal(msgs().filter((m) => m === "candidate restored").length, 1);
  // the next ejection starts from the base length again
  attempt(board, c, "server");
  assert.equal(c.state.ejectedUntil - clock.t, HEALTH.ejectionBaseMs);
});

Deno.test("HealthBoard ejects for longer when the half-open trial fails", () => {
  const { board, c, clock, advance } = setup({ maxFailures: 2 });
  attempt(board, c, "server");
  attempt(board, c, "server");
  advance(HEALTH.ejectionBaseMs);
  assert.equal(attempt(board, c, "connect", { trial: true }), true);
  assert.equal(statusOf(c.state, clock.t), "ejected");
  assert.equal(c.state.ejectedUntil - clock.t, 2 * HEALTH.ejectionBaseMs);
  assert.equal(c.state.trialInFlight, false);
});

Deno.test("HealthBoard frees the trial slot when the trial ends without a verdict", () => {
  const { board, c, clock, advance } = setup({ maxFailures: 1 });
  attempt(board, c, "server");
  advance(HEALTH.ejectionBaseMs);
  attempt(board, c, "client_abort");
  assert.equal(isAvailable(c.state, clock.t), true, "a client that left decides nothing");
  assert.equal(c.state.consecutiveFailures, 1);
  attempt(board, c, "rate_limited", { retryAt: clock.t + 1000 });
  assert.equal(c.state.trialInFlight, false);
  advance(1000);
  assert.equal(statusOf(c.state, clock.t), "half_open");
  assert.equal(attempt(board, c, "ok"), true);
  assert.equal(statusOf(c.state, clock.t), "healthy");
});

Deno.test("HealthBoard lets only the trial decide when older attempts end during it", () => {
  const { board, c, clock, advance } = setup({ maxFailures: 1 });
  const oldOk = board.begin(c);
  const oldFail = board.begin(c);
  attempt(board, c, "server");
  advance(HEALTH.ejectionBaseMs);
  const trial = board.begin(c);
  assert.equal(trial, true);
  board.end(c, "server", { trial: oldFail });
  assert.equal(statusOf(c.state, clock.t), "half_open", "an older failure does not re-eject");
  board.end(c, "ok", { trial: oldOk });
  assert.equal(c.state.trialInFlight, true, "an older success does not end the trial");
  board.end(c, "ok", { trial });
  assert.equal(statusOf(c.state, clock.t), "healthy");
});

Deno.test("HealthBoard does not extend an ejection for failures while ejected (panic)", () => {
  const { board, c, clock, advance } = setup({ maxFailures: 1 });
  attempt(board, c, "server");
  const until = c.state.ejectedUntil;
  advance(1000);
  assert.equal(attempt(board, c, "server"), false, "a panic attempt is no trial");
  assert.equal(c.state.ejectedUntil, until);
  assert.equal(c.state.lastFailureAt, clock.t);
  assert.equal(c.state.consecutiveFailures, 2);
});

Deno.test("HealthBoard rests a rate-limited key until the given time, then by default", () => {
  const { board, c, clock, advance, logs } = setup();
  attempt(board, c, "rate_limited", { retryAt: clock.t + 5000, status: 429 });
  assert.equal(statusOf(c.state, clock.t), "resting");
  assert.equal(c.state.restReason, "rate_limited");
  assert.equal(c.state.restUntil, clock.t + 5000);
  assert.equal(c.state.consecutiveFailures, 0);
  advance(4999);
  assert.equal(isAvailable(c.state, clock.t), false);
  advance(1);
  assert.equal(isAvailable(c.state, clock.t), true, "a rest expires by time alone");
  attempt(board, c, "rate_limited");
  assert.equal(c.state.restUntil, clock.t + HEALTH.rateLimitRestMs);
  const line = logs.find((l) => l.msg === "key resting: rate limited by the upstream");
  assert.equal(line?.key, c.mask);
  assert.equal(line?.status, 429);
});

Deno.test("HealthBoard does not rest a key whose Retry-After is now", () => {
  const { board, c, clock } = setup();
  attempt(board, c, "rate_limited", { retryAt: clock.t });
  assert.equal(isAvailable(c.state, clock.t), true);
});

Deno.test("HealthBoard rests a key with exhausted quota until its reset time", () => {
  const { board, c, clock } = setup();
  attempt(board, c, "quota", { retryAt: clock.t + 86_400_000 });
  assert.equal(c.state.restReason, "quota");
  assert.equal(c.state.restUntil, clock.t + 86_400_000);
  const fresh = setup();
  attempt(fresh.board, fresh.c, "quota");
  assert.equal(fresh.c.state.restUntil, fresh.clock.t + HEALTH.quotaRestMs);
});

Deno.test("HealthBoard logs a rest once however many 429s arrive", () => {
  const { board, c, clock, advance, msgs } = setup();
  for (let i = 0; i < 5; i++) {
    attempt(board, c, "rate_limited", { retryAt: clock.t + 10_000 + i });
  }
  assert.equal(c.state.restUntil, clock.t + 10_004, "a later reset extends the rest");
  const resting = () => msgs().filter((m) => m.startsWith("key resting")).length;
  assert.equal(resting(), 1);
  advance(20_000);
  attempt(board, c, "rate_limited");
  assert.equal(resting(), 2, "a new rest is a new state change");
});

Deno.test("HealthBoard rests a key refused with 401 when no probe can restore it", () => {
  const { board, c, clock, logs } = setup();
  attempt(board, c, "auth", { status: 401 });
  assert.equal(statusOf(c.state, clock.t), "resting");
  assert.equal(c.state.restReason, "auth");
  assert.equal(c.state.restUntil, clock.t + HEALTH.authRestMs);
  const line = logs.find((l) => String(l.msg).startsWith("key resting: refused"));
  assert.equal(line?.key, c.mask);
  assert.equal(line?.status, 401);
  assert.equal(line?.level, "warn");
});

Deno.test("HealthBoard takes a refused key out until a probe succeeds when the probe validates keys", () => {
  const { board, c, clock, advance, logs } = setup({ healthCheck: true, validatesKey: true });
  attempt(board, c, "auth", { status: 403 });
  attempt(board, c, "auth", { status: 403 });
  assert.equal(statusOf(c.state, clock.t), "unhealthy");
  assert.equal(c.state.unhealthyReason, "auth (HTTP 403)");
  const refused = logs.filter((l) => String(l.msg).startsWith("key refused by the upstream"));
  assert.equal(refused.length, 1, "logged once");
  assert.equal(refused[0]?.key, c.mask);
  advance(10 * HEALTH.authRestMs);
  assert.equal(isAvailable(c.state, clock.t), false, "time alone does not bring it back");
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(statusOf(c.state, clock.t), "healthy");
});

Deno.test("HealthBoard rests a refused key when the upstream has a health check but probes are off", () => {
  const { board, c, clock } = setup({ healthCheck: true, validatesKey: true, probes: false });
  attempt(board, c, "auth", { status: 401 });
  assert.equal(statusOf(c.state, clock.t), "resting");
  assert.equal(c.state.restReason, "auth");
});

Deno.test("HealthBoard never lets a probe that cannot validate keys bring a refused key back", () => {
  // ModelScope: GET /v1/models answers 200 to any token
  const { board, c, clock, advance, msgs } = setup({ healthCheck: true });
  attempt(board, c, "auth", { status: 401 });
  assert.equal(statusOf(c.state, clock.t), "resting");
  const until = c.state.restUntil;
  assert.equal(until, clock.t + HEALTH.authRestMs);
  for (let i = 0; i < 5; i++) {
    advance(30_000);
    board.probed(c, probe("healthy", { status: 200 }));
    assert.equal(statusOf(c.state, clock.t), "resting", `probe ${i + 1}`);
  }
  assert.equal(c.state.restUntil, until);
  assert.equal(c.state.restReason, "auth");
  assert.equal(msgs().filter((m) => m.startsWith("key resting")).length, 1);
  // after auth_rest, a real request is the trial: refused again, it rests again
  advance(HEALTH.authRestMs);
  assert.equal(isAvailable(c.state, clock.t), true);
  attempt(board, c, "auth", { status: 401 });
  assert.equal(statusOf(c.state, clock.t), "resting");
  assert.equal(c.state.restUntil, clock.t + HEALTH.authRestMs);
  // accepted, it serves on
  advance(HEALTH.authRestMs);
  attempt(board, c, "ok");
  assert.equal(statusOf(c.state, clock.t), "healthy");
});

Deno.test("HealthBoard lets an operator reset bring a refused key back at once", () => {
  const { board, c, clock } = setup({ healthCheck: true });
  attempt(board, c, "auth", { status: 403 });
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(statusOf(c.state, clock.t), "resting");
  board.reset(c);
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.equal(c.state.restReason, "");
});

Deno.test("HealthBoard lets a probe that validates keys end an auth rest", () => {
  // e.g. a rest taken while probes were off, before a reload turned them on
  const { board, c, clock, msgs } = setup({ healthCheck: true, validatesKey: true });
  c.state.restReason = "auth";
  c.state.restUntil = clock.t + HEALTH.authRestMs;
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.equal(c.state.restReason, "");
  assert.ok(msgs().includes("key restored: a probe that validates keys succeeded"));
});

Deno.test("HealthBoard keeps a key its own probe refused out until a probe succeeds", () => {
  // a probe answering 401 does check keys, whatever the config says: its 200 is believed
  const { board, c, clock } = setup({ healthCheck: true });
  board.probed(c, probe("auth", { status: 401 }));
  assert.equal(statusOf(c.state, clock.t), "unhealthy");
  assert.equal(c.state.unhealthyReason, "auth (HTTP 401)");
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(statusOf(c.state, clock.t), "healthy");
});

Deno.test("HealthBoard.probed() marks a key unhealthy once and restores it on success", () => {
  const { board, c, clock, msgs } = setup({ healthCheck: true });
  board.probed(c, probe("server_error", { status: 500 }));
  board.probed(c, probe("server_error", { status: 502 }));
  board.probed(c, probe("network", { detail: "connection refused" }));
  assert.equal(statusOf(c.state, clock.t), "unhealthy");
  assert.equal(c.state.unhealthyReason, "probe: network", "the reason follows the last probe");
  assert.equal(msgs().filter((m) => m === "candidate unhealthy (probe)").length, 1);
  board.probed(c, probe("healthy", { status: 200 }));
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.equal(msgs().filter((m) => m === "candidate healthy again (probe)").length, 1);
});

Deno.test("HealthBoard.probed() ends an ejected key's cool-down early; a trial decides", () => {
  const { board, c, clock, msgs } = setup({ maxFailures: 1, healthCheck: true });
  attempt(board, c, "server");
  assert.equal(statusOf(c.state, clock.t), "ejected");
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(statusOf(c.state, clock.t), "half_open");
  assert.equal(isAvailable(c.state, clock.t), true);
  assert.ok(msgs().includes("candidate half-open: probe succeeded, next request is a trial"));
  assert.equal(attempt(board, c, "server"), true, "the next request is the trial");
  assert.equal(
    c.state.ejectedUntil - clock.t,
    2 * HEALTH.ejectionBaseMs,
    "a failed trial ejects longer",
  );
  board.probed(c, probe("healthy", { status: 200 }));
  assert.equal(attempt(board, c, "ok"), true);
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.equal(c.state.consecutiveFailures, 0);
});

Deno.test("HealthBoard.probed() leaves a running half-open trial to decide", () => {
  const { board, c, clock, advance } = setup({ maxFailures: 1, healthCheck: true });
  attempt(board, c, "server");
  advance(HEALTH.ejectionBaseMs);
  board.begin(c);
  board.probed(c, probe("healthy"));
  assert.equal(c.state.trialInFlight, true);
  board.end(c, "server");
  assert.equal(statusOf(c.state, clock.t), "ejected");
});

Deno.test("HealthBoard.probed() rests a key the probe finds rate limited", () => {
  const { board, c, clock } = setup({ healthCheck: true });
  board.probed(c, probe("rate_limited", { status: 429, retryAt: clock.t + 3000 }));
  assert.equal(statusOf(c.state, clock.t), "resting");
  assert.equal(c.state.restUntil, clock.t + 3000);
  board.probed(c, probe("rate_limited", { status: 429 }));
  assert.equal(c.state.restUntil, clock.t + HEALTH.rateLimitRestMs);
});

Deno.test("HealthBoard.epoch stays still for healthy traffic and moves on every availability change", () => {
  const { board, c, clock, advance } = setup({ maxFailures: 1, healthCheck: true });
  const e0 = board.epoch;
  for (let i = 0; i < 10; i++) attempt(board, c, "ok");
  assert.equal(board.epoch, e0, "pools must not rebuild on every request");
  attempt(board, c, "rate_limited", { retryAt: clock.t + 1000 });
  const e1 = board.epoch;
  assert.ok(e1 > e0);
  attempt(board, c, "rate_limited", { retryAt: clock.t + 5000 });
  assert.ok(board.epoch > e1, "a longer rest changes when the key returns");
  advance(5000);
  const e2 = board.epoch;
  attempt(board, c, "server");
  assert.ok(board.epoch > e2);
});

Deno.test("HealthBoard.epoch moves when a probe makes a resting key's return time finite", () => {
  const { board, c, clock } = setup({ healthCheck: true });
  board.probed(c, probe("server_error", { status: 500 }));
  attempt(board, c, "rate_limited", { retryAt: clock.t + 1000 });
  const e = board.epoch;
  board.probed(c, probe("healthy"));
  assert.equal(statusOf(c.state, clock.t), "resting");
  assert.ok(board.epoch > e, "pools must learn that the key now returns when its rest ends");
});

Deno.test("HealthBoard.setDisabled() takes a key out until enabled, logging once", () => {
  const { board, c, clock, msgs } = setup();
  board.setDisabled(c, true);
  board.setDisabled(c, true);
  assert.equal(statusOf(c.state, clock.t), "disabled");
  board.setDisabled(c, false);
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.deepEqual(msgs(), ["candidate disabled by operator", "candidate enabled by operator"]);
});

Deno.test("HealthBoard.reset() clears health state but keeps counters", () => {
  const { board, c, clock } = setup({ maxFailures: 1, healthCheck: true });
  attempt(board, c, "server");
  attempt(board, c, "rate_limited");
  board.probed(c, probe("server_error"));
  board.reset(c);
  assert.equal(statusOf(c.state, clock.t), "healthy");
  assert.equal(c.state.ejections, 0);
  assert.equal(c.state.requests, 2);
  assert.equal(c.state.failures, 2);
});
