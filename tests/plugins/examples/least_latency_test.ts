/**
 * @module
 * Tests of the worked example strategy `least_latency` (plugins/examples/least_latency.ts): a
 * manual clock and seeded or scripted randomness make every run the same.
 */

import assert from "node:assert/strict";
import leastLatencyDefault, { leastLatency } from "../../../plugins/examples/least_latency.ts";
import {
  countPicks,
  type FakeCandidate,
  makeCandidates,
  PICK_CONTEXT,
  seededRandom,
  sequenceRandom,
} from "../../helpers/candidates.ts";
import type { AttemptClass, AttemptOutcome, Candidate, Strategy } from "../../../src/plugin.ts";

/** A successful attempt: `ms` to the first byte, twice that to the end. */
function ok(ms: number, ttfb = true): AttemptOutcome {
  return {
    cls: "ok",
    status: 200,
    latencyMs: ttfb ? 2 * ms : ms,
    ttfbMs: ttfb ? ms : undefined,
    usage: undefined,
    stream: false,
    telling: true,
  };
}

/** A failed attempt of class `cls`, after `ms`. */
function fail(cls: AttemptClass, ms = 50): AttemptOutcome {
  return {
    cls,
    status: cls === "server" ? 500 : undefined,
    latencyMs: ms,
    ttfbMs: undefined,
    usage: undefined,
    stream: false,
    telling: cls !== "client_abort" && cls !== "bad_request" && cls !== "stale",
  };
}

/** A strategy over fresh candidates, with a clock tests move by hand. */
function setup(count: number, random: () => number = seededRandom(7)) {
  const clock = { t: 1_000_000 };
  const candidates = makeCandidates(count);
  const strategy = leastLatency().create({
    settings: {},
    candidates,
    random,
    now: () => clock.t,
    budgetLeft: () => 1,
  });
  return { clock, candidates, strategy };
}

/** Tells the strategy's `done` hook how an attempt on `c` ended. */
function report(strategy: Strategy, c: Candidate, outcome: AttemptOutcome): void {
  assert.ok(strategy.done !== undefined, "least_latency has a done hook");
  strategy.done(c, outcome, PICK_CONTEXT);
}

/**
 * Serves `count` requests 100 ms apart: each pick is reported done with the latency
 * `latency[index]` gives.
 * @returns the picked indexes
 */
function serve(
  s: ReturnType<typeof setup>,
  count: number,
  latency: (index: number) => number,
): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    s.clock.t += 100;
    const c = s.strategy.pick(s.candidates, PICK_CONTEXT) as FakeCandidate;
    out.push(c.index);
    report(s.strategy, c, ok(latency(c.index)));
  }
  return out;
}

Deno.test("least_latency default export is a strategy named least_latency", () => {
  assert.equal(leastLatencyDefault.kind, "strategy");
  assert.equal(leastLatencyDefault.name, "least_latency");
  assert.equal(leastLatency({ name: "fastest" }).name, "fastest");
});

Deno.test("least_latency.pick() starves a key 10x slower, then takes it back when fast", () => {
  const s = setup(3);
  let slow = 1000; // key 2; keys 0 and 1 answer in 100 ms
  const before = serve(s, 600, (i) => (i === 2 ? slow : 100)); // 60 s
  assert.ok(before.slice(0, 5).includes(2), "the slow key is tried while it has no sample");
  // once known, only a retry each time its average has faded below the others' (~23 s)
  const slowPicks = countPicks(before.slice(100), 3)[2]!;
  assert.ok(slowPicks <= 5, `slow key got ${slowPicks} of 500 picks`);

  slow = 50; // key 2 is now the fastest: once faded, its next try brings its average down
  const after = serve(s, 600, (i) => (i === 2 ? slow : 100));
  const fastPicks = countPicks(after.slice(400), 3)[2]!;
  // two random keys of three: the best is among them 2/3 of the time
  assert.ok(fastPicks >= 120, `fast-again key got ${fastPicks} of 200 picks`);
});

