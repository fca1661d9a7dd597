/**
 * @module
 * Who may read llm-balance's own views and who may act on keys, shared by the endpoints
 * (`/stats`, `/admin`, ...) and the dashboard:
 * - reading needs the admin key when one is configured (Seed B's stats endpoints also accept a
 *   client key when `clientKeysReadStats`); without one, a client key when client keys exist,
 *   else nothing but a `Host` a DNS-rebound page cannot send;
 * - acting needs the admin key; without one it is accepted from loopback only, with a client
 *   key when client keys exist;
 * - against web pages: another site's `Origin` is refused, and a `POST` must carry what no form
 *   can send (`Content-Type: application/json` or a key header; `Authorization: Basic` does not
 *   count, as a browser adds it by itself).
 * The dashboard also takes the key as the password of `Authorization: Basic` (what a browser
 * asks for after a `401` with `WWW-Authenticate: Basic`). Secrets are compared in constant time.
 */

import type { Config } from "../config/types.ts";
import type { RequestContext } from "../plugin.ts";
import { ProxyError } from "../errors.ts";
import { credentialOf, matchClientKey, timingSafeEqual } from "./credentials.ts";
import { hostPolicy, isForeignOrigin, needsPreflight, normalizeHostName } from "./browser_guard.ts";

/** What a browser is told to ask its user for, with a 401 of the dashboard. */
export const BASIC_CHALLENGE = 'Basic realm="llm-balance", charset="UTF-8"';

const BASIC = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** How a request presents its credential. */
export interface CredentialOptions {
  /** Also take the password of `Authorization: Basic` (the dashboard). @default false */
  basic?: boolean;
  /** Refuse with `WWW-Authenticate: Basic`, so a browser asks for it. @default false */
  challenge?: boolean;
}

/** Options of {@linkcode Access.read}. */
export interface ReadOptions extends CredentialOptions {
  /** Seed B's stats endpoints: a client key reads them too when `clientKeysReadStats`. @default false */
  seedB?: boolean;
}

/** The access rules of one configuration. */
export interface Access {
  /**
   * Checks that a request may read the views.
   * @throws {ProxyError} 401 without the needed key, 403 for a `Host` refused without any key
   */
  read(ctx: RequestContext, options?: ReadOptions): void;
  /**
   * Checks that a request may act (disable, enable, reset).
   * @throws {ProxyError} 401 without the needed key, 403 off loopback without an admin key or
   *   for a refused `Host`
   */
  act(ctx: RequestContext, options?: CredentialOptions): void;
  /**
   * Whether {@linkcode Access.act} would let this request's credentials act (what the dashboard
   * shows buttons for).
   */
  mayAct(ctx: RequestContext, options?: CredentialOptions): boolean;
  /**
   * Refuses what a web page of another site could send.
   * @throws {ProxyError} 403 for another site's `Origin`, 415 for a `POST` a form could send
   */
  browser(ctx: RequestContext): void;
}

/**
 * Reads the password of `Authorization: Basic base64(user:password)`.
 * @param h request headers
 * @returns the password (any user name is accepted), or undefined without a well-formed one
 */
export function basicPassword(h: Headers): string | undefined {
  const auth = h.get("authorization");
  if (auth === null) return undefined;
  const m = BASIC.exec(auth);
  if (m === null) return undefined;
  let text: string;
  try {
    const bin = atob(m[1]!.replace(/-/g, "+").replace(/_/g, "/"));
    text = utf8.decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)));
  } catch {
    return undefined;
  }
  const colon = text.indexOf(":");
  return colon < 0 ? undefined : text.slice(colon + 1);
}

function isLoopback(addr: string): boolean {
  return addr.startsWith("127.") || addr === "::1" || addr.startsWith("::ffff:127.");
}

/** Whether the request carries `Authorization: Basic`, which a browser adds by itself. */
function isBasic(h: Headers): boolean {
  const auth = h.get("authorization");
  return auth !== null && /^\s*basic\b/i.test(auth);
}

/**
 * Builds the access rules of a configuration.
 * @param config the configuration in force (admin key, client keys, bound host, admin hosts)
 * @returns the checks
 */
