/**
 * @module
 * The `weighted` strategy: smooth weighted round robin, exactly as nginx does it. On each pick
 * every available candidate's `current` grows by its weight, the candidate with the highest
 * `current` is chosen (the first in order on ties), and the chosen one's `current` drops by the
 * total weight of the available candidates. Traffic is proportional to weight and interleaved:
 * weights 8 and 2 give exactly 8 and 2 picks in any 10 consecutive picks, and weights 5, 1, 1
 * give a a b a c a a. Weights may be fractional; a weight of 0 (or a negative or non-finite one)
 * is never chosen, unless every available candidate has it: then they share traffic in round
 * robin. Unavailable candidates are skipped and keep their `current` until they return.
 */

import type { Candidate, Strategy, StrategyOptions, StrategyPlugin } from "../../src/plugin.ts";
import { nextAfter } from "./round_robin.ts";

/** Returns the weight a candidate counts with: its weight if finite and positive, else 0. */
function effectiveWeight(candidate: Candidate): number {
  const w = candidate.weight;
  return Number.isFinite(w) && w > 0 ? w : 0;
}

/**
 * Smooth weighted round robin (nginx) over the available candidates, with a `current` value per
 * candidate index that lives as long as the pool. Zero-weight candidates serve only when every
 * available candidate has weight 0, in round robin among them.
 */
export default {
  kind: "strategy",
  name: "weighted",
  description: "Traffic in proportion to each key's weight, interleaved (nginx smooth weighted)",
  create(options: StrategyOptions): Strategy {
    const current = new Float64Array(options.candidates.length);
    let lastZero = -1;
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
        if (best === undefined) {
          const chosen = nextAfter(available, lastZero);
          lastZero = chosen.index;
          return chosen;
        }
        current[best.index] = bestCurrent - total;
        return best;
      },
    };
  },
} satisfies StrategyPlugin;
