/**
 * @module
 * Tests of `check`: config verification beyond the schema (plugins, strategies, probes, a
 * non-loopback address without client keys), field lines, and the summary.
 */

import { builtins } from "../../plugins/mod.ts";
import assert from "node:assert/strict";
import { App } from "../../src/app.ts";
import { ConfigError, parseConfigText } from "../../src/config/mod.ts";
import {
  formatSummary,
  lineOf,
  summarize,
  unknownStrategies,
  verifyConfig,
} from "../../src/commands/check.ts";

const EXAMPLE = new URL("../../plugins/examples/quota_aware.ts", import.meta.url).pathname;

function load(text: string, source = "test.yaml") {
  const config = parseConfigText(text, source, { env: () => undefined });
  return { config, read: () => Promise.resolve(text) };
}

async function issuesOf(text: string, bindHost?: string) {
  const { config, read } = load(text);
  const options = bindHost === undefined
    ? { readTextFile: read }
    : { readTextFile: read, bindHost };
  try {
    await verifyConfig(config, options);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues;
  }
  return [];
}

const UPSTREAM = `upstreams:
  ms: { base_url: http://127.0.0.1:9/v1, keys: [sk-check-aaaa-0001, sk-check-bbbb-0002] }
`;

Deno.test("verifyConfig() accepts a valid config and loads its plugins", async () => {
  const { config } = load(
    `${UPSTREAM}pools:\n  default: { strategy: daily_quota, upstreams: [ms] }\nplugins: [${EXAMPLE}]\n`,
  );
  const verified = await verifyConfig(config);
  assert.equal(verified.registry.strategy("daily_quota")?.name, "daily_quota");
  assert.deepEqual(verified.plugins, [{ path: EXAMPLE, names: ["strategy:daily_quota"] }]);
});

Deno.test("verifyConfig() reports an unknown strategy at its field and line", async () => {
  const issues = await issuesOf(
    `${UPSTREAM}pools:\n  gpt-4o:\n    strategy: fastest\n    upstreams: [ms]\n`,
  );
  assert.equal(issues.length, 1);
  assert.equal(issues[0]!.path, "pools.gpt-4o.strategy");
  assert.equal(issues[0]!.line, 5);
  assert.match(
    issues[0]!.message,
    /^unknown strategy "fastest" \(known: least_connections, p2c, quota_aware, random, round_robin, weighted\)$/,
  );
});

Deno.test("verifyConfig() finds the default pool written as default or *", async () => {
  for (const key of ["default", '"*"']) {
    const issues = await issuesOf(
      `${UPSTREAM}pools:\n  ${key}:\n    strategy: fastest\n    upstreams: [ms]\n`,
    );
    assert.equal(issues[0]!.line, 5, key);
  }
});

Deno.test("verifyConfig() reports Seed B strategies at load_balance_strategy", async () => {
  const issues = await issuesOf(
    `models:\n  gpt-4:\n    api_base: http://127.0.0.1:9/v1\n    api_key: sk-x\n    load_balance_strategy: fastest\n`,
  );
  assert.deepEqual(issues.map((i) => [i.path, i.line]), [[
    "models.gpt-4.load_balance_strategy",
    5,
  ]]);
});

Deno.test("verifyConfig() reports an unknown probe", async () => {
  const issues = await issuesOf(`upstreams:
  ms:
    base_url: http://127.0.0.1:9/v1
    health_check: { probe: ping }
`);
  assert.deepEqual(issues.map((i) => [i.path, i.line]), [["upstreams.ms.health_check.probe", 4]]);
  assert.match(issues[0]!.message, /unknown probe "ping" \(known: http\)/);
});

Deno.test("verifyConfig() reports every plugin that cannot be loaded, and keeps going", async () => {
  const issues = await issuesOf(
    `${UPSTREAM}plugins:\n  - /nonexistent/a.ts\n  - ${EXAMPLE}\n  - ${EXAMPLE}\n`,
  );
  assert.deepEqual(issues.map((i) => [i.path, i.line]), [["plugins[0]", 4], ["plugins[2]", 6]]);
  assert.match(issues[0]!.message, /^cannot load plugin "\/nonexistent\/a\.ts": Module not found/);
  assert.match(issues[1]!.message, /strategy "daily_quota" is already registered/);
});

Deno.test("verifyConfig() refuses a non-loopback address without client keys", async () => {
  const open = `server: { host: 0.0.0.0 }\n${UPSTREAM}`;
  const issues = await issuesOf(open);
  assert.deepEqual(issues.map((i) => [i.path, i.line]), [["server.host", 1]]);
  assert.match(issues[0]!.message, /listening on "0\.0\.0\.0" needs client keys/);
  assert.deepEqual(await issuesOf(`${open}auth: { client_keys: [c-1] }\n`), []);
  assert.deepEqual(
    await issuesOf(`server: { host: 0.0.0.0, allow_unauthenticated_remote: true }\n${UPSTREAM}`),
    [],
  );
  // what counts is the address actually listened on (a reload cannot move it)
  assert.equal((await issuesOf(UPSTREAM, "0.0.0.0")).length, 1);
  assert.deepEqual(await issuesOf(open, "127.0.0.1"), []);
});

