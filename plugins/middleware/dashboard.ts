/**
 * @module
 * The dashboard, answered before client auth:
 * - `GET /dashboard`: the page (self-contained HTML, CSS and script; a strict
 *   `Content-Security-Policy` lets it reach nothing but its own origin);
 * - `GET /dashboard/data`: what the page shows, as JSON (`src/admin/dashboard_types.ts`);
 * - `POST /dashboard/actions/keys/{id}/{disable|enable|reset}` and
 *   `POST /dashboard/actions/upstreams/{name}/{disable|enable|reset}`: the `/admin` actions.
 * - `GET /` redirects to `/dashboard` when no upstream would take that path (every upstream of
 *   the default pool, if any, takes `/v1` paths only).
 * Access is `/stats`'s and `/admin`'s (src/admin/access.ts): the key may also come as the
 * password of `Authorization: Basic`, and a refused page or data request is answered with
 * `WWW-Authenticate: Basic`, so a browser asks for it. A browser resends Basic credentials by
 * itself, so actions refuse another site's `Origin` and any `POST` a form could send.
 */

import type { Middleware, MiddlewarePlugin, RequestContext, Services } from "../../src/plugin.ts";
import type { Config } from "../../src/config/types.ts";
import { ProxyError } from "../../src/errors.ts";
import { accessRules, decodeSegment as decode } from "../../src/admin/access.ts";
import { DASHBOARD_HTML } from "../../src/admin/dashboard_page.ts";

const PAGE = "/dashboard";
const DATA = "/dashboard/data";
const ACTIONS = "/dashboard/actions/";

/** The page's policy: its own inline script and style, requests to its own origin only. */
export const DASHBOARD_CSP = "default-src 'none'; script-src 'unsafe-inline'; " +
  "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; " +
  "form-action 'none'; frame-ancestors 'none'";

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": DASHBOARD_CSP,
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
};

const JSON_HEADERS = {
  "content-type": "application/json",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

/** Answers JSON; gzipped when the client takes it and it is worth it (500 keys: ~230 KB). */
function json(body: unknown, acceptEncoding: string | null = null): Response {
  const text = JSON.stringify(body);
  if (text.length < 4096 || !/\bgzip\b/i.test(acceptEncoding ?? "")) {
    return new Response(text, { headers: JSON_HEADERS });
  }
  const zipped = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Response(zipped, {
    headers: { ...JSON_HEADERS, "content-encoding": "gzip", vary: "accept-encoding" },
  });
}

function notAllowed(method: string, path: string, allow: string): ProxyError {
  return new ProxyError(`Method ${method} is not allowed on ${path}`, {
    status: 405,
    type: "invalid_request_error",
    code: "method_not_allowed",
    headers: { allow },
  });
}

function notFound(path: string): ProxyError {
  return new ProxyError(
    `Unknown dashboard path "${path}" (/dashboard, /dashboard/data, ` +
      "POST /dashboard/actions/keys/{id}/{action}, POST /dashboard/actions/upstreams/{name}/{action})",
    { status: 404, type: "not_found_error", code: "not_found" },
  );
}

/** Whether `GET /` would reach no upstream: no default pool, or one of `/v1`-only upstreams. */
function rootIsFree(config: Config): boolean {
  const pool = config.pools.find((p) => p.model === "*");
  if (pool === undefined) return true;
  return pool.members.every((m) =>
    config.upstreams.find((u) => u.name === m.upstream)?.pathMode !== "full"
  );
}

function dashboard(config: Config, services: Services): Middleware {
  const access = accessRules(config);
  const redirectRoot = rootIsFree(config);
  const readOnly = (ctx: RequestContext): void => {
    const method = ctx.req.method;
    if (method !== "GET" && method !== "HEAD") throw notAllowed(method, ctx.path, "GET, HEAD");
    access.read(ctx, { basic: true, challenge: true });
  };
  // synchronous: requests for other paths pass on without an extra async frame
  return function dashboard(ctx: RequestContext, next): Promise<void> | void {
    const path = ctx.path;
    if (path === "/" && redirectRoot) {
      const method = ctx.req.method;
      if (method !== "GET" && method !== "HEAD") return next();
      ctx.res = new Response(null, { status: 302, headers: { location: PAGE } });
      return;
    }
    if (path !== PAGE && !path.startsWith("/dashboard/")) return next();
    if (path === PAGE) {
      readOnly(ctx);
      ctx.res = new Response(DASHBOARD_HTML, { headers: PAGE_HEADERS });
      return;
    }
    if (path === "/dashboard/") {
      ctx.res = new Response(null, { status: 302, headers: { location: PAGE } });
      return;
    }
    if (path === DATA) {
      readOnly(ctx);
      const canAct = access.mayAct(ctx, { basic: true });
      ctx.res = json(
        services.stats.dashboard({ canAct }),
        ctx.req.headers.get("accept-encoding"),
      );
      return;
    }
    if (path.startsWith(ACTIONS)) {
      const parts = path.slice(ACTIONS.length).split("/").map(decode);
      const [what, , action] = parts;
      const known = (what === "keys" || what === "upstreams") && parts.length === 3 &&
        (action === "disable" || action === "enable" || action === "reset");
      if (!known) throw notFound(path);
      if (ctx.req.method !== "POST") throw notAllowed(ctx.req.method, path, "POST");
      access.act(ctx, { basic: true });
      access.browser(ctx);
      ctx.res = json(services.admin("POST", parts));
      return;
    }
    throw notFound(path);
  };
}

/** The dashboard: the page, its data and its actions. */
export default {
  kind: "middleware",
  name: "dashboard",
  description: "/dashboard: a live page of every pool and key, its data and operator actions",
  create: dashboard,
} satisfies MiddlewarePlugin;
