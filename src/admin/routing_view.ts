/**
 * @module
 * What the stats and metrics views show of routing: affinity pins per key (a key in several
 * pools holds the sum of its pins in each), and each pool's affinity settings and counts.
 */

import type { Pool } from "../pool.ts";
import type { Runtime } from "../runtime.ts";

/**
 * The pins every key holds, over every pool that routes by affinity.
 * @param rt the runtime
 * @returns pins by candidate id (keys without pins left out)
 */
export function pinsByKey(rt: Runtime): Map<string, number> {
  const out = new Map<string, number>();
  for (const pool of poolsOf(rt)) {
    const router = pool.affinity;
    if (router === undefined) continue;
    for (const c of pool.candidates) {
      const n = router.pinsOf(c.index);
      if (n > 0) out.set(c.id, (out.get(c.id) ?? 0) + n);
    }
  }
  return out;
}

/**
 * Every pool of a runtime: the named ones, then the default one.
 * @param rt the runtime
 */
export function poolsOf(rt: Runtime): Pool[] {
  const pools = [...rt.pools.values()];
  if (rt.defaultPool !== undefined) pools.push(rt.defaultPool);
  return pools;
}

/**
 * A pool's affinity routing, as `/v1/stats` shows it.
 * @param pool the pool
 * @returns its settings, pins and routed requests by result, or null without affinity routing
 */
export function affinityView(pool: Pool): Record<string, unknown> | null {
  const router = pool.affinity;
  if (router === undefined) return null;
  return {
    by: pool.affinityBy,
    ttl_seconds: router.ttlMs / 1000,
    max_load: router.maxLoad,
    pins: router.size,
    requests: { ...router.counts },
  };
}
