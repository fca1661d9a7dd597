/** @module Tests for src/config/native.ts (through parseConfigText, so issues carry lines). */

import assert from "node:assert/strict";
import { resolve } from "node:path";
import { ConfigError } from "../../src/config/errors.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { normalizeNative } from "../../src/config/native.ts";
import { configParser } from "../helpers/config.ts";
import { NO_LIMITS } from "../helpers/quota.ts";

const FIXTURE = new URL("../fixtures/native_full.yaml", import.meta.url);
const vars: Record<string, string> = {
  ADMIN_KEY: "admin-secret",
  CLIENT_KEY_1: "client-one",
  CLIENT_KEY_2: "client-two",
  MODELSCOPE_KEYS: "ms-1, ms-2\nms-3,",
};
const env = (name: string) => vars[name];

const { parse, issuesOf } = configParser(env);

const MINIMAL = "upstreams:\n  ms:\n    base_url: https://api.example/v1\n";

Deno.test("normalizeNative() fills every default for a minimal file", () => {
  const config = parse(MINIMAL);
  assert.equal(config.format, "native");
  assert.deepEqual(config.server, {
    host: "127.0.0.1",
    port: 8080,
    allowUnauthenticatedRemote: false,
    cors: { enabled: false, origins: ["*"] },
    maxBodyBytes: 52_428_800,
    drainTimeoutMs: 10_000,
    watchConfig: false,
    overheadHeader: false,
    adminHosts: [],
  });
  assert.deepEqual(config.log, { level: "info", format: "auto" });
  assert.equal(config.adminKey, undefined);
  assert.deepEqual(config.clientKeys, []);
  assert.equal(config.clientKeysReadStats, false);
  assert.deepEqual(config.upstreams, [{
    name: "ms",
    baseUrl: "https://api.example/v1",
    pathMode: "v1",
    auth: "bearer",
    keys: [],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 1,
    priority: 0,
    timeouts: { connectMs: 10_000, firstByteMs: 120_000, idleMs: 120_000, totalMs: 600_000 },
    maxFailures: 3,
    quota: NO_LIMITS,
  }]);
  assert.deepEqual(config.pools, [{
    model: "*",
    strategy: "round_robin",
    members: [{ upstream: "ms" }],
    affinityBy: ["prompt_cache_key", "user"],
    fallbacks: [],
  }]);
  assert.deepEqual(config.retry, {
    maxAttempts: 3,
    backoffBaseMs: 100,
    backoffMaxMs: 2_000,
    deadlineMs: 600_000,
  });
  assert.deepEqual(config.health, {
    ejectionBaseMs: 30_000,
    ejectionMaxMs: 300_000,
    rateLimitRestMs: 60_000,
    quotaRestMs: 0,
    authRestMs: 600_000,
  });
  assert.deepEqual(config.usage, { injectStreamUsage: false });
  assert.deepEqual(config.queue, { maxWaitMs: 0, maxLength: 1000 });
  assert.deepEqual(config.state, { kind: "file", path: undefined });
  assert.deepEqual(config.plugins, []);
});

