/**
 * @module
 * Recent latencies per candidate in a fixed ring, for p50/p95 in stats, and a peak-EWMA of them
 * (the cost the `p2c` strategy compares). Constant memory per candidate, O(1) per record;
 * percentiles are computed only when stats are read. Every ring lives in one shared array (a
 * pool of 10,000 keys is one allocation, not 10,000 typed arrays for the garbage collector to
 * walk).
 */

import { PeakEwma } from "../routing/peak_ewma.ts";

const SIZE = 256;

/** The peak-EWMA's time constant in ms (Finagle's and Linkerd's 10 s). */
const EWMA_DECAY_MS = 10_000;

/** Latency samples per candidate id. */
export class LatencyTracker {
  /** Candidate id → ring number. */
  #rings = new Map<string, number>();
  /** Ring r holds its samples at [r * SIZE, (r + 1) * SIZE). */
  #values = new Float64Array(SIZE * 16);
  /** Per ring: where the next sample goes, and how many it holds. */
  #next = new Uint16Array(16);
  #count = new Uint16Array(16);
  /** Per ring: the peak-EWMA of the latencies given to {@linkcode LatencyTracker.observe}. */
  #ewma = new PeakEwma(EWMA_DECAY_MS, 16);

  /**
   * Records one attempt's latency in the candidate's ring (for the percentiles).
   * @param id the candidate id
   * @param ms milliseconds
   */
  record(id: string, ms: number): void {
    const r = this.#ring(id);
    const next = this.#next[r]!;
    this.#values[r * SIZE + next] = ms;
    this.#next[r] = (next + 1) % SIZE;
    if (this.#count[r]! < SIZE) this.#count[r]!++;
  }

  /**
   * Percentiles of the recent samples (nearest-rank method).
   * @param id the candidate id
   * @returns p50 and p95 in ms, or nulls without samples
   */
  percentiles(id: string): { p50: number | null; p95: number | null } {
    const r = this.#rings.get(id);
    const count = r === undefined ? 0 : this.#count[r]!;
    if (r === undefined || count === 0) return { p50: null, p95: null };
    const scratch = this.#scratchOf(count);
    scratch.set(this.#values.subarray(r * SIZE, r * SIZE + count));
    return nearestRanks(scratch, count);
  }

  /**
   * Percentiles over the recent samples of several candidates together (a pool's keys), by the
   * same nearest-rank method. Costs one copy of every sample (256 a key at most) and a linear
   * selection over them.
   * @param ids the candidate ids; unknown ids and repeats add nothing twice
   * @returns p50 and p95 in ms, or nulls without any sample
   */
  percentilesOf(ids: Iterable<string>): { p50: number | null; p95: number | null } {
    const rings = new Set<number>();
    let total = 0;
    for (const id of ids) {
      const r = this.#rings.get(id);
      if (r === undefined || rings.has(r)) continue;
      rings.add(r);
      total += this.#count[r]!;
    }
    if (total === 0) return { p50: null, p95: null };
    const all = this.#scratchOf(total);
    let at = 0;
    for (const r of rings) {
      const count = this.#count[r]!;
      all.set(this.#values.subarray(r * SIZE, r * SIZE + count), at);
      at += count;
    }
    return nearestRanks(all, total);
  }

  /** Where percentiles reorder copies of samples: reused, grown to the largest need. */
  #scratch = new Float64Array(SIZE);

  #scratchOf(size: number): Float64Array {
    if (this.#scratch.length < size) this.#scratch = new Float64Array(size);
    return this.#scratch;
  }

  /**
   * Feeds one latency to the candidate's peak-EWMA (10 s decay); the percentiles do not see it.
   * @param id the candidate id
   * @param ms milliseconds
   * @param now the time of the sample (epoch ms)
   */
  observe(id: string, ms: number, now: number): void {
    this.#ewma.observe(this.#ring(id), ms, now);
  }

  /**
   * The candidate's peak-EWMA latency as its last sample left it: a slow sample counts at once,
   * faster ones pull it down smoothly (not decayed since: every view reads the same value).
   * @param id the candidate id
   * @returns the cost in ms, rounded to 2 decimals; null when never observed
   */
  ewma(id: string): number | null {
    const r = this.#rings.get(id);
    if (r === undefined || !this.#ewma.observed(r)) return null;
    return Math.round(this.#ewma.last(r) * 100) / 100;
  }

  /** The candidate's ring number, making one for a new candidate. */
  #ring(id: string): number {
    let r = this.#rings.get(id);
    if (r === undefined) {
      r = this.#rings.size;
      this.#rings.set(id, r);
      if (r >= this.#next.length) this.#grow(r + 1);
    }
    return r;
  }

  #grow(rings: number): void {
    let n = this.#next.length;
    while (n < rings) n *= 2;
    const values = new Float64Array(n * SIZE);
    values.set(this.#values);
    this.#values = values;
    const next = new Uint16Array(n);
    next.set(this.#next);
    this.#next = next;
    const count = new Uint16Array(n);
    count.set(this.#count);
    this.#count = count;
  }
}

/**
 * p50 and p95 of the first `count` samples (at least one) by the nearest-rank method, rounded to 2 decimals.
 * Reorders the samples: two quickselects, O(n) on average (a pool's 128,000 samples in about a
 * millisecond, where a sort takes ten).
 */
function nearestRanks(samples: Float64Array, count: number): { p50: number; p95: number } {
  // nearest rank: the smallest sample with at least q of the samples at or below it
  const rank = (q: number) => Math.max(0, Math.ceil(q * count) - 1);
  const r50 = rank(0.5);
  const p50 = select(samples, r50, 0, count - 1);
  // after the first selection, every sample from r50 on is at least p50
  const p95 = select(samples, rank(0.95), r50, count - 1);
  return { p50: Math.round(p50 * 100) / 100, p95: Math.round(p95 * 100) / 100 };
}

/**
 * Moves the k-th smallest of `a[lo..hi]` to index k (Hoare's quickselect, median-of-three
 * pivot): what is before it is no larger, what is after no smaller.
 * @returns that value
 */
function select(a: Float64Array, k: number, lo: number, hi: number): number {
  while (hi > lo) {
    const x = a[lo]!;
    const y = a[(lo + hi) >>> 1]!;
    const z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i++] = a[j]!;
        a[j--] = t;
      }
    }
    // a[lo..j] <= pivot <= a[i..hi]; between them (if anything) equals the pivot
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}
