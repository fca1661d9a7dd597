/**
 * @module
 * The `random` strategy: every pick is uniform over the available candidates, drawn with the
 * injected `random()` of {@linkcode StrategyOptions} so tests are deterministic. It keeps no
 * state, and candidate weights and priorities play no part.
 */

import type { Strategy, StrategyOptions, StrategyPlugin } from "../../src/plugin.ts";

/**
 * Uniform random choice among the available candidates: `available[floor(random() * n)]`.
 * Stateless; a `random()` that wrongly returns 1 still yields the last candidate.
 */
export default {
  kind: "strategy",
  name: "random",
  description: "A uniformly random usable key for each request",
  options: [],
  create(options: StrategyOptions): Strategy {
    const { random } = options;
    return {
      pick(available) {
        const i = Math.min(Math.floor(random() * available.length), available.length - 1);
        return available[i] ?? available[0]!;
      },
    };
  },
} satisfies StrategyPlugin;
