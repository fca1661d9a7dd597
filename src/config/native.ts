/**
 * @module
 * llm-balance's own config format (YAML or JSON): zod schema and normalization to `Config`.
 * Unknown fields are errors, so typos are never silently ignored; so are key lists that are
 * set but hold no key.
 */

import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import {
  atLeast,
  bool,
  check,
  type Checked,
  duplicates,
  entriesInOrder,
  intRange,
  type NormalizeContext,
  reportDuplicates,
  seconds,
  secondsRange,
  splitKeyList,
  splitList,
  text,
} from "./_schema.ts";
import { baseConfig, DEFAULT_MAX_FAILURES } from "./defaults.ts";
import { toUpstream, upstreamSchema } from "./native_upstream.ts";
import {
  type AffinitySource,
  type ClientKeyConfig,
  type Config,
  DEFAULT_AFFINITY,
  DEFAULT_AFFINITY_ROUTING,
  type PoolConfig,
  type PoolMemberConfig,
} from "./types.ts";

const NAME = /^[A-Za-z0-9._-]+$/;

const clientKeyObject = z.strictObject({
  key: z.string().trim().min(1, "must not be empty").describe("The client key (write ${NAME})."),
  name: text().optional().describe("Name in logs and stats. Default client-<position>."),
  models: z.array(text()).optional().describe("Models this key may use. Default every model."),
  rate_limit: intRange(1).optional().describe("Requests per minute. Default no limit."),
});

const clientKeys = z.union([
  z.string().transform(splitKeyList),
  z.array(z.union([z.string().trim(), clientKeyObject], {
    error: 'must be a key or a mapping with "key"',
  })),
], { error: "must be a list of keys, or one string of comma-separated keys" }).transform(
  (list, ctx): ClientKeyConfig[] => {
    const all = list.map((item, i) => {
      const { key, name, models, rate_limit } = typeof item === "string" ? { key: item } : item;
      return {
        key,
        name: name ?? `client-${i + 1}`,
        ...(models === undefined ? {} : { models }),
        ...(rate_limit === undefined ? {} : { rateLimitPerMinute: rate_limit }),
      };
    });
    reportDuplicates(all.map((k) => k.key), ctx, "client key");
    const named = all.map((k) => k.key === "" ? "" : k.name);
    for (const { index, first } of duplicates(named)) {
      ctx.addIssue({
        code: "custom",
        message: `duplicate name (same as [${first}])`,
        path: [index],
      });
    }
    const kept = all.filter((k) => k.key !== "");
    // `client_keys: ${VAR}` with VAR set but empty would serve everyone: an error instead (an
    // explicit `[]` says so on purpose)
    if (all.length > 0 && kept.length === 0) {
      ctx.addIssue({
        code: "custom",
        message: "must list at least one client key, or be left out to serve every client",
        path: [],
      });
    }
    return kept;
  },
);

const HOST_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?$/;

/** `server.admin_hosts`: host names without scheme or port, or one comma-separated string. */
const adminHosts = z.union([
  z.string().transform(splitList),
  z.array(z.string().trim()),
], { error: "must be a list of host names, or one string of comma-separated names" }).transform(
  (list, ctx): string[] => {
    list.forEach((name, i) => {
      if (!HOST_NAME.test(name)) {
        ctx.addIssue({
          code: "custom",
          message:
            `must be a host name without scheme or port, e.g. "llm.internal" (got "${name}")`,
          path: [i],
        });
      }
    });
    return list.map((n) => n.toLowerCase().replace(/\.$/, ""));
  },
);

