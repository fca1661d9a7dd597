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
  /**
   * Where the watchdog keeps it (set by the watchdog; -1 or absent when not watched). An object
   * is watched by one watchdog at a time.
   */
  watchSlot?: number;
}

/** Checks the deadlines of watched attempts every `tickMs`. */
export class Watchdog {
  /** An array with each member's index in its `watchSlot`: no hashing, no allocation. */
  readonly #watched: Watched[] = [];
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
    this.#timer ??= setInterval(() => this.#tick(), this.#tickMs);
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

  #tick(): void {
    const list = this.#watched;
    if (list.length === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const now = performance.now();
    // backwards: a check that unwatches its attempt moves an already checked one into its slot
    for (let i = list.length - 1; i >= 0; i--) list[i]?.check(now);
  }
}

/** The process-wide watchdog of upstream attempts. */
export const watchdog: Watchdog = new Watchdog();
