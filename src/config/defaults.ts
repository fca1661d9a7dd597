/**
 * @module
 * Default values shared by every config format, and the base `Config` they fill in.
 */

import type { Config, HealthCheckConfig, QuotaConfig, Timeouts } from "./types.ts";

/** Per-attempt timeouts when a file sets none: connect 10 s, first byte 120 s, idle 120 s, total 600 s. */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  connectMs: 10_000,
  firstByteMs: 120_000,
  idleMs: 120_000,
  totalMs: 600_000,
});

/** Consecutive failures that eject a key when a file sets none. */
/**
 * The limits a single `timeout: N` means (Seed B's `timeout`, or a native number): the whole
 * attempt may take N, and so may the wait for the first bytes and any pause in a stream, so a
 * slow model given 300 s is never cut at a hidden shorter default.
 * @param totalMs N in milliseconds; 0 disables the total and keeps the other defaults
 * @returns the limits
 */
export function timeoutsFromTotal(totalMs: number): Timeouts {
  if (totalMs <= 0) return { ...DEFAULT_TIMEOUTS, totalMs: 0 };
  return { ...DEFAULT_TIMEOUTS, firstByteMs: totalMs, idleMs: totalMs, totalMs };
}

export const DEFAULT_MAX_FAILURES = 3;

/** Hosts whose daily budgets reset at midnight Beijing time (ModelScope's API-Inference). */
const BEIJING_HOSTS = /(^|\.)modelscope\.cn$/i;

/**
 * The budgets of a key without configured ones: no limit, the daily reset at midnight in UTC,
 * or in Asia/Shanghai for ModelScope (whose counters reset then, and whose headers tell the
 * proxy a key's calls left today even without any configuration).
 *
 * @param baseUrl the upstream's base URL
 * @returns every limit 0 (none), reset 00:00
 */
export function defaultQuota(baseUrl: string): QuotaConfig {
  return {
    requestsPerDay: 0,
    modelRequestsPerDay: 0,
    tokensPerDay: 0,
    requestsPerMinute: 0,
    tokensPerMinute: 0,
    maxConcurrency: 0,
    reset: { hour: 0, minute: 0 },
    timeZone: isModelScope(baseUrl) ? "Asia/Shanghai" : "UTC",
  };
}

/**
 * Whether a base URL is ModelScope's API-Inference (its quirks: daily counts in headers, a
 * midnight Beijing reset, `insufficient_quota` 429s that a short back-off clears).
 * @param baseUrl an upstream's base URL
 */
export function isModelScope(baseUrl: string): boolean {
  try {
    return BEIJING_HOSTS.test(new URL(baseUrl).hostname);
  } catch {
    return false;
  }
}

/**
 * The health check used when a file enables one without details.
 *
 * @param path the probed path
 * @default path "/models"
 * @returns probe "http", every 30 s, 5 s timeout
 */
export function defaultHealthCheck(path = "/models"): HealthCheckConfig {
  return { probe: "http", path, intervalMs: 30_000, timeoutMs: 5_000 };
}

/**
 * A config with every default in place and no upstreams, pools, keys or plugins.
 *
 * @param source where the config comes from
 * @param format which format it was read from
 * @returns a fresh object the caller may change
 */
export function baseConfig(source: string, format: Config["format"]): Config {
  return {
    source,
    format,
    server: {
      host: "127.0.0.1",
      port: 8080,
      allowUnauthenticatedRemote: false,
      cors: { enabled: false, origins: ["*"] },
      maxBodyBytes: 52_428_800,
      drainTimeoutMs: 10_000,
      watchConfig: false,
      overheadHeader: false,
      adminHosts: [],
    },
    log: { level: "info", format: "auto" },
    clientKeys: [],
    clientKeysReadStats: false,
    upstreams: [],
    pools: [],
    retry: { maxAttempts: 3, backoffBaseMs: 100, backoffMaxMs: 2_000, deadlineMs: 600_000 },
    health: {
      ejectionBaseMs: 30_000,
      ejectionMaxMs: 300_000,
      rateLimitRestMs: 60_000,
      quotaRestMs: 0,
      authRestMs: 600_000,
    },
    usage: { injectStreamUsage: false },
    queue: { maxWaitMs: 0, maxLength: 1000 },
    state: { kind: "file", path: undefined },
    plugins: [],
  };
}
