/**
 * @module
 * Requests waiting for a key, first come first served. A request that finds no usable key
 * waits here (bounded in time and in number) and is woken when a key may have come back: a
 * request ended (a concurrency slot freed), an operator enabled a key, or the time the first
 * key returns by itself (the waiter's own timer). A woken waiter that still finds no key waits
 * again at the front, keeping its turn; a client that leaves leaves the queue.
 */

/** How a wait ended. */
export type WaitEnd = "woken" | "timeout" | "aborted";

interface Waiter {
  resolve: (end: WaitEnd) => void;
  timer: ReturnType<typeof setTimeout>;
  signal: AbortSignal;
  onAbort: () => void;
}

/** One queue of waiting requests. */
export class WaitQueue {
  readonly #waiters: Waiter[] = [];
  /** Requests that have waited, and the milliseconds they waited (for metrics). */
  waited = 0;
  waitedMs = 0;
  /** Requests refused because the queue was full. */
  refused = 0;

  /** How many requests wait. */
  get length(): number {
    return this.#waiters.length;
  }

  /**
   * Waits to be woken, at most `ms`.
   * @param ms the longest wait (a timer: the time the first key returns, or the request's limit)
   * @param signal the client's signal: a client that leaves ends the wait at once
   * @param front join at the front (a woken waiter that found no key keeps its turn)
   * @returns how the wait ended
   */
  wait(ms: number, signal: AbortSignal, front = false): Promise<WaitEnd> {
    if (signal.aborted) return Promise.resolve("aborted");
    return new Promise<WaitEnd>((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: undefined as unknown as ReturnType<typeof setTimeout>,
        signal,
        onAbort: () => this.#end(waiter, "aborted"),
      };
      waiter.timer = setTimeout(() => this.#end(waiter, "timeout"), Math.max(0, ms));
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      if (front) this.#waiters.unshift(waiter);
      else this.#waiters.push(waiter);
    });
  }

  /** Wakes the first waiter (something that may free a key happened). */
  wakeOne(): void {
    const first = this.#waiters[0];
    if (first !== undefined) this.#end(first, "woken");
  }

  /** Wakes every waiter (e.g. an operator enabled keys). */
  wakeAll(): void {
    for (const w of this.#waiters.slice()) this.#end(w, "woken");
  }

  #end(w: Waiter, end: WaitEnd): void {
    const i = this.#waiters.indexOf(w);
    if (i < 0) return;
    this.#waiters.splice(i, 1);
    clearTimeout(w.timer);
    w.signal.removeEventListener("abort", w.onAbort);
    w.resolve(end);
  }
}
