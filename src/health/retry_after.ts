/**
 * @module
 * Reads when a rate-limited key may be used again from response headers: `Retry-After`
 * (seconds or HTTP date), `retry-after-ms`, OpenAI's `x-ratelimit-reset-requests`/`-tokens`
 * durations (`6m0s`, `20ms`), `x-ratelimit-reset` (seconds, epoch seconds or epoch ms) and Anthropic's
 * `anthropic-ratelimit-*-reset` dates.
 */

/**
 * Parses a Go-style duration as OpenAI sends it: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
 * @param text the header value
 * @returns milliseconds, or undefined when it is not a duration
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    const n = Number(m[1]);
    const unit = m[2];
    total += unit === "h" ? n * 3_600_000 : unit === "m" ? n * 60_000 : unit === "s" ? n * 1000 : n;
    pos = re.lastIndex;
  }
  return pos === s.length && pos > 0 ? total : undefined;
}

/**
 * Parses a `Retry-After` value.
 * @param value seconds (`120`, `1.5`) or an HTTP date
 * @param now the current time, epoch ms
 * @returns the epoch ms when the client may retry, or undefined if unparsable
 */
export function parseRetryAfter(value: string, now: number): number | undefined {
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return now + Number(v) * 1000;
  return parseDate(v, now);
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
