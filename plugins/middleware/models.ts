/**
 * @module
 * OpenAI's model list from the configuration: `GET /v1/models` lists the configured models and
 * `GET /v1/models/{model}` returns one, when the config has named model pools and no default
 * pool. With a default pool the request goes on upstream, which knows the models better. Runs
 * after client auth and rate limiting, like any `/v1` request; a client key restricted to some
 * models sees only those.
 */

import type { Middleware, MiddlewarePlugin, RequestContext, Services } from "../../src/plugin.ts";
import { ProxyError } from "../../src/errors.ts";

const PREFIX = "/v1/models";
const PREFIX_SLASH = "/v1/models/";

function notFound(model: string): ProxyError {
  return new ProxyError(`The model "${model}" does not exist or is not served here`, {
    status: 404,
    type: "invalid_request_error",
    code: "model_not_found",
  });
}

function models(_config: unknown, services: Services): Middleware {
  const pools = services.pools;
  return function models(ctx: RequestContext, next): Promise<void> | void {
    const path = ctx.path;
    const method = ctx.req.method;
    const listing = path === PREFIX || path === PREFIX_SLASH;
    if (
      (method !== "GET" && method !== "HEAD") || pools.hasDefault ||
      (!listing && !path.startsWith(PREFIX_SLASH))
    ) {
      return next();
    }
    const list = services.stats.models(ctx.client?.models);
    let body: unknown = list;
    if (!listing) {
      let id: string;
      try {
        id = decodeURIComponent(path.slice(PREFIX.length + 1));
      } catch {
        throw notFound(path.slice(PREFIX.length + 1));
      }
      const model = list.data.find((m) => m.id === id);
      if (model === undefined) {
        if (pools.has(id)) {
          throw new ProxyError(`Client key "${ctx.client?.name}" may not use model "${id}"`, {
            status: 403,
            type: "permission_error",
            code: "model_not_allowed",
          });
        }
        throw notFound(id);
      }
      body = model;
    }
    ctx.res = new Response(method === "HEAD" ? null : JSON.stringify(body), {
      headers: { "content-type": "application/json" },
    });
  };
}

/** Answers `/v1/models` from the configured model pools. */
export default {
  kind: "middleware",
  name: "models",
  description: "GET /v1/models lists the configured models when there is no default pool",
  create: models,
} satisfies MiddlewarePlugin;
