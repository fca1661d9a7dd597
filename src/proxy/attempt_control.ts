/**
 * @module
 * The abort controller and timers of one upstream attempt: knows whether it ended because the
 * client went away or because one of our time limits fired, which decides the attempt's class.
 */

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
  #total: ReturnType<typeof setTimeout> | undefined;
  #firstByte: ReturnType<typeof setTimeout> | undefined;
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
        clientSignal.addEventListener("abort", this.#onClientAbort, { once: true });
      }
    }
  }

  /**
   * Starts the timer of the whole attempt.
   * @param ms milliseconds; 0 or Infinity disables
   */
  armTotal(ms: number): void {
    if (ms > 0 && Number.isFinite(ms)) {
      this.#total = setTimeout(() => this.timeout("total"), ms);
    }
  }

  /**
   * Starts the timer until the first body bytes.
   * @param ms milliseconds; 0 or Infinity disables
   */
  armFirstByte(ms: number): void {
    if (ms > 0 && Number.isFinite(ms)) {
      this.#firstByte = setTimeout(() => this.timeout("first_byte"), ms);
    }
  }

  /** Stops the first-byte timer (the first bytes arrived). */
  firstByteArrived(): void {
    if (this.#firstByte !== undefined) clearTimeout(this.#firstByte);
    this.#firstByte = undefined;
  }

  /**
   * Aborts because a limit fired.
   * @param kind which limit
   */
  timeout(kind: TimeoutKind): void {
    if (this.signal.aborted) return;
    this.timedOut = kind;
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

  /** Clears every timer and listener; the attempt is over. */
  dispose(): void {
    if (this.#total !== undefined) clearTimeout(this.#total);
    if (this.#firstByte !== undefined) clearTimeout(this.#firstByte);
    this.#total = this.#firstByte = undefined;
    this.#client?.removeEventListener("abort", this.#onClientAbort);
    this.#client = undefined;
  }
}
