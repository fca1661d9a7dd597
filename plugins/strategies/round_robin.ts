/**
 * @module
 * The `round_robin` strategy: strict order over the pool's full candidate list, skipping
 * candidates that are not available. It remembers the `index` of its last pick and chooses the
 * first available candidate whose `index` is greater, wrapping around to the lowest. With
 * candidates 0..3 all available it picks 0, 1, 2, 3, 0, ...; if 2 becomes unavailable after 1
 * was picked, the next pick is 3. Each pick is a binary search over `available`, so O(log n)
 * even for pools of many thousands of keys.
 */

import type { Candidate, Strategy, StrategyOptions, StrategyPlugin } from "../../src/plugin.ts";

/**
 * Returns the first candidate of `available` whose `index` is greater than `after`, or the first
 * candidate if there is none (wrap-around). Binary search: O(log n).
 * @param available candidates in ascending `index` order; never empty
 * @param after the `index` to start after; -1 starts from the beginning
 * @returns one of `available`
 */
export function nextAfter(available: readonly Candidate[], after: number): Candidate {
  let lo = 0;
  let hi = available.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (available[mid]!.index <= after) lo = mid + 1;
    else hi = mid;
  }
  return available[lo] ?? available[0]!;
}

/**
 * Round robin in the pool's stable order, skipping unavailable candidates: each pick is the
 * first available candidate after the previous pick's `index`, wrapping around. The cursor lives
 * as long as the pool, so traffic resumes where it left off when candidates come and go.
 */
export default {
  kind: "strategy",
  name: "round_robin",
  description: "Each key in turn, in configured order, skipping unusable keys",
  options: [],
  create(_options: StrategyOptions): Strategy {
    let last = -1;
    return {
      pick(available) {
        const chosen = nextAfter(available, last);
        last = chosen.index;
        return chosen;
      },
    };
  },
} satisfies StrategyPlugin;
