/** @module Tests for src/config/resolve.ts. */

import assert from "node:assert/strict";
import { resolveConfigPath } from "../../src/config/resolve.ts";

const files = (...names: string[]) => (path: string) => names.includes(path);
const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("resolveConfigPath() prefers the --config flag", () => {
  const path = resolveConfigPath({
    flag: "/etc/lb.yaml",
    env: env({ LLM_BALANCE_CONFIG: "/env.yaml" }),
    exists: files("./config.yaml"),
  });
  assert.equal(path, "/etc/lb.yaml");
});

Deno.test("resolveConfigPath() uses $LLM_BALANCE_CONFIG without a flag", () => {
  const path = resolveConfigPath({
    env: env({ LLM_BALANCE_CONFIG: "/env.yaml" }),
    exists: files("./config.yaml"),
  });
  assert.equal(path, "/env.yaml");
});

Deno.test("resolveConfigPath() returns an explicit path even when it does not exist", () => {
  assert.equal(
    resolveConfigPath({ flag: "missing.yaml", env: env({}), exists: files() }),
    "missing.yaml",
  );
});

Deno.test("resolveConfigPath() tries ./config.yaml then ./config.json", () => {
  const both = files("./config.yaml", "./config.json");
  assert.equal(resolveConfigPath({ env: env({}), exists: both }), "./config.yaml");
  assert.equal(
    resolveConfigPath({ env: env({}), exists: files("./config.json") }),
    "./config.json",
  );
});

Deno.test("resolveConfigPath() falls back to ./config.yaml when nothing exists", () => {
  assert.equal(resolveConfigPath({ env: env({}), exists: files() }), "./config.yaml");
});

Deno.test("resolveConfigPath() ignores an empty flag or variable", () => {
  const path = resolveConfigPath({
    flag: "",
    env: env({ LLM_BALANCE_CONFIG: "" }),
    exists: files("./config.json"),
  });
  assert.equal(path, "./config.json");
});
