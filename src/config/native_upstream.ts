/**
 * @module
 * One upstream of llm-balance's own config format: its zod schema (keys, timeouts, health
 * check, headers, model mapping) and its normalization to `UpstreamConfig`. A key list that is
 * set but holds no key (`keys: ${VAR}` with VAR empty) is an error; `headers` are defaults a
 * client may override, `force_headers` always replace the client's.
 */

import { z } from "zod";
import {
  atLeast,
  bool,
  httpUrl,
  intRange,
  reportDuplicates,
  seconds,
  splitKeyList,
  text,
} from "./_schema.ts";
import { HEADER_NAME } from "../proxy/headers.ts";
import {
  DEFAULT_TIMEOUTS,
  defaultHealthCheck,
  defaultQuota,
  timeoutsFromTotal,
} from "./defaults.ts";
import type {
  HealthCheckConfig,
  KeyConfig,
  QuotaConfig,
  Timeouts,
  UpstreamConfig,
} from "./types.ts";
import { isTimeZone, parseResetTime } from "../budget/reset.ts";

/** The `quota` mapping of an upstream or a key: every field optional. */
const quota = z.strictObject({
  requests_per_day: intRange(0).optional().describe(
    "Requests a day, all models together; 0: no limit. Default 0.",
  ),
  model_requests_per_day: intRange(0).optional().describe(
    "Requests a day for each model on its own; 0: no limit. Default 0.",
  ),
  tokens_per_day: intRange(0).optional().describe("Tokens a day; 0: no limit. Default 0."),
  requests_per_minute: intRange(0).optional().describe(
    "Requests in a minute window; 0: no limit. Default 0.",
  ),
  tokens_per_minute: intRange(0).optional().describe(
    "Tokens in a minute window; 0: no limit. Default 0.",
  ),
  max_concurrency: intRange(0).optional().describe(
    "Requests in flight at once with the key; 0: no limit. Default 0.",
  ),
  reset: z.string().transform((text, ctx) => {
    try {
      return parseResetTime(text);
    } catch {
      ctx.addIssue({ code: "custom", message: 'must be a local time "HH:MM", e.g. "00:00"' });
      return z.NEVER;
    }
  }).optional().describe('Local time (HH:MM) at which daily budgets start again. Default "00:00".'),
  time_zone: z.string().refine(isTimeZone, {
    error: (issue) =>
      `unknown time zone "${String(issue.input)}" (an IANA name, e.g. Asia/Shanghai)`,
  }).optional().describe(
    "IANA time zone of reset. Default UTC; Asia/Shanghai for modelscope.cn hosts.",
  ),
});

/** A parsed `quota` mapping. */
type NativeQuota = z.output<typeof quota>;

/**
 * The fields a `quota` mapping sets, as a partial {@linkcode QuotaConfig}.
 * @param q the parsed mapping
 */
function quotaFields(q: NativeQuota): Partial<QuotaConfig> {
  const out: Partial<QuotaConfig> = {};
  if (q.requests_per_day !== undefined) out.requestsPerDay = q.requests_per_day;
  if (q.model_requests_per_day !== undefined) out.modelRequestsPerDay = q.model_requests_per_day;
  if (q.tokens_per_day !== undefined) out.tokensPerDay = q.tokens_per_day;
  if (q.requests_per_minute !== undefined) out.requestsPerMinute = q.requests_per_minute;
  if (q.tokens_per_minute !== undefined) out.tokensPerMinute = q.tokens_per_minute;
  if (q.max_concurrency !== undefined) out.maxConcurrency = q.max_concurrency;
  if (q.reset !== undefined) out.reset = q.reset;
  if (q.time_zone !== undefined) out.timeZone = q.time_zone;
  return out;
}

const keyObject = z.strictObject({
  key: z.string().trim().min(1, "must not be empty").describe("The API key (write ${NAME})."),
  name: text().optional().describe("Name in logs and stats. Default none."),
  weight: atLeast(0).optional().describe("Weight for weighted. Default the upstream's."),
  priority: intRange(0).optional().describe("Tier. Default the upstream's."),
  quota: quota.optional().describe("This key's budgets, field by field over the upstream's."),
});