Deno.test("normalizeNative() reads every field of native_full.yaml", async () => {
  const source = FIXTURE.pathname;
  const config = parseConfigText(await Deno.readTextFile(FIXTURE), source, { env });
  assert.deepEqual(config.server, {
    host: "0.0.0.0",
    port: 9090,
    allowUnauthenticatedRemote: true,
    cors: { enabled: true, origins: ["https://app.example"] },
    maxBodyBytes: 1_048_576,
    drainTimeoutMs: 2_500,
    watchConfig: true,
    overheadHeader: true,
    adminHosts: ["llm.internal", "llm-balance"],
  });
  assert.deepEqual(config.log, { level: "debug", format: "json" });
  assert.equal(config.adminKey, "admin-secret");
  assert.deepEqual(config.clientKeys, [
    { key: "client-one", name: "client-1" },
    { key: "client-two", name: "alice", models: ["gpt-4o"], rateLimitPerMinute: 60 },
  ]);
  const [modelscope, claude, local] = config.upstreams;
  assert.deepEqual(modelscope, {
    name: "modelscope",
    baseUrl: "https://api-inference.modelscope.cn/v1",
    pathMode: "v1",
    auth: "bearer",
    keys: [{ key: "ms-1" }, { key: "ms-2" }, { key: "ms-3" }],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 2,
    priority: 0,
    timeouts: { connectMs: 10_000, firstByteMs: 30_000, idleMs: 30_000, totalMs: 30_000 },
    maxFailures: 5,
    healthCheck: { probe: "http", path: "/models", intervalMs: 30_000, timeoutMs: 5_000 },
    quota: { ...NO_LIMITS, timeZone: "Asia/Shanghai" },
  });
  assert.deepEqual(claude, {
    name: "claude",
    baseUrl: "https://api.anthropic.example/v1",
    pathMode: "v1",
    auth: "x-api-key",
    keys: [{ key: "sk-ant-1" }, { key: "sk-ant-2", name: "backup", weight: 0.5, priority: 1 }],
    headers: { "anthropic-version": "2023-06-01" },
    forceHeaders: {},
    models: { "gpt-4o": "claude-sonnet" },
    weight: 1,
    priority: 1,
    timeouts: { connectMs: 5_000, firstByteMs: 60_000, idleMs: 30_000, totalMs: 0 },
    maxFailures: 4,
    healthCheck: { probe: "http", path: "/models", intervalMs: 15_000, timeoutMs: 2_000 },
    quota: NO_LIMITS,
  });
  assert.deepEqual(local, {
    name: "local",
    baseUrl: "http://127.0.0.1:11434",
    pathMode: "full",
    auth: "api-key",
    keys: [{ key: "local-key" }],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 0,
    priority: 0,
    timeouts: { connectMs: 10_000, firstByteMs: 120_000, idleMs: 120_000, totalMs: 600_000 },
    maxFailures: 4,
    quota: NO_LIMITS,
  });
  assert.deepEqual(config.pools, [
    {
      model: "gpt-4o",
      strategy: "weighted",
      members: [{ upstream: "modelscope" }, { upstream: "claude", weight: 3, priority: 1 }],
      affinityBy: ["prompt_cache_key", "user"],
      fallbacks: [],
    },
    {
      model: "*",
      strategy: "round_robin",
      members: [{ upstream: "modelscope" }, { upstream: "local" }],
      affinityBy: ["prompt_cache_key", "user"],
      fallbacks: [],
    },
  ]);
  assert.deepEqual(config.retry, {
    maxAttempts: 5,
    backoffBaseMs: 250,
    backoffMaxMs: 4_000,
    deadlineMs: 0,
  });
  assert.deepEqual(config.health, {
    ejectionBaseMs: 10_000,
    ejectionMaxMs: 120_000,
    rateLimitRestMs: 30_000,
    quotaRestMs: 7_200_000,
    authRestMs: 300_000,
  });
  assert.deepEqual(config.usage, { injectStreamUsage: true });
  assert.deepEqual(config.plugins, [
    resolve(FIXTURE.pathname, "..", "plugins/examples/quota_aware.ts"),
    "/abs/plugin.ts",
    "npm:some-plugin",
  ]);
});

Deno.test("normalizeNative() refuses unknown fields and suggests the closest one", () => {
  const issues = issuesOf(`server:\n  prot: 1\n${MINIMAL}    wieght: 2\n    colour: red\n`);
  assert.deepEqual(issues, [
    { path: "server.prot", message: 'unknown field (did you mean "port"?)', line: 2 },
    { path: "upstreams.ms.wieght", message: 'unknown field (did you mean "weight"?)', line: 6 },
    { path: "upstreams.ms.colour", message: "unknown field", line: 7 },
  ]);
});