export function accessRules(config: Config): Access {
  const isClient = (presented: string | undefined) =>
    presented !== undefined && matchClientKey(config.clientKeys, presented) !== undefined;
  const isAdmin = (presented: string | undefined) =>
    presented !== undefined && config.adminKey !== undefined &&
    timingSafeEqual(config.adminKey, presented);
  const presented = (ctx: RequestContext, o: CredentialOptions | undefined) => {
    const h = ctx.req.headers;
    return (o?.basic === true ? basicPassword(h) : undefined) ?? credentialOf(h);
  };
  const unauthorized = (message: string, code: string, o: CredentialOptions | undefined) =>
    new ProxyError(message, {
      status: 401,
      type: "authentication_error",
      code,
      ...(o?.challenge === true ? { headers: { "www-authenticate": BASIC_CHALLENGE } } : {}),
    });
  const adminKeyRequired = (o: CredentialOptions | undefined) =>
    unauthorized("This endpoint needs the admin key", "admin_key_required", o);
  // with no key configured, nothing but the Host tells a DNS-rebound page from a local client
  const keyless = config.adminKey === undefined && config.clientKeys.length === 0;
  const hostAllowed = hostPolicy(config.server.host, config.server.adminHosts);
  // names the operator declared as this service's (`server.admin_hosts`): behind a reverse proxy
  // that rewrites Host, the browser's Origin names the proxy's public name
  const declared = new Set(config.server.adminHosts.map(normalizeHostName));
  const declaredOrigin = (origin: string | null): boolean => {
    if (origin === null || declared.size === 0 || !URL.canParse(origin)) return false;
    const o = new URL(origin);
    return (o.protocol === "https:" || o.protocol === "http:") &&
      declared.has(normalizeHostName(o.hostname));
  };
  const hostRefusal = (ctx: RequestContext): ProxyError | undefined => {
    if (!keyless) return undefined;
    const host = ctx.req.headers.get("host");
    if (hostAllowed(host)) return undefined;
    return new ProxyError(
      `Host "${host}" is not allowed here without a key: use localhost or an IP address, ` +
        "or list the name in server.admin_hosts",
      { status: 403, type: "permission_error", code: "host_not_allowed" },
    );
  };
  const actRefusal = (
    ctx: RequestContext,
    o: CredentialOptions | undefined,
  ): ProxyError | undefined => {
    const key = presented(ctx, o);
    if (config.adminKey !== undefined) return isAdmin(key) ? undefined : adminKeyRequired(o);
    if (!isLoopback(ctx.remoteAddr)) {
      return new ProxyError(
        "Admin actions need the admin key (auth.admin_key); without one they are accepted from loopback only",
        { status: 403, type: "permission_error", code: "admin_loopback_only" },
      );
    }
    if (config.clientKeys.length > 0 && !isClient(key)) {
      return unauthorized(
        "Admin actions without an admin key need a client key",
        "invalid_api_key",
        o,
      );
    }
    return hostRefusal(ctx);
  };
  return {
    read(ctx, o) {
      const refused = hostRefusal(ctx);
      if (refused !== undefined) throw refused;
      const key = presented(ctx, o);
      if (config.adminKey !== undefined) {
        if (isAdmin(key) || (o?.seedB === true && config.clientKeysReadStats && isClient(key))) {
          return;
        }
        throw adminKeyRequired(o);
      }
      if (config.clientKeys.length === 0 || isClient(key)) return;
      throw unauthorized("This endpoint needs a client key", "invalid_api_key", o);
    },
    act(ctx, o) {
      const refused = actRefusal(ctx, o);
      if (refused !== undefined) throw refused;
    },
    mayAct(ctx, o) {
      return actRefusal(ctx, o) === undefined;
    },
    browser(ctx) {
      const h = ctx.req.headers;
      const origin = h.get("origin");
      if (isForeignOrigin(origin, h.get("host")) && !declaredOrigin(origin)) {
        throw new ProxyError("Admin endpoints do not answer web pages of another origin", {
          status: 403,
          type: "permission_error",
          code: "cross_origin_refused",
        });
      }
      if (ctx.req.method !== "POST") return;
      // a browser resends Basic credentials by itself, a form included: they prove nothing
      let proof = h;
      if (isBasic(h)) {
        proof = new Headers(h);
        proof.delete("authorization");
      }
      if (!needsPreflight(proof)) {
        throw new ProxyError(
          'Admin actions need "Content-Type: application/json" or a key header ' +
            "(a web page of another site can send neither)",
          { status: 415, type: "invalid_request_error", code: "admin_json_required" },
        );
      }
    },
  };
}

/**
 * Decodes one segment of an admin path (a key's id or mask, an upstream's name).
 * @param part the segment as written in the URL
 * @returns the decoded text
 * @throws {ProxyError} 400 `bad_path` for a malformed percent-encoding
 */
export function decodeSegment(part: string): string {
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
