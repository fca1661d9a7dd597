/**
 * @module
 * Seed A's `config.json` (the ModelScope key balancer) read unchanged and turned into `Config`.
 * Unknown fields are accepted and ignored: older files may carry more. An `api_keys` that is
 * there but holds no key (an empty string, or only empty items) is an error.
 */

import { z } from "zod";
import {
  bool,
  check,
  type Checked,
  httpUrl,
  intRange,
  type NormalizeContext,
  splitKeyList,
} from "./_schema.ts";
import {
  baseConfig,
  DEFAULT_MAX_FAILURES,
  DEFAULT_TIMEOUTS,
  defaultHealthCheck,
  defaultQuota,
} from "./defaults.ts";
import { type Config, DEFAULT_AFFINITY } from "./types.ts";

/** Seed A's `target_url` default. */
export const SEED_A_TARGET_URL = "https://api-inference.modelscope.cn";

/** Seed A's `health_path` default. */
export const SEED_A_HEALTH_PATH = "/v1/models";

const NAME = /^[A-Za-z0-9._-]+$/;

const seedA = z.object({
  // a list, or one string of comma- or space-separated keys (`"api_keys": "${MS_KEYS}"`); set
  // but holding no key (`MS_KEYS=`) is an error, not a proxy whose every request fails
  api_keys: z.union([
    z.array(z.string().trim()),
    z.string().transform(splitKeyList),
  ]).refine(
    (keys) => keys.length === 0 || keys.some((key) => key !== ""),
    "must list at least one key",
  ).optional(),
  server_port: intRange(0, 65535).optional(),
  target_url: httpUrl().optional(),
  health_check: bool().optional(),
  health_path: z.string().trim().optional(),
});

/** The upstream's name: the target's host name when it is a valid name, else `target`. */
function upstreamName(baseUrl: string): string {
  const host = new URL(baseUrl).hostname;
  return NAME.test(host) ? host : "target";
}

/**
 * Checks a parsed Seed A file and turns it into a `Config`: one upstream (path mode `full`,
 * bearer auth) holding every key of `api_keys` (repeats dropped), served round-robin by the
 * default pool.
 *
 * @param tree the parsed file, after `${VAR}` substitution
 * @param context the source label
 * @returns the config, or every issue found (paths like `api_keys[1]`)
 */
export function normalizeModelscopeBalanceJson(
  tree: unknown,
  context: NormalizeContext,
): Checked<Config> {
  const result = check(seedA, tree);
  if (!result.ok) return result;
  const file = result.value;
  const config = baseConfig(context.source, "seed-a");
  if (file.server_port !== undefined) config.server.port = file.server_port;
  const baseUrl = file.target_url ?? SEED_A_TARGET_URL;
  const name = upstreamName(baseUrl);
  let healthPath = file.health_path || SEED_A_HEALTH_PATH;
  if (!healthPath.startsWith("/")) healthPath = `/${healthPath}`;
  config.upstreams = [{
    name,
    baseUrl,
    pathMode: "full",
    auth: "bearer",
    keys: [...new Set(file.api_keys ?? [])].filter((key) => key !== "").map((key) => ({ key })),
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 1,
    priority: 0,
    timeouts: { ...DEFAULT_TIMEOUTS },
    maxFailures: DEFAULT_MAX_FAILURES,
    quota: defaultQuota(baseUrl),
    ...(file.health_check === false ? {} : { healthCheck: defaultHealthCheck(healthPath) }),
  }];
  config.pools = [{
    model: "*",
    strategy: "round_robin",
    members: [{ upstream: name }],
    affinityBy: [...DEFAULT_AFFINITY],
    fallbacks: [],
  }];
  return { ok: true, value: config };
}
