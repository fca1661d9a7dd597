/**
 * @module Tests for src/config/json_schema.ts: a valid draft-07 schema that takes what the loader
 * takes (the shipped config, the fixtures, the README's examples) and flags typical mistakes.
 */

import assert from "node:assert/strict";
import { Ajv } from "ajv";
import { parse as parseYaml } from "yaml";
import { configJsonSchema, type JsonSchema, SCHEMA_ID } from "../../src/config/json_schema.ts";
import { configParser } from "../helpers/config.ts";

const schema = configJsonSchema({ strategies: ["round_robin", "p2c"], probes: ["http"] });
const validate = new Ajv({ strict: true, allowUnionTypes: true, allErrors: true }).compile(schema);

const vars: Record<string, string> = {
  PORT: "9090",
  WATCH: "true",
  LEVEL: "debug",
  BASE_URL: "https://api.example/v1",
  KEYS: "k1,k2",
  REDIS_URL: "redis://localhost:6379/0",
};
const { parse } = configParser((name) => vars[name]);

/** The schema's problems with a YAML text (before `${VAR}` substitution), as ajv words them. */
function schemaErrors(text: string): string[] {
  if (validate(parseYaml(text))) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ""}`);
}

/** Whether the loader takes a text. */
function loads(text: string): boolean {
  try {
    parse(text);
    return true;
  } catch {
    return false;
  }
}

const UPSTREAM = "upstreams:\n  a:\n    base_url: https://api.example/v1\n";

Deno.test("configJsonSchema() is a valid draft-07 schema with an id and a title", () => {
  const ajv = new Ajv({ strict: true, allowUnionTypes: true });
  assert.equal(ajv.validateSchema(schema), true, JSON.stringify(ajv.errors));
  assert.equal(schema.$schema, "http://json-schema.org/draft-07/schema#");
  assert.equal(schema.$id, SCHEMA_ID);
  assert.equal(schema.title, "llm-balance config");
  assert.equal(schema.additionalProperties, false);
});

Deno.test("configJsonSchema() describes every field", () => {
  const undescribed: string[] = [];
  const walk = (node: unknown, path: string) => {
    if (node === null || typeof node !== "object") return;
    const n = node as JsonSchema;
    for (const [name, child] of Object.entries((n.properties ?? {}) as JsonSchema)) {
      if (typeof (child as JsonSchema).description !== "string") undescribed.push(path + name);
      walk(child, `${path}${name}.`);
    }
    walk(n.additionalProperties, `${path}*.`);
    walk(n.items, `${path}[].`);
    for (const branch of (n.anyOf ?? []) as unknown[]) walk(branch, path);
  };
  walk(schema, "");
  assert.deepEqual(undescribed, []);
});

Deno.test("configJsonSchema() offers the strategies and probes it is given", () => {
  const text = JSON.stringify(schema);
  assert.match(text, /"examples":\["round_robin","p2c"\]/);
  assert.match(text, /"examples":\["http"\]/);
  assert.doesNotMatch(JSON.stringify(configJsonSchema()), /"round_robin","p2c"/);
});

Deno.test("configJsonSchema() takes the shipped config.yaml and the full fixture", async () => {
  for (const file of ["../../config.yaml", "../fixtures/native_full.yaml"]) {
    const text = await Deno.readTextFile(new URL(file, import.meta.url));
    assert.deepEqual(schemaErrors(text), [], file);
  }
});

Deno.test("config.yaml names the schema on its first line", async () => {
  const text = await Deno.readTextFile(new URL("../../config.yaml", import.meta.url));
  assert.equal(text.split("\n")[0], "# yaml-language-server: $schema=./config.schema.json");
});

Deno.test("configJsonSchema() takes every YAML example of the README", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const blocks = [...readme.matchAll(/^```yaml\n([\s\S]*?)^```/gm)].map((m) => m[1] ?? "");
  assert.ok(blocks.length >= 5, `${blocks.length} examples`);
  for (const block of blocks) {
    if (/^models:/m.test(block) && !/^upstreams:/m.test(block)) continue; // Seed B
    // an example without upstreams is a part of a file
    const text = /^upstreams:/m.test(block) ? block : UPSTREAM + block;
    assert.deepEqual(schemaErrors(text), [], block);
  }
});

Deno.test("configJsonSchema() takes what the loader takes, as written", async (t) => {
  const cases: [string, string][] = [
    ["a minimal file", ""],
    ["a number as a string", "server: { port: '8080' }"],
    ["a reference for a number", "server: { port: '${PORT}', max_body_bytes: '${MAX:-100}' }"],
    ["a boolean as a string", "server: { watch_config: 'true', cors: '${WATCH}' }"],
    ["a reference for an enum", "log: { level: '${LEVEL:-info}' }"],
    ["an empty section", "auth:\nlog:\n  level:\n"],
    ["a reference for a URL", "upstreams: { b: { base_url: '${BASE_URL}', keys: '${KEYS}' } }"],
    ["a timeout in seconds", "upstreams: { b: { base_url: 'http://h:1', timeout: 2.5 } }"],
    ["timeouts by phase", "upstreams: { b: { base_url: 'http://h', timeout: { idle: 0 } } }"],
    [
      "key objects with quotas",
      "upstreams: { b: { base_url: 'http://h', keys: [{ key: k, quota: { reset: '07:30' } }] } }",
    ],
    ["state in memory", "state: memory"],
    ["state on Redis", "state: { redis: '${REDIS_URL}', prefix: 'x:' }"],
    [
      "affinity",
      "pools: { m: { upstreams: [a], affinity: { by: [user, 'header:X-Id'], max_load: 1 } } }",
    ],
    [
      "strategy options",
      "pools: { m: { upstreams: [{ upstream: a, weight: 0 }], strategy: p2c, strategy_options: { decay: 5 } } }",
    ],
    [
      "headers of every scalar",
      "upstreams: { b: { base_url: 'http://h', headers: { x-n: 1, x-b: true } } }",
    ],
  ];
  for (const [name, extra] of cases) {
    await t.step(name, () => {
      const text = extra.startsWith("upstreams:") ? extra : `${UPSTREAM}${extra}\n`;
      assert.equal(loads(text), true, "the loader refuses it");
      assert.deepEqual(schemaErrors(text), []);
    });
  }
});

Deno.test("configJsonSchema() flags typical mistakes the loader refuses", async (t) => {
  const cases: [string, string][] = [
    ["an unknown section", "sever: { port: 1 }"],
    ["an unknown field", "upstreams: { b: { base_url: 'http://h', wieght: 1 } }"],
    ["a misspelt key field", "upstreams: { b: { base_url: 'http://h', keys: [{ kye: k }] } }"],
    ["a word for a number", "server: { port: eighty }"],
    ["a port out of range", "server: { port: 70000 }"],
    ["a fraction for an integer", "retry: { max_attempts: 2.5 }"],
    ["too many attempts", "retry: { max_attempts: 11 }"],
    ["a word for a boolean", "server: { watch_config: yes please }"],
    ["an unknown level", "log: { level: verbose }"],
    [
      "strategy options that are not a mapping",
      "pools: { m: { upstreams: [a], strategy_options: fast } }",
    ],
    ["an affinity load below 1", "pools: { m: { upstreams: [a], affinity: { max_load: 0.5 } } }"],
    ["an unknown affinity source", "pools: { m: { upstreams: [a], affinity: { by: [session] } } }"],
    ["a pool without upstreams", "pools: { m: { upstreams: [] } }"],
    ["a URL without scheme", "upstreams: { b: { base_url: api.example/v1 } }"],
    [
      "a reset that is not HH:MM",
      "upstreams: { b: { base_url: 'http://h', quota: { reset: '7:00' } } }",
    ],
    ["a negative weight", "upstreams: { b: { base_url: 'http://h', weight: -1 } }"],
    ["an unknown state", "state: disk"],
    ["a Redis URL of another scheme", "state: { redis: 'http://h' }"],
    ["an upstream name with a space", "upstreams: { 'a b': { base_url: 'http://h' } }"],
    ["no upstream", "upstreams: {}"],
  ];
  for (const [name, extra] of cases) {
    await t.step(name, () => {
      const text = extra.startsWith("upstreams:") ? extra : `${UPSTREAM}${extra}\n`;
      assert.equal(loads(text), false, "the loader takes it");
      assert.notDeepEqual(schemaErrors(text), []);
    });
  }
});

Deno.test("configJsonSchema() leaves to the loader what it cannot express", async (t) => {
  const cases: [string, string][] = [
    ["an unknown upstream in a pool", "pools: { m: { upstreams: [nope] } }"],
    ["a fallback to no pool", "pools: { m: { upstreams: [a], fallbacks: [other] } }"],
    ["both key and keys", "upstreams: { b: { base_url: 'http://h', key: k, keys: [j] } }"],
    [
      "an unknown time zone",
      "upstreams: { b: { base_url: 'http://h', quota: { time_zone: Mars/Base } } }",
    ],
    ["an unset variable", "server: { port: '${NOT_SET}' }"],
  ];
  for (const [name, extra] of cases) {
    await t.step(name, () => {
      const text = extra.startsWith("upstreams:") ? extra : `${UPSTREAM}${extra}\n`;
      assert.equal(loads(text), false, "the loader takes it");
      assert.deepEqual(schemaErrors(text), []);
    });
  }
});
