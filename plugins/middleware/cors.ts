/**
 * @module
 * CORS, off by default. A preflight (`OPTIONS` with `Access-Control-Request-Method`) is always
 * answered here, without any key: 204 with CORS headers when CORS is enabled and the origin is
 * allowed, a bare 204 otherwise (the browser then refuses, as it should).
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/context.ts";
import type { Config } from "../../src/config/types.ts";

function cors(config: Config): Middleware {
  const { enabled, origins } = config.server.cors;
  const any = origins.includes("*");
  const allowed = (origin: string | null) => origin !== null && (any || origins.includes(origin));
  return async function cors(ctx: RequestContext, next): Promise<void> {
    const h = ctx.req.headers;
    const origin = h.get("origin");
    if (ctx.req.method === "OPTIONS" && h.has("access-control-request-method")) {
      const headers = new Headers();
      if (enabled && allowed(origin)) {
        headers.set("access-control-allow-origin", any ? "*" : origin!);
        headers.set("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        headers.set(
          "access-control-allow-headers",
          h.get("access-control-request-headers") ?? "authorization, content-type",
        );
        headers.set("access-control-max-age", "600");
        if (!any) headers.set("vary", "origin");
      }
      ctx.res = new Response(null, { status: 204, headers });
      return;
    }
    await next();
    if (!enabled || !allowed(origin) || ctx.res === undefined) return;
    try {
      ctx.res.headers.set("access-control-allow-origin", any ? "*" : origin!);
      ctx.res.headers.set(
        "access-control-expose-headers",
        "x-request-id, x-llm-balance-upstream, retry-after, x-ratelimit-remaining-requests",
      );
      if (!any) ctx.res.headers.append("vary", "origin");
    } catch {
      // immutable headers: skip
    }
  };
}

/** Cross-origin requests from browsers. */
export default {
  kind: "middleware",
  name: "cors",
  description: "CORS headers and preflight answers (off by default)",
  create: cors,
} satisfies MiddlewarePlugin;