/** The message for a key list that is set but holds no key. */
export const EMPTY_KEYS =
  "must list at least one key, or be left out for an upstream that takes no key";

const keys = z.union([
  z.string().transform(splitKeyList),
  z.array(
    z.union([z.string().trim(), keyObject], { error: 'must be a key or a mapping with "key"' }),
  ),
], { error: "must be a list of keys, or one string of comma-separated keys" }).transform(
  (list, ctx): KeyConfig[] => {
    const all = list.map((item) => typeof item === "string" ? { key: item } : item);
    reportDuplicates(all.map((k) => k.key), ctx, "key");
    const kept = all.filter((k) => k.key !== "");
    // `keys: ${VAR}` with VAR set but empty: a proxy whose every request fails, not "no keys"
    // (an explicit `[]` is "no keys")
    if (all.length > 0 && kept.length === 0) {
      ctx.addIssue({ code: "custom", message: EMPTY_KEYS, path: [] });
    }
    return kept.map(({ key, name, weight, priority, quota }) => ({
      key,
      ...(name === undefined ? {} : { name }),
      ...(weight === undefined ? {} : { weight }),
      ...(priority === undefined ? {} : { priority }),
      ...(quota === undefined ? {} : { quota: quotaFields(quota) }),
    }));
  },
);

const timeouts = z.union([
  seconds().transform((totalMs): Timeouts => timeoutsFromTotal(totalMs)),
  z.strictObject({
    connect: seconds().optional().describe(
      "Seconds until a new connection is open, TLS included; 0 disables. Default 10.",
    ),
    first_byte: seconds().optional().describe(
      "Seconds until the response starts; 0 disables. Default 120.",
    ),
    idle: seconds().optional().describe(
      "Longest gap in seconds between two chunks; 0 disables. Default 120.",
    ),
    total: seconds().optional().describe(
      "Seconds for the whole attempt; 0 disables. Default 600.",
    ),
  }).transform((t): Timeouts => ({
    connectMs: t.connect ?? DEFAULT_TIMEOUTS.connectMs,
    firstByteMs: t.first_byte ?? DEFAULT_TIMEOUTS.firstByteMs,
    idleMs: t.idle ?? DEFAULT_TIMEOUTS.idleMs,
    totalMs: t.total ?? DEFAULT_TIMEOUTS.totalMs,
  })),
], { error: "must be a number of seconds or a mapping of connect, first_byte, idle, total" });

const healthCheck = z.union([
  bool(),
  z.strictObject({
    path: z.string().startsWith("/", 'must start with "/"').optional().describe(
      "Path probed, after base_url. Default /models (/v1/models with path_mode full).",
    ),
    interval: seconds(true).optional().describe("Seconds between probes. Default 30."),
    timeout: seconds(true).optional().describe("Seconds a probe may take. Default 5."),
    probe: text().optional().describe("The probe plugin. Default http."),
    validates_key: bool().optional().describe(
      "The path refuses a bad key, so a success brings back a key refused with 401/403. " +
        "Default false.",
    ),
  }),
], { error: "must be true, false or a mapping of path, interval, timeout, probe, validates_key" });

const headerValue = z.union([z.string(), z.number(), z.boolean()], { error: "must be a string" })
  .transform(String);

/** A mapping of header names (lower-cased) to values. */
const headerMap = z.record(
  z.string().regex(HEADER_NAME, "must be a valid HTTP header name"),
  headerValue,
).transform((record) => {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(record)) out[name.toLowerCase()] = value;
  return out;
});

