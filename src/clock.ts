/**
 * @module
 * The one clock llm-balance reads: wall time for what people and providers see (rests, resets,
 * log lines) and monotonic time for durations and deadlines (timeouts, latency, lifetimes).
 * Injected everywhere, so tests move time by hand instead of sleeping on real timers.
 */

/** A source of time. */
export interface Clock {
  /** Wall-clock time in epoch milliseconds (may jump when the system clock is set). */
  now(): number;
  /** Monotonic milliseconds since an arbitrary origin; never goes back. For durations only. */
  mono(): number;
}

/** The system's clock: `Date.now()` and `performance.now()`. */
export const systemClock: Clock = {
  now: Date.now,
  mono: performance.now.bind(performance),
};
