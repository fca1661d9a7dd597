/**
 * @module
 * Reads when a rate-limited key may be used again from response headers: `Retry-After`
 * (seconds or HTTP date), `retry-after-ms`, OpenAI's `x-ratelimit-reset-requests`/`-tokens`
 * durations (`6m0s`, `20ms`), `x-ratelimit-reset` (seconds, epoch seconds or epoch ms) and Anthropic's
 * `anthropic-ratelimit-*-reset` dates.
 */

const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)/y;
const UNIT_MS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  "µs": 0.001,
  "μs": 0.001,
  ns: 0.000_001,
};

/**
 * Parses a duration as OpenAI writes its resets, Go's notation: `1m3.5s`, `6ms`, `20s`, `1h2m`,
 * `0s` (units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`). A bare number counts as seconds, as some
 * compatible servers send it.
 * @param text the header value
 * @returns the duration in whole milliseconds, rounded up; undefined when the text is not a
 *   duration (empty, signed, junk, or too large to be finite)
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === "") return undefined;
  let total: number;
  if (/^(\d+(\.\d*)?|\.\d+)$/.test(s)) total = Number(s) * 1000;
  else {
    total = 0;
    DURATION_PART.lastIndex = 0;
    let end = 0;
    for (let m = DURATION_PART.exec(s); m !== null; m = DURATION_PART.exec(s)) {
      total += Number(m[1]) * UNIT_MS[m[2]!]!;
      end = DURATION_PART.lastIndex;
    }
    if (end !== s.length) return undefined;
  }
  if (!Number.isFinite(total)) return undefined;
  // round away the float error of decimal parts (0.29 * 1000) before rounding up
  return Math.ceil(Math.round(total * 1e6) / 1e6);
}

/**
 * Parses a `Retry-After` value.
 * @param value seconds (`120`, `1.5`) or an HTTP date
 * @param now the current time, epoch ms
 * @returns the epoch ms when the client may retry, or undefined if unparsable
 */
export function parseRetryAfter(value: string, now: number): number | undefined {
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return capped(now + Number(v) * 1000, now);
  return capped(parseDate(v, now), now);
}

/**
 * The longest wait an upstream's word is taken for: 31 days (a monthly quota). Beyond, a
 * hostile or broken header (`Retry-After: 999999999999`) would rest a key for ever, or past the
 * last date a `Date` can hold.
 */
export const MAX_RETRY_MS = 31 * 86_400_000;

function capped(t: number | undefined, now: number): number | undefined {
  if (t === undefined || Number.isNaN(t)) return undefined;
  return Math.min(t, now + MAX_RETRY_MS);
}

const MONTH = /\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b/i;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;

/**
 * Parses an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, RFC 850 or asctime) or an ISO 8601
 * date-time. Stricter than `Date.parse`, which reads garbage like `"soon 3"` as a date.
 * @param value the header value
 * @param now the current time, epoch ms; a date in the past means now
 * @returns epoch ms, or undefined if it is not a date
 */
export function parseDate(value: string, now: number): number | undefined {
  const v = value.trim();
  const looksLikeDate = ISO_DATE.test(v) || (MONTH.test(v) && /\d{1,2}:\d{2}:\d{2}/.test(v));
  if (!looksLikeDate) return undefined;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(now, date);
}

/**
 * Finds the time a rate limit resets from any of the headers providers send.
 * @param headers the 429 response's headers
 * @param now the current time, epoch ms
 * @returns epoch ms of the reset, or undefined when no header says
 */
export function retryAt(headers: Headers, now: number): number | undefined {
  return capped(resetOf(headers, now), now);
}

function resetOf(headers: Headers, now: number): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && /^\d+(\.\d+)?$/.test(ms.trim())) return now + Number(ms);
  const ra = headers.get("retry-after");
  if (ra !== null) {
    const t = parseRetryAfter(ra, now);
    if (t !== undefined) return t;
  }
  let best: number | undefined;
  const consider = (t: number | undefined) => {
    if (t !== undefined && (best === undefined || t > best)) best = t;
  };
  const remReq = headers.get("x-ratelimit-remaining-requests");
  const remTok = headers.get("x-ratelimit-remaining-tokens");
  const resetReq = headers.get("x-ratelimit-reset-requests");
  const resetTok = headers.get("x-ratelimit-reset-tokens");
  const exhaustedReq = remReq !== null && Number(remReq) <= 0;
  const exhaustedTok = remTok !== null && Number(remTok) <= 0;
  const onlyExhausted = exhaustedReq || exhaustedTok;
  for (const [value, exhausted] of [[resetReq, exhaustedReq], [resetTok, exhaustedTok]] as const) {
    if (value === null || (onlyExhausted && !exhausted)) continue;
    const d = parseDuration(value);
    consider(d === undefined ? undefined : now + d);
  }
  const reset = headers.get("x-ratelimit-reset");
  if (reset !== null && /^\d+(\.\d+)?$/.test(reset.trim())) {
    const n = Number(reset);
    // epoch ms, epoch seconds, or seconds from now
    consider(n > 1e12 ? Math.max(now, n) : n > 1e9 ? Math.max(now, n * 1000) : now + n * 1000);
  }
  for (const name of ["anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset"]) {
    const v = headers.get(name);
    if (v !== null) consider(parseDate(v, now));
  }
  return best;
}
