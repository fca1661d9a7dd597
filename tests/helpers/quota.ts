/**
 * @module
 * The budgets a key has when nothing configures them, written out (not derived from
 * `defaultQuota`, so tests check the defaults rather than repeat them): no limit, reset 00:00 UTC.
 */

import type { QuotaConfig } from "../../src/config/types.ts";

/** No limit, daily reset at 00:00 UTC (ModelScope hosts: `{ ...NO_LIMITS, timeZone: "Asia/Shanghai" }`). */
export const NO_LIMITS: Readonly<QuotaConfig> = {
  requestsPerDay: 0,
  modelRequestsPerDay: 0,
  tokensPerDay: 0,
  requestsPerMinute: 0,
  tokensPerMinute: 0,
  maxConcurrency: 0,
  reset: { hour: 0, minute: 0 },
  timeZone: "UTC",
};
