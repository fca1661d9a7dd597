/**
 * @module
 * Requests waiting for a key, first come first served, one queue per pool and model (a request
 * for a model whose keys are free never waits behind requests for a spent one). A request that
 * finds no usable key takes a ticket and waits (bounded in time and in number); it is woken when
 * a key may have come back: a request ended (a concurrency slot freed), an operator enabled a
 * key, or the time the first key returns by itself (its own timer). A woken waiter that still
 * finds no key waits again in its ticket's place; while a woken waiter has not yet tried, a new
 * request queues behind it rather than take the key it was woken for. A client that leaves
 * leaves the queue.
 */

/** How a wait ended. */
export type WaitEnd = "woken" | "timeout" | "aborted";

/** The longest timer `setTimeout` takes (about 24.8 days); longer waits are cut to it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Waiter {
  ticket: number;
  resolve: (end: WaitEnd) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal;
  onAbort: () => void;
}

/** One queue of waiting requests. */
export class WaitQueue {
  /** In ticket order. */
  readonly #waiters: Waiter[] = [];
  #tickets = 0;
  /** Woken waiters that have not tried for a key yet. */
  #pending = 0;

  /** How many requests wait. */
  get length(): number {
    return this.#waiters.length;
  }

  /** Waiting requests and woken ones not yet back: a newcomer queues behind any of them. */
  get busy(): number {
    return this.#waiters.length + this.#pending;
  }

  /** The ticket of the first waiter, if anyone waits. */
  get head(): number | undefined {
    return this.#waiters[0]?.ticket;
  }

  /** @returns a new request's place in line */
  ticket(): number {
    return this.#tickets++;
  }

  /**
   * Waits to be woken, at most `ms`, in the place of its ticket.
   * @param ms the longest wait (a timer: the time the first key returns, or the request's limit)
   * @param signal the client's signal: a client that leaves ends the wait at once
   * @param ticket the request's place in line ({@linkcode WaitQueue.ticket})
   * @returns how the wait ended; after `woken`, call {@linkcode WaitQueue.settled} once the
   *   waiter has tried for a key
   */
  wait(ms: number, signal: AbortSignal, ticket: number): Promise<WaitEnd> {
    if (signal.aborted) return Promise.resolve("aborted");
    return new Promise<WaitEnd>((resolve) => {
      const waiter: Waiter = {
        ticket,
        resolve,
        timer: undefined,
        signal,
        onAbort: () => this.#end(waiter, "aborted"),
      };
      waiter.timer = setTimeout(
        () => this.#end(waiter, "timeout"),
        Math.min(MAX_TIMER_MS, Math.max(0, ms)),
      );
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      const list = this.#waiters;
      let at = list.length;
      while (at > 0 && list[at - 1]!.ticket > ticket) at--;
      list.splice(at, 0, waiter);
    });
  }

  /** A woken waiter has tried for a key (whether or not it got one). */
  settled(): void {
    if (this.#pending > 0) this.#pending--;
  }

  /** Wakes the first waiter (something that may free a key happened). */
  wakeOne(): void {
    const first = this.#waiters[0];
    if (first !== undefined) this.#end(first, "woken");
  }

  /** Wakes every waiter (e.g. an operator enabled keys, or llm-balance is shutting down). */
  wakeAll(): void {
    for (const w of this.#waiters.slice()) this.#end(w, "woken");
  }

  #end(w: Waiter, end: WaitEnd): void {
    const i = this.#waiters.indexOf(w);
    if (i < 0) return;
    this.#waiters.splice(i, 1);
    clearTimeout(w.timer);
    w.signal.removeEventListener("abort", w.onAbort);
    if (end === "woken") this.#pending++;
    w.resolve(end);
  }
}

/** What a pool's queues have seen, for metrics. */
export interface QueueStats {
  /** Requests that waited and got a key. */
  waited: number;
  /** Milliseconds those requests waited. */
  waitedMs: number;
  /** Requests refused because the queue was full. */
  refused: number;
}

/**
 * Every wait queue of an application, by pool and model. A model's queue exists only while
 * someone waits in it (a client naming ever new models grows nothing); a pool's figures stay.
 */
export class WaitQueues<P extends object> {
  readonly #byPool = new Map<P, Map<string, WaitQueue>>();
  readonly #stats = new Map<P, QueueStats>();

  /**
   * The queue of a pool and model, made when first needed; give it back with
   * {@linkcode WaitQueues.release} when done with it.
   * @param pool the pool
   * @param model the request's model
   */
  of(pool: P, model: string | undefined): WaitQueue {
    let byModel = this.#byPool.get(pool);
    if (byModel === undefined) this.#byPool.set(pool, byModel = new Map());
    const key = model ?? "";
    let q = byModel.get(key);
    if (q === undefined) byModel.set(key, q = new WaitQueue());
    return q;
  }

  /**
   * How many wait (or were woken and have not tried yet) for a pool and model, without making
   * a queue: 0 at once when nothing waits anywhere.
   * @param pool the pool
   * @param model the request's model
   */
  waiting(pool: P, model: string | undefined): number {
    if (this.#byPool.size === 0) return 0;
    return this.#byPool.get(pool)?.get(model ?? "")?.busy ?? 0;
  }

  /**
   * A request is done with a queue: an empty one goes.
   * @param pool the pool
   * @param model the request's model
   */
  release(pool: P, model: string | undefined): void {
    const byModel = this.#byPool.get(pool);
    const key = model ?? "";
    if (byModel?.get(key)?.busy !== 0) return;
    byModel.delete(key);
    if (byModel.size === 0) this.#byPool.delete(pool);
  }

  /**
   * A pool's figures (made on first use).
   * @param pool the pool
   */
  stats(pool: P): QueueStats {
    let s = this.#stats.get(pool);
    if (s === undefined) this.#stats.set(pool, s = { waited: 0, waitedMs: 0, refused: 0 });
    return s;
  }

  /** Wakes the first waiter of every queue (a request ended: a key may be free). */
  wakeOne(): void {
    if (this.#byPool.size === 0) return;
    for (const byModel of this.#byPool.values()) {
      for (const q of byModel.values()) if (q.length > 0) q.wakeOne();
    }
  }

  /** Wakes every waiter of every queue. */
  wakeAll(): void {
    for (const byModel of this.#byPool.values()) for (const q of byModel.values()) q.wakeAll();
  }

  /** @returns every pool that has figures, with its figures and how many wait now */
  *pools(): IterableIterator<[P, QueueStats, number]> {
    const seen = new Set<P>();
    for (const pool of [...this.#stats.keys(), ...this.#byPool.keys()]) {
      if (seen.has(pool)) continue;
      seen.add(pool);
      let length = 0;
      for (const q of this.#byPool.get(pool)?.values() ?? []) length += q.length;
      yield [pool, this.stats(pool), length];
    }
  }

  /**
   * Forgets the figures of pools a reload replaced (once nobody waits in them).
   * @param keep whether a pool is still in use
   */
  prune(keep: (pool: P) => boolean): void {
    for (const pool of this.#stats.keys()) {
      if (!keep(pool) && !this.#byPool.has(pool)) this.#stats.delete(pool);
    }
  }
}
