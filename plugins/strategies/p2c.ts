/**
 * @module
 * The `p2c` strategy: power of two random choices over peak-EWMA latency, as Finagle's and
 * Linkerd's balancers do it. Each pick draws two distinct available candidates at random and
 * takes the one with the lower load, `cost × (state.inFlight + 1)`: requests already pending on a
 * key multiply its cost, so a fast key is not flooded. The cost is a {@linkcode PeakEwma} of the
 * key's latency, fed by the `done` hook: a slow answer raises it at once (the peak), fast
 * answers bring it down smoothly, and while a key gets no traffic its cost decays toward 0 with
 * the time constant `decay`, so a key that was slow is tried again and gets its share back once
 * it is fast. While a key has requests in flight its cost does not decay (the last answer's
 * stands): a key back from a rest, its cost decayed away, takes one request, not a burst, before
 * its first answer tells how fast it is (Finagle penalizes pending requests on a key without a
 * cost for the same reason). Comparing two random keys, not all of them, keeps the pick O(1) and spreads
 * requests that arrive together instead of sending them all to the one best key.
 *
 * What is observed: for a success, the time to the first event of a stream (its whole length
 * depends on how much the model writes) or the whole latency otherwise; for a `timeout` or
 * `server` failure, its latency, since a key that fails slowly is slow. Outcomes that say
 * nothing about the key (`telling: false`) and the other classes (`connect`, `auth`,
 * `rate_limited`, `quota`, ...) are not observed: the health board rests or ejects those keys.
 *
 * A key never observed (new, or only ever failing in ways not observed) counts the mean cost of
 * the observed keys among the available ones, 0 when there are none: it is not starved behind a
 * pool of fast keys, and not flooded as if it were the fastest (its first answer then gives it
 * its own cost). That mean takes one pass over `available`, only for a pick that drew such a
 * key. Equal loads go to the key with fewer requests in flight, then to the first drawn (with
 * two available keys, drawn for the tie).
 *
 * Options (`strategy_options`): `decay`, the time constant in seconds (default 10, Finagle's
 * and Linkerd's).
 */

import {
  type Candidate,
  latencySample,
  PeakEwma,
  type Strategy,
  type StrategyOptions,
  type StrategyPlugin,
} from "../../src/plugin.ts";

/** The default `decay`, in seconds (Finagle's and Linkerd's). */
export const DEFAULT_DECAY_SECONDS = 10;
/** The shortest `decay` taken, in seconds. */
export const MIN_DECAY_SECONDS = 0.01;
/** The longest `decay` taken, in seconds (a day). */
export const MAX_DECAY_SECONDS = 86_400;

/** Shows a setting's value in an error message. */
function show(value: unknown): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value);
}

/**
 * Reads the strategy's options.
 * @param settings the pool's `strategy_options`
 * @returns the decay time constant in ms
 * @throws {Error} naming the option, for an unknown option or a bad `decay`
 */
function decayMs(settings: Readonly<Record<string, unknown>>): number {
  const unknown = Object.keys(settings).filter((name) => name !== "decay");
  if (unknown.length > 0) {
    const names = unknown.map((name) => `"${name}"`).join(", ");
    throw new Error(`Unknown strategy_options for p2c: ${names} (known: decay)`);
  }
  const decay = settings.decay === undefined ? DEFAULT_DECAY_SECONDS : settings.decay;
  if (typeof decay !== "number" || !(decay >= MIN_DECAY_SECONDS && decay <= MAX_DECAY_SECONDS)) {
    throw new Error(
      `strategy_options.decay must be a number of seconds from ${MIN_DECAY_SECONDS} to ${MAX_DECAY_SECONDS} (got ${
        show(settings.decay)
      })`,
    );
  }
  return decay * 1000;
}

/**
 * Power of two random choices: of two distinct random available candidates, the one with the
 * lower peak-EWMA latency × (requests in flight + 1).
 */
export default {
  kind: "strategy",
  name: "p2c",
  description: "The faster of two random usable keys (peak-EWMA latency × requests in flight)",
  options: ["decay"],
  create(options: StrategyOptions): Strategy {
    const { random, now } = options;
    const ewma = new PeakEwma(decayMs(options.settings ?? {}), options.candidates.length);

    /** The mean cost of the observed candidates among `available` at `t`; 0 when none. */
    function meanCost(available: readonly Candidate[], t: number): number {
      let sum = 0;
      let n = 0;
      for (const c of available) {
        if (!ewma.observed(c.index)) continue;
        sum += ewma.cost(c.index, t);
        n++;
      }
      return n === 0 ? 0 : sum / n;
    }

    /**
     * A key's cost: decayed toward 0 while it is idle (so a key that was slow is tried again),
     * but as its last answer left it while it has requests in flight: a key back from a rest
     * whose cost decayed away does not take a burst before its first answer says how it is.
     */
    function costOf(c: Candidate, t: number): number {
      return c.state.inFlight > 0 ? ewma.last(c.index) : ewma.cost(c.index, t);
    }

    /** A position in [0, n) from one draw (a wrong `random()` of 1 still lands inside). */
    function draw(n: number): number {
      return Math.min(Math.floor(random() * n), n - 1);
    }

    return {
      pick(available) {
        const n = available.length;
        if (n === 1) return available[0]!;
        let a: Candidate;
        let b: Candidate;
        if (n === 2) {
          a = available[0]!;
          b = available[1]!;
        } else {
          const i = draw(n);
          let j = draw(n - 1);
          if (j >= i) j++;
          a = available[i]!;
          b = available[j]!;
        }
        const t = now();
        let costA = costOf(a, t);
        let costB = costOf(b, t);
        if (!ewma.observed(a.index) || !ewma.observed(b.index)) {
          const mean = meanCost(available, t);
          if (!ewma.observed(a.index)) costA = mean;
          if (!ewma.observed(b.index)) costB = mean;
        }
        const loadA = costA * (a.state.inFlight + 1);
        const loadB = costB * (b.state.inFlight + 1);
        if (loadA !== loadB) return loadA < loadB ? a : b;
        if (a.state.inFlight !== b.state.inFlight) {
          return a.state.inFlight < b.state.inFlight ? a : b;
        }
        return n === 2 && random() >= 0.5 ? b : a;
      },

      done(candidate, outcome) {
        if (!outcome.telling) return;
        const { cls, stream, ttfbMs, latencyMs } = outcome;
        const ms = latencySample(cls, stream, ttfbMs, latencyMs);
        if (ms !== undefined) ewma.observe(candidate.index, ms, now());
      },
    };
  },
} satisfies StrategyPlugin;