Deno.test("lineOf() finds mapping keys and list items in YAML and JSON", () => {
  const yaml = "a:\n  b:\n    - x\n    - y\n  c: 1\n";
  assert.equal(lineOf(yaml, ["a", "b", 1]), 4);
  assert.equal(lineOf(yaml, ["a", "c"]), 5);
  assert.equal(lineOf(yaml, ["a", "d"]), undefined);
  assert.equal(lineOf(yaml, ["a", "c", "e"]), undefined);
  assert.equal(lineOf('{\n  "api_keys": [\n    "k"\n  ]\n}', ["api_keys", 0]), 3);
});

Deno.test("summarize() says whether an upstream's health check validates keys", async () => {
  const { config } = load(`upstreams:
  ms: { base_url: "http://127.0.0.1:9/v1", keys: [k-1], health_check: true }
  oa:
    base_url: "http://127.0.0.1:9/v1"
    keys: [k-2]
    health_check: { interval: 10, validates_key: true }
`);
  const verified = await verifyConfig(config);
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
  });
  try {
    assert.deepEqual(summarize(app, verified).upstreams.map((u) => u.health_check), [
      "http /models every 30s",
      "http /models every 10s, validates keys",
    ]);
  } finally {
    await app.close();
  }
});

Deno.test("summarize() and formatSummary() describe pools, upstreams and masked keys", async () => {
  const { config } = load(`${UPSTREAM}pools:\n  gpt-4o: { strategy: weighted, upstreams: [ms] }\n`);
  const verified = await verifyConfig(config);
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
  });
  try {
    const s = summarize(app, verified);
    assert.equal(s.valid, true);
    assert.equal(s.listen, "http://127.0.0.1:8080");
    assert.deepEqual(s.pools.map((p) => [p.model, p.strategy, p.keys.length]), [[
      "gpt-4o",
      "weighted",
      2,
    ]]);
    assert.equal(s.upstreams[0]!.health_check, null);
    const text = formatSummary(s);
    assert.match(
      text,
      /^test\.yaml: valid \(native format\), would listen on http:\/\/127\.0\.0\.1:8080/,
    );
    assert.match(text, /pool "gpt-4o": weighted over 2 key\(s\)/);
    assert.ok(
      !text.includes("sk-check-aaaa-0001") && !JSON.stringify(s).includes("sk-check-aaaa-0001"),
    );
  } finally {
    await app.close();
  }
});

Deno.test("unknownStrategies() finds strategies no built-in provides, with their lines", () => {
  const native = [
    "upstreams:",
    "  a: { base_url: http://127.0.0.1:9/v1, keys: [k] }",
    "pools:",
    "  default:",
    "    strategy: fastest",
    "    upstreams: [a]",
  ].join("\n");
  const found = unknownStrategies(native);
  assert.equal(found.length, 1);
  assert.equal(found[0]!.path, "pools.default.strategy");
  assert.equal(found[0]!.line, 5);
  assert.match(found[0]!.message, /unknown strategy "fastest"/);
  assert.deepEqual(unknownStrategies(native + "\nplugins: [./x.ts]\n"), []);
  const seedB =
    "models:\n  m:\n    api_base: http://x/v1\n    api_key: k\n    load_balance_strategy: nope\n";
  assert.equal(unknownStrategies(seedB)[0]?.path, "models.m.load_balance_strategy");
});

Deno.test("verifyConfig() reports strategy_options a strategy refuses, at their field and line", async () => {
  const issues = await issuesOf(
    `${UPSTREAM}pools:\n  a:\n    strategy: round_robin\n    upstreams: [ms]\n` +
      `    strategy_options: { decay: 1 }\n  b:\n    strategy: p2c\n    upstreams: [ms]\n` +
      `    strategy_options: { decay: -1 }\n  c:\n    strategy: p2c\n    upstreams: [ms]\n` +
      `    strategy_options: { decay: 2, tau: 1 }\n  d: { strategy: p2c, upstreams: [ms], ` +
      `strategy_options: { decay: 0.5 } }\n`,
  );
  assert.deepEqual(issues.map((i) => [i.path, i.line, i.message]), [
    ["pools.a.strategy_options", 7, '"decay": strategy "round_robin" takes no options'],
    [
      "pools.b.strategy_options",
      11,
      'strategy "p2c" refuses its options: strategy_options.decay must be a number of ' +
      "seconds from 0.01 to 86400 (got -1)",
    ],
    ["pools.c.strategy_options", 15, '"tau": strategy "p2c" takes only decay'],
  ]);
});

Deno.test("formatSummary() tells a pool's affinity and slow start", async () => {
  const { config } = load(
    `${UPSTREAM}pools:\n  m: { upstreams: [ms], affinity: { by: [user], ttl: 60 }, slow_start: 5 }\n`,
  );
  const verified = await verifyConfig(config);
  const app = await App.create(config, { plugins: [...builtins], probes: false });
  try {
    const s = summarize(app, verified);
    assert.equal(s.pools[0]?.affinity, "by user; ttl 60 s; max_load 1.25");
    assert.equal(s.pools[0]?.slow_start, 5);
    assert.match(
      formatSummary(s),
      /pool "m": round_robin over 2 key\(s\), affinity by user; ttl 60 s; max_load 1\.25, slow start 5 s/,
    );
  } finally {
    await app.close();
  }
});
