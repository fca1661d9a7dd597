/**
 * @module
 * Tests of the `p2c` strategy plugin (power of two random choices over peak-EWMA latency).
 */

import assert from "node:assert/strict";
import p2c, { DEFAULT_DECAY_SECONDS } from "../../../plugins/strategies/p2c.ts";
import type { AttemptOutcome, Candidate, Strategy } from "../../../src/plugin.ts";
import {
  countPicks,
  type FakeCandidate,
  makeCandidates,
  PICK_CONTEXT,
  pickMany,
  seededRandom,
  sequenceRandom,
} from "../../helpers/candidates.ts";

/** A settable clock, in epoch ms. */
interface TestClock {
  t: number;
}

/** How {@linkcode setup} builds a strategy; every field is optional. */
interface SetupOptions {
  /** In-flight count per candidate, or a candidate count. @default 4 */
  loads?: number | number[];
  /** @default seededRandom(1) */
  random?: () => number;
  /** @default {} */
  settings?: Record<string, unknown>;
}

/** Builds a p2c strategy over fresh candidates and a settable clock starting at 1,000,000. */
function setup(options: SetupOptions = {}) {
  const { loads = 4, random = seededRandom(1), settings = {} } = options;
  const candidates = makeCandidates(
    typeof loads === "number" ? loads : loads.map((inFlight) => ({ inFlight })),
  );
  const clock: TestClock = { t: 1_000_000 };
  const strategy = p2c.create({
    candidates,
    random,
    now: () => clock.t,
    budgetLeft: () => 1,
    settings,
  });
  return { candidates, strategy, clock };
}

/** An outcome with the given fields over a telling, non-stream success. */
function outcome(fields: Partial<AttemptOutcome> = {}): AttemptOutcome {
  return {
    cls: "ok",
    status: 200,
    latencyMs: 100,
    ttfbMs: undefined,
    usage: undefined,
    stream: false,
    telling: true,
    ...fields,
  };
}

/** Tells the strategy each candidate answered a success in `costs[i]` ms (skipping undefined). */
function observe(
  strategy: Strategy,
  candidates: readonly Candidate[],
  costs: readonly (number | undefined)[],
): void {
  for (const [i, ms] of costs.entries()) {
    if (ms !== undefined) strategy.done!(candidates[i]!, outcome({ latencyMs: ms }), PICK_CONTEXT);
  }
}

/** Returns a random source that counts its draws in `counter.draws`. */
function counting(inner: () => number, counter: { draws: number }): () => number {
  return () => {
    counter.draws++;
    return inner();
  };
}

Deno.test("p2c plugin is a strategy named p2c", () => {
  assert.equal(p2c.kind, "strategy");
  assert.equal(p2c.name, "p2c");
  assert.ok(p2c.description.length > 0);
  assert.equal(DEFAULT_DECAY_SECONDS, 10);
});

Deno.test("p2c.pick() takes the lower cost of the two candidates drawn", () => {
  // costs [400, 100, 300, 200]; draws (x, y): i = floor(4x), j = floor(3y), skipping i
  const cases: { draws: [number, number]; pair: string; want: number }[] = [
    { draws: [0, 0], pair: "0 and 1", want: 1 },
    { draws: [0.5, 0.5], pair: "2 and 1", want: 1 },
    { draws: [0.99, 0.99], pair: "3 and 2", want: 3 },
    { draws: [0.25, 0.7], pair: "1 and 3", want: 1 },
    { draws: [0, 0.99], pair: "0 and 3", want: 3 },
    { draws: [0.5, 0], pair: "2 and 0", want: 2 },
    { draws: [1, 1], pair: "3 and 2 (a wrong 1 clamps)", want: 3 },
  ];
  for (const { draws, pair, want } of cases) {
    const { candidates, strategy } = setup({ random: sequenceRandom(draws) });
    observe(strategy, candidates, [400, 100, 300, 200]);
    assert.equal(strategy.pick(candidates, PICK_CONTEXT)?.index, want, pair);
  }
});

