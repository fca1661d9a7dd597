/**
 * @module
 * The `least_connections` strategy: picks the available candidate with the fewest requests in
 * flight (`state.inFlight`). Ties are broken round robin: among the tied candidates it takes the
 * first whose `index` is greater than the previous pick's, wrapping around, so equally loaded
 * keys share traffic instead of the first one taking it all (when every key is idle it behaves
 * like `round_robin`). One pass over `available` per pick.
 */

import type { Candidate, Strategy, StrategyOptions, StrategyPlugin } from "../../src/plugin.ts";

/**
 * Fewest in-flight requests among the available candidates; ties go to the first tied candidate
 * after the previous pick in the pool's order, wrapping around.
 */
export default {
  kind: "strategy",
  name: "least_connections",
  description: "The usable key with the fewest requests in flight, ties in turn",
  options: [],
  create(_options: StrategyOptions): Strategy {
    let last = -1;
    return {
      pick(available) {
        let least = Infinity;
        let firstTied: Candidate | undefined;
        let firstTiedAfter: Candidate | undefined;
        for (const candidate of available) {
          const load = candidate.state.inFlight;
          if (load < least) {
            least = load;
            firstTied = candidate;
            firstTiedAfter = candidate.index > last ? candidate : undefined;
          } else if (
            load === least && firstTiedAfter === undefined && candidate.index > last
          ) {
            firstTiedAfter = candidate;
          }
        }
        const chosen = firstTiedAfter ?? firstTied ?? available[0]!;
        last = chosen.index;
        return chosen;
      },
    };
  },
} satisfies StrategyPlugin;
