/**
 * @module
 * Tests of the command line's argument parsing and of the environment and flag overrides.
 */

import assert from "node:assert/strict";
import { applyOverrides, type Flags, parseArgs, UsageError } from "../src/cli.ts";
import { parseConfigText } from "../src/config/mod.ts";

const BASE: Flags = { command: "serve", json: false, help: false };

Deno.test("parseArgs() defaults to serve with no flags", () => {
  assert.deepEqual(parseArgs([]), BASE);
});

Deno.test("parseArgs() reads commands and their options", () => {
  const cases: { args: string[]; want: Partial<Flags> }[] = [
    { args: ["serve", "--port", "0"], want: { port: 0 } },
    { args: ["--config", "x.yaml", "--host=0.0.0.0"], want: { config: "x.yaml", host: "0.0.0.0" } },
    { args: ["serve", "-c", "a.json", "--port=9090"], want: { config: "a.json", port: 9090 } },
    { args: ["serve", "--log-level", "debug"], want: { logLevel: "debug" } },
    {
      args: ["check", "--config", "c.yaml", "--json"],
      want: { command: "check", config: "c.yaml", json: true },
    },
    { args: ["probe", "--json"], want: { command: "probe", json: true } },
    { args: ["version"], want: { command: "version" } },
    { args: ["--version"], want: { command: "version" } },
    { args: ["check", "--help"], want: { command: "check", help: true } },
    { args: ["-h"], want: { command: "help", help: true } },
    { args: ["help"], want: { command: "help" } },
    { args: ["help", "probe"], want: { command: "help", topic: "probe" } },
    { args: ["serve", "--config", "-"], want: { config: "-" } },
  ];
  for (const { args, want } of cases) {
    assert.deepEqual(parseArgs(args), { ...BASE, ...want }, args.join(" "));
  }
});

Deno.test("parseArgs() rejects unknown commands, options and bad values with a UsageError", () => {
  const cases: { args: string[]; message: RegExp }[] = [
    { args: ["start"], message: /Unknown command "start"/ },
    { args: ["help", "nope"], message: /Unknown command "nope"/ },
    { args: ["--verbose"], message: /Unknown option "--verbose"/ },
    { args: ["serve", "--port"], message: /--port needs a value/ },
    { args: ["serve", "--config", "--port", "1"], message: /--config needs a value/ },
    {
      args: ["serve", "--port", "http"],
      message: /--port must be an integer from 0 to 65535, got "http"/,
    },
    { args: ["serve", "--port", "70000"], message: /got "70000"/ },
    { args: ["serve", "--port", "-1"], message: /got "-1"/ },
    {
      args: ["serve", "--log-level", "loud"],
      message: /--log-level must be one of debug, info, warn, error/,
    },
    { args: ["serve", "--json"], message: /--json does not apply to "serve"/ },
    { args: ["probe", "--host", "x"], message: /--host does not apply to "probe"/ },
    { args: ["version", "--config", "x"], message: /--config does not apply to "version"/ },
    { args: ["check", "--json=yes"], message: /--json takes no value/ },
  ];
  for (const { args, message } of cases) {
    assert.throws(() => parseArgs(args), (err: unknown) => {
      assert.ok(err instanceof UsageError, args.join(" "));
      assert.match(err.message, message, args.join(" "));
      return true;
    });
  }
});

const CONFIG = parseConfigText(
  `server: { host: 127.0.0.1, port: 8080 }
log: { level: warn }
auth: { admin_key: file-admin, client_keys: [file-client] }
upstreams:
  u: { base_url: http://127.0.0.1:9/v1, keys: [k-aaaa-0001] }
`,
  "test.yaml",
  { env: () => undefined },
);

function env(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

Deno.test("applyOverrides() keeps the file's values when nothing overrides them", () => {
  const c = applyOverrides(CONFIG, {}, env({}));
  assert.deepEqual(c, CONFIG);
  assert.notEqual(c.server, CONFIG.server, "the server section is copied");
});

Deno.test("applyOverrides() applies the environment over the file", () => {
  const c = applyOverrides(
    CONFIG,
    {},
    env({
      LLM_BALANCE_HOST: "0.0.0.0",
      LLM_BALANCE_PORT: "9000",
      LLM_BALANCE_LOG_LEVEL: "debug",
      LLM_BALANCE_ADMIN_KEY: "env-admin",
      LLM_BALANCE_CLIENT_KEYS: "c1, c2 c3,,c1",
    }),
  );
  assert.equal(c.server.host, "0.0.0.0");
  assert.equal(c.server.port, 9000);
  assert.equal(c.log.level, "debug");
  assert.equal(c.adminKey, "env-admin");
  assert.deepEqual(c.clientKeys, [
    { key: "c1", name: "env-client-1" },
    { key: "c2", name: "env-client-2" },
    { key: "c3", name: "env-client-3" },
  ]);
  assert.equal(CONFIG.server.port, 8080, "the given config is not changed");
  assert.equal(CONFIG.log.level, "warn");
});

Deno.test("applyOverrides() lets flags win over the environment", () => {
  const c = applyOverrides(
    CONFIG,
    { host: "127.0.0.2", port: 0, logLevel: "error" },
    env({ LLM_BALANCE_HOST: "0.0.0.0", LLM_BALANCE_PORT: "9000", LLM_BALANCE_LOG_LEVEL: "debug" }),
  );
  assert.deepEqual([c.server.host, c.server.port, c.log.level], ["127.0.0.2", 0, "error"]);
});

Deno.test("applyOverrides() ignores empty variables", () => {
  const c = applyOverrides(
    CONFIG,
    {},
    env({
      LLM_BALANCE_HOST: "",
      LLM_BALANCE_PORT: " ",
      LLM_BALANCE_CLIENT_KEYS: "",
      LLM_BALANCE_ADMIN_KEY: "",
    }),
  );
  assert.deepEqual(c, CONFIG);
});

Deno.test("applyOverrides() rejects bad environment values with a UsageError", () => {
  assert.throws(
    () => applyOverrides(CONFIG, {}, env({ LLM_BALANCE_PORT: "eighty" })),
    (err: unknown) =>
      err instanceof UsageError && /LLM_BALANCE_PORT must be an integer/.test(err.message),
  );
  assert.throws(
    () => applyOverrides(CONFIG, {}, env({ LLM_BALANCE_LOG_LEVEL: "trace" })),
    (err: unknown) =>
      err instanceof UsageError && /LLM_BALANCE_LOG_LEVEL must be one of/.test(err.message),
  );
});
