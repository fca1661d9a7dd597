/** @module Tests of daily reset times in IANA time zones, across daylight-saving changes. */

import assert from "node:assert/strict";
import {
  dayStart,
  formatWithOffset,
  isTimeZone,
  nextReset,
  parseResetTime,
  type ResetTime,
} from "../../src/budget/reset.ts";

const HOUR = 3_600_000;
const MIDNIGHT: ResetTime = { hour: 0, minute: 0 };
const HALF_TWO: ResetTime = { hour: 2, minute: 30 };

/** Epoch ms of an RFC 3339 date-time. */
function at(text: string): number {
  const t = Date.parse(text);
  assert.ok(Number.isFinite(t), text);
  return t;
}

/** The daily window holding `now`, written with the zone's offsets. */
function windowOf(now: number, reset: ResetTime, zone: string): [string, string] {
  return [
    formatWithOffset(dayStart(now, reset, zone), zone),
    formatWithOffset(nextReset(now, reset, zone), zone),
  ];
}

Deno.test("parseResetTime() reads HH:MM from 00:00 to 23:59", () => {
  const table: [string, ResetTime][] = [
    ["00:00", { hour: 0, minute: 0 }],
    ["07:30", { hour: 7, minute: 30 }],
    ["12:05", { hour: 12, minute: 5 }],
    ["23:59", { hour: 23, minute: 59 }],
  ];
  for (const [text, want] of table) assert.deepEqual(parseResetTime(text), want, text);
});

Deno.test("parseResetTime() throws a RangeError for any other text", () => {
  const bad = [
    "",
    "7:30",
    "07:3",
    "24:00",
    "23:60",
    "99:99",
    " 07:30",
    "07:30 ",
    "07-30",
    "0730",
    "07:30:00",
    "ab:cd",
    "-1:00",
    "+7:30",
    "１２:００",
    "07:30\n",
  ];
  for (const text of bad) {
    assert.throws(() => parseResetTime(text), RangeError, JSON.stringify(text));
  }
  assert.throws(
    () => parseResetTime("24:00"),
    {
      name: "RangeError",
      message: 'Cannot parse reset time "24:00": expected HH:MM from 00:00 to 23:59',
    },
  );
});

Deno.test("isTimeZone() accepts IANA names and UTC", () => {
  for (
    const name of [
      "UTC",
      "Etc/UTC",
      "Asia/Shanghai",
      "America/New_York",
      "Europe/Berlin",
      "Asia/Kolkata",
      "US/Eastern",
      "asia/shanghai",
    ]
  ) {
    assert.equal(isTimeZone(name), true, name);
  }
});

Deno.test("isTimeZone() rejects unknown names, offsets and empty text", () => {
  for (
    const name of ["", "Mars/Olympus_Mons", "Asia/Shang hai", "Z", "+08:00", "-05:00", "+0800"]
  ) {
    assert.equal(isTimeZone(name), false, JSON.stringify(name));
  }
});

Deno.test("dayStart() and nextReset() find midnight in Asia/Shanghai", () => {
  const now = at("2026-12-07T23:30:00+08:00");
  assert.equal(dayStart(now, MIDNIGHT, "Asia/Shanghai"), at("2026-12-06T16:00:00Z"));
  assert.equal(nextReset(now, MIDNIGHT, "Asia/Shanghai"), at("2026-12-07T16:00:00Z"));
  assert.deepEqual(windowOf(at("2026-12-08T00:00:01+08:00"), MIDNIGHT, "Asia/Shanghai"), [
    "2026-12-08T00:00:00+08:00",
    "2026-12-09T00:00:00+08:00",
  ]);
  // 07:00 UTC is already the next day in Shanghai
  assert.deepEqual(windowOf(at("2026-12-07T20:00:00Z"), MIDNIGHT, "Asia/Shanghai"), [
    "2026-12-08T00:00:00+08:00",
    "2026-12-09T00:00:00+08:00",
  ]);
});