Deno.test("normalizeNative() collects every issue with readable messages", () => {
  const issues = issuesOf(`server:
  port: 70000
upstreams:
  ms:
    base_url: ftp://example
    weight: -1
    priority: 1.5
    max_failures: 0
    path_mode: v2
pools:
  gpt-4o:
    upstreams: [ms, nope]
retry:
  max_attempts: 11
`);
  assert.deepEqual(issues.map((i) => `${i.path}: ${i.message}`), [
    "server.port: must be an integer from 0 to 65535",
    "upstreams.ms.base_url: must be an http or https URL",
    "upstreams.ms.weight: must be >= 0",
    "upstreams.ms.priority: must be an integer >= 0",
    "upstreams.ms.max_failures: must be an integer >= 1",
    'upstreams.ms.path_mode: must be one of "v1", "full"',
    'pools.gpt-4o.upstreams[1]: unknown upstream "nope"',
    "retry.max_attempts: must be an integer from 1 to 10",
  ]);
});

Deno.test("normalizeNative() requires at least one upstream with a base_url", () => {
  assert.deepEqual(issuesOf("server:\n  port: 1\n"), [
    { path: "upstreams", message: "is required", line: 1 },
  ]);
  assert.deepEqual(issuesOf("upstreams: {}\n"), [
    { path: "upstreams", message: "must define at least one upstream", line: 1 },
  ]);
  assert.deepEqual(issuesOf("upstreams:\n  ms:\n    weight: 1\n"), [
    { path: "upstreams.ms.base_url", message: "is required", line: 2 },
  ]);
});

Deno.test("normalizeNative() refuses invalid upstream names", () => {
  const issues = issuesOf('upstreams:\n  "my server":\n    base_url: http://x\n');
  assert.equal(issues[0]?.path, "upstreams.my server");
  assert.match(issues[0]?.message ?? "", /may only contain letters, digits/);
});

Deno.test("normalizeNative() uses health.max_failures as the upstreams' default", () => {
  const config = parse(`${MINIMAL}health:\n  max_failures: 7\n`);
  assert.equal(config.upstreams[0]?.maxFailures, 7);
});

Deno.test("normalizeNative() reads cors as a boolean or a mapping", () => {
  assert.deepEqual(parse(`server:\n  cors: true\n${MINIMAL}`).server.cors, {
    enabled: true,
    origins: ["*"],
  });
  assert.deepEqual(parse(`server:\n  cors: { origins: [https://a] }\n${MINIMAL}`).server.cors, {
    enabled: true,
    origins: ["https://a"],
  });
  assert.deepEqual(parse(`server:\n  cors: false\n${MINIMAL}`).server.cors, {
    enabled: false,
    origins: ["*"],
  });
});

Deno.test("normalizeNative() reads admin_hosts as names, lowercased, without a trailing dot", () => {
  const hosts = (value: string) => parse(`server:\n  admin_hosts: ${value}\n${MINIMAL}`);
  assert.deepEqual(hosts("[LLM.Internal., prom_target]").server.adminHosts, [
    "llm.internal",
    "prom_target",
  ]);
  assert.deepEqual(hosts('"a.example, b"').server.adminHosts, ["a.example", "b"]);
  const issues = issuesOf(
    `server:\n  admin_hosts: [ok, "http://x", "x:8080", "a b", ""]\n${MINIMAL}`,
  );
  assert.deepEqual(issues.map((i) => `${i.path} (line ${i.line})`), [
    "server.admin_hosts[1] (line 2)",
    "server.admin_hosts[2] (line 2)",
    "server.admin_hosts[3] (line 2)",
    "server.admin_hosts[4] (line 2)",
  ]);
  assert.match(issues[0]?.message ?? "", /must be a host name without scheme or port/);
  assert.match(issuesOf(`server:\n  admin_hosts: 3\n${MINIMAL}`)[0]?.message ?? "", /host names/);
});

Deno.test("normalizeNative() reads numbers and booleans substituted from the environment", () => {
  vars.PORT = "9999";
  vars.WATCH = "true";
  const config = parse(`server:\n  port: \${PORT}\n  watch_config: \${WATCH}\n${MINIMAL}`);
  assert.equal(config.server.port, 9999);
  assert.equal(config.server.watchConfig, true);
  delete vars.PORT;
  delete vars.WATCH;
});

Deno.test("normalizeNative() treats an empty admin_key as no admin key", () => {
  assert.equal(parse(`auth:\n  admin_key: \${UNSET:-}\n${MINIMAL}`).adminKey, undefined);
});