/** One entry of the native `upstreams` mapping. */
export const upstreamSchema = z.strictObject({
  base_url: httpUrl().describe("OpenAI-style base URL, /v1 included. Required."),
  path_mode: z.enum(["v1", "full"]).optional().describe(
    "v1: /v1/x goes to base_url + /x; full: the path is appended as is. Default v1.",
  ),
  auth: z.enum(["bearer", "x-api-key", "api-key"]).optional().describe(
    "bearer, x-api-key (Anthropic style) or api-key (Azure style). Default bearer.",
  ),
  keys: keys.optional().describe(
    "Strings, {key, name, weight, priority, quota}, or one comma-separated string " +
      "(keys: ${KEYS}). Default [] (no credentials sent).",
  ),
  key: z.string().trim().min(
    1,
    "must not be empty, or be left out for an upstream that takes no key",
  )
    .optional().describe("One key, instead of keys."),
  headers: headerMap.optional().describe(
    "Headers sent unless the client sends that header itself. Default {}.",
  ),
  force_headers: headerMap.optional().describe(
    "Headers sent in place of the client's header of that name. Default {}.",
  ),
  models: z.record(text(), text()).optional().describe(
    "Client model name to this upstream's model name. Default {}.",
  ),
  weight: atLeast(0).optional().describe(
    "Weight of each key for weighted (0: never chosen). Default 1.",
  ),
  priority: intRange(0).optional().describe(
    "Tier: tier N+1 serves only while every tier-N candidate is unusable. Default 0.",
  ),
  max_failures: intRange(1).optional().describe(
    "Consecutive failures that eject a key. Default health.max_failures.",
  ),
  timeout: timeouts.optional().describe(
    "Seconds: N sets first_byte, idle and total to N; or {connect, first_byte, idle, total}.",
  ),
  health_check: healthCheck.optional().describe(
    "Active probes: true, or {path, interval, timeout, probe, validates_key}. Default off.",
  ),
  quota: quota.optional().describe("Each key's budgets. Default no limits."),
}).refine((u) => u.key === undefined || u.keys === undefined, {
  message: 'use either "key" or "keys", not both',
  path: ["key"],
  when: () => true,
}).superRefine((u, ctx) => {
  for (const name of Object.keys(u.force_headers ?? {})) {
    if (u.headers?.[name] === undefined) continue;
    ctx.addIssue({
      code: "custom",
      message: `"${name}" is also in headers: keep it in one of them`,
      path: ["force_headers", name],
    });
  }
});

/** A parsed upstream entry, before normalization. */
export type NativeUpstream = z.output<typeof upstreamSchema>;

/**
 * Turns a parsed upstream entry into an `UpstreamConfig`, filling defaults.
 *
 * @param name the upstream's name (its key under `upstreams`)
 * @param u the parsed entry
 * @param defaultMaxFailures `health.max_failures`, used when the entry sets none
 */
export function toUpstream(
  name: string,
  u: NativeUpstream,
  defaultMaxFailures: number,
): UpstreamConfig {
  const pathMode = u.path_mode ?? "v1";
  const probePath = pathMode === "full" ? "/v1/models" : "/models";
  let healthCheck: HealthCheckConfig | undefined;
  if (u.health_check === true) healthCheck = defaultHealthCheck(probePath);
  else if (typeof u.health_check === "object") {
    const base = defaultHealthCheck(u.health_check.path ?? probePath);
    healthCheck = {
      probe: u.health_check.probe ?? base.probe,
      path: base.path,
      intervalMs: u.health_check.interval ?? base.intervalMs,
      timeoutMs: u.health_check.timeout ?? base.timeoutMs,
      ...(u.health_check.validates_key === true ? { validatesKey: true } : {}),
    };
  }
  const keys = u.keys ?? (u.key === undefined ? [] : [{ key: u.key }]);
  return {
    name,
    baseUrl: u.base_url,
    pathMode,
    auth: u.auth ?? "bearer",
    keys,
    headers: u.headers ?? {},
    forceHeaders: u.force_headers ?? {},
    models: u.models ?? {},
    weight: u.weight ?? 1,
    priority: u.priority ?? 0,
    timeouts: u.timeout ?? { ...DEFAULT_TIMEOUTS },
    maxFailures: u.max_failures ?? defaultMaxFailures,
    ...(healthCheck === undefined ? {} : { healthCheck }),
    quota: { ...defaultQuota(u.base_url), ...(u.quota === undefined ? {} : quotaFields(u.quota)) },
  };
}