Deno.test("dayStart() and nextReset() find midnight in UTC", () => {
  const now = at("2026-07-15T13:14:15.016Z");
  assert.equal(dayStart(now, MIDNIGHT, "UTC"), at("2026-07-15T00:00:00Z"));
  assert.equal(nextReset(now, MIDNIGHT, "UTC"), at("2026-07-16T00:00:00Z"));
  // across a month and a year end
  assert.deepEqual(windowOf(at("2026-12-31T23:59:59.999Z"), MIDNIGHT, "UTC"), [
    "2026-12-31T00:00:00+00:00",
    "2027-01-01T00:00:00+00:00",
  ]);
});

Deno.test("dayStart() and nextReset() find a reset that is not at midnight", () => {
  const reset = parseResetTime("07:30");
  assert.deepEqual(windowOf(at("2026-05-10T07:29:59+08:00"), reset, "Asia/Shanghai"), [
    "2026-05-09T07:30:00+08:00",
    "2026-05-10T07:30:00+08:00",
  ]);
  assert.deepEqual(windowOf(at("2026-05-10T07:30:00+08:00"), reset, "Asia/Shanghai"), [
    "2026-05-10T07:30:00+08:00",
    "2026-05-11T07:30:00+08:00",
  ]);
  assert.equal(dayStart(at("2026-05-10T01:00:00Z"), reset, "UTC"), at("2026-05-09T07:30:00Z"));
  assert.equal(
    nextReset(at("2026-05-10T23:59:00Z"), { hour: 23, minute: 59 }, "UTC"),
    at("2026-05-11T23:59:00Z"),
  );
});

Deno.test("dayStart() and nextReset() put the reset instant in the new window", () => {
  const cases: [string, ResetTime, string][] = [
    ["Asia/Shanghai", MIDNIGHT, "2026-12-08T00:00:00+08:00"],
    ["UTC", { hour: 7, minute: 30 }, "2026-01-01T07:30:00Z"],
    // the end of New York's spring gap, and the first of Berlin's repeated 02:30s
    ["America/New_York", HALF_TWO, "2026-03-08T03:00:00-04:00"],
    ["Europe/Berlin", HALF_TWO, "2026-10-25T02:30:00+02:00"],
  ];
  for (const [zone, reset, instant] of cases) {
    const t = at(instant);
    assert.equal(dayStart(t, reset, zone), t, zone);
    assert.ok(nextReset(t, reset, zone) > t, zone);
    assert.equal(nextReset(t - 1, reset, zone), t, zone);
    assert.ok(dayStart(t - 1, reset, zone) < t, zone);
  }
});

Deno.test("dayStart() and nextReset() give 23- and 25-hour days at midnight in America/New_York", () => {
  const zone = "America/New_York";
  const spring = at("2026-03-08T12:00:00-04:00");
  assert.deepEqual(windowOf(spring, MIDNIGHT, zone), [
    "2026-03-08T00:00:00-05:00",
    "2026-03-09T00:00:00-04:00",
  ]);
  assert.equal(nextReset(spring, MIDNIGHT, zone) - dayStart(spring, MIDNIGHT, zone), 23 * HOUR);
  const fall = at("2026-11-01T12:00:00-05:00");
  assert.deepEqual(windowOf(fall, MIDNIGHT, zone), [
    "2026-11-01T00:00:00-04:00",
    "2026-11-02T00:00:00-05:00",
  ]);
  assert.equal(nextReset(fall, MIDNIGHT, zone) - dayStart(fall, MIDNIGHT, zone), 25 * HOUR);
  // inside the repeated hour, both passes belong to the same day
  assert.equal(
    dayStart(at("2026-11-01T01:30:00-04:00"), MIDNIGHT, zone),
    at("2026-11-01T04:00:00Z"),
  );
  assert.equal(
    dayStart(at("2026-11-01T01:30:00-05:00"), MIDNIGHT, zone),
    at("2026-11-01T04:00:00Z"),
  );
});

