/**
 * @module
 * A consistent-hash ring (Karger et al.) over a pool's keys: each key owns many points
 * ("virtual nodes") hashed from its stable id, so keys share the ring evenly, every instance
 * builds the same ring, and adding or removing a key moves only the values whose next point
 * belonged to it (about 1/n of them). Sorted typed arrays: a lookup is one binary search.
 */

import { hash53, ringPoint } from "./hash.ts";

/** Points per key when the pool is small; fewer for large pools (see {@linkcode HashRing}). */
export const MAX_VNODES = 160;
/** The most points a ring holds (a 10,000-key pool gets 10 per key). */
const MAX_POINTS = 40_000;
/** The fewest points per key, whatever the pool's size. */
const MIN_VNODES = 4;

/** A consistent-hash ring over owners 0..n-1, each named by a stable id. */
export class HashRing {
  /** Ring positions, ascending. */
  readonly #points: Uint32Array;
  /** The owner of each position. */
  readonly #owners: Uint32Array;

  /**
   * Builds the ring.
   * @param ids each owner's stable id, by owner number (a pool's candidate ids, by index)
   * @param vnodes points per owner @default 160, fewer when there are more than 250 owners
   */
  constructor(ids: readonly string[], vnodes?: number) {
    const per = vnodes ??
      Math.max(MIN_VNODES, Math.min(MAX_VNODES, Math.floor(MAX_POINTS / Math.max(1, ids.length))));
    const n = ids.length * per;
    const pairs = new Float64Array(n);
    let k = 0;
    for (let owner = 0; owner < ids.length; owner++) {
      const id = ids[owner]!;
      // owner numbers fit in 21 bits: point * 2^21 + owner sorts by point, then owner
      for (let v = 0; v < per; v++) pairs[k++] = ringPoint(hash53(`${id}#${v}`)) * 2097152 + owner;
    }
    pairs.sort();
    this.#points = new Uint32Array(n);
    this.#owners = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const p = pairs[i]!;
      const owner = p % 2097152;
      this.#points[i] = (p - owner) / 2097152;
      this.#owners[i] = owner;
    }
  }

  /** How many points the ring holds (0 for a ring without owners). */
  get size(): number {
    return this.#points.length;
  }

  /**
   * The position of the first point at or after a value's point, wrapping around.
   * @param point the value's point ({@linkcode ringPoint} of its hash)
   * @returns a position in [0, size), or 0 for an empty ring
   */
  first(point: number): number {
    const points = this.#points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < point) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }

  /**
   * The owner of a position.
   * @param at a position in [0, size)
   */
  owner(at: number): number {
    return this.#owners[at]!;
  }

  /**
   * A value's home: the owner of the first point at or after it (availability aside).
   * @param point the value's point
   * @returns the owner, or -1 for an empty ring
   */
  home(point: number): number {
    return this.#points.length === 0 ? -1 : this.#owners[this.first(point)]!;
  }
}
