/**
 * @module
 * Daily reset times in an IANA time zone: when the current daily window of a quota began, when
 * the next one begins, and how to show such an instant to people. A reset at a local time that
 * a daylight-saving change skips happens when clocks leave the gap; one that a change repeats
 * happens the first time. Offsets come from `Intl.DateTimeFormat`, one cached formatter a zone.
 */

/** A local time of day at which a daily quota resets. */
export interface ResetTime {
  /** Hour, 0-23. */
  hour: number;
  /** Minute, 0-59. */
  minute: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
/** The Gregorian calendar repeats every 400 years, 146,097 days. */
const FOUR_CENTURIES = 146_097 * DAY;
/** A week into year 1 and a week before the end of year 9999: every day looked at is AD. */
const MIN_TIME = -62_135_596_800_000 + 7 * DAY;
const MAX_TIME = 253_402_300_800_000 - 7 * DAY;
/** Formatters kept at most; beyond this the cache starts over (names vary in case only). */
const MAX_FORMATTERS = 256;

const formatters = new Map<string, Intl.DateTimeFormat>();
/** Month, day, year, hour, minute, second of the last formatted instant. */
const fields = [0, 0, 0, 0, 0, 0];

/**
 * Parses a daily reset time written `HH:MM`, from `00:00` to `23:59`.
 * @param text the time, e.g. `"07:30"`
 * @returns the hour and minute
 * @throws {RangeError} when the text is not a time of day in that form
 */
export function parseResetTime(text: string): ResetTime {
  const m = /^(\d\d):(\d\d)$/.exec(text);
  const hour = m === null ? NaN : Number(m[1]);
  const minute = m === null ? NaN : Number(m[2]);
  if (!(hour <= 23 && minute <= 59)) {
    throw new RangeError(
      `Cannot parse reset time ${JSON.stringify(text)}: expected HH:MM from 00:00 to 23:59`,
    );
  }
  return { hour, minute };
}

/**
 * Tells whether a name is an IANA time zone that `Intl.DateTimeFormat` knows, such as
 * `"Asia/Shanghai"` or `"UTC"` (any letter case). Offsets such as `"+08:00"` are not names.
 * @param name the time zone name
 * @returns true when the name can be used as a time zone here
 */
export function isTimeZone(name: string): boolean {
  return formatterFor(name) !== undefined;
}

/**
 * Finds the most recent daily reset at or before a time: the start of the current daily window.
 * A reset at a time the clocks skip happens when they leave the gap (02:30 on a day that jumps
 * from 02:00 to 03:00 resets at 03:00); one they repeat happens the first time, so a window is
 * shorter or longer than 24 hours on changeover days.
 * @param now the time, epoch ms
 * @param reset the local time of day of the reset
 * @param timeZone an IANA time zone name
 * @returns epoch ms of the reset that opened the window holding `now`
 * @throws {RangeError} when the time zone is unknown, the reset time is out of range or `now`
 *   is not an epoch ms in years 1 to 9999
 */
export function dayStart(now: number, reset: ResetTime, timeZone: string): number {
  return windowEdge(now, reset, timeZone, true);
}

/**
 * Finds the first daily reset strictly after a time: the end of the current daily window, as
 * {@linkcode dayStart} finds its start.
 * @param now the time, epoch ms
 * @param reset the local time of day of the reset
 * @param timeZone an IANA time zone name
 * @returns epoch ms of the next reset
 * @throws {RangeError} when the time zone is unknown, the reset time is out of range or `now`
 *   is not an epoch ms in years 1 to 9999
 */
export function nextReset(now: number, reset: ResetTime, timeZone: string): number {
  return windowEdge(now, reset, timeZone, false);
}

/**
 * Writes an instant as an RFC 3339 date-time with the zone's offset at that instant, such as
 * `2026-12-08T00:00:00+08:00`; milliseconds appear only when not zero. An offset of seconds
 * (old local mean times) is rounded to the minute, as RFC 3339 requires, and the local time
 * follows it so the text still names the same instant.
 * @param epochMs the instant, epoch ms
 * @param timeZone an IANA time zone name
 * @returns the date-time text
 * @throws {RangeError} when the time zone is unknown or the instant is not in years 1 to 9999
 */
export function formatWithOffset(epochMs: number, timeZone: string): string {
  const f = zoneFormatter(timeZone, "format a time");
  checkTime(epochMs, "format a time");
  const offsetMinutes = Math.round((wallClock(f, epochMs) - epochMs) / MINUTE);
  const local = new Date(epochMs + offsetMinutes * MINUTE);
  const ms = local.getUTCMilliseconds();
  const abs = Math.abs(offsetMinutes);
  return `${pad(local.getUTCFullYear(), 4)}-${pad(local.getUTCMonth() + 1, 2)}-` +
    `${pad(local.getUTCDate(), 2)}T${pad(local.getUTCHours(), 2)}:` +
    `${pad(local.getUTCMinutes(), 2)}:${pad(local.getUTCSeconds(), 2)}` +
    `${ms === 0 ? "" : `.${pad(ms, 3)}`}${offsetMinutes < 0 ? "-" : "+"}` +
    `${pad(Math.floor(abs / 60), 2)}:${pad(abs % 60, 2)}`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/**
 * Finds one end of the daily window holding `now`.
 * @param start true for the window's start, false for its end
 */
function windowEdge(now: number, reset: ResetTime, timeZone: string, start: boolean): number {
  const action = "find the daily reset";
  const f = zoneFormatter(timeZone, action);
  checkTime(now, action);
  const { hour, minute } = reset;
  if (
    !(Number.isInteger(hour) && Number.isInteger(minute) && hour >= 0 && hour <= 23 &&
      minute >= 0 && minute <= 59)
  ) {
    throw new RangeError(
      `Cannot ${action}: reset time ${JSON.stringify(reset)} is not from 00:00 to 23:59`,
    );
  }
  // local wall-clock times are handled as if they were UTC, so a local day is a multiple of DAY
  const wall = wallClock(f, now);
  let local = Math.floor(wall / DAY) * DAY + (hour * 60 + minute) * MINUTE;
  let lo = firstReaching(f, local);
  let hi: number;
  if (lo <= now) {
    hi = firstReaching(f, local + DAY);
    // a clock set back past midnight (America/Sitka in 1867, by a day) reads an earlier date
    // after a later day's reset
    while (hi <= now) {
      lo = hi;
      local += DAY;
      hi = firstReaching(f, local + DAY);
    }
  } else {
    hi = lo;
    lo = firstReaching(f, local - DAY);
    while (lo > now) {
      hi = lo;
      local -= DAY;
      lo = firstReaching(f, local - DAY);
    }
  }
  return start ? lo : hi;
}

/**
 * Finds the first instant at which the zone's clocks read a local time or later: the instant
 * itself when it exists once, its first occurrence when clocks repeat it, and the end of the gap
 * when clocks skip it.
 * @param f the zone's formatter
 * @param local the local time as if it were UTC, epoch ms
 * @returns epoch ms
 */
function firstReaching(f: Intl.DateTimeFormat, local: number): number {
  // the offsets a day either side hold every offset in force at `local` (one change at most)
  const before = wallClock(f, local - DAY) - (local - DAY);
  const after = wallClock(f, local + DAY) - (local + DAY);
  const early = local - Math.max(before, after);
  const late = local - Math.min(before, after);
  if (wallClock(f, early) === local) return early;
  if (early !== late && wallClock(f, late) === local) return late;
  // in a gap: clocks read less than `local` at `early` and more at `late`; the change is at a
  // whole second
  let lo = early;
  let hi = late;
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (wallClock(f, mid) >= local) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * Reads the zone's wall clock at an instant.
 * @param f the zone's formatter
 * @param t the instant, epoch ms
 * @returns the local date and time as if it were UTC, epoch ms (same milliseconds as `t`)
 */
function wallClock(f: Intl.DateTimeFormat, t: number): number {
  // en-US writes "3/8/2026, 03:00:00": six runs of digits, read without building parts
  const s = f.format(t);
  let n = 0;
  let value = -1;
  for (let i = 0; i <= s.length; i++) {
    const d = i < s.length ? s.charCodeAt(i) - 48 : -1;
    if (d >= 0 && d <= 9) value = value < 0 ? d : value * 10 + d;
    else if (value >= 0) {
      if (n < 6) fields[n] = value;
      n++;
      value = -1;
    }
  }
  if (n !== 6) readParts(f, t);
  const year = fields[2]!;
  const ms = t - Math.floor(t / 1000) * 1000;
  // Date.UTC reads years 0-99 as 1900-1999: count them from four centuries on
  const shift = year < 100 ? 400 : 0;
  return Date.UTC(
    year + shift,
    fields[0]! - 1,
    fields[1]!,
    fields[3]! % 24,
    fields[4]!,
    fields[5]!,
  ) -
    (shift === 0 ? 0 : FOUR_CENTURIES) + ms;
}

/** Fills `fields` from the formatter's parts, for output not shaped as en-US usually is. */
function readParts(f: Intl.DateTimeFormat, t: number): void {
  const order = ["month", "day", "year", "hour", "minute", "second"];
  fields.fill(0);
  for (const part of f.formatToParts(t)) {
    const i = order.indexOf(part.type);
    if (i >= 0) fields[i] = Number(part.value);
  }
}

function checkTime(t: number, action: string): void {
  if (!(t >= MIN_TIME && t <= MAX_TIME)) {
    throw new RangeError(`Cannot ${action}: time ${t} is not an epoch ms in years 1 to 9999`);
  }
}

function zoneFormatter(timeZone: string, action: string): Intl.DateTimeFormat {
  const f = formatterFor(timeZone);
  if (f === undefined) {
    throw new RangeError(
      `Cannot ${action}: ${JSON.stringify(timeZone)} is not an IANA time zone name`,
    );
  }
  return f;
}

/**
 * The cached formatter of a zone.
 * @param timeZone the zone name
 * @returns the formatter, or undefined when the name is not a time zone name
 */
function formatterFor(timeZone: string): Intl.DateTimeFormat | undefined {
  const cached = formatters.get(timeZone);
  if (cached !== undefined) return cached;
  // Intl also takes offsets ("+08:00", "-0500"), which are not names and know no DST
  const c = timeZone.charCodeAt(0);
  if (c === 43 || c === 45 || c === 0x2212) return undefined;
  let f: Intl.DateTimeFormat;
  try {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
  } catch {
    return undefined;
  }
  if (formatters.size >= MAX_FORMATTERS) formatters.clear();
  formatters.set(timeZone, f);
  return f;
}