Deno.test("dayStart() and nextReset() reset when clocks leave the gap in America/New_York", () => {
  const zone = "America/New_York";
  // 02:30 does not exist on 2026-03-08: clocks go from 02:00 EST to 03:00 EDT (07:00Z)
  const gapEnd = at("2026-03-08T07:00:00Z");
  assert.equal(nextReset(at("2026-03-08T01:59:59.999-05:00"), HALF_TWO, zone), gapEnd);
  assert.deepEqual(windowOf(at("2026-03-08T06:59:59.999Z"), HALF_TWO, zone), [
    "2026-03-07T02:30:00-05:00",
    "2026-03-08T03:00:00-04:00",
  ]);
  assert.deepEqual(windowOf(gapEnd, HALF_TWO, zone), [
    "2026-03-08T03:00:00-04:00",
    "2026-03-09T02:30:00-04:00",
  ]);
  // the lost hour is shared by the windows either side of the reset
  assert.equal(gapEnd - dayStart(gapEnd - 1, HALF_TWO, zone), 23.5 * HOUR);
  assert.equal(nextReset(gapEnd, HALF_TWO, zone) - gapEnd, 23.5 * HOUR);
  // 02:30 exists once in the autumn, so only the window holding the change is longer
  assert.deepEqual(windowOf(at("2026-11-01T01:30:00-05:00"), HALF_TWO, zone), [
    "2026-10-31T02:30:00-04:00",
    "2026-11-01T02:30:00-05:00",
  ]);
  assert.equal(
    nextReset(at("2026-11-01T00:00:00Z"), HALF_TWO, zone) - at("2026-10-31T02:30:00-04:00"),
    25 * HOUR,
  );
});

Deno.test("dayStart() resets at the first of two 01:30s in America/New_York", () => {
  const zone = "America/New_York";
  const reset = { hour: 1, minute: 30 };
  const first = at("2026-11-01T01:30:00-04:00");
  const second = at("2026-11-01T01:30:00-05:00");
  assert.equal(nextReset(at("2026-10-31T12:00:00-04:00"), reset, zone), first);
  assert.equal(dayStart(first, reset, zone), first);
  // the second time the clocks read 01:30 opens no window
  assert.equal(dayStart(second, reset, zone), first);
  assert.equal(nextReset(second, reset, zone), at("2026-11-02T01:30:00-05:00"));
});

Deno.test("dayStart() and nextReset() give 23- and 25-hour days at midnight in Europe/Berlin", () => {
  const zone = "Europe/Berlin";
  assert.deepEqual(windowOf(at("2026-03-29T12:00:00+02:00"), MIDNIGHT, zone), [
    "2026-03-29T00:00:00+01:00",
    "2026-03-30T00:00:00+02:00",
  ]);
  assert.equal(
    at("2026-03-30T00:00:00+02:00") - at("2026-03-29T00:00:00+01:00"),
    23 * HOUR,
  );
  assert.deepEqual(windowOf(at("2026-10-25T12:00:00+01:00"), MIDNIGHT, zone), [
    "2026-10-25T00:00:00+02:00",
    "2026-10-26T00:00:00+01:00",
  ]);
  assert.equal(
    nextReset(at("2026-10-25T12:00:00+01:00"), MIDNIGHT, zone) -
      dayStart(at("2026-10-25T12:00:00+01:00"), MIDNIGHT, zone),
    25 * HOUR,
  );
});

Deno.test("dayStart() and nextReset() handle 02:30, skipped and repeated, in Europe/Berlin", () => {
  const zone = "Europe/Berlin";
  // spring: clocks go from 02:00 CET to 03:00 CEST at 01:00Z, so the reset is 03:00
  assert.deepEqual(windowOf(at("2026-03-29T01:59:00+01:00"), HALF_TWO, zone), [
    "2026-03-28T02:30:00+01:00",
    "2026-03-29T03:00:00+02:00",
  ]);
  assert.deepEqual(windowOf(at("2026-03-29T03:00:00+02:00"), HALF_TWO, zone), [
    "2026-03-29T03:00:00+02:00",
    "2026-03-30T02:30:00+02:00",
  ]);
  // autumn: 02:00-03:00 runs twice; the reset is the first 02:30 (00:30Z), the second is not
  const first = at("2026-10-25T02:30:00+02:00");
  assert.deepEqual(windowOf(at("2026-10-25T02:15:00+01:00"), HALF_TWO, zone), [
    "2026-10-25T02:30:00+02:00",
    "2026-10-26T02:30:00+01:00",
  ]);
  assert.equal(dayStart(at("2026-10-25T02:30:00+01:00"), HALF_TWO, zone), first);
  assert.equal(nextReset(first - 1, HALF_TWO, zone), first);
  assert.equal(nextReset(first, HALF_TWO, zone) - first, 25 * HOUR);
  assert.equal(first - dayStart(first - 1, HALF_TWO, zone), 24 * HOUR);
});

