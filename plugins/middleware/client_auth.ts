/**
 * @module
 * Client keys: when any are configured, every request that reaches it needs
 * `Authorization: Bearer <client key>` (or `x-api-key`/`api-key`, for Anthropic- and
 * Azure-style clients); otherwise 401 in OpenAI's error shape. Keys are compared in constant
 * time. With no client keys configured, every request passes.
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/plugin.ts";
import type { ClientKeyConfig, Config } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";
import { credentialOf, timingSafeEqual } from "../../src/admin/credentials.ts";

/**
 * Finds the client key matching a presented credential, comparing against every key in
 * constant time per key.
 * @param keys the configured client keys
 * @param presented the credential from the request
 * @returns the matching client key, or undefined
 */
export function matchClientKey(
  keys: readonly ClientKeyConfig[],
  presented: string,
): ClientKeyConfig | undefined {
  let found: ClientKeyConfig | undefined;
  for (const k of keys) if (timingSafeEqual(k.key, presented) && found === undefined) found = k;
  return found;
}

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
