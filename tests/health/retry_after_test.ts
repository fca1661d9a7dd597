import assert from "node:assert/strict";
import {
  MAX_RETRY_MS,
  parseDate,
  parseDuration,
  parseRetryAfter,
  retryAt,
} from "../../src/health/retry_after.ts";

const NOW = Date.UTC(2025, 0, 1, 12, 0, 0);

Deno.test("parseDuration() reads OpenAI's Go-style durations", () => {
  assert.equal(parseDuration("1s"), 1000);
  assert.equal(parseDuration("6m0s"), 360_000);
  assert.equal(parseDuration("20ms"), 20);
  assert.equal(parseDuration("1h2m3.5s"), 3_723_500);
  assert.equal(parseDuration("2.5"), 2500);
  assert.equal(parseDuration(" 7s "), 7000);
});

Deno.test("parseDuration() rejects what is not a duration", () => {
  for (const v of ["", "s", "abc", "5 s", "1x", "-1s", "1s junk"]) {
    assert.equal(parseDuration(v), undefined, JSON.stringify(v));
  }
});

Deno.test("parseRetryAfter() reads seconds", () => {
  assert.equal(parseRetryAfter("120", NOW), NOW + 120_000);
  assert.equal(parseRetryAfter("1.5", NOW), NOW + 1500);
  assert.equal(parseRetryAfter(" 0 ", NOW), NOW);
});

Deno.test("parseRetryAfter() reads an HTTP date, a past one meaning now", () => {
  assert.equal(parseRetryAfter("Wed, 01 Jan 2025 12:00:30 GMT", NOW), NOW + 30_000);
  assert.equal(parseRetryAfter("Wednesday, 01-Jan-25 12:01:00 GMT", NOW), NOW + 60_000);
  assert.equal(parseRetryAfter("Tue, 31 Dec 2024 12:00:00 GMT", NOW), NOW);
});

Deno.test("parseRetryAfter() rejects garbage that Date.parse would accept", () => {
  for (const v of ["-1", "soon 3", "year 2099", "in a while", "", "10 minutes"]) {
    assert.equal(parseRetryAfter(v, NOW), undefined, JSON.stringify(v));
  }
});

Deno.test("parseDate() accepts ISO 8601 date-times", () => {
  assert.equal(parseDate("2025-01-01T12:00:05Z", NOW), NOW + 5000);
  assert.equal(parseDate("2025-01-01", NOW), undefined);
});

Deno.test("retryAt() prefers retry-after-ms, then Retry-After", () => {
  const h = new Headers({ "retry-after-ms": "250", "retry-after": "10" });
  assert.equal(retryAt(h, NOW), NOW + 250);
  assert.equal(retryAt(new Headers({ "retry-after": "10" }), NOW), NOW + 10_000);
  const date = new Headers({ "retry-after": "Wed, 01 Jan 2025 12:00:42 GMT" });
  assert.equal(retryAt(date, NOW), NOW + 42_000);
});

Deno.test("retryAt() falls back to OpenAI's reset headers of the exhausted limit", () => {
  const h = new Headers({
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-remaining-tokens": "5000",
    "x-ratelimit-reset-requests": "6m0s",
    "x-ratelimit-reset-tokens": "20ms",
  });
  assert.equal(retryAt(h, NOW), NOW + 360_000);
  const tokens = new Headers({
    "x-ratelimit-remaining-requests": "10",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-requests": "6m0s",
    "x-ratelimit-reset-tokens": "1.5s",
  });
  assert.equal(retryAt(tokens, NOW), NOW + 1500);
});

Deno.test("retryAt() takes the later reset when it cannot tell which limit is exhausted", () => {
  const h = new Headers({ "x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "9s" });
  assert.equal(retryAt(h, NOW), NOW + 9000);
});

Deno.test("retryAt() reads x-ratelimit-reset as seconds, epoch seconds or epoch ms", () => {
  assert.equal(retryAt(new Headers({ "x-ratelimit-reset": "30" }), NOW), NOW + 30_000);
  const epochS = String(NOW / 1000 + 60);
  assert.equal(retryAt(new Headers({ "x-ratelimit-reset": epochS }), NOW), NOW + 60_000);
  const epochMs = String(NOW + 5000);
  assert.equal(retryAt(new Headers({ "x-ratelimit-reset": epochMs }), NOW), NOW + 5000);
});

Deno.test("retryAt() reads Anthropic's reset dates", () => {
  const h = new Headers({ "anthropic-ratelimit-requests-reset": "2025-01-01T12:00:15Z" });
  assert.equal(retryAt(h, NOW), NOW + 15_000);
});

Deno.test("retryAt() returns undefined when no header says", () => {
  assert.equal(retryAt(new Headers(), NOW), undefined);
  assert.equal(retryAt(new Headers({ "retry-after": "whenever" }), NOW), undefined);
});

Deno.test("parseDuration() reads Go-style durations as whole milliseconds", () => {
  const table: [string, number][] = [
    ["0s", 0],
    ["0", 0],
    ["6ms", 6],
    ["20s", 20_000],
    ["1s", 1000],
    ["6m0s", 360_000],
    ["1m3.5s", 63_500],
    ["1h2m", 3_720_000],
    ["1h2m3.5s", 3_723_500],
    ["2h", 7_200_000],
    ["0.29s", 290],
    ["1.005s", 1005],
    ["1.5ms", 2],
    ["100us", 1],
    ["100µs", 1],
    ["100μs", 1],
    ["999ns", 1],
    [".5s", 500],
    ["1.s", 1000],
    ["1m1ms", 60_001],
    ["2.5", 2500],
    [" 7s ", 7000],
  ];
  for (const [text, ms] of table) assert.equal(parseDuration(text), ms, JSON.stringify(text));
});

Deno.test("parseDuration() returns undefined for what is not a duration", () => {
  const junk = [
    "",
    " ",
    "s",
    "ms",
    "abc",
    "1x",
    "5 s",
    "1s junk",
    "junk 1s",
    "-1s",
    "+1s",
    "-0",
    "1e3s",
    "1..2s",
    ".s",
    "1S",
    "1d",
    "NaN",
    "Infinity",
    "1m-3s",
    `${"9".repeat(400)}h`,
    "9".repeat(400),
  ];
  for (const text of junk) {
    assert.equal(parseDuration(text), undefined, JSON.stringify(text));
  }
});

Deno.test("retryAt() and parseRetryAfter() take an upstream's word for 31 days at most", () => {
  const now = Date.UTC(2026, 11, 7);
  const max = now + MAX_RETRY_MS;
  assert.equal(parseRetryAfter("999999999999", now), max);
  assert.equal(parseRetryAfter("1" + "0".repeat(30), now), max);
  assert.equal(retryAt(new Headers({ "retry-after": "99999999999999" }), now), max);
  assert.equal(retryAt(new Headers({ "retry-after-ms": "9".repeat(25) }), now), max);
  assert.equal(retryAt(new Headers({ "retry-after": "60" }), now), now + 60_000);
  assert.equal(parseRetryAfter("Fri, 01 Jan 2100 00:00:00 GMT", now), max);
  // a time a Date can always show
  assert.doesNotThrow(() =>
    new Date(retryAt(new Headers({ "retry-after": "1e400" }), now) ?? now).toISOString()
  );
});