Deno.test("dayStart() and nextReset() handle changes at midnight in America/Santiago", () => {
  const zone = "America/Santiago";
  // at 2026-04-05 03:00Z clocks go from 23:59:59 -03 back to 23:00 -04: midnight comes once,
  // an hour later, and 23:00-24:00 on the 4th belongs to the 4th both times
  assert.deepEqual(windowOf(at("2026-04-04T23:30:00-03:00"), MIDNIGHT, zone), [
    "2026-04-04T00:00:00-03:00",
    "2026-04-05T00:00:00-04:00",
  ]);
  assert.equal(
    dayStart(at("2026-04-04T23:30:00-04:00"), MIDNIGHT, zone),
    at("2026-04-04T00:00:00-03:00"),
  );
  assert.equal(
    nextReset(at("2026-04-04T12:00:00-03:00"), MIDNIGHT, zone) - at("2026-04-04T00:00:00-03:00"),
    25 * HOUR,
  );
  // 2026-09-06 has no midnight: clocks go from 24:00 -04 to 01:00 -03
  assert.deepEqual(windowOf(at("2026-09-06T12:00:00-03:00"), MIDNIGHT, zone), [
    "2026-09-06T01:00:00-03:00",
    "2026-09-07T00:00:00-03:00",
  ]);
});

Deno.test("dayStart() keeps the first reset when clocks go back a whole day in America/Sitka", () => {
  // on 1867-10-19 at 15:30 local, Alaska went from +14:58:47 to -09:01:13: the afternoon of the
  // 18th came again after the 19th had begun
  const zone = "America/Sitka";
  const firstNineteenth = at("1867-10-18T09:01:13Z");
  const twentieth = at("1867-10-20T09:01:13Z");
  const againEighteenth = at("1867-10-19T06:30:00Z");
  assert.equal(dayStart(againEighteenth, MIDNIGHT, zone), firstNineteenth);
  assert.equal(nextReset(againEighteenth, MIDNIGHT, zone), twentieth);
  assert.equal(nextReset(firstNineteenth - 1, MIDNIGHT, zone), firstNineteenth);
  assert.equal(dayStart(twentieth, MIDNIGHT, zone), twentieth);
});

Deno.test("dayStart() and nextReset() span a skipped day in Pacific/Apia", () => {
  // Samoa skipped 2011-12-30: 2011-12-29 24:00 -10 became 2011-12-31 00:00 +14
  const zone = "Pacific/Apia";
  assert.deepEqual(windowOf(at("2011-12-30T09:59:59Z"), MIDNIGHT, zone), [
    "2011-12-29T00:00:00-10:00",
    "2011-12-31T00:00:00+14:00",
  ]);
  assert.deepEqual(windowOf(at("2011-12-30T10:00:00Z"), MIDNIGHT, zone), [
    "2011-12-31T00:00:00+14:00",
    "2012-01-01T00:00:00+14:00",
  ]);
});

Deno.test("dayStart() and nextReset() tile a year with windows that neither gap nor overlap", () => {
  const zones = ["Asia/Shanghai", "UTC", "America/New_York", "Europe/Berlin", "America/Santiago"];
  const resets: ResetTime[] = [MIDNIGHT, HALF_TWO, { hour: 1, minute: 30 }, {
    hour: 7,
    minute: 30,
  }];
  for (const zone of zones) {
    for (const reset of resets) {
      const label = `${zone} ${reset.hour}:${reset.minute}`;
      const first = nextReset(at("2026-01-01T00:00:00Z"), reset, zone);
      let start = first;
      const lengths = new Map<number, number>();
      for (let day = 0; day < 365; day++) {
        const end = nextReset(start, reset, zone);
        assert.ok(end > start, label);
        lengths.set(end - start, (lengths.get(end - start) ?? 0) + 1);
        // every instant of [start, end) maps back to this window
        for (const t of [start, start + 1, Math.floor((start + end) / 2), end - 1]) {
          assert.equal(dayStart(t, reset, zone), start, `${label} ${formatWithOffset(t, zone)}`);
          assert.equal(nextReset(t, reset, zone), end, `${label} ${formatWithOffset(t, zone)}`);
        }
        // one local day apart
        const startDay = new Date(Date.parse(formatWithOffset(start, zone).slice(0, 10)));
        const endDay = new Date(Date.parse(formatWithOffset(end, zone).slice(0, 10)));
        assert.equal(endDay.getTime() - startDay.getTime(), 24 * HOUR, label);
        start = end;
      }
      // a year of windows comes back to the same reset a year later
      assert.equal(
        formatWithOffset(start, zone).slice(5, 16),
        formatWithOffset(first, zone).slice(5, 16),
      );
      const hours = [...lengths.keys()].map((ms) => ms / HOUR).sort((a, b) => a - b);
      const dst = zone !== "Asia/Shanghai" && zone !== "UTC";
      assert.equal(hours.includes(24), true, label);
      assert.equal(hours.length > 1, dst, `${label}: ${hours.join(", ")}`);
      for (const h of hours) assert.ok(h >= 23 && h <= 25, `${label}: ${h}`);
    }
  }
});

