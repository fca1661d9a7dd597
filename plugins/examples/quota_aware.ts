/**
 * @module
 * An example custom strategy, `daily_quota`: prefer the key with the most daily quota left,
 * counting the requests itself. It shows how a strategy with options and state is written; to
 * balance on real budgets, use the built-in `quota_aware` strategy instead, which reads each
 * key's budgets (its `quota` settings, or the provider's word when lower). Providers such as
 * ModelScope give each account a daily request quota; spreading requests so that the key with
 * the most left goes first uses every account's quota before any key runs dry. Load it from a
 * config file:
 *
 * ```yaml
 * plugins: [./plugins/examples/quota_aware.ts]
 * pools:
 *   default: { strategy: daily_quota, upstreams: [modelscope] }
 * ```
 *
 * A key's quota is `dailyQuota × weight` (so `weight: 2` marks an account with twice the quota).
 * Requests are counted per key per UTC day from `state.requests`, the key's live request
 * counter, so every attempt made with the key counts, whichever pool or strategy made it. The
 * count starts when the strategy first sees a key each day and lives as long as the process,
 * across config reloads. Ties go to the first tied key after the previous pick, in pool order.
 *
 * For another quota, build your own instance in a three-line module:
 * `export default quotaAware({ name: "quota_500", dailyQuota: 500 });`
 */

import type { Candidate, Strategy, StrategyPlugin } from "../../src/plugin.ts";

/** Options of {@linkcode quotaAware}. */
export interface QuotaAwareOptions {
  /** The strategy's name in config files. @default "daily_quota" */
  name?: string;
  /** Requests per key per UTC day, for a key of weight 1. @default 2000 */
  dailyQuota?: number;
  /** The clock (epoch ms); injected in tests. @default Date.now */
  now?: () => number;
}

const DAY_MS = 86_400_000;

/**
 * Builds a `daily_quota` strategy plugin (under another name if `options.name` says so).
 * @param options its name, the daily quota per key and the clock
 * @returns the plugin; register it by exporting it from a module named in `plugins:`
 * @throws {TypeError} when `dailyQuota` is not a positive number
 */
export function quotaAware(options: QuotaAwareOptions = {}): StrategyPlugin {
  const dailyQuota = options.dailyQuota ?? 2000;
  if (!(dailyQuota > 0)) {
    throw new TypeError(`Cannot build daily_quota: dailyQuota must be > 0, got ${dailyQuota}`);
  }
  const now = options.now ?? Date.now;
  /** Per key id: the UTC day and the key's request counter when that day's count began. */
  const baselines = new Map<string, { day: number; requests: number }>();

  /** Requests made with a key today (since this strategy first saw it today). */
  function usedToday(c: Candidate, day: number): number {
    let base = baselines.get(c.id);
    if (base === undefined || base.day !== day) {
      base = { day, requests: c.state.requests };
      baselines.set(c.id, base);
    }
    return c.state.requests - base.requests;
  }

  return {
    kind: "strategy",
    name: options.name ?? "daily_quota",
    description: `The key with the most of its daily quota (${dailyQuota} × weight) left`,
    create(): Strategy {
      let last = -1;
      return {
        pick(available) {
          const day = Math.floor(now() / DAY_MS);
          let best: Candidate | undefined;
          let bestLeft = -Infinity;
          let bestAfterLast = false;
          for (const c of available) {
            const left = dailyQuota * c.weight - usedToday(c, day);
            const afterLast = c.index > last;
            // More left wins; on a tie, the first key after the previous pick wins.
            if (left > bestLeft || (left === bestLeft && afterLast && !bestAfterLast)) {
              best = c;
              bestLeft = left;
              bestAfterLast = afterLast;
            }
          }
          const chosen = best ?? available[0]!;
          last = chosen.index;
          return chosen;
        },
      };
    },
  };
}

/** `daily_quota` with 2000 requests per key per UTC day. */
export default quotaAware();
