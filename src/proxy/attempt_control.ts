/**
 * @module
 * The abort controller and deadlines of one upstream attempt: knows whether it ended because
 * the client went away or because one of our time limits fired, which decides the attempt's
 * class. Deadlines are checked by the app's {@linkcode Watchdog}, not by timers of their own, and
 * measured on its clock's `mono()`.
 */

import type { Watchdog } from "./watchdog.ts";

/** Which limit fired. */
export type TimeoutKind = "first_byte" | "idle" | "total";

/**
 * The client's abort signal, or a function giving it. A function is called only once the
 * attempt has lasted {@linkcode LAZY_CLIENT_MS}: reading `Request.signal` of a `Deno.serve`
 * request starts a watch on its connection (about 10 µs), which most answers never need.
 */
export type ClientSignal = AbortSignal | (() => AbortSignal);

/**
 * How long an attempt runs before it watches for the client leaving (when given a function).
 * A client that leaves earlier still stops the upstream request this long after it started,
 * at most a watchdog tick later.
 */
export const LAZY_CLIENT_MS = 50;

/** Aborts one upstream attempt and remembers why. */
export class AttemptControl {
  readonly #controller = new AbortController();
  /** The signal given to fetch. */
  readonly signal: AbortSignal = this.#controller.signal;
  /** Set when one of our timers aborted the attempt. */
  timedOut: TimeoutKind | undefined;
  /** Set when the client went away. */
  clientAborted = false;
  /** Set when llm-balance cut the attempt because it is shutting down. */
  shutDown = false;
  #totalAt = 0;
  #firstByteAt = 0;
  #idleAt = 0;
  #client: AbortSignal | undefined;
  #lazyClient: (() => AbortSignal) | undefined;
  #lazyAt = 0;
  /** The listener on the client's signal, made only when one is added. */
  #onClientAbort: (() => void) | undefined;
  /** Checks the deadlines; its clock is what they are measured on. */
  readonly watchdog: Watchdog;
  /** The watchdog's bookkeeping. */
  watchSlot = -1;
  /** {@linkcode OpenAttempts}' bookkeeping. */
  openSlot = -1;

  /**
   * @param client aborts when the client disconnects (a function: read only if the attempt
   *   lasts {@linkcode LAZY_CLIENT_MS})
   * @param watchdog checks the deadlines (the app's)
   * @param now when the attempt started, by the watchdog clock's `mono()` (default: read now)
   */
  constructor(
    client: ClientSignal | undefined,
    watchdog: Watchdog,
    now: number = watchdog.clock.mono(),
  ) {
    this.watchdog = watchdog;
    if (typeof client === "function") {
      this.#lazyClient = client;
      this.#lazyAt = now + LAZY_CLIENT_MS;
      watchdog.watch(this);
    } else if (client !== undefined) this.#listen(client);
  }

  #listen(client: AbortSignal): void {
    if (client.aborted) this.clientGone();
    else {
      this.#client = client;
      // no options object: the listener is removed on dispose, and options cost a conversion
      client.addEventListener("abort", this.#onClientAbort = () => this.clientGone());
    }
  }

  /**
   * Sets the limit of the whole attempt.
   * @param ms milliseconds from now; 0 or Infinity disables
   * @param now the watchdog clock's `mono()`, when the caller has it
   */
  armTotal(ms: number, now?: number): void {
    if (ms > 0 && Number.isFinite(ms)) this.#arm("total", ms, now);
  }

  /**
   * Sets the limit until the first body bytes.
   * @param ms milliseconds from now; 0 or Infinity disables
   * @param now the watchdog clock's `mono()`, when the caller has it
   */
  armFirstByte(ms: number, now?: number): void {
    if (ms > 0 && Number.isFinite(ms)) this.#arm("first_byte", ms, now);
  }