Deno.test("normalizeNative() reads client_keys as one comma-separated string", () => {
  vars.CLIENTS = "c1,c2";
  const config = parse(`auth:\n  client_keys: \${CLIENTS}\n${MINIMAL}`);
  assert.deepEqual(config.clientKeys, [
    { key: "c1", name: "client-1" },
    { key: "c2", name: "client-2" },
  ]);
  delete vars.CLIENTS;
});

Deno.test("normalizeNative() refuses client_keys that are set but hold no key", () => {
  vars.CLIENTS = "";
  assert.deepEqual(issuesOf(`auth:\n  client_keys: \${CLIENTS}\n${MINIMAL}`), [{
    path: "auth.client_keys",
    message:
      "must list at least one client key, or be left out to serve every client ($CLIENTS is set but empty)",
    line: 2,
  }]);
  delete vars.CLIENTS;
  assert.deepEqual(issuesOf(`auth:\n  client_keys: [""]\n${MINIMAL}`).map((i) => i.path), [
    "auth.client_keys",
  ]);
  // an explicit [] says "no client keys" on purpose
  assert.deepEqual(parse(`auth:\n  client_keys: []\n${MINIMAL}`).clientKeys, []);
});

Deno.test("normalizeNative() refuses upstream keys that are set but hold none, naming the variable", () => {
  vars.EMPTY_KEYS = "";
  assert.deepEqual(
    issuesOf("upstreams:\n  ms:\n    base_url: http://a/v1\n    keys: ${EMPTY_KEYS}\n"),
    [{
      path: "upstreams.ms.keys",
      message:
        "must list at least one key, or be left out for an upstream that takes no key ($EMPTY_KEYS is set but empty)",
      line: 4,
    }],
  );
  delete vars.EMPTY_KEYS;
});

Deno.test("normalizeNative() refuses duplicate client keys and names", () => {
  const issues = issuesOf(
    `auth:\n  client_keys: [a, b, a, { key: c, name: client-2 }]\n${MINIMAL}`,
  );
  assert.deepEqual(issues.map((i) => `${i.path}: ${i.message}`), [
    "auth.client_keys[2]: duplicate client key (same as [0])",
    "auth.client_keys[3]: duplicate name (same as [1])",
  ]);
});

Deno.test("normalizeNative() maps the default pool name to *", () => {
  const text = `${MINIMAL}pools:\n  "*":\n    strategy: random\n    upstreams: [ms]\n`;
  assert.deepEqual(parse(text).pools, [
    {
      model: "*",
      strategy: "random",
      members: [{ upstream: "ms" }],
      affinityBy: ["prompt_cache_key", "user"],
      fallbacks: [],
    },
  ]);
  const both = issuesOf(
    `${MINIMAL}pools:\n  default: { upstreams: [ms] }\n  "*": { upstreams: [ms] }\n`,
  );
  assert.match(both[0]?.message ?? "", /either "default" or "\*"/);
});

Deno.test("normalizeNative() refuses empty and repeated pool members", () => {
  const issues = issuesOf(
    `${MINIMAL}pools:\n  a: { upstreams: [] }\n  b: { upstreams: [ms, ms] }\n`,
  );
  assert.deepEqual(issues.map((i) => `${i.path}: ${i.message}`), [
    "pools.a.upstreams: must list at least one upstream",
    "pools.b.upstreams[1]: duplicate upstream (same as [0])",
  ]);
});

Deno.test("normalizeNative() keeps upstreams in file order, integer-like names included", () => {
  const text = "upstreams:\n  b: { base_url: http://x }\n  '2': { base_url: http://x }\n" +
    "  '1': { base_url: http://x }\n";
  assert.deepEqual(parse(text).upstreams.map((u) => u.name), ["b", "2", "1"]);
  assert.deepEqual(parse(text).pools[0]?.members.map((m) => m.upstream), ["b", "2", "1"]);
});

Deno.test("normalizeNative() treats an empty section as absent", () => {
  const config = parse(`server:\nauth:\n${MINIMAL}`);
  assert.equal(config.server.port, 8080);
});

