/**
 * @module
 * Recent latencies per candidate in a fixed ring, for p50/p95 in stats. Constant memory per
 * candidate, O(1) per record; percentiles are computed only when stats are read.
 */

const SIZE = 256;

/** Latency samples per candidate id. */
export class LatencyTracker {
  #rings = new Map<string, { values: Float64Array; next: number; count: number }>();

  /**
   * Records one attempt's latency.
   * @param id the candidate id
   * @param ms milliseconds
   */
  record(id: string, ms: number): void {
    let r = this.#rings.get(id);
    if (r === undefined) {
      r = { values: new Float64Array(SIZE), next: 0, count: 0 };
      this.#rings.set(id, r);
    }
    r.values[r.next] = ms;
    r.next = (r.next + 1) % SIZE;
    if (r.count < SIZE) r.count++;
  }

  /**
   * Percentiles of the recent samples (nearest-rank method).
   * @param id the candidate id
   * @returns p50 and p95 in ms, or nulls without samples
   */
  percentiles(id: string): { p50: number | null; p95: number | null } {
    const r = this.#rings.get(id);
    if (r === undefined || r.count === 0) return { p50: null, p95: null };
    const sorted = r.values.slice(0, r.count).sort();
    // nearest rank: the smallest sample with at least q of the samples at or below it
    const at = (q: number) =>
      Math.round(sorted[Math.max(0, Math.ceil(q * r.count) - 1)]! * 100) / 100;
    return { p50: at(0.5), p95: at(0.95) };
  }
}