Deno.test("p2c.pick() draws exactly two numbers per pick over three or more candidates", () => {
  const counter = { draws: 0 };
  const { candidates, strategy } = setup({ random: counting(seededRandom(5), counter) });
  pickMany(strategy, { available: candidates, count: 50 }); // all unobserved: every pick ties
  assert.equal(counter.draws, 100);
  observe(strategy, candidates, [10, 20, 30, 40]);
  pickMany(strategy, { available: candidates.slice(1), count: 50 });
  assert.equal(counter.draws, 200);
});

Deno.test("p2c.pick() returns a lone candidate without drawing", () => {
  const { candidates, strategy } = setup({
    random: () => assert.fail("no draw expected"),
  });
  observe(strategy, candidates, [500]);
  assert.deepEqual(pickMany(strategy, { available: [candidates[2]!], count: 3 }), [2, 2, 2]);
});

Deno.test("p2c.pick() compares both of two candidates, drawing only to break a tie", () => {
  const counter = { draws: 0 };
  const { candidates, strategy } = setup({
    loads: 2,
    random: counting(sequenceRandom([0.2, 0.7]), counter),
  });
  // unobserved: equal costs and loads, so each pick draws: < 0.5 the first, else the second
  assert.deepEqual(pickMany(strategy, { available: candidates, count: 4 }), [0, 1, 0, 1]);
  assert.equal(counter.draws, 4);
  observe(strategy, candidates, [300, 100]);
  assert.deepEqual(pickMany(strategy, { available: candidates, count: 3 }), [1, 1, 1]);
  assert.equal(counter.draws, 4);
});

Deno.test("p2c.pick() multiplies the cost by the requests in flight + 1", () => {
  const cases: { loads: number[]; want: number }[] = [
    { loads: [0, 0], want: 0 }, // 100 vs 250
    { loads: [1, 0], want: 0 }, // 200 vs 250
    { loads: [2, 0], want: 1 }, // 300 vs 250
    { loads: [5, 1], want: 1 }, // 600 vs 500
    { loads: [4, 1], want: 1 }, // 500 vs 500: fewer in flight
  ];
  for (const { loads, want } of cases) {
    const { candidates, strategy } = setup({ loads, random: () => assert.fail("no draw") });
    observe(strategy, candidates, [100, 250]);
    assert.equal(strategy.pick(candidates, PICK_CONTEXT)?.index, want, `${loads}`);
  }
});

Deno.test("p2c.pick() sends a tie in cost to the key with fewer requests in flight", () => {
  // nothing observed: every cost is 0, so only the loads tell the keys apart
  const { candidates, strategy } = setup({ loads: [3, 1], random: () => assert.fail("no draw") });
  assert.equal(strategy.pick(candidates, PICK_CONTEXT)?.index, 1);
  candidates[1]!.state.inFlight = 4;
  assert.equal(strategy.pick(candidates, PICK_CONTEXT)?.index, 0);
});

Deno.test("p2c.pick() gives a never-observed key the mean cost of the observed available keys", () => {
  // keys 0 and 1 answered in 100 and 300 ms; key 2 never did, so it counts (100 + 300) / 2 = 200.
  // Draws (x, y) over three keys: i = floor(3x), j = floor(2y), skipping i.
  const cases: { draws: number[]; loads?: number[]; want: number; why: string }[] = [
    { draws: [0.5, 0.9], want: 2, why: "200 beats 300" },
    { draws: [0, 0.9], want: 0, why: "100 beats 200" },
    { draws: [0.5, 0.9], loads: [0, 0, 1], want: 1, why: "300 beats 200 × 2 in flight" },
  ];
  for (const { draws, loads = [0, 0, 0], want, why } of cases) {
    const { candidates, strategy } = setup({ loads, random: sequenceRandom(draws) });
    observe(strategy, candidates, [100, 300, undefined]);
    assert.equal(strategy.pick(candidates, PICK_CONTEXT)?.index, want, why);
  }
  // only the available keys count: with key 1 out, key 2 counts 100 and ties with key 0
  const counter = { draws: 0 };
  const { candidates, strategy } = setup({ loads: 3, random: counting(() => 0.9, counter) });
  observe(strategy, candidates, [100, 300, undefined]);
  assert.equal(strategy.pick([candidates[0]!, candidates[2]!], PICK_CONTEXT)?.index, 2);
  assert.equal(counter.draws, 1, "a tie, drawn");
});