Deno.test("normalizeNative() works on a plain object without a key order", () => {
  const result = normalizeNative({ upstreams: { ms: { base_url: "http://x/" } } }, {
    source: "inline",
    baseDir: "/",
  });
  assert.ok(result.ok);
  assert.equal(result.value.upstreams[0]?.baseUrl, "http://x");
});

Deno.test("normalizeNative() reads a pool's affinity.by, header names lower-cased", () => {
  const text = `${MINIMAL}pools:\n  gpt-4o:\n    upstreams: [ms]\n    affinity:\n` +
    `      by: [prompt_cache_key, user, "header:X-Session-Id"]\n`;
  assert.deepEqual(parse(text).pools, [{
    model: "gpt-4o",
    strategy: "round_robin",
    members: [{ upstream: "ms" }],
    affinityBy: ["prompt_cache_key", "user", "header:x-session-id"],
    fallbacks: [],
    affinity: { ttlMs: 600_000, maxLoad: 1.25, prefixChars: 2048 },
  }]);
  const one = parse(`${MINIMAL}pools:\n  m: { upstreams: [ms], affinity: { by: [user] } }\n`);
  assert.deepEqual(one.pools[0]?.affinityBy, ["user"]);
});

Deno.test("normalizeNative() defaults a pool's affinity to prompt_cache_key, then user", () => {
  const pools = parse(
    `${MINIMAL}pools:\n  a: { upstreams: [ms] }\n  b: { upstreams: [ms], affinity: {} }\n`,
  ).pools;
  assert.deepEqual(pools.map((p) => p.affinityBy), [
    ["prompt_cache_key", "user"],
    ["prompt_cache_key", "user"],
  ]);
  // each pool has a list of its own
  assert.notEqual(pools[0]?.affinityBy, pools[1]?.affinityBy);
});

Deno.test("normalizeNative() refuses an unknown affinity source, naming its path", () => {
  const issues = issuesOf(
    `${MINIMAL}pools:\n  gpt-4o:\n    upstreams: [ms]\n    affinity:\n` +
      `      by: [user, "cookie:x", "header:", "header:a b", 7]\n`,
  );
  assert.deepEqual(issues.map((i) => i.path), [
    "pools.gpt-4o.affinity.by[1]",
    "pools.gpt-4o.affinity.by[2]",
    "pools.gpt-4o.affinity.by[3]",
    "pools.gpt-4o.affinity.by[4]",
  ]);
  assert.equal(
    issues[0]?.message,
    'must be "prompt_cache_key", "user", "prefix" or "header:<name>"',
  );
  assert.equal(issues[0]?.line, 8);
  const error = (() => {
    try {
      parse(`${MINIMAL}pools:\n  m: { upstreams: [ms], affinity: { by: ["cookie:x"] } }\n`);
    } catch (e) {
      return e;
    }
  })();
  assert.ok(error instanceof ConfigError);
  assert.match(error.message, /pools\.m\.affinity\.by\[0\]/);
});

Deno.test("normalizeNative() refuses an empty affinity.by", () => {
  assert.deepEqual(
    issuesOf(`${MINIMAL}pools:\n  gpt-4o: { upstreams: [ms], affinity: { by: [] } }\n`).map((i) =>
      `${i.path}: ${i.message}`
    ),
    ["pools.gpt-4o.affinity.by: must list at least one source"],
  );
});

Deno.test("normalizeNative() refuses an unknown field inside a pool's affinity", () => {
  const issues = issuesOf(
    `${MINIMAL}pools:\n  gpt-4o:\n    upstreams: [ms]\n    affinity:\n      by: [user]\n` +
      `      ttls: 60\n`,
  );
  assert.deepEqual(issues.map((i) => i.path), ["pools.gpt-4o.affinity.ttls"]);
  assert.match(issues[0]?.message ?? "", /unknown field/);
  assert.deepEqual(
    issuesOf(`${MINIMAL}pools:\n  m: { upstreams: [ms], affinity: { bye: [user] } }\n`),
    [{
      path: "pools.m.affinity.bye",
      message: 'unknown field (did you mean "by"?)',
      line: 5,
    }],
  );
});

