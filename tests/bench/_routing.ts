/**
 * @module
 * The routing scenarios of `deno task bench`: `affinity` (a pool routing by `prompt_cache_key`
 * vs the same pool without affinity) and `p2c` (the `p2c` strategy vs `round_robin`), each pair
 * under load at the same time. Here: their names, the pool settings each side adds, the wrk
 * script whose requests carry affinity values, and the note read from a pool's affinity counts.
 */

import { WRK_SCRIPT } from "./_load.ts";

/** The routing scenarios, in report order. */
export const ROUTING_SCENARIOS = ["affinity", "p2c"] as const;
/** One routing scenario. */
export type RoutingScenario = typeof ROUTING_SCENARIOS[number];

/** One side of a routing scenario: its target name and what it sets on the default pool. */
export interface RoutingSide {
  name: string;
  pool: Record<string, unknown>;
}

/** The two sides of each routing scenario: the baseline first. */
export const ROUTING_SIDES: Record<RoutingScenario, [RoutingSide, RoutingSide]> = {
  affinity: [
    { name: "llm-balance affinity off", pool: {} },
    {
      name: "llm-balance affinity on",
      pool: { affinity: { by: ["prompt_cache_key"] } },
    },
  ],
  p2c: [
    { name: "llm-balance round_robin", pool: { strategy: "round_robin" } },
    { name: "llm-balance p2c", pool: { strategy: "p2c" } },
  ],
};

/** Options of {@linkcode affinityWrkScript}. */
export interface AffinityLoad {
  /** Distinct values the requests cycle through (pinned after their first request). @default 1000 */
  values?: number;
  /** Every Nth request carries a value never sent before (a new pin). @default 10 */
  freshEvery?: number;
}

/**
 * The wrk script of the affinity scenario: the bench's chat completion, each request with a
 * `prompt_cache_key` that cycles through `values` values, except every `freshEvery`th, which
 * carries a value never sent before (not in an earlier round either); so the pool both follows
 * pins and places new ones. Both sides of the scenario get the same requests.
 * @param load how many values, how often a fresh one
 * @returns the Lua script
 */
export function affinityWrkScript(load: AffinityLoad = {}): string {
  const values = load.values ?? 1000;
  const freshEvery = load.freshEvery ?? 10;
  const body = JSON.stringify({
    model: "bench-model",
    messages: [{ role: "user", content: "Say hello to the benchmark." }],
    max_tokens: 16,
    prompt_cache_key: "%s",
  });
  return `${WRK_SCRIPT}
-- fresh values differ from one wrk run (a round) to the next
local run = string.format("%d-%d", os.time(), math.floor(os.clock() * 1000000))
local sent = 0
local cycled = 0
request = function()
  sent = sent + 1
  local value
  if sent % ${freshEvery} == 0 then
    value = "fresh-" .. run .. "-" .. sent
  else
    cycled = cycled + 1
    value = "conversation-" .. (cycled % ${values})
  end
  return wrk.format(nil, nil, nil, string.format([[${body}]], value))
end
`;
}

/**
 * Sums up a pool's affinity counts from `/v1/stats/load_balancers` for the report.
 * @param view the JSON of `/v1/stats/load_balancers`
 * @returns e.g. `affinity: 90.0% hit, 10.0% new, 0.0% moved/detour; 12,345 pins`, or
 *   undefined when the default pool has no affinity
 */
export function affinityNote(view: unknown): string | undefined {
  const pools = (view as { load_balancers?: Record<string, unknown> })?.load_balancers;
  const affinity = (pools?.default as { affinity?: unknown } | undefined)?.affinity as
    | { pins: number; requests: Record<string, number> }
    | null
    | undefined;
  if (!affinity) return undefined;
  const { hit = 0, new: fresh = 0, moved = 0, detour = 0 } = affinity.requests;
  const total = Math.max(1, hit + fresh + moved + detour);
  const pct = (n: number) => `${(n / total * 100).toFixed(1)}%`;
  return `affinity: ${pct(hit)} hit, ${pct(fresh)} new, ${pct(moved + detour)} moved/detour; ` +
    `${affinity.pins.toLocaleString("en-US")} pins`;
}
