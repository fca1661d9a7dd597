/**
 * @module
 * Per-client rate limits: a client key with `rate_limit` (requests per minute) gets 429 with
 * `Retry-After` and `x-ratelimit-*` headers when over; its other responses carry the
 * `x-ratelimit-*` headers too, replacing the upstream's (which describe a pooled key, not this
 * client). Never applies to `/health`, CORS preflights, admin or stats
 * endpoints (they are answered earlier in the chain), nor to requests without a client key.
 */

import type {
  Middleware,
  MiddlewarePlugin,
  RateDecision,
  RequestContext,
  Services,
} from "../../src/plugin.ts";
import type { ClientKeyConfig, Config } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";

/**
 * The `x-ratelimit-*` headers of a decision, as OpenAI sends them.
 * @param d the limiter's decision
 * @returns limit, remaining and reset (e.g. `"12s"`)
 */
export function rateLimitHeaders(d: RateDecision): Record<string, string> {
  return {
    "x-ratelimit-limit-requests": String(d.limit),
    "x-ratelimit-remaining-requests": String(d.remaining),
    "x-ratelimit-reset-requests": `${Math.ceil(d.resetMs / 1000)}s`,
  };
}

function rateLimit(config: Config, services: Services): Middleware | undefined {
  // no client key has a limit: the step stays out of the chain
  if (!config.clientKeys.some((k) => k.rateLimitPerMinute !== undefined)) return undefined;
  return function rateLimit(ctx: RequestContext, next): Promise<void> {
    const client = ctx.client;
    const rpm = client?.rateLimitPerMinute;
    if (client === undefined || rpm === undefined) return next();
    return limited(ctx, next, client, rpm);
  };

  async function limited(
    ctx: RequestContext,
    next: () => Promise<void>,
    client: ClientKeyConfig,
    rpm: number,
  ): Promise<void> {
    // a limiter shared through Redis answers at once most of the time, and awaits Redis seldom
    const pending = services.rateLimit(client.key, rpm);
    const d = pending instanceof Promise ? await pending : pending;
    const headers = rateLimitHeaders(d);
    if (!d.allowed) {
      throw new ProxyError(
        `Rate limit of client "${client.name}" reached: ${rpm} requests per minute`,
        {
          status: 429,
          type: "rate_limit_error",
          code: "rate_limit_exceeded",
          headers: {
            ...headers,
            "retry-after": String(Math.max(1, Math.ceil(d.retryAfterMs / 1000))),
          },
        },
      );
    }
    // errors come back as responses (the chain's error handler made them): decorated alike
    await next();
    const res = ctx.res;
    if (res === undefined) return;
    try {
      // the client's own limit, not the upstream key's, is what this client must respect
      for (const [k, v] of Object.entries(headers)) res.headers.set(k, v);
    } catch {
      // immutable headers: skip
    }
  }
}

/** Per-client-key rate limiting. */
export default {
  kind: "middleware",
  name: "rate_limit",
  description: "Requests-per-minute limit per client key",
  create: rateLimit,
} satisfies MiddlewarePlugin;