Deno.test("formatWithOffset() writes RFC 3339 with the zone's offset", () => {
  const table: [number, string, string][] = [
    [at("2026-12-07T16:00:00Z"), "Asia/Shanghai", "2026-12-08T00:00:00+08:00"],
    [at("2026-12-07T16:00:00Z"), "UTC", "2026-12-07T16:00:00+00:00"],
    [at("2026-01-15T05:00:00Z"), "America/New_York", "2026-01-15T00:00:00-05:00"],
    [at("2026-07-15T04:00:00Z"), "America/New_York", "2026-07-15T00:00:00-04:00"],
    [at("2026-07-15T04:00:00Z"), "Asia/Kolkata", "2026-07-15T09:30:00+05:30"],
    [at("2026-07-01T12:00:00.005Z"), "America/St_Johns", "2026-07-01T09:30:00.005-02:30"],
    [at("0999-03-04T05:06:07Z"), "UTC", "0999-03-04T05:06:07+00:00"],
  ];
  for (const [t, zone, want] of table) {
    const text = formatWithOffset(t, zone);
    assert.equal(text, want, zone);
    assert.equal(Date.parse(text), t, zone);
  }
});

Deno.test("formatWithOffset() rounds an offset of seconds and keeps the instant", () => {
  // Sitka kept local mean time, -09:01:13, until 1900
  const t = at("1890-01-01T09:01:13Z");
  const text = formatWithOffset(t, "America/Sitka");
  assert.equal(text, "1890-01-01T00:00:13-09:01");
  assert.equal(Date.parse(text), t);
});

Deno.test("dayStart(), nextReset() and formatWithOffset() throw a RangeError for bad input", () => {
  const now = at("2026-06-01T00:00:00Z");
  for (const zone of ["", "Mars/Olympus_Mons", "+08:00"]) {
    assert.throws(() => dayStart(now, MIDNIGHT, zone), RangeError, zone);
    assert.throws(() => nextReset(now, MIDNIGHT, zone), RangeError, zone);
    assert.throws(() => formatWithOffset(now, zone), RangeError, zone);
  }
  assert.throws(() => dayStart(now, MIDNIGHT, "Mars/Olympus_Mons"), {
    message: 'Cannot find the daily reset: "Mars/Olympus_Mons" is not an IANA time zone name',
  });
  const resets = [
    { hour: 24, minute: 0 },
    { hour: -1, minute: 0 },
    { hour: 0, minute: 60 },
    { hour: 1.5, minute: 0 },
    { hour: NaN, minute: 0 },
  ];
  for (const reset of resets) {
    assert.throws(() => dayStart(now, reset, "UTC"), RangeError, JSON.stringify(reset));
    assert.throws(() => nextReset(now, reset, "UTC"), RangeError, JSON.stringify(reset));
  }
  for (const t of [NaN, Infinity, -Infinity, 8.64e15, -8.64e15]) {
    assert.throws(() => dayStart(t, MIDNIGHT, "UTC"), RangeError, String(t));
    assert.throws(() => nextReset(t, MIDNIGHT, "UTC"), RangeError, String(t));
    assert.throws(() => formatWithOffset(t, "UTC"), RangeError, String(t));
  }
});
