/** @module Tests for the shipped /config.yaml: it must load, and name its variable when unset. */

import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.ts";
import { loadConfig, parseConfigText } from "../../src/config/load.ts";

const SHIPPED = new URL("../../config.yaml", import.meta.url).pathname;

Deno.test("config.yaml loads with MODELSCOPE_KEYS set", async () => {
  const config = await loadConfig(SHIPPED, {
    env: (name) => name === "MODELSCOPE_KEYS" ? "a,b" : undefined,
  });
  assert.equal(config.format, "native");
  assert.equal(config.server.host, "127.0.0.1");
  assert.equal(config.server.port, 8080);
  assert.equal(config.adminKey, undefined);
  assert.deepEqual(config.clientKeys, []);
  assert.equal(config.upstreams.length, 1);
  const [modelscope] = config.upstreams;
  assert.equal(modelscope?.name, "modelscope");
  assert.equal(modelscope?.baseUrl, "https://api-inference.modelscope.cn/v1");
  assert.equal(modelscope?.pathMode, "v1");
  assert.deepEqual(modelscope?.keys, [{ key: "a" }, { key: "b" }]);
  assert.equal(modelscope?.healthCheck, undefined);
  assert.deepEqual(modelscope?.quota, {
    requestsPerDay: 2000,
    modelRequestsPerDay: 200,
    tokensPerDay: 0,
    requestsPerMinute: 0,
    tokensPerMinute: 0,
    maxConcurrency: 0,
    reset: { hour: 0, minute: 0 },
    timeZone: "Asia/Shanghai",
  });
  assert.deepEqual(config.pools, [{
    model: "*",
    strategy: "quota_aware",
    members: [{ upstream: "modelscope" }],
    affinityBy: ["prompt_cache_key", "user"],
    fallbacks: [],
  }]);
  assert.deepEqual(config.retry, {
    maxAttempts: 3,
    backoffBaseMs: 100,
    backoffMaxMs: 2_000,
    deadlineMs: 600_000,
  });
  assert.deepEqual(config.queue, { maxWaitMs: 30_000, maxLength: 1000 });
  assert.deepEqual(config.state, { kind: "file", path: undefined });
  assert.equal(config.health.quotaRestMs, 0);
});

Deno.test("config.yaml fails naming MODELSCOPE_KEYS when it is not set", async () => {
  const lines = (await Deno.readTextFile(SHIPPED)).split("\n");
  const keysLine = lines.findIndex((line) => line.trim() === "keys: ${MODELSCOPE_KEYS}") + 1;
  await assert.rejects(
    () => loadConfig(SHIPPED, { env: () => undefined }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(
        error.message,
        `Cannot load config "${SHIPPED}": upstreams.modelscope.keys (line ${keysLine}): ` +
          'environment variable "MODELSCOPE_KEYS" is not set',
      );
      assert.equal(error.issues[0]?.line, keysLine);
      return true;
    },
  );
});

/** Removes `# ` from the line whose trimmed text is `first`, and from the commented lines after it when `block`. */
function uncomment(lines: string[], first: string, block = false): void {
  const start = lines.findIndex((line) => line.trim() === first);
  assert.ok(start >= 0, `config.yaml has no line "${first}"`);
  const indent = lines[start]?.indexOf("#") ?? 0;
  const prefix = `${" ".repeat(indent)}#`;
  for (let i = start; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (!line.startsWith(prefix) || (i > start && !block)) break;
    lines[i] = line.slice(0, indent) + line.slice(indent + 2);
  }
}

Deno.test("config.yaml's commented-out examples load once uncommented", async () => {
  const lines = (await Deno.readTextFile(SHIPPED)).split("\n");
  for (
    const line of [
      "# allow_unauthenticated_remote: false",
      "# max_body_bytes: 52428800",
      "# drain_timeout: 10",
      "# watch_config: false",
      "# overhead_header: false",
      '# cors: { enabled: true, origins: ["https://app.example.com"] }',
      "# headers: { x-request-source: llm-balance }",
      "# force_headers: { openai-organization: org-team }",
      "# admin_hosts: [llm.internal]",
      "# tokens_per_day: 0",
      "# requests_per_minute: 0",
      "# tokens_per_minute: 0",
      "# max_concurrency: 0",
      "# max_length: 1000",
      "# state: memory",
      "# models: { gpt-4o: deepseek-ai/DeepSeek-V3.1 }",
      "# max_failures: 3",
    ]
  ) uncomment(lines, line);
  for (const line of ["# auth:", "# anthropic:", "# deepseek-ai/DeepSeek-V3.1:", "# usage:"]) {
    uncomment(lines, line, true);
  }
  uncomment(lines, "# health_check:", true);
  uncomment(lines, "# plugins:", true);
  const vars: Record<string, string> = {
    MODELSCOPE_KEYS: "a,b",
    ANTHROPIC_KEYS: "c",
    LLM_BALANCE_ADMIN_KEY: "admin",
    CLIENT_KEY_1: "client-1-key",
    CLIENT_KEY_2: "client-2-key",
  };
  const config = parseConfigText(lines.join("\n"), SHIPPED, { env: (name) => vars[name] });
  assert.deepEqual(config.upstreams.map((u) => u.name), ["modelscope", "anthropic"]);
  assert.equal(config.upstreams[1]?.auth, "x-api-key");
  assert.deepEqual(config.upstreams[1]?.models, { "gpt-4o": "claude-sonnet-4-5" });
  assert.deepEqual(
    config.pools.map((p) => p.model),
    ["deepseek-ai/DeepSeek-V3.1", "Qwen/Qwen3-32B", "*"],
  );
  assert.deepEqual(config.pools[0]?.fallbacks, ["Qwen/Qwen3-32B"]);
  assert.equal(config.upstreams[0]?.healthCheck?.path, "/models");
  assert.equal(config.upstreams[1]?.healthCheck?.validatesKey, true);
  assert.equal(config.upstreams[0]?.quota.maxConcurrency, 0);
  assert.deepEqual(config.state, { kind: "memory" });
  assert.equal(config.adminKey, "admin");
  assert.deepEqual(config.clientKeys.map((k) => k.name), ["client-1", "alice"]);
  assert.equal(config.server.cors.enabled, true);
  assert.equal(config.plugins.length, 1);
});
