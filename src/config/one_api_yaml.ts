/**
 * @module
 * Seed B's YAML ("LLM One API" load balancing) read unchanged and turned into `Config`.
 * Sections and fields llm-balance does not use (`plugins:`, `stats:`, `server.workers`, ...)
 * are accepted and ignored. An empty `api_key` is an error.
 */

import { z } from "zod";
import {
  atLeast,
  bool,
  check,
  type Checked,
  entriesInOrder,
  httpUrl,
  intRange,
  type NormalizeContext,
  seconds,
  text,
} from "./_schema.ts";
import {
  baseConfig,
  DEFAULT_MAX_FAILURES,
  defaultHealthCheck,
  defaultQuota,
  timeoutsFromTotal,
} from "./defaults.ts";
import {
  type Config,
  DEFAULT_AFFINITY,
  type LogLevel,
  type PoolConfig,
  type UpstreamConfig,
} from "./types.ts";

/** Requests per minute when `rate_limit.enabled` is true without `requests_per_minute`. */
export const SEED_B_DEFAULT_RPM = 60;

const LOG_LEVELS: Record<string, LogLevel> = {
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  critical: "error",
  fatal: "error",
};

/** An `api_key`: required, and not empty (an empty `${VAR}` is a mistake, not "no key"). */
const apiKey = z.string().trim().min(1, "must not be empty");

const upstream = z.object({
  api_base: httpUrl(),
  api_key: apiKey,
  weight: atLeast(0).optional(),
  timeout: seconds().optional(),
});

const model = z.object({
  upstreams: z.array(upstream).min(1, "must list at least one upstream").optional(),
  api_base: httpUrl().optional(),
  api_key: apiKey.optional(),
  timeout: seconds().optional(),
  load_balance_strategy: text().optional(),
  health_check_interval: seconds(true).optional(),
  max_failures: intRange(1).optional(),
}).superRefine((m, ctx) => {
  if (m.upstreams !== undefined && m.api_base !== undefined) {
    ctx.addIssue({
      code: "custom",
      message: 'use either "upstreams" or "api_base", not both',
      path: ["api_base"],
    });
  } else if (m.upstreams === undefined && m.api_base === undefined) {
    ctx.addIssue({ code: "custom", message: 'needs "upstreams" or "api_base"', path: [] });
  } else if (m.api_base !== undefined && m.api_key === undefined) {
    ctx.addIssue({ code: "custom", message: "is required", path: ["api_key"] });
  }
});

const seedB = z.object({
  models: z.record(text(), model).refine(
    (models) => Object.keys(models).length > 0,
    "must define at least one model",
  ),
  auth: z.object({
    default_auth: z.object({ api_keys: z.array(z.string().trim()).optional() }).optional(),
  }).optional(),
  rate_limit: z.object({
    enabled: bool().optional(),
    requests_per_minute: intRange(1).optional(),
  }).optional(),
  server: z.object({
    host: text().optional(),
    port: intRange(0, 65535).optional(),
    log_level: z.string().trim().toLowerCase().refine((level) => level in LOG_LEVELS, {
      message: 'must be one of "debug", "info", "warning", "error", "critical"',
    }).optional(),
  }).optional(),
});

type SeedBModel = z.output<typeof model>;
type SeedBUpstream = z.output<typeof upstream>;

function toUpstreams(name: string, m: SeedBModel): UpstreamConfig[] {
  const entries: SeedBUpstream[] = m.upstreams ??
    [{ api_base: m.api_base ?? "", api_key: m.api_key ?? "", timeout: m.timeout }];
  const intervalMs = m.health_check_interval ?? defaultHealthCheck().intervalMs;
  return entries.map((u, i) => ({
    // URL-safe, so the name works in /admin/upstreams/{name} as it is
    name: `${name.replace(/[^A-Za-z0-9._-]/g, "_")}-${i + 1}`,
    baseUrl: u.api_base,
    pathMode: "v1",
    auth: "bearer",
    keys: [{ key: u.api_key }],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: u.weight ?? 1,
    priority: 0,
    timeouts: timeoutsFromTotal(u.timeout ?? 60_000),
    maxFailures: m.max_failures ?? DEFAULT_MAX_FAILURES,
    healthCheck: { ...defaultHealthCheck("/models"), intervalMs },
    quota: defaultQuota(u.api_base),
  }));
}

/**
 * Checks a parsed Seed B file and turns it into a `Config`: upstreams named `<model>-<i>`
 * (1-based), one pool per model, client keys from `auth.default_auth.api_keys` (allowed to read
 * stats, as in Seed B), `rate_limit` applied to every client key, `server.log_level` mapped to
 * llm-balance's levels.
 *
 * @param tree the parsed file, after `${VAR}` substitution
 * @param context the source label and the key order
 * @returns the config, or every issue found (paths like `models.gpt-4.upstreams[1].weight`)
 */
export function normalizeOneApiYaml(tree: unknown, context: NormalizeContext): Checked<Config> {
  const result = check(seedB, tree);
  if (!result.ok) return result;
  const file = result.value;
  const config = baseConfig(context.source, "seed-b");
  config.server.host = file.server?.host ?? config.server.host;
  config.server.port = file.server?.port ?? config.server.port;
  const level = file.server?.log_level;
  if (level !== undefined) config.log.level = LOG_LEVELS[level] ?? "info";
  const pools: PoolConfig[] = [];
  for (const [name, m] of entriesInOrder(file.models, ["models"], context)) {
    const upstreams = toUpstreams(name, m);
    config.upstreams.push(...upstreams);
    pools.push({
      model: name,
      strategy: m.load_balance_strategy ?? "round_robin",
      members: upstreams.map((u) => ({ upstream: u.name })),
      affinityBy: [...DEFAULT_AFFINITY],
      fallbacks: [],
    });
  }
  config.pools = pools;
  const rateLimit = file.rate_limit?.enabled === true
    ? file.rate_limit.requests_per_minute ?? SEED_B_DEFAULT_RPM
    : undefined;
  const keys = [...new Set(file.auth?.default_auth?.api_keys ?? [])].filter((k) => k !== "");
  config.clientKeys = keys.map((key, i) => ({
    key,
    name: `client-${i + 1}`,
    ...(rateLimit === undefined ? {} : { rateLimitPerMinute: rateLimit }),
  }));
  config.clientKeysReadStats = true;
  return { ok: true, value: config };
}
