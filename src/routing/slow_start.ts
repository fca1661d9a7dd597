/**
 * @module
 * Slow start, after Envoy's and HAProxy's: a key that comes back from an ejection, a rest, a
 * spent budget or a disable takes a share of new requests that grows linearly from 0 to its
 * full share over `slow_start` seconds, so a provider that just recovered (or a key whose rate
 * limit just lifted) is not hit by a full share at once. The pool notes every key's
 * availability whenever it rebuilds its snapshot; a key that was out at the previous snapshot
 * and is usable now came back at the latest of its rest, ejection or budget ends since then
 * (an operator's enable or a probe: at the snapshot). Costs nothing while no key ramps.
 */

import type { Candidate } from "../plugin.ts";
import { isAvailable } from "../health/availability.ts";

/** The keys of one pool that are coming back, and how far along they are. */
export class SlowStart {
  /** Milliseconds over which a returning key grows to its full share. */
  readonly periodMs: number;
  /** Per key: epoch ms when it came back (-Infinity when it never left). */
  #back: Float64Array;
  /** Per key: whether it was usable at the previous snapshot. */
  #was: Uint8Array;
  /** Epoch ms of the previous snapshot; undefined before the first. */
  #lastAt: number | undefined;
  /** When the last key now ramping reaches its full share. */
  #until = 0;
  /** The current window's start (epoch ms), the pool's picks in it, and each key's. */
  #windowAt = 0;
  #picks = 0;
  #taken: Uint32Array;

  /**
   * @param keys how many keys the pool has
   * @param periodMs the ramp's length in ms (> 0)
   */
  constructor(keys: number, periodMs: number) {
    this.periodMs = periodMs;
    this.#back = new Float64Array(keys).fill(-Infinity);
    this.#was = new Uint8Array(keys);
    this.#taken = new Uint32Array(keys);
  }

  /**
   * Notes which keys are usable at a new snapshot of the pool.
   * @param candidates the pool's keys, in order
   * @param now epoch ms
   */
  note(candidates: readonly Candidate[], now: number): void {
    const since = this.#lastAt;
    for (const c of candidates) {
      const usable = isAvailable(c.state, now);
      if (usable && since !== undefined && this.#was[c.index] === 0) {
        const s = c.state;
        let back = -Infinity;
        for (const end of [s.restUntil, s.ejectedUntil, s.budget.spentUntil]) {
          if (end > since && end <= now && end > back) back = end;
        }
        if (back === -Infinity) back = now;
        this.#back[c.index] = back;
        if (back + this.periodMs > this.#until) this.#until = back + this.periodMs;
      }
      this.#was[c.index] = usable ? 1 : 0;
    }
    this.#lastAt = now;
  }

  /**
   * Whether any key is still ramping up.
   * @param now epoch ms
   */
  ramping(now: number): boolean {
    return now < this.#until;
  }

  /**
   * Counts a pick the strategy made while keys ramp, and tells whether it may stand: a key at
   * full share always; a ramping key while it has taken fewer of the pool's picks in the current
   * window (a twentieth of the ramp, a quarter second at least) than its share of its fair part
   * of them, plus one: `share × picks × fair`, the fair part being `1 / keys`, or its weight's
   * part when larger. Counting, not drawing: a strategy that favours an idle key (least
   * connections, p2c) cannot hand a returning key more than its share.
   * @param c the key the strategy chose
   * @param now epoch ms
   * @param fair the key's fair part of the picks, in (0, 1]
   * @returns whether the key keeps the request
   */
  admit(c: Candidate, now: number, fair: number): boolean {
    const window = Math.max(250, this.periodMs / 20);
    if (now - this.#windowAt >= window) {
      this.#windowAt = now;
      this.#picks = 0;
      this.#taken.fill(0);
    }
    this.#picks++;
    const share = this.share(c, now);
    if (share < 1 && this.#taken[c.index]! + 1 > share * this.#picks * fair + 1) {
      return false;
    }
    this.#taken[c.index]!++;
    return true;
  }

  /**
   * A key's share of new requests now: 1 at full share, less while it ramps up.
   * @param c the key
   * @param now epoch ms
   * @returns a number in [0, 1]
   */
  share(c: Candidate, now: number): number {
    if (now >= this.#until) return 1;
    const elapsed = now - this.#back[c.index]!;
    return elapsed >= this.periodMs ? 1 : Math.max(0, elapsed / this.periodMs);
  }
}
