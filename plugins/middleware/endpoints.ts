/**
 * @module
 * llm-balance's own endpoints, answered before client auth:
 * - `GET /health`: 200 when at least one candidate is usable, else 503; never needs a key.
 * - `GET /stats` (Seed A's per-key view), `GET /metrics` (Prometheus),
 *   `GET /v1/stats/load_balancers`, `GET /v1/stats/models/{model}` (Seed B's views).
 * - `GET /admin/keys`; `POST /admin/keys/{id}/disable|enable|reset`;
 *   `POST /admin/upstreams/{name}/disable|enable|reset`: keys by id or mask, never the key.
 * Reading needs the admin key when one is configured (Seed B's stats endpoints also accept a
 * client key, as Seed B did); without an admin key, a client key when client keys exist, else
 * nothing. Admin actions need the admin key; without one they are accepted from loopback only,
 * with a client key when client keys exist. Other methods on the read endpoints get 405,
 * unknown `/v1/stats/*` and `/admin/*` paths 404: they are never forwarded upstream.
 *
 * The rules live in src/admin/access.ts, shared with the dashboard. Against web pages
 * (src/admin/browser_guard.ts): when no key is configured at all, stats and
 * admin endpoints answer only a `Host` that is an IP literal, `localhost`, the bound address or
 * in `server.admin_hosts` (a DNS-rebound page sends its own name); `/admin/*` refuses every
 * request whose `Origin` is another site's, key or not; and a `POST /admin/*` must carry a key
 * header or `Content-Type: application/json`, which no form or `no-cors` fetch can send.
 */

import type { Middleware, MiddlewarePlugin, RequestContext, Services } from "../../src/plugin.ts";
import type { Config } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";
import { accessRules, decodeSegment as decode } from "../../src/admin/access.ts";

const JSON_HEADERS = { "content-type": "application/json" };

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2), { status, headers: JSON_HEADERS });
}

function notFound(message: string, code = "not_found"): ProxyError {
  return new ProxyError(message, { status: 404, type: "not_found_error", code });
}

function endpoints(config: Config, services: Services): Middleware {
  const stats = services.stats;
  const access = accessRules(config);
  const own = (view: string | Record<string, unknown>): Response =>
    typeof view === "string"
      ? new Response(view, {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      })
      : json(view);
  // synchronous: requests for other paths pass on without an extra async frame
  return function endpoints(ctx: RequestContext, next): Promise<void> | void {
    const path = ctx.path;
    const method = ctx.req.method;
    const read = method === "GET" || method === "HEAD";
    const ours = path === "/health" || path === "/stats" || path === "/metrics" ||
      path.startsWith("/v1/stats/");
    if (ours && !read) {
      throw new ProxyError(`Method ${method} is not allowed on ${path}`, {
        status: 405,
        type: "invalid_request_error",
        code: "method_not_allowed",
        headers: { allow: "GET, HEAD" },
      });
    }
    if (path === "/health") {
      const h = stats.health();
      ctx.res = json(h.body, h.ok ? 200 : 503);
      return;
    }
    if (path === "/stats" || path === "/metrics") {
      access.read(ctx);
      const view = path === "/stats" ? stats.keys() : stats.metrics();
      if (view instanceof Promise) {
        return view.then((v) => {
          ctx.res = own(v);
        });
      }
      ctx.res = own(view);
      return;
    }
    if (path.startsWith("/v1/stats/")) {
      access.read(ctx, { seedB: true });
      if (path === "/v1/stats/load_balancers") {
        ctx.res = json(stats.loadBalancers());
        return;
      }
      if (path.startsWith("/v1/stats/models/") && path.length > "/v1/stats/models/".length) {
        const model = decode(path.slice("/v1/stats/models/".length));
        const view = stats.pool(model);
        if (view === undefined) {
          throw notFound(`No pool serves model "${model}"`, "model_not_found");
        }
        ctx.res = json(view);
        return;
      }
      throw notFound(
        `Unknown stats endpoint "${path}" (/v1/stats/load_balancers, /v1/stats/models/{model})`,
      );
    }
    if (path === "/admin" || path.startsWith("/admin/")) {
      access.act(ctx);
      access.browser(ctx);
      ctx.res = json(services.admin(method, path.split("/").slice(2).map(decode)));
      return;
    }
    return next();
  };
}

/** Health, stats, metrics and admin endpoints. */
export default {
  kind: "middleware",
  name: "endpoints",
  description: "/health, /stats, /metrics, Seed B stats and /admin actions",
  create: endpoints,
} satisfies MiddlewarePlugin;