Deno.test("p2c.pick() spreads picks evenly while nothing is observed", () => {
  const { candidates, strategy } = setup({ random: seededRandom(11) });
  const counts = countPicks(pickMany(strategy, { available: candidates, count: 4000 }), 4);
  for (const [i, n] of counts.entries()) assert.ok(n > 850 && n < 1150, `key ${i}: ${counts}`);
});

Deno.test("p2c.done() observes what the outcome says about the key's speed", () => {
  // key 1 answers in 150 ms; key 0's outcome decides: faster → 0, slower → 1, ignored → a tie
  const cases: { name: string; outcome: AttemptOutcome; want: "fast" | "slow" | "ignored" }[] = [
    { name: "ok", outcome: outcome({ latencyMs: 100, ttfbMs: 3000 }), want: "fast" },
    { name: "slow ok", outcome: outcome({ latencyMs: 400 }), want: "slow" },
    {
      name: "stream: time to first event",
      outcome: outcome({ stream: true, ttfbMs: 100, latencyMs: 9000 }),
      want: "fast",
    },
    {
      name: "stream without a first event: whole latency",
      outcome: outcome({ stream: true, latencyMs: 9000 }),
      want: "slow",
    },
    {
      name: "timeout",
      outcome: outcome({ cls: "timeout", status: undefined, latencyMs: 30_000 }),
      want: "slow",
    },
    {
      name: "server",
      outcome: outcome({ cls: "server", status: 503, latencyMs: 900 }),
      want: "slow",
    },
    { name: "connect", outcome: outcome({ cls: "connect", latencyMs: 5 }), want: "ignored" },
    { name: "auth", outcome: outcome({ cls: "auth", status: 401, latencyMs: 5 }), want: "ignored" },
    {
      name: "rate_limited",
      outcome: outcome({ cls: "rate_limited", status: 429, latencyMs: 5 }),
      want: "ignored",
    },
    {
      name: "quota",
      outcome: outcome({ cls: "quota", status: 402, latencyMs: 5 }),
      want: "ignored",
    },
    {
      name: "non-telling ok",
      outcome: outcome({ latencyMs: 5, telling: false }),
      want: "ignored",
    },
    {
      name: "non-telling timeout",
      outcome: outcome({ cls: "timeout", latencyMs: 30_000, telling: false }),
      want: "ignored",
    },
    {
      name: "client_abort",
      outcome: outcome({ cls: "client_abort", latencyMs: 9000, telling: false }),
      want: "ignored",
    },
  ];
  for (const { name, outcome: o, want } of cases) {
    const counter = { draws: 0 };
    const { candidates, strategy } = setup({ loads: 2, random: counting(() => 0, counter) });
    observe(strategy, candidates, [undefined, 150]);
    strategy.done!(candidates[0]!, o, PICK_CONTEXT);
    const picked = strategy.pick(candidates, PICK_CONTEXT)?.index;
    const got = counter.draws > 0 ? "ignored" : picked === 0 ? "fast" : "slow";
    assert.equal(got, want, name);
  }
});