  /**
   * Sets (or moves) the limit until the next body chunk.
   * @param ms milliseconds from now; 0 disables
   */
  armIdle(ms: number): void {
    if (ms > 0 && Number.isFinite(ms)) this.#arm("idle", ms);
  }

  /** Clears the idle limit (a chunk arrived). */
  idleOver(): void {
    this.#idleAt = 0;
  }

  /** Clears the first-byte limit (the first bytes arrived). */
  firstByteArrived(): void {
    this.#firstByteAt = 0;
  }

  /**
   * Fires whatever limit has passed (called by the watchdog).
   * @param now the watchdog clock's `mono()`
   */
  check(now: number): void {
    if (this.#lazyClient !== undefined && now >= this.#lazyAt) {
      const client = this.#lazyClient;
      this.#lazyClient = undefined;
      this.#listen(client());
      if (this.signal.aborted) return;
    }
    if (this.#firstByteAt !== 0 && now >= this.#firstByteAt) this.timeout("first_byte");
    else if (this.#idleAt !== 0 && now >= this.#idleAt) this.timeout("idle");
    else if (this.#totalAt !== 0 && now >= this.#totalAt) this.timeout("total");
  }

  #arm(kind: TimeoutKind, ms: number, now = this.watchdog.clock.mono()): void {
    const at = now + ms;
    if (kind === "total") this.#totalAt = at;
    else if (kind === "first_byte") this.#firstByteAt = at;
    else this.#idleAt = at;
    if (!this.signal.aborted) this.watchdog.watch(this);
  }

  /**
   * Aborts because a limit fired.
   * @param kind which limit
   */
  timeout(kind: TimeoutKind): void {
    if (this.signal.aborted) return;
    this.timedOut = kind;
    this.watchdog.unwatch(this);
    this.#controller.abort(new DOMException(`upstream ${kind} timeout`, "TimeoutError"));
  }

  /** Aborts because llm-balance is shutting down and the drain time is over. */
  shutdown(): void {
    if (this.signal.aborted) return;
    this.shutDown = true;
    this.#controller.abort(new DOMException("llm-balance is shutting down", "AbortError"));
  }

  /** Aborts because the client went away. */
  clientGone(): void {
    if (this.signal.aborted) return;
    this.clientAborted = true;
    this.#controller.abort(new DOMException("client went away", "AbortError"));
  }

  /** Clears every deadline and listener; the attempt is over. */
  dispose(): void {
    this.#totalAt = this.#firstByteAt = this.#idleAt = 0;
    this.#lazyClient = undefined;
    this.watchdog.unwatch(this);
    if (this.#onClientAbort !== undefined) {
      this.#client?.removeEventListener("abort", this.#onClientAbort);
    }
    this.#client = undefined;
  }
}

/**
 * The attempts in flight or being relayed, so shutdown can cut them. An array with each
 * member's index kept on the member: adding and removing cost no hashing and no allocation (a
 * `Set` that grows and shrinks with every request measurably slowed each one).
 */
export class OpenAttempts {
  readonly #list: AttemptControl[] = [];

  /** How many are open. */
  get size(): number {
    return this.#list.length;
  }

  /**
   * Adds an attempt (idempotent).
   * @param c the attempt's control
   */
  add(c: AttemptControl): void {
    if (c.openSlot >= 0 && this.#list[c.openSlot] === c) return;
    c.openSlot = this.#list.length;
    this.#list.push(c);
  }

  /**
   * Removes an attempt (idempotent).
   * @param c the attempt's control
   */
  delete(c: AttemptControl): void {
    const slot = c.openSlot;
    const list = this.#list;
    if (slot < 0 || list[slot] !== c) return;
    const last = list.pop()!;
    if (last !== c) {
      list[slot] = last;
      last.openSlot = slot;
    }
    c.openSlot = -1;
  }

  /** @returns a copy of the open attempts (safe to change the set while going through it) */
  toArray(): AttemptControl[] {
    return this.#list.slice();
  }
}
