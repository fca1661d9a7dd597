/**
 * @module
 * Per-client request rate limits: a token bucket per client key (capacity = requests per
 * minute, refilled continuously). Lives with the application, so reloads keep the buckets.
 */

/** The result of one check. */
export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Milliseconds until a request would be allowed (0 when allowed). */
  retryAfterMs: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}

/** Token buckets by client name. */
export class RateLimiter {
  #buckets = new Map<string, { tokens: number; at: number; rpm: number }>();
  #now: () => number;

  /** @param now the clock, epoch ms */
  constructor(now: () => number) {
    this.#now = now;
  }

  /**
   * Takes one request from a client's bucket.
   * @param client the client's name
   * @param rpm its limit, requests per minute
   * @returns whether it may pass, with the header values
   */
  take(client: string, rpm: number): RateDecision {
    const now = this.#now();
    let b = this.#buckets.get(client);
    if (b === undefined || b.rpm !== rpm) {
      b = { tokens: rpm, at: now, rpm };
      this.#buckets.set(client, b);
    }
    const perMs = rpm / 60_000;
    b.tokens = Math.min(rpm, b.tokens + (now - b.at) * perMs);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return {
        allowed: true,
        limit: rpm,
        remaining: Math.floor(b.tokens),
        retryAfterMs: 0,
        resetMs: Math.ceil((rpm - b.tokens) / perMs),
      };
    }
    return {
      allowed: false,
      limit: rpm,
      remaining: 0,
      retryAfterMs: Math.ceil((1 - b.tokens) / perMs),
      resetMs: Math.ceil((rpm - b.tokens) / perMs),
    };
  }
}
