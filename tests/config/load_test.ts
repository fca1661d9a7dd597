/** @module Tests for src/config/load.ts. */

import assert from "node:assert/strict";
import { ConfigError, type ConfigIssue } from "../../src/config/errors.ts";
import { detectFormat, loadConfig, parseConfigText } from "../../src/config/load.ts";
import { configError } from "../helpers/config.ts";

const NATIVE = "upstreams:\n  ms:\n    base_url: http://127.0.0.1:9000/v1\n";
const noEnv = () => undefined;

const failure = configError;

Deno.test("detectFormat() tells Seed A, Seed B and native apart", () => {
  assert.equal(detectFormat({ api_keys: [] }, true), "seed-a");
  assert.equal(detectFormat({ target_url: "x" }, true), "seed-a");
  assert.equal(detectFormat({ server_port: "1" }, true), "seed-a");
  assert.equal(detectFormat({ api_keys: [] }, false), "native");
  assert.equal(detectFormat({ models: {} }, false), "seed-b");
  assert.equal(detectFormat({ models: {} }, true), "seed-b");
  assert.equal(detectFormat({ models: {}, upstreams: {} }, false), "native");
  assert.equal(detectFormat({ upstreams: {} }, true), "native");
  assert.equal(detectFormat(null, false), "native");
});

Deno.test("parseConfigText() reads Seed A from text starting with { whatever the name", () => {
  const config = parseConfigText('  {"api_keys": ["k"]}', "settings.conf", { env: noEnv });
  assert.equal(config.format, "seed-a");
});

Deno.test("parseConfigText() reads native JSON", () => {
  const text = JSON.stringify({ upstreams: { ms: { base_url: "http://x/v1" } } });
  const config = parseConfigText(text, "config.json", { env: noEnv });
  assert.equal(config.format, "native");
  assert.equal(config.source, "config.json");
});

Deno.test("parseConfigText() reports a YAML syntax error with its line", () => {
  const error = failure(() => parseConfigText("a: [1\nb: 2\n", "bad.yaml", { env: noEnv }));
  assert.equal(error.issues[0]?.line, 2);
  assert.match(error.message, /^Cannot load config "bad\.yaml": line 2: invalid YAML: /);
});

Deno.test("parseConfigText() reports duplicate mapping keys", () => {
  const error = failure(() => parseConfigText(`${NATIVE}${NATIVE}`, "dup.yaml", { env: noEnv }));
  assert.match(error.message, /invalid YAML: map keys must be unique/);
  assert.equal(error.issues[0]?.line, 4);
});

Deno.test("parseConfigText() reports a JSON syntax error with its line and no content", () => {
  const text = '{\n  "api_keys": ["secret-1"]\n  "server_port": "1"\n}';
  const error = failure(() => parseConfigText(text, "c.json", { env: noEnv }));
  assert.equal(
    error.message,
    `Cannot load config "c.json": line 3: invalid JSON: expected ',' or '}' after property value`,
  );
  assert.doesNotMatch(error.message, /secret/);
});

Deno.test("parseConfigText() refuses a file that is not a mapping", () => {
  const error = failure(() => parseConfigText("- a\n- b\n", "list.yaml", { env: noEnv }));
  assert.equal(error.message, 'Cannot load config "list.yaml": must be a mapping at the top level');
});

Deno.test("parseConfigText() reads an empty file as an empty native config", () => {
  const error = failure(() => parseConfigText("", "empty.yaml", { env: noEnv }));
  assert.equal(error.message, 'Cannot load config "empty.yaml": upstreams: is required');
});

Deno.test("parseConfigText() substitutes after parsing, so values cannot add structure", () => {
  const env = (name: string) => name === "URL" ? "http://x/v1\n    weight: 5" : undefined;
  const error = failure(() =>
    parseConfigText("upstreams:\n  ms:\n    base_url: ${URL}\n", "x.yaml", { env })
  );
  assert.deepEqual(error.issues, [
    { path: "upstreams.ms.base_url", message: "must be an http or https URL", line: 3 },
  ]);
});

Deno.test("parseConfigText() reports a missing variable instead of the broken value", () => {
  const text = "upstreams:\n  ms:\n    base_url: ${BASE}\n    weight: -1\n";
  const error = failure(() => parseConfigText(text, "x.yaml", { env: noEnv }));
  const expected: ConfigIssue[] = [
    { path: "upstreams.ms.base_url", message: 'environment variable "BASE" is not set', line: 3 },
    { path: "upstreams.ms.weight", message: "must be >= 0", line: 4 },
  ];
  assert.deepEqual(error.issues, expected);
  assert.equal(
    error.message,
    [
      'Cannot load config "x.yaml": 2 problems',
      '  upstreams.ms.base_url (line 3): environment variable "BASE" is not set',
      "  upstreams.ms.weight (line 4): must be >= 0",
    ].join("\n"),
  );
});

