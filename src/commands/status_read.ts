/**
 * @module
 * Where `llm-balance status` reads: the URL (`--url`, else the config's address), the optional
 * config, one read of `GET <url>/dashboard/data` with the admin key, and the check that the
 * answer has the shape of `DashboardData` (see `src/admin/dashboard_types.ts`).
 */

import type { DashboardData } from "../admin/dashboard_types.ts";
import { ConfigError } from "../config/errors.ts";
import type { Config } from "../config/types.ts";
import { describeError, say } from "./_io.ts";
import { clean, shown, truncate } from "./status_view.ts";

/** What one read of `/dashboard/data` gave: the data, or why there is none. */
export type DashboardRead =
  | { ok: true; data: DashboardData; raw: unknown }
  | { ok: false; message: string };

/**
 * The URL `status` reads: `--url`, else the config's address (a wildcard bind address is
 * reached on loopback), else `http://127.0.0.1:8080`.
 * @param options `url` (`--url`) and `config` (the loaded config)
 * @returns the base URL, without a trailing slash
 */
export function statusUrl(
  options: { url?: string | undefined; config?: Config | undefined },
): string {
  if (options.url !== undefined) return options.url.replace(/\/+$/, "");
  const server = options.config?.server;
  if (server === undefined) return "http://127.0.0.1:8080";
  let host = server.host.replace(/^\[|\]$/g, "");
  if (host === "0.0.0.0" || host === "") host = "127.0.0.1";
  if (host === "::") host = "::1";
  return `http://${host.includes(":") ? `[${host}]` : host}:${server.port}`;
}

/**
 * Reads `GET <base>/dashboard/data` once.
 * @param base the llm-balance's base URL
 * @param options the admin key to send as a bearer token, fetch, a signal, the time limit
 * @returns the data, or a message saying why it could not be read (never holding the key)
 */
export async function readDashboard(
  base: string,
  options: {
    adminKey?: string | undefined;
    fetch?: typeof fetch;
    signal?: AbortSignal;
    timeoutMs?: number;
  } = {},
): Promise<DashboardRead> {
  const where = `Cannot read status from "${shown(base)}"`;
  let url: URL;
  try {
    url = new URL("dashboard/data", base.endsWith("/") ? base : base + "/");
  } catch {
    return { ok: false, message: `${where}: not a URL` };
  }
  const headers: Record<string, string> = { accept: "application/json" };
  if (options.adminKey !== undefined) headers.authorization = `Bearer ${options.adminKey}`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), timeoutMs);
  const signal = options.signal === undefined
    ? timeout.signal
    : AbortSignal.any([timeout.signal, options.signal]);
  try {
    let res: Response;
    try {
      // a redirect is not followed: the key must not travel to another place
      res = await (options.fetch ?? fetch)(url, { headers, redirect: "manual", signal });
    } catch (err) {
      if (options.signal?.aborted) return { ok: false, message: `${where}: stopped` };
      const why = timeout.signal.aborted
        ? `no answer within ${timeoutMs / 1000} s`
        : networkReason(err);
      return { ok: false, message: `${where}: cannot reach it: ${why}` };
    }
    const text = await res.text().catch(() => "");
    if (res.status !== 200) {
      return { ok: false, message: `${where}: ${refusal(res, text, options)}` };
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return { ok: false, message: `${where}: the answer is not JSON` };
    }
    if (!isDashboardData(raw)) {
      return { ok: false, message: `${where}: the answer is not llm-balance dashboard data` };
    }
    return { ok: true, data: raw, raw };
  } finally {
    clearTimeout(timer);
  }
}

/** Why a connection failed, from Deno's `fetch failed` error and its cause, without the URL. */
function networkReason(err: unknown): string {
  const cause = (err as { cause?: unknown } | null)?.cause;
  const text = cause instanceof Error ? cause.message : err instanceof Error ? err.message : "";
  const why = text.replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "");
  return truncate(clean(why === "" ? String(err) : why), 200);
}

function refusal(res: Response, text: string, options: { adminKey?: string | undefined }): string {
  const s = res.status;
  if (s === 401) {
    return options.adminKey === undefined
      ? "an admin key is needed (401): set LLM_BALANCE_ADMIN_KEY or auth.admin_key in the config"
      : "the admin key was refused (401): check LLM_BALANCE_ADMIN_KEY or auth.admin_key";
  }
  if (s >= 300 && s < 400) {
    const to = res.headers.get("location");
    return to === null ? `redirected (${s})` : `redirected (${s}) to "${clean(to)}": use --url`;
  }
  if (s === 404) return "no dashboard there (404): is it an llm-balance with /dashboard/data?";
  let detail = "";
  try {
    const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    detail = [e?.code, e?.message].filter((v) => typeof v === "string").join(": ");
  } catch {
    // not an OpenAI-style error
  }
  return `HTTP ${s}${detail === "" ? "" : `: ${truncate(clean(detail), 200)}`}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function has(
  o: Record<string, unknown>,
  fields: string,
  type: "number" | "string" | "boolean",
): boolean {
  return fields.split(" ").every((f) => {
    const t: string = typeof o[f];
    return t === type;
  });
}

/**
 * Whether a parsed answer has the shape `formatStatus` (in `status_view.ts`) relies on.
 * @param v the parsed JSON
 */
export function isDashboardData(v: unknown): v is DashboardData {
  if (!isObject(v) || !has(v, "now_ms uptime_s", "number") || !has(v, "ok", "boolean")) {
    return false;
  }
  if (typeof v.version !== "string" || !(v.redis === null || isObject(v.redis))) return false;
  const { pools, keys, events } = v;
  if (!Array.isArray(pools) || !Array.isArray(keys) || !Array.isArray(events)) return false;
  return pools.every((p) =>
    isObject(p) && has(p, "model strategy", "string") && Array.isArray(p.keys) &&
    has(p, "usable total requests_per_s errors_per_s queue", "number")
  ) &&
    keys.every((k) =>
      isObject(k) && has(k, "id mask upstream state", "string") && Array.isArray(k.budgets) &&
      has(k, "in_flight requests failures", "number") &&
      k.budgets.every((b) => isObject(b) && has(b, "name", "string") && has(b, "used", "number"))
    ) &&
    keys.every((k) => isObject(k) && (k.name === null || typeof k.name === "string")) &&
    events.every((e) =>
      isObject(e) && has(e, "message", "string") && has(e, "at_ms", "number") &&
      (e.level === undefined || typeof e.level === "string")
    );
}

/**
 * The config `status` takes its URL and admin key from: optional, unless named by `--config` or
 * `LLM_BALANCE_CONFIG`. An implicit `./config.yaml` that is missing is passed over in silence,
 * one that cannot be loaded with a note on stderr.
 * @param load loads the config (e.g. the command line's `loadEffectiveConfig`)
 * @param named whether the user named the file
 * @returns the config, or undefined
 * @throws what `load` throws, when the file was named
 */
export async function optionalConfig(
  load: () => Promise<Config>,
  named: boolean,
): Promise<Config | undefined> {
  try {
    return await load();
  } catch (err) {
    if (named) throw err;
    const missing = err instanceof ConfigError &&
      err.issues.every((i) => i.message === "file not found");
    if (!missing) say(`llm-balance: config not used: ${describeError(err)}`);
    return undefined;
  }
}