/** The sources `affinity.by` takes: `header:` is followed by an HTTP header name. */
export const AFFINITY_SOURCE =
  /^(prompt_cache_key|user|prefix|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/;

const affinitySource = z.string().refine(
  (s) => AFFINITY_SOURCE.test(s),
  { error: 'must be "prompt_cache_key", "user", "prefix" or "header:<name>"' },
).transform((s) => s.toLowerCase() as AffinitySource);

function poolSchema(upstreamNames: ReadonlySet<string>) {
  const known = (name: string) => upstreamNames.has(name);
  const unknown = {
    error: (issue: { input?: unknown }) => `unknown upstream "${String(issue.input)}"`,
  };
  const member = z.union([
    z.string().refine(known, unknown),
    z.strictObject({
      upstream: z.string().refine(known, unknown).describe("An upstream's name."),
      weight: atLeast(0).optional().describe("Weight of its keys in this pool. Default its own."),
      priority: intRange(0).optional().describe("Tier in this pool. Default its own."),
    }),
  ], { error: 'must be an upstream name or a mapping with "upstream"' });
  return z.strictObject({
    strategy: text().optional().describe(
      "round_robin, random, weighted, least_connections, quota_aware, p2c or a plugin's. " +
        "Default round_robin.",
    ),
    fallbacks: z.array(text()).optional().describe(
      "Models whose pools serve when this one cannot. Default [].",
    ),
    strategy_options: z.record(z.string(), z.unknown(), {
      error: "must be a mapping of the strategy's options",
    }).optional().describe(
      "Options the strategy reads (p2c: decay, seconds from 0.01 to 86400, default 10). " +
        "Default {}.",
    ),
    affinity: z.strictObject({
      by: z.array(affinitySource).min(1, "must list at least one source").optional().describe(
        "Sources of a request's affinity value, first present wins: prompt_cache_key, user, " +
          "prefix (hashes the prompt), header:<name>. Default [prompt_cache_key, user].",
      ),
      pin: bool().optional().describe(
        "false: strategies see the affinity value, nothing is pinned. Default true.",
      ),
      ttl: secondsRange(1, 604_800).optional().describe(
        "Seconds a pin lives after its last use (1 to 604800). Default 600.",
      ),
      max_load: atLeast(1).optional().describe(
        "The most pins, and pinned requests in flight, a key holds, as a multiple of the " +
          "mean (>= 1). Default 1.25.",
      ),
      prefix_chars: intRange(16, 1_048_576).optional().describe(
        "Characters of the system prompt and first user message the prefix source hashes " +
          "(16 to 1048576). Default 2048.",
      ),
    }).optional().describe(
      "Pin requests with the same affinity value to one key; {} turns it on. Default off.",
    ),
    slow_start: secondsRange(0, 3_600).optional().describe(
      "Seconds (up to 3600) over which a key back from a rest grows to its full share. " +
        "Default 0 (off).",
    ),
    upstreams: z.array(member).min(1, "must list at least one upstream").describe(
      "Upstream names, or {upstream, weight, priority}. Required.",
    ).transform(
      (members, ctx): PoolMemberConfig[] => {
        const out = members.map((m): PoolMemberConfig =>
          typeof m === "string" ? { upstream: m } : {
            upstream: m.upstream,
            ...(m.weight === undefined ? {} : { weight: m.weight }),
            ...(m.priority === undefined ? {} : { priority: m.priority }),
          }
        );
        reportDuplicates(out.map((m) => m.upstream), ctx, "upstream");
        return out;
      },
    ),
  });
}

/**
 * The zod schema of a native config file (after `${VAR}` substitution).
 *
 * @param upstreamNames the names pool members may refer to (the file's `upstreams` keys)
 * @returns the schema; its output is turned into a `Config` by {@linkcode normalizeNative}
 */
export function nativeSchema(upstreamNames: ReadonlySet<string>) {
  return z.strictObject({
    server: z.strictObject({
      host: text().optional().describe(
        "Bind address; a non-loopback address needs client keys or " +
          "allow_unauthenticated_remote. Default 127.0.0.1.",
      ),
      port: intRange(0, 65535).optional().describe(
        "Listen port; 0 takes a free one. Default 8080.",
      ),
      allow_unauthenticated_remote: bool().optional().describe(
        "Allow a non-loopback bind without client keys. Default false.",
      ),
      max_body_bytes: intRange(1).optional().describe(
        "Largest request body in bytes (413 beyond it). Default 52428800 (50 MiB).",
      ),
      drain_timeout: seconds().optional().describe(
        "Seconds in-flight requests get on shutdown. Default 10.",
      ),
      watch_config: bool().optional().describe(
        "Reload when the config file changes. Default false.",
      ),
      overhead_header: bool().optional().describe(
        "Add x-llm-balance-overhead-ms to responses. Default false.",
      ),
      admin_hosts: adminHosts.optional().describe(
        "Host names (no port) of this service: they may reach stats and admin when no key " +
          "is set, and act from a browser behind a proxy that rewrites Host. Default [].",
      ),
      cors: z.union([
        bool(),
        z.strictObject({
          enabled: bool().optional().describe("Default true."),
          origins: z.array(text()).optional().describe('Allowed origins. Default ["*"].'),
        }),
      ], { error: "must be true, false or a mapping of enabled, origins" }).optional().describe(
        'CORS for browser clients: true, or {enabled, origins} (default origins ["*"]). ' +
          "Default false.",
      ),
    }).optional().describe("Where and how llm-balance listens."),
    log: z.strictObject({
      level: z.enum(["debug", "info", "warn", "error"]).optional().describe(
        "Keys are always masked in logs. Default info.",
      ),
      format: z.enum(["auto", "json", "pretty"]).optional().describe(
        "auto: pretty on a terminal, JSON otherwise. Default auto.",
      ),
    }).optional().describe("Logging, on stderr."),
    auth: z.strictObject({
      admin_key: z.string().trim().optional().describe(
        "Key for /stats, /metrics, /v1/stats/* and /admin/* (write ${NAME}). Default none.",
      ),
      client_keys: clientKeys.optional().describe(
        "Keys clients must send: strings, {key, name, models, rate_limit}, or one " +
          "comma-separated string. Default none (every client is served).",
      ),
    }).optional().describe("Who may use llm-balance."),
    upstreams: z.record(
      z.string().regex(NAME, 'may only contain letters, digits, ".", "_" and "-"'),
      upstreamSchema,
    ).refine((r) => Object.keys(r).length > 0, "must define at least one upstream").describe(
      "The APIs requests go to, by name (letters, digits, '.', '_', '-'). Required.",
    ),
    pools: z.record(text(), poolSchema(upstreamNames)).refine(
      (p) => !("default" in p && "*" in p),
      { message: 'use either "default" or "*" for the default pool, not both', when: () => true },
    ).superRefine((pools, ctx) => {
      for (const [model, pool] of Object.entries(pools)) {
        const fallbacks = pool.fallbacks ?? [];
        fallbacks.forEach((fallback, i) => {
          const path = [model, "fallbacks", i];
          if (fallback === "") return; // reported as empty already
          if (fallbacks.indexOf(fallback) < i) {
            ctx.addIssue({ code: "custom", message: `"${fallback}" is listed twice`, path });
          } else if (fallback === model) {
            ctx.addIssue({ code: "custom", message: "a pool cannot fall back to itself", path });
          } else if (!(fallback in pools) || fallback === "default" || fallback === "*") {
            ctx.addIssue({
              code: "custom",
              message: `no pool is named "${fallback}" (a fallback names another model's pool)`,
              path,
            });
          }
        });
      }
    }).optional().describe(
      "Pools by client model name; default (or *) serves every other model. Default one " +
        "pool of every upstream.",
    ),
    retry: z.strictObject({
      max_attempts: intRange(1, 10).optional().describe(
        "Attempts per request, the first included (1-10). Default 3.",
      ),
      backoff_base: seconds().optional().describe(
        "Seconds of backoff (with jitter) before reusing a tried upstream. Default 0.1.",
      ),
      backoff_max: seconds().optional().describe("Longest backoff in seconds. Default 2."),
      deadline: seconds().optional().describe(
        "Seconds for one request across attempts; 0 disables. Default 600.",
      ),
    }).optional().describe("Retries on another key or upstream."),
    health: z.strictObject({
      max_failures: intRange(1).optional().describe(
        "Consecutive failures that eject a key (upstreams may override). Default 3.",
      ),
      ejection_base: seconds(true).optional().describe(
        "Seconds of ejection, times the times ejected. Default 30.",
      ),
      ejection_max: seconds(true).optional().describe("Longest ejection in seconds. Default 300."),
      rate_limit_rest: seconds().optional().describe(
        "Seconds of rest after a 429 without Retry-After or reset headers. Default 60.",
      ),
      quota_rest: seconds().optional().describe(
        "Cap in seconds on the wait for the next daily reset after an exhausted quota; " +
          "0: no cap. Default 0.",
      ),
      auth_rest: seconds().optional().describe(
        "Seconds of rest after a 401/403. Default 600.",
      ),
    }).optional().describe("Passive health: ejections and rests."),
    usage: z.strictObject({
      inject_stream_usage: bool().optional().describe(
        "Ask OpenAI-style streams for usage and strip the extra chunk. Default false.",
      ),
    }).optional().describe("Token usage counting."),
    queue: z.strictObject({
      max_wait: seconds().optional().describe(
        "Seconds a request may wait for a key; 0 answers at once. Default 0.",
      ),
      max_length: intRange(1).optional().describe(
        "Requests waiting per pool and model; beyond it, 503 queue_full. Default 1000.",
      ),
    }).optional().describe("Waiting for a key when none is free."),
    state: z.union([
      z.string().refine((v) => v === "memory", {
        error: 'must be "memory" or a mapping with "path" or "redis"',
      }),
      z.strictObject({
        path: text().optional().describe(
          "SQLite file, relative to the config file's folder. Default a file per config in " +
            "the platform's state folder (memory with redis).",
        ),
        redis: z.string().refine(isRedisUrl, {
          // the URL is not repeated: it may hold a password
          error: 'must be a URL "redis://[:password@]host[:port][/db]" or "rediss://…" (TLS)',
        }).optional().describe(
          "Share key state with other instances: redis://[:password@]host[:port][/db] or " +
            "rediss:// (TLS). Default none.",
        ),
        prefix: z.string().min(1, { error: "must not be empty" }).max(200).optional().describe(
          'Prefix of Redis keys; instances with the same one share state. Default "llm-balance:".',
        ),
        redis_required: bool().optional().describe(
          "true: answer 503 while Redis cannot be reached. Default false.",
        ),
      }),
    ], { error: 'must be "memory" or a mapping with "path" or "redis"' }).optional().describe(
      "Where key state is kept across restarts: memory, or {path, redis, prefix, " +
        "redis_required}. Default a SQLite file per config.",
    ),
    plugins: z.array(text()).optional().describe(
      "Plugin module paths, relative to the config file. Default [].",
    ),
  });
}

type NativeFile = z.output<ReturnType<typeof nativeSchema>>;

/** Resolves a relative plugin path against the config's folder; URLs and specifiers stay. */
function resolvePlugin(path: string, baseDir: string): string {
  if (/^[a-z][a-z0-9+.-]+:/i.test(path) || isAbsolute(path)) return path;
  return resolve(baseDir, path);
}

/** Whether a text is a Redis URL node-redis can connect to. */
function isRedisUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === "redis:" || u.protocol === "rediss:") && u.hostname !== "" &&
      /^\/?\d*$/.test(u.pathname);
  } catch {
    return false;
  }
}