Deno.test("parseConfigText() names the variable a problem's value came from when it is set but empty", () => {
  const text = 'upstreams:\n  ms:\n    base_url: http://a/v1\n    keys: ["${K1}", "${K2}"]\n' +
    "    weight: ${W}\n";
  const error = failure(() => parseConfigText(text, "x.yaml", { env: () => "" }));
  assert.deepEqual(error.issues.map((i) => `${i.path}: ${i.message}`), [
    "upstreams.ms.keys: must list at least one key, or be left out for an upstream that takes " +
    "no key ($K1, $K2 are set but empty)",
    "upstreams.ms.weight: must be a number ($W is set but empty)",
  ]);
});

Deno.test("parseConfigText() reports a missing variable in a list, not the list it left empty", () => {
  const text = 'upstreams:\n  ms:\n    base_url: http://a/v1\n    keys: ["${K1}"]\n';
  const error = failure(() => parseConfigText(text, "x.yaml", { env: noEnv }));
  assert.deepEqual(error.issues, [{
    path: "upstreams.ms.keys[0]",
    message: 'environment variable "K1" is not set',
    line: 4,
  }]);
});

Deno.test("parseConfigText() lists issues in file order", () => {
  const text =
    "retry:\n  max_attempts: 0\nupstreams:\n  ms:\n    base_url: x\nlog:\n  level: loud\n";
  const error = failure(() => parseConfigText(text, "x.yaml", { env: noEnv }));
  assert.deepEqual(error.issues.map((i) => i.line), [2, 5, 7]);
});

Deno.test("parseConfigText() supports YAML anchors and merge keys", () => {
  const text = "upstreams:\n  a: &a\n    base_url: http://x/v1\n    weight: 2\n" +
    "  b:\n    <<: *a\n    priority: 1\n";
  const config = parseConfigText(text, "x.yaml", { env: noEnv });
  assert.deepEqual(
    config.upstreams.map((u) => [u.name, u.baseUrl, u.weight, u.priority]),
    [["a", "http://x/v1", 2, 0], ["b", "http://x/v1", 2, 1]],
  );
});

Deno.test("parseConfigText() resolves relative plugin paths against the file's folder", () => {
  const text = `${NATIVE}plugins: [./p/a.ts, ../b.ts, file:///c.ts]\n`;
  const config = parseConfigText(text, "/srv/app/config.yaml", { env: noEnv });
  assert.deepEqual(config.plugins, ["/srv/app/p/a.ts", "/srv/b.ts", "file:///c.ts"]);
});

Deno.test("parseConfigText() reads variables from Deno.env by default", () => {
  Deno.env.set("LLM_BALANCE_TEST_URL", "http://from-env/v1");
  try {
    const text = "upstreams:\n  ms:\n    base_url: ${LLM_BALANCE_TEST_URL}\n";
    assert.equal(parseConfigText(text, "x.yaml").upstreams[0]?.baseUrl, "http://from-env/v1");
  } finally {
    Deno.env.delete("LLM_BALANCE_TEST_URL");
  }
});

Deno.test("loadConfig() reads the file through the injected reader", async () => {
  const config = await loadConfig("/virtual/config.yaml", {
    env: noEnv,
    readTextFile: (path) => {
      assert.equal(path, "/virtual/config.yaml");
      return Promise.resolve(NATIVE);
    },
  });
  assert.equal(config.source, "/virtual/config.yaml");
  assert.equal(config.upstreams[0]?.name, "ms");
});

Deno.test("loadConfig() fails on a missing file, never falling back", async () => {
  const path = `${await Deno.makeTempDir()}/none.yaml`;
  await assert.rejects(
    () => loadConfig(path, { env: noEnv }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message === `Cannot load config "${path}": file not found`,
  );
  await assert.rejects(
    () =>
      loadConfig("x.yaml", {
        readTextFile: () => Promise.reject(Object.assign(new Error("gone"), { code: "ENOENT" })),
      }),
    { message: 'Cannot load config "x.yaml": file not found' },
  );
});

Deno.test("loadConfig() reports other read errors", async () => {
  await assert.rejects(
    () => loadConfig("x.yaml", { readTextFile: () => Promise.reject(new Error("disk on fire")) }),
    { message: 'Cannot load config "x.yaml": cannot read file: disk on fire' },
  );
});

Deno.test("loadConfig() reads a real file from disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/config.yaml`, `${NATIVE}plugins: [./mine.ts]\n`);
    const config = await loadConfig(`${dir}/config.yaml`, { env: noEnv });
    assert.deepEqual(config.plugins, [`${dir}/mine.ts`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
