/**
 * @module
 * Per-client request rate limits: a token bucket per client key (capacity = requests per
 * minute, refilled continuously). Lives with the application, so reloads keep the buckets.
 */

/** The result of one check. */
export interface RateDecision {
  /** Whether the request may pass. */
  allowed: boolean;
  /** The limit, requests per minute. */
  limit: number;
  /** Requests left right now. */
  remaining: number;
  /** Milliseconds until a request would be allowed (0 when allowed). */
  retryAfterMs: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}

/** Token buckets by client. */
export class RateLimiter {
  #buckets = new Map<string, { tokens: number; at: number; rpm: number }>();
  #now: () => number;

  /** @param now the clock, epoch ms */
  constructor(now: () => number) {
    this.#now = now;
  }

  /**
   * Takes one request from a client's bucket. A client seen for the first time starts with a
   * full bucket; a changed limit keeps the tokens left (capped at the new limit).
   * @param client identifies the bucket (the client key; kept in memory only)
   * @param rpm its limit, requests per minute (> 0)
   * @returns whether it may pass, with the header values
   */
  take(client: string, rpm: number): RateDecision {
    const now = this.#now();
    let b = this.#buckets.get(client);
    if (b === undefined) {
      b = { tokens: rpm, at: now, rpm };
      this.#buckets.set(client, b);
    } else if (b.rpm !== rpm) {
      b.tokens = Math.min(b.tokens, rpm);
      b.rpm = rpm;
    }
    const perMs = rpm / 60_000;
    b.tokens = Math.min(rpm, b.tokens + Math.max(0, now - b.at) * perMs);
    if (now > b.at) b.at = now;
    const allowed = b.tokens >= 1;
    if (allowed) b.tokens -= 1;
    return {
      allowed,
      limit: rpm,
      remaining: Math.floor(b.tokens),
      retryAfterMs: allowed ? 0 : Math.ceil((1 - b.tokens) / perMs),
      resetMs: Math.ceil((rpm - b.tokens) / perMs),
    };
  }

  /** Number of clients with a bucket. */
  get size(): number {
    return this.#buckets.size;
  }
}