Deno.test("normalizeNative() reads an upstream's quota and each key's own", () => {
  const config = parse(`upstreams:
  ms:
    base_url: https://api.example/v1
    keys:
      - plain
      - key: big
        quota: { requests_per_day: 5000, time_zone: Europe/Berlin }
    quota:
      requests_per_day: 2000
      model_requests_per_day: 500
      tokens_per_day: 1000000
      requests_per_minute: 60
      tokens_per_minute: 90000
      max_concurrency: 4
      reset: 08:30
      time_zone: Asia/Shanghai
`);
  const [u] = config.upstreams;
  assert.deepEqual(u?.quota, {
    requestsPerDay: 2000,
    modelRequestsPerDay: 500,
    tokensPerDay: 1_000_000,
    requestsPerMinute: 60,
    tokensPerMinute: 90_000,
    maxConcurrency: 4,
    reset: { hour: 8, minute: 30 },
    timeZone: "Asia/Shanghai",
  });
  // a key holds only the fields it sets; the runtime lays them over the upstream's
  assert.deepEqual(u?.keys, [
    { key: "plain" },
    { key: "big", quota: { requestsPerDay: 5000, timeZone: "Europe/Berlin" } },
  ]);
  assert.deepEqual({ ...u?.quota, ...u?.keys[1]?.quota }, {
    requestsPerDay: 5000,
    modelRequestsPerDay: 500,
    tokensPerDay: 1_000_000,
    requestsPerMinute: 60,
    tokensPerMinute: 90_000,
    maxConcurrency: 4,
    reset: { hour: 8, minute: 30 },
    timeZone: "Europe/Berlin",
  });
});

Deno.test("normalizeNative() resets ModelScope keys at midnight Beijing time by default", () => {
  const config = parse(
    "upstreams:\n  ms:\n    base_url: https://api-inference.modelscope.cn/v1\n" +
      "  other:\n    base_url: https://api.example/v1\n",
  );
  assert.deepEqual(config.upstreams.map((u) => u.quota), [
    { ...NO_LIMITS, timeZone: "Asia/Shanghai" },
    NO_LIMITS,
  ]);
  const utc = parse(
    "upstreams:\n  ms:\n    base_url: https://api-inference.modelscope.cn/v1\n" +
      "    quota: { time_zone: UTC }\n",
  );
  assert.equal(utc.upstreams[0]?.quota.timeZone, "UTC");
});

Deno.test("normalizeNative() refuses a bad reset, time zone or limit, naming its path and line", () => {
  const issues = issuesOf(`upstreams:
  ms:
    base_url: https://api.example/v1
    quota:
      reset: "24:00"
      time_zone: Mars/Olympus
      requests_per_day: -1
      max_concurrency: -2
    keys:
      - key: a
        quota: { reset: "7:5" }
      - key: b
        quota: { reset: noon, tokens_per_minute: -5, time_zone: Nowhere }
`);
  const reset = 'must be a local time "HH:MM", e.g. "00:00"';
  const integer = "must be an integer >= 0";
  assert.deepEqual(issues, [
    { path: "upstreams.ms.quota.reset", message: reset, line: 5 },
    {
      path: "upstreams.ms.quota.time_zone",
      message: 'unknown time zone "Mars/Olympus" (an IANA name, e.g. Asia/Shanghai)',
      line: 6,
    },
    { path: "upstreams.ms.quota.requests_per_day", message: integer, line: 7 },
    { path: "upstreams.ms.quota.max_concurrency", message: integer, line: 8 },
    { path: "upstreams.ms.keys[0].quota.reset", message: reset, line: 11 },
    { path: "upstreams.ms.keys[1].quota.tokens_per_minute", message: integer, line: 13 },
    { path: "upstreams.ms.keys[1].quota.reset", message: reset, line: 13 },
    {
      path: "upstreams.ms.keys[1].quota.time_zone",
      message: 'unknown time zone "Nowhere" (an IANA name, e.g. Asia/Shanghai)',
      line: 13,
    },
  ]);
});