function toConfig(file: NativeFile, context: NormalizeContext): Config {
  const config = baseConfig(context.source, "native");
  const { server, log, auth, retry, health, usage, queue, state } = file;
  const s = config.server;
  if (server !== undefined) {
    s.host = server.host ?? s.host;
    s.port = server.port ?? s.port;
    s.allowUnauthenticatedRemote = server.allow_unauthenticated_remote ??
      s.allowUnauthenticatedRemote;
    s.maxBodyBytes = server.max_body_bytes ?? s.maxBodyBytes;
    s.drainTimeoutMs = server.drain_timeout ?? s.drainTimeoutMs;
    s.watchConfig = server.watch_config ?? s.watchConfig;
    s.overheadHeader = server.overhead_header ?? s.overheadHeader;
    s.adminHosts = server.admin_hosts ?? s.adminHosts;
    if (typeof server.cors === "boolean") s.cors = { enabled: server.cors, origins: ["*"] };
    else if (server.cors !== undefined) {
      s.cors = { enabled: server.cors.enabled ?? true, origins: server.cors.origins ?? ["*"] };
    }
  }
  config.log = { level: log?.level ?? "info", format: log?.format ?? "auto" };
  if (auth?.admin_key !== undefined && auth.admin_key !== "") config.adminKey = auth.admin_key;
  config.clientKeys = auth?.client_keys ?? [];
  const r = config.retry;
  config.retry = {
    maxAttempts: retry?.max_attempts ?? r.maxAttempts,
    backoffBaseMs: retry?.backoff_base ?? r.backoffBaseMs,
    backoffMaxMs: retry?.backoff_max ?? r.backoffMaxMs,
    deadlineMs: retry?.deadline ?? r.deadlineMs,
  };
  const h = config.health;
  config.health = {
    ejectionBaseMs: health?.ejection_base ?? h.ejectionBaseMs,
    ejectionMaxMs: health?.ejection_max ?? h.ejectionMaxMs,
    rateLimitRestMs: health?.rate_limit_rest ?? h.rateLimitRestMs,
    quotaRestMs: health?.quota_rest ?? h.quotaRestMs,
    authRestMs: health?.auth_rest ?? h.authRestMs,
  };
  config.usage = { injectStreamUsage: usage?.inject_stream_usage ?? false };
  config.queue = {
    maxWaitMs: queue?.max_wait ?? config.queue.maxWaitMs,
    maxLength: queue?.max_length ?? config.queue.maxLength,
  };
  if (state === "memory") config.state = { kind: "memory" };
  else if (state?.path !== undefined) {
    config.state = { kind: "file", path: resolve(context.baseDir, state.path) };
  } else if (state?.redis !== undefined) {
    // instances on one host share the config file: each keeps its own view in memory
    config.state = { kind: "memory" };
  }
  if (state !== undefined && state !== "memory" && state.redis !== undefined) {
    config.state.redis = {
      url: state.redis,
      prefix: state.prefix ?? "llm-balance:",
      required: state.redis_required ?? false,
    };
  }
  const maxFailures = health?.max_failures ?? DEFAULT_MAX_FAILURES;
  config.upstreams = entriesInOrder(file.upstreams, ["upstreams"], context).map(([name, u]) =>
    toUpstream(name, u, maxFailures)
  );
  config.pools = file.pools === undefined
    ? [{
      model: "*",
      strategy: "round_robin",
      members: config.upstreams.map((u) => ({ upstream: u.name })),
      affinityBy: [...DEFAULT_AFFINITY],
      fallbacks: [],
    }]
    : entriesInOrder(file.pools, ["pools"], context).map(([model, pool]): PoolConfig => ({
      model: model === "default" ? "*" : model,
      strategy: pool.strategy ?? "round_robin",
      members: pool.upstreams,
      affinityBy: pool.affinity?.by ?? [...DEFAULT_AFFINITY],
      fallbacks: pool.fallbacks ?? [],
      ...(pool.affinity === undefined || pool.affinity.pin === false ? {} : {
        affinity: {
          ttlMs: pool.affinity.ttl ?? DEFAULT_AFFINITY_ROUTING.ttlMs,
          maxLoad: pool.affinity.max_load ?? DEFAULT_AFFINITY_ROUTING.maxLoad,
          prefixChars: pool.affinity.prefix_chars ?? DEFAULT_AFFINITY_ROUTING.prefixChars,
        },
      }),
      ...(pool.slow_start ? { slowStartMs: pool.slow_start } : {}),
      ...(pool.strategy_options === undefined ? {} : { strategyOptions: pool.strategy_options }),
    }));
  config.plugins = (file.plugins ?? []).map((p) => resolvePlugin(p, context.baseDir));
  return config;
}

/**
 * Checks a parsed native config file and turns it into a `Config`.
 *
 * @param tree the parsed file, after `${VAR}` substitution
 * @param context the source label, the folder plugins are resolved against, the key order
 * @returns the config, or every issue found (paths like `upstreams.ms.weight`)
 */
export function normalizeNative(tree: unknown, context: NormalizeContext): Checked<Config> {
  const raw = (tree as { upstreams?: unknown } | null)?.upstreams;
  const names = new Set(raw !== null && typeof raw === "object" ? Object.keys(raw) : []);
  const result = check(nativeSchema(names), tree);
  return result.ok ? { ok: true, value: toConfig(result.value, context) } : result;
}
