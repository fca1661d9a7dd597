/**
 * @module
 * CORS, off by default (`server.cors`). A preflight (`OPTIONS` with
 * `Access-Control-Request-Method`) is always answered here, without any key: 204 with CORS
 * headers when CORS is enabled and the origin is allowed, a bare 204 otherwise (the browser then
 * refuses, as it should). Preflights for `/admin` paths always get the bare 204: admin actions
 * are never granted to web pages of another origin (the endpoints refuse them anyway). Other
 * responses from an allowed origin, errors included (a browser client must be able to read a
 * 401 or 429), get `Access-Control-Allow-Origin` and the headers it may read.
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/plugin.ts";
import type { Config } from "../../src/config/types.ts";

/** Response headers a browser client may read. */
const EXPOSED = [
  "x-request-id",
  "x-llm-balance-upstream",
  "x-llm-balance-overhead-ms",
  "retry-after",
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
].join(", ");

function cors(config: Config): Middleware {
  const { enabled, origins } = config.server.cors;
  const any = origins.includes("*");
  const allowed = (origin: string | null): origin is string =>
    origin !== null && (any || origins.includes(origin));
  const decorate = (set: (name: string, value: string) => void, origin: string) => {
    set("access-control-allow-origin", any ? "*" : origin);
    set("access-control-expose-headers", EXPOSED);
    if (!any) set("vary", "origin");
  };
  return function cors(ctx: RequestContext, next): Promise<void> | void {
    const h = ctx.req.headers;
    if (ctx.req.method === "OPTIONS" && h.has("access-control-request-method")) {
      const origin = h.get("origin");
      const headers = new Headers();
      const admin = ctx.path === "/admin" || ctx.path.startsWith("/admin/");
      if (enabled && !admin && allowed(origin)) {
        headers.set("access-control-allow-origin", any ? "*" : origin);
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
    if (!enabled) return next();
    const origin = h.get("origin");
    if (!allowed(origin)) return next();
    return withCors(ctx, next, origin!);
  };

  async function withCors(
    ctx: RequestContext,
    next: () => Promise<void>,
    origin: string,
  ): Promise<void> {
    // errors come back as responses (the chain's error handler made them): decorated alike
    await next();
    const res = ctx.res;
    if (res === undefined) return;
    try {
      decorate((k, v) => k === "vary" ? res.headers.append(k, v) : res.headers.set(k, v), origin);
    } catch {
      // immutable headers: skip
    }
  }
}

/** Cross-origin requests from browsers. */
export default {
  kind: "middleware",
  name: "cors",
  description: "CORS headers and preflight answers (off by default)",
  create: cors,
} satisfies MiddlewarePlugin;