Deno.test("normalizeNative() reads queue.max_wait in seconds and queue.max_length", () => {
  assert.deepEqual(parse(`${MINIMAL}queue:\n  max_wait: 2.5\n  max_length: 10\n`).queue, {
    maxWaitMs: 2_500,
    maxLength: 10,
  });
  assert.deepEqual(parse(`${MINIMAL}queue: { max_wait: 30 }\n`).queue, {
    maxWaitMs: 30_000,
    maxLength: 1000,
  });
  assert.deepEqual(parse(`${MINIMAL}queue:\n`).queue, { maxWaitMs: 0, maxLength: 1000 });
  assert.deepEqual(
    issuesOf(`${MINIMAL}queue: { max_wait: -1, max_length: 0, max_lenght: 5 }\n`),
    [
      { path: "queue.max_wait", message: "must be >= 0", line: 4 },
      { path: "queue.max_length", message: "must be an integer >= 1", line: 4 },
      { path: "queue.max_lenght", message: 'unknown field (did you mean "max_length"?)', line: 4 },
    ],
  );
});

Deno.test("normalizeNative() reads state as memory or a file resolved against the config's folder", () => {
  assert.deepEqual(parse(`${MINIMAL}state: memory\n`).state, { kind: "memory" });
  assert.deepEqual(parse(`${MINIMAL}state: { path: state/keys.db }\n`).state, {
    kind: "file",
    path: "/etc/llm-balance/state/keys.db",
  });
  assert.deepEqual(parse(`${MINIMAL}state:\n  path: ../keys.db\n`).state, {
    kind: "file",
    path: "/etc/keys.db",
  });
  assert.deepEqual(parse(`${MINIMAL}state: { path: /var/lib/llm-balance/keys.db }\n`).state, {
    kind: "file",
    path: "/var/lib/llm-balance/keys.db",
  });
  // a mapping without a path: the platform's place
  assert.deepEqual(parse(`${MINIMAL}state: {}\n`).state, { kind: "file", path: undefined });
});

Deno.test("normalizeNative() refuses a state that is neither memory nor a mapping with a path", () => {
  for (const value of ["disk", "5", "[memory]"]) {
    const issues = issuesOf(`${MINIMAL}state: ${value}\n`);
    assert.deepEqual(issues.map((i) => `${i.path} (line ${i.line})`), ["state (line 4)"], value);
    assert.match(issues[0]?.message ?? "", /"memory"/, value);
  }
  assert.deepEqual(issuesOf(`${MINIMAL}state: { path: "" }\n`), [
    { path: "state.path", message: "must not be empty", line: 4 },
  ]);
  assert.deepEqual(issuesOf(`${MINIMAL}state: { file: a.db }\n`).map((i) => i.path), [
    "state.file",
  ]);
});

Deno.test("normalizeNative() reads a pool's fallbacks in order", () => {
  const config = parse(`${MINIMAL}pools:
  gpt-4o: { upstreams: [ms], fallbacks: [gpt-4o-mini, qwen] }
  gpt-4o-mini: { upstreams: [ms], fallbacks: [qwen] }
  qwen: { upstreams: [ms] }
  default: { upstreams: [ms], fallbacks: [qwen] }
`);
  assert.deepEqual(config.pools.map((p) => [p.model, p.fallbacks]), [
    ["gpt-4o", ["gpt-4o-mini", "qwen"]],
    ["gpt-4o-mini", ["qwen"]],
    ["qwen", []],
    ["*", ["qwen"]],
  ]);
});

Deno.test("normalizeNative() refuses a fallback to an unknown pool, the default one or itself", () => {
  const issues = issuesOf(`${MINIMAL}pools:
  a: { upstreams: [ms], fallbacks: [b, nope, default] }
  b: { upstreams: [ms], fallbacks: [b, a] }
  "*": { upstreams: [ms], fallbacks: ["*"] }
`);
  assert.deepEqual(issues, [
    {
      path: "pools.a.fallbacks[1]",
      message: `no pool is named "nope" (a fallback names another model's pool)`,
      line: 5,
    },
    {
      path: "pools.a.fallbacks[2]",
      message: `no pool is named "default" (a fallback names another model's pool)`,
      line: 5,
    },
    { path: "pools.b.fallbacks[0]", message: "a pool cannot fall back to itself", line: 6 },
    { path: "pools.*.fallbacks[0]", message: "a pool cannot fall back to itself", line: 7 },
  ]);
  assert.deepEqual(
    issuesOf(`${MINIMAL}pools:\n  a: { upstreams: [ms], fallbacks: [ms] }\n`).map((i) => i.path),
    ["pools.a.fallbacks[0]"],
  );
  assert.deepEqual(issuesOf(`${MINIMAL}pools:\n  a: { upstreams: [ms], fallbacks: b }\n`), [
    { path: "pools.a.fallbacks", message: "must be a list", line: 5 },
  ]);
});