Deno.test("p2c.done() with a non-telling outcome changes no later pick", () => {
  const picks = (noise: boolean) => {
    const { candidates, strategy, clock } = setup({ random: seededRandom(3) });
    observe(strategy, candidates, [100, 200, 300, 400]);
    const out: number[] = [];
    for (let step = 0; step < 200; step++) {
      clock.t += 100;
      const c = strategy.pick(candidates, PICK_CONTEXT)!;
      out.push(c.index);
      if (noise) {
        strategy.done!(c, outcome({ latencyMs: 1, telling: false }), PICK_CONTEXT);
        strategy.done!(
          c,
          outcome({ cls: "bad_request", status: 400, telling: false }),
          PICK_CONTEXT,
        );
      }
      strategy.done!(c, outcome({ latencyMs: 100 * (c.index + 1) }), PICK_CONTEXT);
    }
    return out;
  };
  assert.deepEqual(picks(true), picks(false));
});

Deno.test("p2c never mutates candidates", () => {
  const { candidates, strategy, clock } = setup({ loads: [0, 2, 1, 0] });
  for (const c of candidates) Object.freeze(Object.freeze(c).state);
  for (let step = 0; step < 300; step++) {
    clock.t += 50;
    const c = strategy.pick(candidates, PICK_CONTEXT)!;
    strategy.done!(c, outcome({ latencyMs: 50 + 10 * c.index }), PICK_CONTEXT);
  }
});

/** What {@linkcode simulate} runs. */
interface Simulation {
  strategy: Strategy;
  candidates: FakeCandidate[];
  clock: TestClock;
  /** Requests still in flight (ending at `end`), carried from one run to the next. */
  pending: { end: number; candidate: FakeCandidate; ms: number }[];
}

/**
 * Sends `picks` requests `gapMs` apart; each takes `latency(index)` ms, during which the key
 * counts it in flight, and reports a success through `done` when it ends (at its end time).
 * @returns the picked indexes, in order
 */
function simulate(
  sim: Simulation,
  picks: number,
  gapMs: number,
  latency: (index: number) => number,
): number[] {
  const { strategy, clock, pending } = sim;
  const finish = (until: number) => {
    pending.sort((x, y) => x.end - y.end);
    while (pending.length > 0 && pending[0]!.end <= until) {
      const p = pending.shift()!;
      clock.t = p.end;
      p.candidate.state.inFlight--;
      strategy.done!(p.candidate, outcome({ latencyMs: p.ms }), PICK_CONTEXT);
    }
  };
  const out: number[] = [];
  for (let step = 0; step < picks; step++) {
    const arrival = clock.t + gapMs;
    finish(arrival);
    clock.t = arrival;
    const c = sim.candidates[strategy.pick(sim.candidates, PICK_CONTEXT)!.index]!;
    out.push(c.index);
    c.state.inFlight++;
    const ms = latency(c.index);
    pending.push({ end: arrival + ms, candidate: c, ms });
  }
  return out;
}

Deno.test("p2c.pick() starves a 10x slower key, and gives it its share back once it is fast", () => {
  const { candidates, strategy, clock } = setup({ random: seededRandom(42) });
  const sim: Simulation = { strategy, candidates, clock, pending: [] };
  const jitter = seededRandom(7);
  const ms = (base: number) => base * (0.9 + 0.2 * jitter());
  // 20 requests a second for 50 s (5 decay periods): key 0 answers in ~1 s, the others in ~100 ms
  const slow = countPicks(simulate(sim, 1000, 50, (i) => ms(i === 0 ? 1000 : 100)), 4);
  assert.ok(slow[0]! < 50, `key 0 got ${slow[0]} of 1000 while slow: ${slow}`);
  for (const i of [1, 2, 3]) assert.ok(slow[i]! > 250, `key ${i}: ${slow}`);
  // key 0 now answers as fast as the others: its cost first decays from its last 1 s peak (about
  // 23 s to fall to 100 ms), then blends down; 3 to 5 decay periods on it is near a fair 25%
  const fast = simulate(sim, 1000, 50, () => ms(100));
  const late = countPicks(fast.slice(600), 4); // from 30 s to 50 s after it sped up
  assert.ok(late[0]! > 60, `key 0 got ${late[0]} of 400 once fast: ${late}`);
  for (const [i, n] of late.entries()) assert.ok(n < 140, `key ${i}: ${late}`);
});

