/**
 * @module
 * The `quota_aware` strategy: picks the available candidate with the largest share of its budget
 * left for the request's model, as `budgetLeft(candidate, ctx.model)` reports it (the tightest of
 * the key's daily requests, the model's requests and daily tokens; counted, or the provider's word
 * when lower). Each pick lowers the chosen key's share, so traffic goes to whichever key is
 * furthest from running dry and every key's budget drains at the same pace, lasting until the
 * reset. Keys whose shares are equal (within {@linkcode TIE_EPSILON}) take turns in the pool's
 * order from after the previous pick, wrapping around; keys without budgets all have share 1, so
 * without budgets it behaves like `round_robin`. `weight` is not used: a key with a bigger
 * budget already gets more traffic, since each request takes a smaller share of it. A key with
 * nothing left is still picked when every available key is in the same state (the upstream's
 * answer then rests it). Two passes over `available` per pick, no allocation.
 */

import type { Candidate, Strategy, StrategyOptions, StrategyPlugin } from "../../src/plugin.ts";

/** Shares closer than this count as equal (absorbs floating-point noise only). */
export const TIE_EPSILON = 1e-9;

/**
 * The most budget left for the request's model wins; equal shares take turns in pool order,
 * from the first tied candidate after the previous pick's `index`, wrapping around.
 */
export default {
  kind: "strategy",
  name: "quota_aware",
  description: "The key with the largest share of its budget left for the model, ties in turn",
  options: [],
  create(options: StrategyOptions): Strategy {
    const { budgetLeft, now } = options;
    /** Each candidate's share in the current pick, by `index`; reused across picks. */
    const shares = new Float64Array(options.candidates.length);
    let last = -1;
    return {
      pick(available, ctx) {
        let top = -Infinity;
        const t = now();
        for (const c of available) {
          const reported = budgetLeft(c, ctx.model, t);
          const share = reported > 0 ? reported : 0; // NaN and negatives count as none left
          shares[c.index] = share;
          if (share > top) top = share;
        }
        const floor = top - TIE_EPSILON;
        let firstTied: Candidate | undefined;
        for (const c of available) {
          if (shares[c.index]! < floor) continue;
          if (c.index > last) {
            last = c.index;
            return c;
          }
          firstTied ??= c;
        }
        const chosen = firstTied ?? available[0]!;
        last = chosen.index;
        return chosen;
      },
    };
  },
} satisfies StrategyPlugin;
