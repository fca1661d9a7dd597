/**
 * @module
 * A peak-sensitive exponentially weighted moving average of latency per slot, the cost that
 * Finagle's and Linkerd's `p2c` balancers compare. A slower sample replaces the average at once
 * (the peak); a faster one pulls it down smoothly, with a weight that grows with the time since
 * the previous sample; and without samples the cost decays toward 0, so a key that was slow is
 * tried again. Slots are small integers (a candidate's `index`); the state lives in growable
 * typed arrays, so observing and reading allocate nothing.
 */

/**
 * Peak-EWMA latency costs, one per slot.
 * @example
 * ```ts
 * const ewma = new PeakEwma(10_000);
 * ewma.observe(0, 250, Date.now());
 * ewma.cost(0, Date.now() + 10_000); // about 92: 250 decayed by e^-1
 * ```
 */
export class PeakEwma {
  /** The time constant in ms: a cost left alone this long falls to 1/e of itself. */
  readonly decayMs: number;
  /** Per slot: the cost as of its stamp, in ms. */
  #cost: Float64Array;
  /** Per slot: when it was last observed (the clock of `now`, usually epoch ms). */
  #stamp: Float64Array;
  /** Per slot: 1 once observed. */
  #seen: Uint8Array;

  /**
   * @param decayMs the time constant in ms (Finagle and Linkerd use 10 s)
   * @param slots how many slots to make room for at first; more are added as slots are observed
   * @throws {RangeError} if `decayMs` is not a finite number > 0
   */
  constructor(decayMs: number, slots = 16) {
    if (!(decayMs > 0) || !Number.isFinite(decayMs)) {
      throw new RangeError(
        `Cannot build a PeakEwma: decayMs must be a number > 0 (got ${decayMs})`,
      );
    }
    this.decayMs = decayMs;
    const n = Math.max(1, Math.ceil(slots) || 1);
    this.#cost = new Float64Array(n);
    this.#stamp = new Float64Array(n);
    this.#seen = new Uint8Array(n);
  }

  /**
   * Records one latency sample (Finagle's and Linkerd's rule): a sample above the stored cost
   * becomes the cost at once (the peak); one below it is blended in as `cost * w + ms * (1 - w)`
   * with `w = exp(-(now - stamp) / decayMs)`, the stored cost decayed to `now` plus the sample's
   * share, so the longer since the previous sample, the more the new one counts. A clock going
   * back counts as no time passing; a sample that is not a finite number >= 0 is ignored.
   * @param slot a non-negative integer (a candidate's `index`)
   * @param ms the latency in ms
   * @param now the time of the sample
   * @throws {RangeError} if `slot` is not a non-negative integer
   */
  observe(slot: number, ms: number, now: number): void {
    if (!(ms >= 0) || ms === Infinity) return;
    if (!Number.isInteger(slot) || slot < 0) {
      throw new RangeError(`Cannot observe a latency: slot must be an integer >= 0 (got ${slot})`);
    }
    if (slot >= this.#cost.length) this.#grow(slot + 1);
    const cost = this.#seen[slot] === 1 ? this.#cost[slot]! : 0;
    const w = Math.exp(-Math.max(0, now - this.#stamp[slot]!) / this.decayMs);
    this.#cost[slot] = ms > cost ? ms : cost * w + ms * (1 - w);
    this.#stamp[slot] = now;
    this.#seen[slot] = 1;
  }

  /**
   * The slot's cost at `now`: the stored cost decayed toward 0 by the time since its last sample
   * (`cost * exp(-(now - stamp) / decayMs)`). A pure read.
   * @param slot the slot
   * @param now the time to read at
   * @returns the cost in ms; 0 for a slot never observed
   */
  cost(slot: number, now: number): number {
    if (this.#seen[slot] !== 1) return 0;
    const td = Math.max(0, now - this.#stamp[slot]!);
    return this.#cost[slot]! * Math.exp(-td / this.decayMs);
  }

  /**
   * The cost as its last sample left it (no decay since): what a view shows, the same whenever
   * it is read.
   * @param slot the slot
   * @returns the cost in ms; 0 for a slot never observed
   */
  last(slot: number): number {
    return this.#seen[slot] === 1 ? this.#cost[slot]! : 0;
  }

  /**
   * Whether the slot has had a sample since it was built or last reset.
   * @param slot the slot
   */
  observed(slot: number): boolean {
    return this.#seen[slot] === 1;
  }

  /**
   * Forgets the slot's samples: it reads as never observed again.
   * @param slot the slot
   */
  reset(slot: number): void {
    if (this.#seen[slot] !== 1) return;
    this.#seen[slot] = 0;
    this.#cost[slot] = 0;
    this.#stamp[slot] = 0;
  }

  /** Makes room for at least `slots` slots, doubling. */
  #grow(slots: number): void {
    let n = this.#cost.length;
    while (n < slots) n *= 2;
    const cost = new Float64Array(n);
    cost.set(this.#cost);
    this.#cost = cost;
    const stamp = new Float64Array(n);
    stamp.set(this.#stamp);
    this.#stamp = stamp;
    const seen = new Uint8Array(n);
    seen.set(this.#seen);
    this.#seen = seen;
  }
}

/**
 * The latency an attempt adds to a peak-EWMA, by one rule everywhere (the p2c strategy, the
 * EWMA `/stats` shows): a success's time to its first event for a stream, else its whole time;
 * a server error or a timeout, the time it took (a slow failing key looks slow); nothing for
 * other classes (the health board rests or ejects those keys).
 * @param cls the attempt's class
 * @param stream whether the answer was a stream
 * @param ttfbMs ms to the first body bytes, when they came
 * @param latencyMs ms to the attempt's end
 * @returns the sample in ms, or undefined when the attempt says nothing of the key's speed
 */
export function latencySample(
  cls: string,
  stream: boolean,
  ttfbMs: number | undefined,
  latencyMs: number,
): number | undefined {
  if (cls === "ok") return stream ? ttfbMs ?? latencyMs : latencyMs;
  return cls === "server" || cls === "timeout" ? latencyMs : undefined;
}
