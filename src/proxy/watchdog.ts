/**
 * @module
 * One timer for every attempt in flight. Attempts keep their deadlines as plain numbers and
 * the watchdog checks them on a short interval, which costs far less per request than creating
 * and clearing timers for every attempt and every stream chunk. The interval runs only while
 * something is watched, and stops one tick after the last attempt ends.
 */

/** Something with deadlines to check. */
export interface Watched {
  /**
   * Fires whatever deadline has passed.
   * @param now `performance.now()`
   */
  check(now: number): void;
}

/** Checks the deadlines of watched attempts every `tickMs`. */
export class Watchdog {
  readonly #watched = new Set<Watched>();
  readonly #tickMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** @param tickMs how often deadlines are checked (their precision). @default 10 */
  constructor(tickMs = 10) {
    this.#tickMs = tickMs;
  }

  /** Whether the interval runs (it stops one tick after the last attempt is unwatched). */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** How many are watched. */
  get size(): number {
    return this.#watched.size;
  }

  /**
   * Starts watching (idempotent).
   * @param w the attempt
   */
  watch(w: Watched): void {
    this.#watched.add(w);
    this.#timer ??= setInterval(() => this.#tick(), this.#tickMs);
  }

  /**
   * Stops watching; the interval stops with the last one.
   * @param w the attempt
   */
  unwatch(w: Watched): void {
    // the interval stops at the next tick that finds nothing watched: one request at a time
    // would otherwise start and clear a timer per request (about 20 µs each time)
    this.#watched.delete(w);
  }

  #tick(): void {
    if (this.#watched.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const now = performance.now();
    for (const w of this.#watched) w.check(now);
  }
}

/** The process-wide watchdog of upstream attempts. */
export const watchdog: Watchdog = new Watchdog();