Deno.test("least_latency.pick() prefers the lower cost (table)", () => {
  type Row = {
    name: string;
    /** What each key reported, in order, 1 s apart. */
    reports: [index: number, outcome: AttemptOutcome][];
    inFlight?: [number, number];
    want: number;
  };
  const table: Row[] = [
    { name: "faster key", reports: [[0, ok(300)], [1, ok(100)]], want: 1 },
    {
      name: "time to first byte over whole latency",
      reports: [[0, ok(100)], [1, ok(150, false)]],
      want: 0,
    },
    { name: "no sample yet: tried first", reports: [[0, ok(5)]], want: 1 },
    {
      name: "a peak replaces the average",
      reports: [[0, ok(100)], [1, ok(150)], [0, ok(400)]],
      want: 1,
    },
    {
      name: "a server error is a penalty",
      reports: [[0, ok(100)], [1, ok(900)], [0, fail("server")]],
      want: 1,
    },
    {
      name: "a timeout is a penalty",
      reports: [[0, ok(100)], [1, ok(900)], [0, fail("timeout")]],
      want: 1,
    },
    {
      name: "a rate limit is a penalty",
      reports: [[0, ok(100)], [1, ok(900)], [0, fail("rate_limited")]],
      want: 1,
    },
    {
      name: "a client abort is not",
      reports: [[0, ok(100)], [1, ok(900)], [0, fail("client_abort", 9e5)]],
      want: 0,
    },
    {
      name: "a bad request is not",
      reports: [[0, ok(100)], [1, ok(900)], [0, fail("bad_request")]],
      want: 0,
    },
    {
      name: "a stale connection is not",
      reports: [[0, ok(100)], [1, ok(900)], [0, fail("stale")]],
      want: 0,
    },
    {
      name: "load multiplies the cost",
      reports: [[0, ok(100)], [1, ok(250)]],
      inFlight: [2, 0],
      want: 1,
    },
    {
      name: "a faster sample lowers the average",
      reports: [[0, ok(300)], [1, ok(250)], [0, ok(10)]],
      want: 0,
    },
    { name: "(the same without it)", reports: [[0, ok(300)], [1, ok(250)]], want: 1 },
  ];
  for (const row of table) {
    for (const draws of [[0, 0], [0.9, 0]]) { // both orders of the two drawn keys
      const s = setup(2, sequenceRandom(draws));
      for (const [index, outcome] of row.reports) {
        s.clock.t += 1000;
        report(s.strategy, s.candidates[index]!, outcome);
      }
      s.candidates[0]!.state.inFlight = row.inFlight?.[0] ?? 0;
      s.candidates[1]!.state.inFlight = row.inFlight?.[1] ?? 0;
      assert.equal(s.strategy.pick(s.candidates, PICK_CONTEXT)?.index, row.want, row.name);
    }
  }
});

Deno.test("least_latency.pick() draws two distinct keys with random()", () => {
  const s = setup(4, sequenceRandom([0.5, 0.7])); // first draw: key 2; second: key 3 (2 skipped)
  report(s.strategy, s.candidates[2]!, ok(100));
  assert.equal(s.strategy.pick(s.candidates, PICK_CONTEXT)?.index, 3);
});

Deno.test("least_latency.pick() only picks among the available candidates", () => {
  const s = setup(5);
  const available = [s.candidates[1]!, s.candidates[3]!];
  for (let i = 0; i < 200; i++) {
    s.clock.t += 100;
    const c = s.strategy.pick(available, PICK_CONTEXT)!;
    assert.ok(c === available[0] || c === available[1], `picked ${c.index}`);
    report(s.strategy, c, i % 7 === 0 ? fail("server") : ok(100 + c.index));
  }
});

Deno.test("least_latency.pick() returns the only available candidate", () => {
  const s = setup(3, () => {
    throw new Error("random() not needed for one candidate");
  });
  report(s.strategy, s.candidates[1]!, fail("server"));
  assert.equal(s.strategy.pick([s.candidates[1]!], PICK_CONTEXT)?.index, 1);
});

Deno.test("least_latency never changes candidates", () => {
  const s = setup(3);
  const before = JSON.stringify(s.candidates);
  serve(s, 50, (i) => 100 * (i + 1));
  assert.equal(JSON.stringify(s.candidates), before);
});

Deno.test("leastLatency() rejects a decay or penalty out of range", () => {
  assert.throws(() => leastLatency({ decayMs: 0 }), /decayMs must be > 0, got 0/);
  assert.throws(() => leastLatency({ decayMs: Number.NaN }), /decayMs must be > 0/);
  assert.throws(() => leastLatency({ penaltyMs: -1 }), /penaltyMs must be >= 0, got -1/);
  assert.throws(() => leastLatency({ penaltyMs: Infinity }), /penaltyMs must be >= 0/);
});
