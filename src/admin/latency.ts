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
    const sorted = this.#values.slice(r * SIZE, r * SIZE + count).sort();
    // nearest rank: the smallest sample with at least q of the samples at or below it
    const at = (q: number) =>
      Math.round(sorted[Math.max(0, Math.ceil(q * count) - 1)]! * 100) / 100;
    return { p50: at(0.5), p95: at(0.95) };
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
