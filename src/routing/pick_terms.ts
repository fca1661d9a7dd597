/**
 * @module
 * The terms on which a pool lets affinity routing choose in one tier, as one reusable object
 * (a pick allocates nothing): keys of the tier that are not excluded, at their cap or spent for
 * the request's model take the request; a pin stays on a key that is usable but busy, tried,
 * or in a better tier (it moves off a key that is out); a key with more than `max_load` × the
 * mean requests in flight is gone around; slow start gives returning keys their
 * share, and a key of weight 0 takes a pin only when no other can.
 */

import type { Candidate } from "../plugin.ts";
import type { RouteTerms } from "./affinity.ts";
import type { SlowStart } from "./slow_start.ts";
import { isAvailable } from "../health/availability.ts";
import { allowsModel, atCapacity } from "../budget/book.ts";

/** Below this many requests in flight (this one counted) no key counts as overloaded. */
export const MIN_OVERLOAD = 4;

/** A pool's {@linkcode RouteTerms}, set again before each pick. */
export class PickTerms implements RouteTerms {
  keys = 0;
  #tier = 0;
  #now = 0;
  #model: string | undefined;
  #exclude: ((c: Candidate) => boolean) | undefined;
  #list: readonly Candidate[] = [];
  /** The most requests in flight a key may hold in this pick; computed when first needed. */
  #inFlightBound = -1;
  readonly #slow: SlowStart | undefined;
  readonly #maxLoad: number;

  /**
   * @param slow the pool's slow start, if it has one
   * @param maxLoad the pool's `affinity.max_load` @default 1.25
   */
  constructor(slow: SlowStart | undefined, maxLoad = 1.25) {
    this.#slow = slow;
    this.#maxLoad = maxLoad;
  }

  /**
   * Sets the terms of one pick.
   * @param list the tier's keys not excluded (never empty)
   * @param now epoch ms
   * @param model the request's model
   * @param exclude keys this request may not use
   * @returns this
   */
  set(
    list: readonly Candidate[],
    now: number,
    model: string | undefined,
    exclude: ((c: Candidate) => boolean) | undefined,
  ): this {
    this.keys = list.length;
    this.#tier = list[0]!.priority;
    this.#now = now;
    this.#model = model;
    this.#exclude = exclude;
    this.#list = list;
    this.#inFlightBound = -1;
    return this;
  }

  /** Whether a key may take the request. */
  accept(c: Candidate): boolean {
    return c.priority === this.#tier && isAvailable(c.state, this.#now) && !atCapacity(c) &&
      allowsModel(c, this.#model, this.#now) &&
      (this.#exclude === undefined || !this.#exclude(c));
  }

  /** Whether a pin stays on a key that cannot take the request. */
  keep(c: Candidate): boolean {
    return c.priority <= this.#tier && isAvailable(c.state, this.#now) &&
      allowsModel(c, this.#model, this.#now);
  }

  /**
   * Whether a key holds more requests in flight than `max_load` × the mean of the tier's keys
   * (this request counted), plus twice the spread even traffic has (a count of requests in
   * flight varies by about its mean's square root), plus one, and at least
   * {@linkcode MIN_OVERLOAD}: only a load that even traffic would hardly ever reach (a hot
   * value) sends pinned requests around their cache, not the ordinary ups and downs or a burst.
   */
  overloaded(c: Candidate): boolean {
    const inFlight = c.state.inFlight;
    if (inFlight < MIN_OVERLOAD) return false;
    if (this.#inFlightBound < 0) {
      let total = 1;
      for (const k of this.#list) total += k.state.inFlight;
      const mean = total / this.#list.length;
      this.#inFlightBound = Math.max(
        MIN_OVERLOAD,
        Math.floor(this.#maxLoad * mean + 2 * Math.sqrt(mean) + 1),
      );
    }
    return inFlight + 1 > this.#inFlightBound;
  }

  /**
   * A key's share of new pins: slow start's; none for a key of weight 0 (`weighted` never
   * chooses it: it takes a pin only when no other key can).
   */
  share(c: Candidate): number {
    if (c.weight === 0) return 0;
    return this.#slow === undefined ? 1 : this.#slow.share(c, this.#now);
  }
}
