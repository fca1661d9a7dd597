/**
 * @module
 * The forwarding step, last in the chain: hands the request to the core's forwarding engine
 * (`src/proxy/forward.ts`), which routes it to its model's pool, tries candidates with retries
 * and failover, and relays the answer. This plugin only puts the engine in the chain.
 */

import type { Middleware, MiddlewarePlugin, RequestContext, Services } from "../../src/plugin.ts";

function proxy(_config: unknown, services: Services): Middleware {
  return function proxy(ctx: RequestContext): Promise<void> {
    return services.forward(ctx);
  };
}

/** The forwarding step: route, pick, attempt, retry, relay. */
export default {
  kind: "middleware",
  name: "proxy",
  description: "Forwards the request to a candidate of its model's pool, with retries",
  create: proxy,
} satisfies MiddlewarePlugin;
