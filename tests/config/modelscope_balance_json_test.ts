/** @module Tests for src/config/modelscope_balance_json.ts. */

import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.ts";
import { loadConfig, parseConfigText } from "../../src/config/load.ts";
import { normalizeModelscopeBalanceJson } from "../../src/config/modelscope_balance_json.ts";
import type { Config } from "../../src/config/types.ts";
import { NO_LIMITS } from "../helpers/quota.ts";

const FIXTURE = new URL("../fixtures/seed_a.json", import.meta.url).pathname;
const context = { source: "config.json", baseDir: "/" };

function normalize(tree: unknown): Config {
  const result = normalizeModelscopeBalanceJson(tree, context);
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return result.value;
}

Deno.test("normalizeModelscopeBalanceJson() turns SEEDS.md's example into one upstream of three keys", async () => {
  const config = await loadConfig(FIXTURE, { env: () => undefined });
  assert.equal(config.format, "seed-a");
  assert.equal(config.source, FIXTURE);
  assert.equal(config.server.host, "127.0.0.1");
  assert.equal(config.server.port, 8080);
  assert.deepEqual(config.upstreams, [{
    name: "api-inference.modelscope.cn",
    baseUrl: "https://api-inference.modelscope.cn",
    pathMode: "full",
    auth: "bearer",
    keys: [{ key: "key-1" }, { key: "key-2" }, { key: "key-3" }],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 1,
    priority: 0,
    timeouts: { connectMs: 10_000, firstByteMs: 120_000, idleMs: 120_000, totalMs: 600_000 },
    maxFailures: 3,
    healthCheck: { probe: "http", path: "/v1/models", intervalMs: 30_000, timeoutMs: 5_000 },
    // ModelScope's daily counters reset at midnight Beijing time
    quota: { ...NO_LIMITS, timeZone: "Asia/Shanghai" },
  }]);
  assert.deepEqual(config.pools, [{
    model: "*",
    strategy: "round_robin",
    members: [{ upstream: "api-inference.modelscope.cn" }],
    affinityBy: ["prompt_cache_key", "user"],
    fallbacks: [],
  }]);
  assert.deepEqual(config.clientKeys, []);
  assert.equal(config.clientKeysReadStats, false);
});

Deno.test("normalizeModelscopeBalanceJson() applies Seed A's defaults", () => {
  const config = normalize({});
  assert.equal(config.server.port, 8080);
  const [upstream] = config.upstreams;
  assert.equal(upstream?.baseUrl, "https://api-inference.modelscope.cn");
  assert.deepEqual(upstream?.keys, []);
  assert.equal(upstream?.healthCheck?.path, "/v1/models");
});

Deno.test("normalizeModelscopeBalanceJson() accepts server_port as a string or a number", () => {
  assert.equal(normalize({ server_port: "9090" }).server.port, 9090);
  assert.equal(normalize({ server_port: 9091 }).server.port, 9091);
});

Deno.test("normalizeModelscopeBalanceJson() drops the trailing slash and names the upstream after the host", () => {
  const config = normalize({ target_url: "http://127.0.0.1:9000/" });
  assert.equal(config.upstreams[0]?.baseUrl, "http://127.0.0.1:9000");
  assert.equal(config.upstreams[0]?.name, "127.0.0.1");
  assert.equal(normalize({ target_url: "http://[::1]:9000" }).upstreams[0]?.name, "target");
});

Deno.test("normalizeModelscopeBalanceJson() disables health checks and fixes a path without /", () => {
  assert.equal(normalize({ health_check: false }).upstreams[0]?.healthCheck, undefined);
  assert.equal(normalize({ health_path: "health" }).upstreams[0]?.healthCheck?.path, "/health");
});

Deno.test("normalizeModelscopeBalanceJson() ignores unknown fields and repeated keys", () => {
  const config = normalize({ api_keys: ["a", "b", "a", ""], log_file: "x.log", workers: 4 });
  assert.deepEqual(config.upstreams[0]?.keys, [{ key: "a" }, { key: "b" }]);
});

Deno.test("normalizeModelscopeBalanceJson() reports wrong types with their paths", () => {
  const result = normalizeModelscopeBalanceJson({
    api_keys: ["a", 2],
    server_port: "eighty",
    target_url: "ftp://x",
    health_check: "yes",
  }, context);
  assert.ok(!result.ok);
  assert.deepEqual(result.issues, [
    { path: ["api_keys", 1], message: "must be a string" },
    { path: ["server_port"], message: "must be an integer from 0 to 65535" },
    { path: ["target_url"], message: "must be an http or https URL" },
    { path: ["health_check"], message: "must be true or false" },
  ]);
  // a string is a comma-separated list; anything else that is not a list is an error
  const notList = normalizeModelscopeBalanceJson({ api_keys: 42 }, context);
  assert.ok(!notList.ok);
});

Deno.test("normalizeModelscopeBalanceJson() substitutes ${VAR} through parseConfigText", () => {
  const text = '{"api_keys": ["${K1}", "${K2:-fallback}"], "server_port": "${PORT:-8081}"}';
  const config = parseConfigText(text, "config.json", {
    env: (name) => name === "K1" ? "from-env" : undefined,
  });
  assert.deepEqual(config.upstreams[0]?.keys, [{ key: "from-env" }, { key: "fallback" }]);
  assert.equal(config.server.port, 8081);
  assert.throws(
    () => parseConfigText('{"api_keys": ["${K1}"]}', "config.json", { env: () => undefined }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message ===
        'Cannot load config "config.json": api_keys[0] (line 1): environment variable "K1" is not set',
  );
});

Deno.test("normalizeModelscopeBalanceJson() accepts api_keys as one comma-separated string from the environment", () => {
  const config = parseConfigText('{"api_keys": "${MS_KEYS}"}', "config.json", {
    env: (name) => name === "MS_KEYS" ? "key-one, key-two,key-three" : undefined,
  });
  assert.deepEqual(config.upstreams[0]?.keys.map((k) => k.key), [
    "key-one",
    "key-two",
    "key-three",
  ]);
});

Deno.test("normalizeModelscopeBalanceJson() refuses api_keys that are set but hold no key", () => {
  // an explicit [] is Seed A's documented default: no keys
  assert.deepEqual(normalize({ api_keys: [] }).upstreams[0]?.keys, []);
  for (const api_keys of [[""], [" ", ""], "", " , "]) {
    const result = normalizeModelscopeBalanceJson({ api_keys }, context);
    assert.ok(!result.ok, JSON.stringify(api_keys));
    assert.deepEqual(result.issues, [{
      path: ["api_keys"],
      message: "must list at least one key",
    }]);
  }
  assert.throws(
    () => parseConfigText('{"api_keys": "${MS_KEYS}"}', "config.json", { env: () => "" }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message ===
        'Cannot load config "config.json": api_keys (line 1): must list at least one key ($MS_KEYS is set but empty)',
  );
});