Deno.test("p2c.pick() gives a key that never reports a fair part of the traffic, not all of it", () => {
  const { candidates, strategy, clock } = setup({ random: seededRandom(9) });
  const jitter = seededRandom(4);
  let seen = 0;
  for (let step = 0; step < 1000; step++) {
    clock.t += 50;
    const c = strategy.pick(candidates, PICK_CONTEXT)!;
    // key 3's attempts never tell anything (say the clients always leave)
    const telling = c.index !== 3;
    if (c.index === 3) seen++;
    strategy.done!(c, outcome({ latencyMs: 90 + 20 * jitter(), telling }), PICK_CONTEXT);
  }
  assert.ok(seen > 150 && seen < 350, `key 3 got ${seen} of 1000`);
});

Deno.test("p2c strategy_options.decay sets how fast a slow key's cost decays", () => {
  // key 0 answered once in 1000 ms at t0; key 1 keeps answering in 100 ms. Key 0's cost falls
  // below 100 after decay × ln 10 (23 s for the default 10 s, 2.3 s for 1 s).
  const cases: { settings: Record<string, unknown>; before: number; after: number }[] = [
    { settings: {}, before: 22_000, after: 24_000 },
    { settings: { decay: 10 }, before: 22_000, after: 24_000 },
    { settings: { decay: 1 }, before: 2_200, after: 2_400 },
    { settings: { decay: 0.5 }, before: 1_100, after: 1_200 },
  ];
  for (const { settings, before, after } of cases) {
    const { candidates, strategy, clock } = setup({ loads: 2, settings, random: () => 0 });
    const t0 = clock.t;
    observe(strategy, candidates, [1000, 100]);
    for (const [dt, want] of [[before, 1], [after, 0]] as const) {
      clock.t = t0 + dt;
      observe(strategy, candidates, [undefined, 100]);
      assert.equal(strategy.pick(candidates, PICK_CONTEXT)?.index, want, `${settings.decay} ${dt}`);
    }
  }
});

Deno.test("p2c.create() refuses a decay that is not a number of seconds from 0.01 to 86400", () => {
  for (
    const decay of [
      0,
      -1,
      NaN,
      Infinity,
      1e308,
      1e-300,
      0.001,
      86_401,
      "10",
      "10s",
      null,
      true,
      {},
      [
        5,
      ],
    ]
  ) {
    assert.throws(
      () => setup({ settings: { decay } }),
      (e: unknown) =>
        e instanceof Error &&
        /^strategy_options\.decay must be a number of seconds from 0\.01 to 86400 \(got .+\)$/.test(
          e.message,
        ),
      `decay ${JSON.stringify(decay)}`,
    );
  }
  assert.throws(() => setup({ settings: { decay: "10s" } }), { message: /\(got "10s"\)/ });
});

Deno.test("p2c.create() refuses an unknown option, naming it", () => {
  assert.throws(() => setup({ settings: { decay: 5, tau: 1, window: 2 } }), {
    message: 'Unknown strategy_options for p2c: "tau", "window" (known: decay)',
  });
});

Deno.test("p2c.pick() does not send a burst to a key whose cost decayed while it rested", () => {
  const { candidates, strategy, clock } = setup({ loads: 2, settings: { decay: 2 } });
  // both keys measured at 500 ms; then key 0 rests for 60 s (its cost decays to ~0)
  for (const c of candidates) strategy.done!(c, outcome({ latencyMs: 500 }), PICK_CONTEXT);
  clock.t += 60_000;
  let toReturning = 0;
  // 40 requests arrive together: each one stays in flight
  for (let i = 0; i < 40; i++) {
    const c = strategy.pick(candidates, PICK_CONTEXT)!;
    candidates[c.index]!.state.inFlight++;
    if (c.index === 0) toReturning++;
  }
  assert.ok(toReturning >= 15 && toReturning <= 25, `about half, not a burst (${toReturning})`);
});
