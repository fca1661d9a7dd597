/** @module Tests for src/config/one_api_yaml.ts. */

import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.ts";
import { loadConfig, parseConfigText } from "../../src/config/load.ts";
import { normalizeOneApiYaml } from "../../src/config/one_api_yaml.ts";
import type { Config, Timeouts } from "../../src/config/types.ts";
import { NO_LIMITS } from "../helpers/quota.ts";

const FIXTURE = new URL("../fixtures/seed_b.yaml", import.meta.url).pathname;
const context = { source: "config.yaml", baseDir: "/" };

function normalize(tree: unknown): Config {
  const result = normalizeOneApiYaml(tree, context);
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return result.value;
}

function timeouts(totalMs: number): Timeouts {
  // a single `timeout` bounds the whole attempt, and so the first byte and any pause too
  return { connectMs: 10_000, firstByteMs: totalMs, idleMs: totalMs, totalMs };
}

Deno.test("normalizeOneApiYaml() reads the full Seed B example", async () => {
  const config = await loadConfig(FIXTURE, { env: () => undefined });
  assert.equal(config.format, "seed-b");
  assert.equal(config.server.host, "0.0.0.0");
  assert.equal(config.server.port, 8000);
  assert.equal(config.log.level, "warn");
  const health = (intervalMs: number) => ({
    probe: "http",
    path: "/models",
    intervalMs,
    timeoutMs: 5_000,
  });
  assert.deepEqual(config.upstreams, [
    {
      name: "gpt-3.5-turbo-1",
      baseUrl: "https://api.openai.com/v1",
      pathMode: "v1",
      auth: "bearer",
      keys: [{ key: "sk-key-1" }],
      headers: {},
      forceHeaders: {},
      models: {},
      weight: 3,
      priority: 0,
      timeouts: timeouts(60_000),
      maxFailures: 3,
      healthCheck: health(30_000),
      quota: NO_LIMITS,
    },
    {
      name: "gpt-3.5-turbo-2",
      baseUrl: "https://api-proxy1.com/v1",
      pathMode: "v1",
      auth: "bearer",
      keys: [{ key: "sk-key-2" }],
      headers: {},
      forceHeaders: {},
      models: {},
      weight: 1,
      priority: 0,
      timeouts: timeouts(60_000),
      maxFailures: 3,
      healthCheck: health(30_000),
      quota: NO_LIMITS,
    },
    {
      name: "gpt-4-1",
      baseUrl: "https://api.openai.com/v1",
      pathMode: "v1",
      auth: "bearer",
      keys: [{ key: "sk-..." }],
      headers: {},
      forceHeaders: {},
      models: {},
      weight: 1,
      priority: 0,
      timeouts: timeouts(120_000),
      maxFailures: 3,
      healthCheck: health(30_000),
      quota: NO_LIMITS,
    },
  ]);
  assert.deepEqual(config.pools, [
    {
      model: "gpt-3.5-turbo",
      strategy: "round_robin",
      members: [{ upstream: "gpt-3.5-turbo-1" }, { upstream: "gpt-3.5-turbo-2" }],
      affinityBy: ["prompt_cache_key", "user"],
      fallbacks: [],
    },
    {
      model: "gpt-4",
      strategy: "round_robin",
      members: [{ upstream: "gpt-4-1" }],
      affinityBy: ["prompt_cache_key", "user"],
      fallbacks: [],
    },
  ]);
  assert.deepEqual(config.clientKeys, [
    { key: "sk-prod-key-1", name: "client-1", rateLimitPerMinute: 100 },
  ]);
  assert.equal(config.clientKeysReadStats, true);
  assert.deepEqual(config.plugins, []);
});

Deno.test("normalizeOneApiYaml() applies strategy, interval and max_failures per model", () => {
  const config = normalize({
    models: {
      m: {
        upstreams: [{ api_base: "http://a/v1/", api_key: "k", timeout: 5 }],
        load_balance_strategy: "least_connections",
        health_check_interval: 10,
        max_failures: 5,
      },
    },
  });
  const [upstream] = config.upstreams;
  assert.equal(upstream?.baseUrl, "http://a/v1");
  assert.equal(upstream?.maxFailures, 5);
  assert.equal(upstream?.healthCheck?.intervalMs, 10_000);
  assert.deepEqual(upstream?.timeouts, timeouts(5_000));
  assert.equal(config.pools[0]?.strategy, "least_connections");
});

