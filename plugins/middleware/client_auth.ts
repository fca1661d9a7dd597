/**
 * @module
 * Client keys: when any are configured, every request that reaches it needs
 * `Authorization: Bearer <client key>` (or `x-api-key`/`api-key`, for Anthropic- and
 * Azure-style clients); otherwise 401 in OpenAI's error shape. Keys are compared in constant
 * time. With no client keys configured, every request passes.
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/plugin.ts";
import type { Config } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";
import { credentialOf, matchClientKey } from "../../src/admin/credentials.ts";

export { matchClientKey } from "../../src/admin/credentials.ts";

function clientAuth(config: Config): Middleware {
  const keys = config.clientKeys;
  // synchronous: a refused key throws (the chain turns it into a rejection)
  return function clientAuth(ctx: RequestContext, next): Promise<void> {
    if (keys.length === 0) return next();
    const presented = credentialOf(ctx.req.headers);
    if (presented === undefined) {
      throw new ProxyError(
        "Missing client key: send it as `Authorization: Bearer <key>`",
        { status: 401, type: "authentication_error", code: "missing_api_key" },
      );
    }
    const client = matchClientKey(keys, presented);
    if (client === undefined) {
      throw new ProxyError("Invalid client key", {
        status: 401,
        type: "authentication_error",
        code: "invalid_api_key",
      });
    }
    ctx.client = client;
    return next();
  };
}

/** Client-key authentication. */
export default {
  kind: "middleware",
  name: "client_auth",
  description: "Requires a configured client key on proxied requests",
  create: clientAuth,
} satisfies MiddlewarePlugin;
