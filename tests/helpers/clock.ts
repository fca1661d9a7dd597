/**
 * @module
 * {@linkcode ManualClock}: a {@linkcode Clock} that moves only when the test moves it, so time
 * limits fire at once (advance it, then call the watchdog's `tick()`) instead of after real sleeps.
 */

import type { Clock } from "../../src/clock.ts";

/**
 * A clock the test moves by hand. `advance` moves wall and monotonic time together (time
 * passing); `set` moves only the wall clock (as when the system clock is set), never `mono()`.
 * `now` and `mono` are bound: they may be passed on alone (`now: clock.now`).
 */
export class ManualClock implements Clock {
  #wall: number;
  #mono: number;

  /**
   * @param startEpochMs what `now()` reads first
   * @param startMonoMs what `mono()` reads first (as `performance.now()` a second into a
   *   process's life, so nothing measured from 0 looks recent) @default 1000
   */
  constructor(startEpochMs = 1_700_000_000_000, startMonoMs = 1_000) {
    this.#wall = startEpochMs;
    this.#mono = startMonoMs;
  }

  /** @returns wall-clock time in epoch milliseconds */
  readonly now = (): number => this.#wall;

  /** @returns monotonic milliseconds */
  readonly mono = (): number => this.#mono;

  /**
   * Lets time pass: wall and monotonic time both move.
   * @param ms milliseconds, 0 or more
   * @throws {RangeError} for a negative or non-finite step (monotonic time never goes back)
   */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) {
      throw new RangeError(`Cannot advance the clock by "${ms}" ms: must be a finite number >= 0`);
    }
    this.#wall += ms;
    this.#mono += ms;
  }

  /**
   * Sets the wall clock (it may jump either way); `mono()` does not move.
   * @param epochMs what `now()` reads from now on
   */
  set(epochMs: number): void {
    this.#wall = epochMs;
  }
}
