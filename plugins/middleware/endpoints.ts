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
 * nothing. Admin actions without an admin key are accepted from loopback only.
 */

import type { Middleware, MiddlewarePlugin, RequestContext } from "../../src/context.ts";
import type { Config } from "../../src/config/types.ts";
import type { App } from "../../src/app.ts";
import { ProxyError } from "../../src/errors.ts";
import { credentialOf, timingSafeEqual } from "../../src/admin/credentials.ts";
import { candidateView, health, keyStats, loadBalancers, poolView } from "../../src/admin/stats.ts";
import type { Candidate } from "../../src/plugin.ts";
import { matchClientKey } from "./client_auth.ts";

const JSON_HEADERS = { "content-type": "application/json" };

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2), { status, headers: JSON_HEADERS });
}

function isLoopback(addr: string): boolean {
  return addr.startsWith("127.") || addr === "::1" || addr === "::ffff:127.0.0.1";
}

function endpoints(config: Config, app: App): Middleware {
  const unauthorized = () =>
    new ProxyError("This endpoint needs the admin key", {
      status: 401,
      type: "authentication_error",
      code: "admin_key_required",
    });
  const canRead = (ctx: RequestContext, seedB: boolean): boolean => {
    const presented = credentialOf(ctx.req.headers);
    if (config.adminKey !== undefined) {
      if (presented !== undefined && timingSafeEqual(config.adminKey, presented)) return true;
      return seedB && config.clientKeysReadStats && presented !== undefined &&
        matchClientKey(config.clientKeys, presented) !== undefined;
    }
    if (config.clientKeys.length === 0) return true;
    return presented !== undefined && matchClientKey(config.clientKeys, presented) !== undefined;
  };
  const canAct = (ctx: RequestContext): boolean => {
    if (config.adminKey === undefined) return isLoopback(ctx.remoteAddr);
    const presented = credentialOf(ctx.req.headers);
    return presented !== undefined && timingSafeEqual(config.adminKey, presented);
  };
  return async function endpoints(ctx: RequestContext, next): Promise<void> {
    const path = ctx.url.pathname;
    const method = ctx.req.method;
    if (path === "/health" && (method === "GET" || method === "HEAD")) {
      const h = health(app);
      ctx.res = json(h.body, h.ok ? 200 : 503);
      return;
    }
    if (method === "GET" && (path === "/stats" || path === "/metrics")) {
      if (!canRead(ctx, false)) throw unauthorized();
      ctx.res = path === "/stats" ? json(keyStats(app)) : new Response(app.metrics.render(app), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
      return;
    }
    if (path.startsWith("/v1/stats/") && method === "GET") {
      if (!canRead(ctx, true)) throw unauthorized();
      if (path === "/v1/stats/load_balancers") {
        ctx.res = json(loadBalancers(app));
        return;
      }
      if (path.startsWith("/v1/stats/models/")) {
        const model = decodeURIComponent(path.slice("/v1/stats/models/".length));
        const pool = model === "default" ? ctx.rt.defaultPool : ctx.rt.pools.get(model);
        if (pool === undefined) {
          throw new ProxyError(`No pool serves model "${model}"`, {
            status: 404,
            type: "not_found_error",
            code: "model_not_found",
          });
        }
        ctx.res = json(poolView(app, pool));
        return;
      }
    }
    if (path === "/admin" || path.startsWith("/admin/")) {
      if (!canAct(ctx)) throw unauthorized();
      ctx.res = admin(ctx, app, method, path.split("/").slice(2).map(decodeURIComponent));
      return;
    }
    await next();
  };
}

function admin(ctx: RequestContext, app: App, method: string, parts: string[]): Response {
  const [what, id, action] = parts;
  const all = [...ctx.rt.candidates.values()];
  if (method === "GET" && what === "keys" && id === undefined) {
    return json({ keys: all.map((c) => candidateView(app, c)) });
  }
  if (method !== "POST" || action === undefined || id === undefined) {
    throw new ProxyError("Unknown admin action", {
      status: 404,
      type: "not_found_error",
      code: "not_found",
    });
  }
  let targets: Candidate[];
  if (what === "keys") targets = all.filter((c) => c.id === id || c.mask === id);
  else if (what === "upstreams") targets = all.filter((c) => c.upstream.name === id);
  else targets = [];
  if (targets.length === 0) {
    throw new ProxyError(`No ${what === "upstreams" ? "upstream" : "key"} "${id}"`, {
      status: 404,
      type: "not_found_error",
      code: "not_found",
    });
  }
  for (const c of targets) {
    if (action === "disable") app.board.setDisabled(c, true);
    else if (action === "enable") app.board.setDisabled(c, false);
    else if (action === "reset") app.board.reset(c);
    else {
      throw new ProxyError(`Unknown admin action "${action}" (disable, enable, reset)`, {
        status: 400,
        type: "invalid_request_error",
        code: "unknown_action",
      });
    }
  }
  return json({ ok: true, action, keys: targets.map((c) => candidateView(app, c)) });
}

/** Health, stats, metrics and admin endpoints. */
export default {
  kind: "middleware",
  name: "endpoints",
  description: "/health, /stats, /metrics, Seed B stats and /admin actions",
  create: endpoints,
} satisfies MiddlewarePlugin;
