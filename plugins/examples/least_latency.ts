/**
 * @module
 * An example strategy that learns from outcomes, `least_latency`: the key answering fastest, in
 * the spirit of Finagle's and Linkerd's peak EWMA. Load it from a config file:
 *
 * ```yaml
 * plugins: [./plugins/examples/least_latency.ts]
 * pools:
 *   default: { strategy: least_latency, upstreams: [modelscope, deepseek] }
 * ```
 *
 * Its `done` hook keeps, per key, an average latency (time to first byte, else the whole attempt)
 * that fades towards 0 while the key is not heard from: `dt` ms after its last sample it is
 * worth `e^(-dt/decayMs)` of itself, so a key that was slow is tried again after a while. A new
 * sample above the faded average replaces it at once (the "peak"), so a key that slows down loses
 * traffic on its next answer; a lower one is blended in with the weight `1 - e^(-dt/decayMs)`. A
 * failure of the key (anything but `ok` that is `telling`) counts as
 * `penaltyMs`, or as its own latency if longer.
 *
 * `pick` draws two distinct available keys with `random()` and takes the cheaper, cost being the
 * average × (requests in flight + 1); a key without a sample costs 0, so new keys are tried.
 * Averages live as long as the pool (a config reload starts afresh).
 */

import type { Candidate, Strategy, StrategyPlugin } from "../../src/plugin.ts";

/** Options of {@linkcode leastLatency}. */
export interface LeastLatencyOptions {
  /** The strategy's name in config files. @default "least_latency" */
  name?: string;
  /** Time constant (ms) of the averages' fading and blending. @default 10000 */
  decayMs?: number;
  /** Latency (ms) a failed attempt counts as, at least. @default 30000 */
  penaltyMs?: number;
}

/**
 * Builds a `least_latency` strategy plugin.
 * @param options its name, decay time constant and failure penalty
 * @returns the plugin; register it by exporting it from a module named in `plugins:`
 * @throws {TypeError} when `decayMs` is not a positive number or `penaltyMs` not a finite one >= 0
 */
export function leastLatency(options: LeastLatencyOptions = {}): StrategyPlugin {
  const decayMs = options.decayMs ?? 10_000;
  const penaltyMs = options.penaltyMs ?? 30_000;
  if (!(decayMs > 0)) {
    throw new TypeError(`Cannot build least_latency: decayMs must be > 0, got ${decayMs}`);
  }
  if (!(penaltyMs >= 0 && Number.isFinite(penaltyMs))) {
    throw new TypeError(`Cannot build least_latency: penaltyMs must be >= 0, got ${penaltyMs}`);
  }
  return {
    kind: "strategy",
    name: options.name ?? "least_latency",
    description: "Of two random usable keys, the one with the lower peak-EWMA latency × load",
    create({ random, now }): Strategy {
      /** Per key id: the average (ms) and `now()` at its last sample. */
      const averages = new Map<string, { ms: number; at: number }>();
      const decay = (since: number, t: number) => Math.exp(-Math.max(0, t - since) / decayMs);

      function cost(c: Candidate, t: number): number {
        const avg = averages.get(c.id);
        if (avg === undefined) return 0;
        return avg.ms * decay(avg.at, t) * (c.state.inFlight + 1);
      }

      return {
        pick(available) {
          const n = available.length;
          if (n < 2) return available[0];
          const i = Math.min(Math.floor(random() * n), n - 1);
          let j = Math.min(Math.floor(random() * (n - 1)), n - 2);
          if (j >= i) j++; // a second key, distinct from the first
          const a = available[i]!;
          const b = available[j]!;
          const t = now();
          return cost(b, t) < cost(a, t) ? b : a;
        },
        done(candidate, outcome) {
          // a client that left, a malformed request, a closed kept-alive connection: not the key
          if (!outcome.telling) return;
          const sample = outcome.cls === "ok"
            ? outcome.ttfbMs ?? outcome.latencyMs
            : Math.max(penaltyMs, outcome.latencyMs);
          const t = now();
          const avg = averages.get(candidate.id);
          let ms = sample;
          if (avg !== undefined) {
            const w = decay(avg.at, t);
            const faded = avg.ms * w;
            if (sample < faded) ms = faded * w + sample * (1 - w); // else a peak: replace
          }
          averages.set(candidate.id, { ms, at: t });
        },
      };
    },
  };
}

/** `least_latency` with a 10 s time constant and a 30 s failure penalty. */
export default leastLatency();
