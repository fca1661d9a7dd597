/**
 * @module
 * The `weighted` strategy: smooth weighted round robin, exactly as nginx does it. On each pick
 * every available candidate's `current` grows by its weight, the candidate with the highest
 * `current` is chosen (the first in order on ties), and the chosen one's `current` drops by the
 * total weight of the available candidates. Traffic is proportional to weight and interleaved:
 * weights 8 and 2 give exactly 8 and 2 picks in any 10 consecutive picks, and weights 5, 1, 1
 * give a a b a c a a. Weights may be fractional; a weight of 0 (or a negative or non-finite one)
 * is never chosen: when only such candidates are available, the strategy chooses none (the pool
 * then tries its next priority tier, else answers 503). Unavailable candidates are skipped and
 * keep their `current` until they return.
 *
 * nginx's pick looks at every candidate, which is fine for the usual handful of keys but not for
 * thousands. Pools larger than {@linkcode LARGE_POOL} use earliest-deadline-first scheduling
 * instead (as Envoy does): each key is due again `1 / weight` after its last turn and a heap
 * gives the next one due in O(log n). Shares and interleaving are the same; only the order of
 * picks within a round can differ from nginx's. A key that was unusable when its turn came is
 * scheduled again from the current turn, so it never comes back with a burst.
 */

import type { Candidate, Strategy, StrategyOptions, StrategyPlugin } from "../../src/plugin.ts";

/** Pools with more candidates than this use the O(log n) scheduler. */
export const LARGE_POOL = 256;

/** Returns the weight a candidate counts with: its weight if finite and positive, else 0. */
function effectiveWeight(candidate: Candidate): number {
  const w = candidate.weight;
  return Number.isFinite(w) && w > 0 ? w : 0;
}

/**
 * Smooth weighted round robin (nginx) over the available candidates, with a `current` value per
 * candidate index that lives as long as the pool. Zero-weight candidates never serve.
 */
export default {
  kind: "strategy",
  name: "weighted",
  description: "Traffic in proportion to each key's weight, interleaved (nginx smooth weighted)",
  options: [],
  create(options: StrategyOptions): Strategy {
    if (options.candidates.length > LARGE_POOL) return earliestDeadline(options.candidates);
    const current = new Float64Array(options.candidates.length);
    return {
      pick(available) {
        let total = 0;
        let best: Candidate | undefined;
        let bestCurrent = -Infinity;
        for (const candidate of available) {
          const w = effectiveWeight(candidate);
          if (w === 0) continue;
          const c = (current[candidate.index] ?? 0) + w;
          current[candidate.index] = c;
          total += w;
          if (best === undefined || c > bestCurrent) {
            best = candidate;
            bestCurrent = c;
          }
        }
        if (best === undefined) return undefined;
        current[best.index] = bestCurrent - total;
        return best;
      },
    };
  },
} satisfies StrategyPlugin;

/** Whether `c` is in `available` (sorted by index), by binary search. */
function isIn(available: readonly Candidate[], c: Candidate): boolean {
  let lo = 0;
  let hi = available.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const at = available[mid]!.index;
    if (at === c.index) return available[mid] === c;
    if (at < c.index) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * Earliest-deadline-first weighted scheduling for large pools: a binary min-heap of candidate
 * indexes ordered by (due, index).
 */
function earliestDeadline(candidates: readonly Candidate[]): Strategy {
  const due = new Float64Array(candidates.length);
  const heap: number[] = [];
  const less = (a: number, b: number) => due[a]! < due[b]! || (due[a] === due[b] && a < b);
  const up = (i: number) => {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(heap[i]!, heap[p]!)) break;
      const t = heap[i]!;
      heap[i] = heap[p]!;
      heap[p] = t;
      i = p;
    }
  };
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      const t = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = t;
      i = m;
    }
  };
  for (const c of candidates) {
    const w = effectiveWeight(c);
    if (w === 0) continue;
    due[c.index] = 1 / w;
    heap.push(c.index);
    up(heap.length - 1);
  }
  return {
    pick(available) {
      // every candidate popped is due now; unusable ones are rescheduled from this turn
      for (let tries = heap.length; tries > 0; tries--) {
        const index = heap[0]!;
        const c = candidates[index]!;
        const now = due[index]!;
        due[index] = now + 1 / effectiveWeight(c);
        down(0);
        if (isIn(available, c)) return c;
      }
      // every key due was unusable (many heavy keys resting): take the heaviest usable one
      let heaviest: Candidate | undefined;
      for (const c of available) {
        const w = effectiveWeight(c);
        if (w > 0 && (heaviest === undefined || w > effectiveWeight(heaviest))) heaviest = c;
      }
      return heaviest;
    },
  };
}
