/**
 * @module
 * Per-client rate limits: a client key with `rate_limit` (requests per minute) gets 429 with
 * `Retry-After` and `x-ratelimit-*` headers when over. Never applies to `/health`, admin or
 * stats endpoints (they are answered earlier in the chain), nor to requests without a client.
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/context.ts";
import type { App } from "../../src/app.ts";
import { ProxyError } from "../../src/errors.ts";

function rateLimit(_config: unknown, app: App): Middleware {
  return async function rateLimit(ctx: RequestContext, next): Promise<void> {
    const rpm = ctx.client?.rateLimitPerMinute;
    if (ctx.client === undefined || rpm === undefined) return await next();
    const d = app.limiter.take(ctx.client.name, rpm);
    const headers = {
      "x-ratelimit-limit-requests": String(d.limit),
      "x-ratelimit-remaining-requests": String(d.remaining),
      "x-ratelimit-reset-requests": `${Math.ceil(d.resetMs / 1000)}s`,
    };
    if (!d.allowed) {
      throw new ProxyError(
        `Rate limit of client "${ctx.client.name}" reached: ${rpm} requests per minute`,
        {
          status: 429,
          type: "rate_limit_error",
          code: "rate_limit_exceeded",
          headers: { ...headers, "retry-after": String(Math.max(1, Math.ceil(d.retryAfterMs / 1000))) },
        },
      );
    }
    await next();
    const res = ctx.res;
    if (res !== undefined) {
      try {
        for (const [k, v] of Object.entries(headers)) if (!res.headers.has(k)) res.headers.set(k, v);
      } catch {
        // immutable headers: skip
      }
    }
  };
}

/** Per-client-key rate limiting. */
export default {
  kind: "middleware",
  name: "rate_limit",
  description: "Requests-per-minute limit per client key",
  create: rateLimit,
} satisfies MiddlewarePlugin;
