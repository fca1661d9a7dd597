/**
 * @module
 * The abort controller and deadlines of one upstream attempt: knows whether it ended because
 * the client went away or because one of our time limits fired, which decides the attempt's
 * class. Deadlines are checked by the shared {@linkcode watchdog}, not by timers of their own.
 */

import { watchdog } from "./watchdog.ts";

/** Which limit fired. */
export type TimeoutKind = "first_byte" | "idle" | "total";

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
  #onClientAbort = () => this.clientGone();

  /**
   * @param clientSignal aborts when the client disconnects
   */
  constructor(clientSignal: AbortSignal | undefined) {
    if (clientSignal !== undefined) {
      if (clientSignal.aborted) this.clientGone();
      else {
        this.#client = clientSignal;
        // no options object: the listener is removed on dispose, and options cost a conversion
        clientSignal.addEventListener("abort", this.#onClientAbort);
      }
    }
  }

  /**
   * Sets the limit of the whole attempt.
   * @param ms milliseconds from now; 0 or Infinity disables
   */
  armTotal(ms: number): void {
    if (ms > 0 && Number.isFinite(ms)) this.#arm("total", ms);
  }

  /**
   * Sets the limit until the first body bytes.
   * @param ms milliseconds from now; 0 or Infinity disables
   */
  armFirstByte(ms: number): void {
    if (ms > 0 && Number.isFinite(ms)) this.#arm("first_byte", ms);
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
   * @param now `performance.now()`
   */
  check(now: number): void {
    if (this.#firstByteAt !== 0 && now >= this.#firstByteAt) this.timeout("first_byte");
    else if (this.#idleAt !== 0 && now >= this.#idleAt) this.timeout("idle");
    else if (this.#totalAt !== 0 && now >= this.#totalAt) this.timeout("total");
  }

  #arm(kind: TimeoutKind, ms: number): void {
    const at = performance.now() + ms;
    if (kind === "total") this.#totalAt = at;
    else if (kind === "first_byte") this.#firstByteAt = at;
    else this.#idleAt = at;
    if (!this.signal.aborted) watchdog.watch(this);
  }

  /**
   * Aborts because a limit fired.
   * @param kind which limit
   */
  timeout(kind: TimeoutKind): void {
    if (this.signal.aborted) return;
    this.timedOut = kind;
    watchdog.unwatch(this);
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
    watchdog.unwatch(this);
    this.#client?.removeEventListener("abort", this.#onClientAbort);
    this.#client = undefined;
  }
}