Deno.test("normalizeNative() reads a pool's affinity routing, slow start and strategy options", () => {
  const text = `${MINIMAL}pools:\n  m:\n    upstreams: [ms]\n    strategy: p2c\n` +
    `    strategy_options: { decay: 3 }\n    slow_start: 2.5\n` +
    `    affinity: { by: [prefix, user], ttl: 30, max_load: 1.5, prefix_chars: 512 }\n`;
  const [pool] = parse(text).pools;
  assert.deepEqual(pool?.affinity, { ttlMs: 30_000, maxLoad: 1.5, prefixChars: 512 });
  assert.deepEqual(pool?.affinityBy, ["prefix", "user"]);
  assert.equal(pool?.slowStartMs, 2_500);
  assert.deepEqual(pool?.strategyOptions, { decay: 3 });
  // pin: false keeps the key for strategies but routes nothing by it; no block, no routing
  const off = parse(
    `${MINIMAL}pools:\n  a: { upstreams: [ms], affinity: { by: [user], pin: false } }\n` +
      `  b: { upstreams: [ms], slow_start: 0 }\n`,
  ).pools;
  assert.equal(off[0]?.affinity, undefined);
  assert.deepEqual(off[0]?.affinityBy, ["user"]);
  assert.equal(off[1]?.affinity, undefined);
  assert.equal(off[1]?.slowStartMs, undefined);
  assert.equal(off[1]?.strategyOptions, undefined);
});

Deno.test("normalizeNative() refuses bad affinity, slow start and strategy options, naming each", () => {
  const issues = issuesOf(
    `${MINIMAL}pools:\n  m:\n    upstreams: [ms]\n` +
      `    affinity: { ttl: 0, max_load: 0.5, prefix_chars: 4, pin: maybe }\n` +
      `    slow_start: -1\n    strategy_options: [decay]\n`,
  );
  assert.deepEqual(issues.map((i) => `${i.path}: ${i.message}`).sort(), [
    "pools.m.affinity.max_load: must be >= 1",
    "pools.m.affinity.pin: must be true or false",
    "pools.m.affinity.prefix_chars: must be an integer from 16 to 1048576",
    "pools.m.affinity.ttl: must be a number of seconds from 1 to 604800",
    "pools.m.slow_start: must be a number of seconds from 0 to 3600",
    "pools.m.strategy_options: must be a mapping of the strategy's options",
  ]);
});

Deno.test("normalizeNative() refuses a ttl that would round to no time, and an endless slow start", () => {
  const issues = issuesOf(
    `${MINIMAL}pools:\n  m:\n    upstreams: [ms]\n    affinity: { ttl: 0.0001 }\n` +
      `    slow_start: 1e308\n`,
  );
  assert.deepEqual(issues.map((i) => i.path).sort(), [
    "pools.m.affinity.ttl",
    "pools.m.slow_start",
  ]);
});

Deno.test("normalizeNative() reads affinity.ttl and slow_start as numbers the way every field does", () => {
  const [pool] = parse(
    `${MINIMAL}pools:\n  m: { upstreams: [ms], affinity: { ttl: "30" }, slow_start: " 2.5 " }\n`,
  ).pools;
  assert.equal(pool?.affinity?.ttlMs, 30_000);
  assert.equal(pool?.slowStartMs, 2_500);
  const issues = issuesOf(
    `${MINIMAL}pools:\n  m: { upstreams: [ms], affinity: { ttl: "0x10" }, slow_start: "1e3" }\n`,
  );
  assert.deepEqual(issues.map((i) => i.path).sort(), [
    "pools.m.affinity.ttl",
    "pools.m.slow_start",
  ]);
});
