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
 * Against web pages (src/admin/browser_guard.ts): when no key is configured at all, stats and
 * admin endpoints answer only a `Host` that is an IP literal, `localhost`, the bound address or
 * in `server.admin_hosts` (a DNS-rebound page sends its own name); `/admin/*` refuses every
 * request whose `Origin` is another site's, key or not; and a `POST /admin/*` must carry a key
 * header or `Content-Type: application/json`, which no form or `no-cors` fetch can send.
 */

import type { Middleware, MiddlewarePlugin, RequestContext, Services } from "../../src/plugin.ts";
import type { Config } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";
import { credentialOf, timingSafeEqual } from "../../src/admin/credentials.ts";
import { hostPolicy, isForeignOrigin, needsPreflight } from "../../src/admin/browser_guard.ts";
import { matchClientKey } from "./client_auth.ts";

const JSON_HEADERS = { "content-type": "application/json" };

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2), { status, headers: JSON_HEADERS });
}

function isLoopback(addr: string): boolean {
  return addr.startsWith("127.") || addr === "::1" || addr.startsWith("::ffff:127.");
}

function notFound(message: string, code = "not_found"): ProxyError {
  return new ProxyError(message, { status: 404, type: "not_found_error", code });
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ProxyError(`Malformed path segment "${part}"`, {
      status: 400,
      type: "invalid_request_error",
      code: "bad_path",
    });
  }
}

function endpoints(config: Config, services: Services): Middleware {
  const stats = services.stats;
  const adminKeyRequired = () =>
    new ProxyError("This endpoint needs the admin key", {
      status: 401,
      type: "authentication_error",
      code: "admin_key_required",
    });
  const isClient = (presented: string | undefined) =>
    presented !== undefined && matchClientKey(config.clientKeys, presented) !== undefined;
  const isAdmin = (presented: string | undefined) =>
    presented !== undefined && config.adminKey !== undefined &&
    timingSafeEqual(config.adminKey, presented);
  // with no key configured, nothing but the Host tells a DNS-rebound page from a local client
  const keyless = config.adminKey === undefined && config.clientKeys.length === 0;
  const hostAllowed = hostPolicy(config.server.host, config.server.adminHosts);
  const checkHost = (ctx: RequestContext): void => {
    if (!keyless) return;
    const host = ctx.req.headers.get("host");
    if (hostAllowed(host)) return;
    throw new ProxyError(
      `Host "${host}" is not allowed here without a key: use localhost or an IP address, ` +
        "or list the name in server.admin_hosts",
      { status: 403, type: "permission_error", code: "host_not_allowed" },
    );
  };
  const checkBrowser = (ctx: RequestContext): void => {
    const h = ctx.req.headers;
    if (isForeignOrigin(h.get("origin"), h.get("host"))) {
      throw new ProxyError("Admin endpoints do not answer web pages of another origin", {
        status: 403,
        type: "permission_error",
        code: "cross_origin_refused",
      });
    }
    if (ctx.req.method === "POST" && !needsPreflight(h)) {
      throw new ProxyError(
        'Admin actions need "Content-Type: application/json" or a key header ' +
          "(a web page of another site can send neither)",
        { status: 415, type: "invalid_request_error", code: "admin_json_required" },
      );
    }
  };
  const checkRead = (ctx: RequestContext, seedB: boolean): void => {
    checkHost(ctx);
    const presented = credentialOf(ctx.req.headers);
    if (config.adminKey !== undefined) {
      if (isAdmin(presented) || (seedB && config.clientKeysReadStats && isClient(presented))) {
        return;
      }
      throw adminKeyRequired();
    }
    if (config.clientKeys.length === 0 || isClient(presented)) return;
    throw new ProxyError("This endpoint needs a client key", {
      status: 401,
      type: "authentication_error",
      code: "invalid_api_key",
    });
  };
  const checkAct = (ctx: RequestContext): void => {
    const presented = credentialOf(ctx.req.headers);
    if (config.adminKey !== undefined) {
      if (isAdmin(presented)) return;
      throw adminKeyRequired();
    }
    if (!isLoopback(ctx.remoteAddr)) {
      throw new ProxyError(
        "Admin actions need the admin key (auth.admin_key); without one they are accepted from loopback only",
        { status: 403, type: "permission_error", code: "admin_loopback_only" },
      );
    }
    if (config.clientKeys.length > 0 && !isClient(presented)) {
      throw new ProxyError("Admin actions without an admin key need a client key", {
        status: 401,
        type: "authentication_error",
        code: "invalid_api_key",
      });
    }
    checkHost(ctx);
  };
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
      checkRead(ctx, false);
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
      checkRead(ctx, true);
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
      checkAct(ctx);
      checkBrowser(ctx);
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
