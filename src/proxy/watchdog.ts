/**
 * @module
 * One timer for every attempt in flight. Attempts keep their deadlines as plain numbers and
 * the watchdog checks them on a short interval, which costs far less per request than creating
 * and clearing timers for every attempt and every stream chunk. The interval runs only while
 * something is watched, and stops one tick after the last attempt ends. Each app has its own
 * watchdog, reading the app's clock; tests move a manual clock and call
 * {@linkcode Watchdog.tick} by hand instead of waiting for the interval.
 */

import { type Clock, systemClock } from "../clock.ts";

/** Something with deadlines to check. */
export interface Watched {
  /**
   * Fires whatever deadline has passed.
   * @param now the watchdog clock's `mono()`
   */
  check(now: number): void;
  /**
   * Where the watchdog keeps it (set by the watchdog; -1 or absent when not watched). An object
   * is watched by one watchdog at a time.
   */
  watchSlot?: number;
}

/** Options of {@linkcode Watchdog}. */
export interface WatchdogOptions {
  /** What deadlines are measured on (monotonic ms). @default {@linkcode systemClock} */
  clock?: Clock;
  /** How often deadlines are checked (their precision), in ms. @default 10 */
  tickMs?: number;
}

/** Checks the deadlines of watched attempts every `tickMs`. */
export class Watchdog {
  /** The clock deadlines are measured on: watched objects set theirs from its `mono()`. */
  readonly clock: Clock;
  /** An array with each member's index in its `watchSlot`: no hashing, no allocation. */
  readonly #watched: Watched[] = [];
  readonly #tickMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #onInterval = (): void => this.tick();

  /** @param options the clock and the tick */
  constructor(options: WatchdogOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#tickMs = options.tickMs ?? 10;
  }

  /** Whether the interval runs (it stops one tick after the last attempt is unwatched). */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** How many are watched. */
  get size(): number {
    return this.#watched.length;
  }

  /**
   * Starts watching (idempotent).
   * @param w the attempt
   */
  watch(w: Watched): void {
    const slot = w.watchSlot;
    if (slot !== undefined && slot >= 0 && this.#watched[slot] === w) return;
    w.watchSlot = this.#watched.length;
    this.#watched.push(w);
    this.#timer ??= setInterval(this.#onInterval, this.#tickMs);
  }

  /**
   * Stops watching; the interval stops a tick after the last one.
   * @param w the attempt
   */
  unwatch(w: Watched): void {
    // the interval stops at the next tick that finds nothing watched: one request at a time
    // would otherwise start and clear a timer per request (about 20 µs each time)
    const slot = w.watchSlot;
    const list = this.#watched;
    if (slot === undefined || slot < 0 || list[slot] !== w) return;
    const last = list.pop()!;
    if (last !== w) {
      list[slot] = last;
      last.watchSlot = slot;
    }
    w.watchSlot = -1;
  }

  /**
   * Checks every watched deadline against the clock's `mono()` now. The interval calls it;
   * tests call it after moving a manual clock. Stops the interval when nothing is watched.
   */
  tick(): void {
    const list = this.#watched;
    if (list.length === 0) {
      if (this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
      return;
    }
    const now = this.clock.mono();
    // backwards: a check that unwatches its attempt moves an already checked one into its slot
    for (let i = list.length - 1; i >= 0; i--) list[i]?.check(now);
  }
}