Deno.test("normalizeOneApiYaml() keeps an unknown strategy for the plugin check", () => {
  const config = normalize({
    models: { m: { api_base: "http://a/v1", api_key: "k", load_balance_strategy: "fastest" } },
  });
  assert.equal(config.pools[0]?.strategy, "fastest");
});

Deno.test("normalizeOneApiYaml() refuses an empty api_key, in both forms", () => {
  const single = normalizeOneApiYaml(
    { models: { m: { api_base: "http://a/v1", api_key: " " } } },
    context,
  );
  assert.ok(!single.ok);
  assert.deepEqual(single.issues, [{
    path: ["models", "m", "api_key"],
    message: "must not be empty",
  }]);
  const listed = normalizeOneApiYaml({
    models: {
      m: {
        upstreams: [{ api_base: "http://a/v1", api_key: "k" }, {
          api_base: "http://b/v1",
          api_key: "",
        }],
      },
    },
  }, context);
  assert.ok(!listed.ok);
  assert.deepEqual(listed.issues, [{
    path: ["models", "m", "upstreams", 1, "api_key"],
    message: "must not be empty",
  }]);
  assert.throws(
    () =>
      parseConfigText(
        'models:\n  m:\n    api_base: "http://a/v1"\n    api_key: "${OPENAI_KEY}"\n',
        "c.yaml",
        {
          env: () => "",
        },
      ),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message ===
        'Cannot load config "c.yaml": models.m.api_key (line 4): must not be empty ($OPENAI_KEY is set but empty)',
  );
});

Deno.test("normalizeOneApiYaml() maps Python log levels", () => {
  const level = (log_level: string) =>
    normalize({ models: { m: { api_base: "http://a", api_key: "k" } }, server: { log_level } })
      .log.level;
  assert.equal(level("DEBUG"), "debug");
  assert.equal(level("info"), "info");
  assert.equal(level("Warning"), "warn");
  assert.equal(level("CRITICAL"), "error");
});

Deno.test("normalizeOneApiYaml() leaves client keys unlimited unless rate_limit is enabled", () => {
  const base = {
    models: { m: { api_base: "http://a", api_key: "k" } },
    auth: { default_auth: { api_keys: ["c1", "c2", "c1"] } },
  };
  assert.deepEqual(normalize(base).clientKeys, [
    { key: "c1", name: "client-1" },
    { key: "c2", name: "client-2" },
  ]);
  const off = normalize({ ...base, rate_limit: { enabled: false, requests_per_minute: 5 } });
  assert.equal(off.clientKeys[0]?.rateLimitPerMinute, undefined);
  const noRpm = normalize({ ...base, rate_limit: { enabled: true } });
  assert.equal(noRpm.clientKeys[0]?.rateLimitPerMinute, 60);
});

Deno.test("normalizeOneApiYaml() accepts sections and fields it does not use", () => {
  const config = normalize({
    models: { m: { api_base: "http://a", api_key: "k", provider: "openai" } },
    server: { workers: 8, reload: true },
    plugins: ["x"],
    stats: { enabled: true },
    logging: { file: "x.log" },
  });
  assert.equal(config.upstreams.length, 1);
});

Deno.test("normalizeOneApiYaml() reports invalid models with their paths", () => {
  const result = normalizeOneApiYaml({
    models: {
      a: { api_base: "http://a" },
      b: { upstreams: [{ api_base: "nope", api_key: "k", weight: -1 }] },
      c: { upstreams: [], api_base: "http://c", api_key: "k" },
      d: {},
      e: { api_base: "http://e", api_key: "k", max_failures: 0, health_check_interval: 0 },
    },
    server: { log_level: "loud", port: "x" },
  }, context);
  assert.ok(!result.ok);
  assert.deepEqual(result.issues.map((i) => `${i.path.join("/")}: ${i.message}`), [
    "models/a/api_key: is required",
    "models/b/upstreams/0/api_base: must be an http or https URL",
    "models/b/upstreams/0/weight: must be >= 0",
    "models/c/upstreams: must list at least one upstream",
    'models/c/api_base: use either "upstreams" or "api_base", not both',
    'models/d: needs "upstreams" or "api_base"',
    "models/e/health_check_interval: must be > 0",
    "models/e/max_failures: must be an integer >= 1",
    "server/port: must be an integer from 0 to 65535",
    'server/log_level: must be one of "debug", "info", "warning", "error", "critical"',
  ]);
});

Deno.test("normalizeOneApiYaml() requires at least one model", () => {
  const result = normalizeOneApiYaml({ models: {} }, context);
  assert.ok(!result.ok);
  assert.deepEqual(result.issues, [{
    path: ["models"],
    message: "must define at least one model",
  }]);
});
