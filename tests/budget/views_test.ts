/**
 * @module
 * Tests of the budget views stats and the dashboard show.
 */

import assert from "node:assert/strict";
import { budgetViews } from "../../src/budget/views.ts";
import { makeCandidates } from "../helpers/candidates.ts";

Deno.test("budgetViews() of a key unused today tells the next reset, in any zone, day after day", () => {
  const [utc, shanghai] = makeCandidates([
    { quota: { requestsPerDay: 100, timeZone: "UTC" } },
    { quota: { requestsPerDay: 100, timeZone: "Asia/Shanghai" } },
  ]);
  const day = 86_400_000;
  const t0 = Date.UTC(2026, 11, 7, 13, 0);
  for (let d = 0; d < 3; d++) {
    for (const offset of [0, 3_600_000, 10 * 3_600_000]) {
      const now = t0 + d * day + offset;
      const u = budgetViews(utc!, now).requests_per_day!;
      assert.equal(u.resetsAt, Date.UTC(2026, 11, 8 + d + (offset >= 11 * 3_600_000 ? 1 : 0)));
      assert.equal(u.remaining, 100);
      // midnight in Shanghai is 16:00 UTC the day before
      const s = budgetViews(shanghai!, now).requests_per_day!;
      const shanghaiReset = Date.UTC(2026, 11, 7 + d, 16) + (offset >= 3 * 3_600_000 ? day : 0);
      assert.equal(s.resetsAt, shanghaiReset, `day ${d} +${offset / 3_600_000} h`);
    }
  }
});
