/**
 * @module
 * What keeps web pages away from the admin and stats endpoints: the `Host` names they answer to
 * without a key (a page on a DNS-rebound name sends its own name as the Host), whether an
 * `Origin` is another site's, and whether a request is one a browser sends cross-site only
 * after a CORS preflight (which llm-balance never grants for `/admin`).
 */

const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = new RegExp(`^(?:${OCTET}\\.){3}${OCTET}$`);
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/;
const JSON_TYPE = /^\s*application\/json\s*(?:;|$)/i;

/** A `Host` header value, normalized. */
export interface HostParts {
  /** Lowercased, without one trailing dot; an IPv6 address keeps its brackets. */
  name: string;
  /** The port as written, "" when absent. */
  port: string;
}

/**
 * Normalizes a host name: lowercased, one trailing dot removed (`localhost.` is `localhost`).
 * @param name a host name or IP literal
 * @returns the normalized name
 */
export function normalizeHostName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * Splits a `Host` header value into its name and port.
 * @param value e.g. `localhost:8080`, `[::1]:8080`, `LLM.example.`
 * @returns the normalized parts, or undefined when the value is not a plain `name[:port]`
 *   (user info, paths and spaces are refused, never parsed around)
 */
export function parseHost(value: string): HostParts | undefined {
  const m = HOST.exec(value.trim());
  if (m === null) return undefined;
  const name = normalizeHostName(m[1]!);
  if (name === "" || (name.startsWith("[") && !URL.canParse(`http://${name}/`))) return undefined;
  return { name, port: m[2] ?? "" };
}

/**
 * Whether a normalized host name is an IP literal: dotted IPv4 or bracketed IPv6. A browser
 * reaches an IP literal without DNS, so no page can rebind one.
 * @param name as {@linkcode parseHost} gives it
 * @returns true for `127.0.0.1`, `[::1]`, `0.0.0.0`, ...
 */
export function isIpLiteral(name: string): boolean {
  return IPV4.test(name) || name.startsWith("[");
}

/**
 * Builds the test for the `Host` headers the admin and stats endpoints answer to when no key
 * guards them.
 * @param bound the address the server binds (`server.host`)
 * @param names further names (`server.admin_hosts`)
 * @returns a predicate, true for: no Host header (HTTP/1.0; never a browser), any IP literal,
 *   `localhost`, the bound address and `names`; with any port, in any case, with or without one
 *   trailing dot. False for every other name and for malformed values
 */
export function hostPolicy(
  bound: string,
  names: readonly string[],
): (host: string | null) => boolean {
  const allowed = new Set(["localhost", ...[bound, ...names].map(normalizeHostName)]);
  return (host) => {
    if (host === null) return true;
    const parts = parseHost(host);
    return parts !== undefined && (isIpLiteral(parts.name) || allowed.has(parts.name));
  };
}

/** The port a browser means, "" for the scheme's default (80 and 443 are taken as defaults). */
function effectivePort(port: string): string {
  return port === "80" || port === "443" ? "" : port;
}

/**
 * Whether a request's `Origin` is another site than the one it was sent to (its `Host`).
 * Browsers send `Origin` with every cross-origin request and with every `POST`, forms and
 * `no-cors` fetches included; other clients (curl, SDKs, scripts) send none.
 * @param origin the `Origin` header, null when absent
 * @param host the `Host` header, null when absent
 * @returns false without an `Origin`; true for `null` (sandboxed frames, `file:` pages,
 *   privacy-stripped origins), for anything but an http(s) origin, and when its host name or
 *   port differs from the Host's (the scheme is not compared: a TLS proxy in front changes it)
 */
export function isForeignOrigin(origin: string | null, host: string | null): boolean {
  if (origin === null) return false;
  if (host === null || !URL.canParse(origin)) return true;
  const o = new URL(origin);
  const h = parseHost(host);
  if (h === undefined || (o.protocol !== "http:" && o.protocol !== "https:")) return true;
  const samePort = o.port === h.port || o.port === effectivePort(h.port);
  return normalizeHostName(o.hostname) !== h.name || !samePort;
}

/**
 * Whether a browser page of another origin could send this request only after a CORS
 * preflight: it carries a credential header (`Authorization`, `x-api-key`, `api-key`) or
 * `Content-Type: application/json`. A form, or a `no-cors` fetch, can send neither.
 * @param headers the request headers
 * @returns true when the request needed the browser's permission to be sent cross-site
 */
export function needsPreflight(headers: Headers): boolean {
  return headers.has("authorization") || headers.has("x-api-key") || headers.has("api-key") ||
    JSON_TYPE.test(headers.get("content-type") ?? "");
}
