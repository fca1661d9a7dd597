/**
 * @module
 * Tests of the plugin registry and of plugin module loading.
 */

import assert from "node:assert/strict";
import {
  bakedPluginUrl,
  importPlugins,
  PluginError,
  pluginSpecifier,
  Registry,
} from "../src/registry.ts";
import { builtins } from "../plugins/mod.ts";
import quotaAware from "../plugins/examples/quota_aware.ts";

const strategy = (name: string) => ({
  kind: "strategy",
  name,
  create: () => ({ pick: <T>(a: readonly T[]) => a[0]! }),
});

Deno.test("Registry.register() adds plugins by kind and lists their names sorted", () => {
  const r = new Registry();
  r.register(...builtins);
  assert.deepEqual(r.names("strategy"), [
    "least_connections",
    "p2c",
    "quota_aware",
    "random",
    "round_robin",
    "weighted",
  ]);
  assert.deepEqual(r.names("probe"), ["http"]);
  assert.ok(r.names("middleware").includes("proxy"));
  assert.equal(r.strategy("round_robin")?.name, "round_robin");
  assert.equal(r.probe("http")?.kind, "probe");
  assert.equal(r.strategy("nope"), undefined);
});

Deno.test("Registry.register() takes the built-ins and the daily_quota example together", () => {
  const r = new Registry();
  r.register(...builtins, quotaAware);
  assert.equal(r.strategy("daily_quota"), quotaAware);
  assert.equal(r.strategy("quota_aware")?.name, "quota_aware");
  assert.notEqual(r.strategy("quota_aware"), quotaAware);
});

Deno.test("Registry.register() rejects a name already taken for its kind, adding nothing", () => {
  const r = new Registry();
  r.register(strategy("a"));
  assert.throws(() => r.register(strategy("b"), strategy("a")), (err: unknown) => {
    assert.ok(err instanceof PluginError);
    assert.ok(err instanceof TypeError);
    assert.equal(err.message, 'Cannot register plugin: strategy "a" is already registered');
    assert.equal(err.detail, 'strategy "a" is already registered');
    return true;
  });
  assert.equal(r.strategy("b"), undefined, "all or none");
  assert.throws(
    () => r.register(strategy("c"), strategy("c")),
    /strategy "c" is already registered/,
  );
  // the same name for another kind is fine
  r.register({
    kind: "probe",
    name: "a",
    probe: () => Promise.resolve({ outcome: "healthy", latencyMs: 0 }),
  });
});

Deno.test("Registry.register() rejects values that are not plugins", () => {
  const cases: [unknown, RegExp][] = [
    [null, /not an object/],
    [{ kind: "strategy" }, /non-empty string `name`/],
    [{ kind: "strategy", name: "x" }, /"x" is a strategy without a create\(\) function/],
    [{ kind: "probe", name: "p" }, /"p" is a probe without a probe\(\) function/],
    [
      { kind: "filter", name: "f", create() {} },
      /"f" has kind "filter"; use "strategy", "probe" or "middleware"/,
    ],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => new Registry().register(value), message);
  }
});

Deno.test("Registry.clone() copies the plugins into an independent registry", () => {
  const r = new Registry();
  r.register(strategy("a"));
  const copy = r.clone();
  copy.register(strategy("b"));
  assert.deepEqual(copy.names("strategy"), ["a", "b"]);
  assert.deepEqual(r.names("strategy"), ["a"]);
});

Deno.test("pluginSpecifier() turns paths into file URLs and keeps URLs and specifiers", () => {
  assert.equal(pluginSpecifier("/opt/p/my plugin#1.ts"), "file:///opt/p/my%20plugin%231.ts");
  assert.equal(pluginSpecifier("rel/p.ts"), new URL(`file://${Deno.cwd()}/rel/p.ts`).href);
  assert.equal(pluginSpecifier("https://example.com/p.ts"), "https://example.com/p.ts");
  assert.equal(pluginSpecifier("npm:some-plugin@1"), "npm:some-plugin@1");
  assert.equal(pluginSpecifier("file:///x/p.ts"), "file:///x/p.ts");
});

Deno.test("bakedPluginUrl() maps a path under a plugins/ folder to the repository's copy", () => {
  const want = new URL("../plugins/examples/quota_aware.ts", import.meta.url).href;
  assert.equal(bakedPluginUrl("/etc/llm-balance/plugins/examples/quota_aware.ts"), want);
  assert.equal(bakedPluginUrl("C:\\llm\\plugins\\examples\\quota_aware.ts"), want);
  assert.equal(bakedPluginUrl("/etc/my-plugins/x.ts"), undefined);
  assert.equal(bakedPluginUrl("/etc/x.ts"), undefined);
  assert.equal(bakedPluginUrl("/a/plugins/../../secret.ts"), undefined);
});

Deno.test("importPlugins() returns the default export and the `plugins` array", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/two.ts`,
      `const a = { kind: "strategy", name: "a", create: () => ({ pick: (x) => x[0] }) };
       const b = { kind: "strategy", name: "b", create: () => ({ pick: (x) => x[0] }) };
       export default a;
       export const plugins = [b];`,
    );
    const found = await importPlugins(`${dir}/two.ts`);
    assert.deepEqual(found.map((p) => (p as { name: string }).name), ["a", "b"]);
    const example = await importPlugins(
      new URL("../plugins/examples/quota_aware.ts", import.meta.url).pathname,
    );
    assert.deepEqual(example, [quotaAware]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("importPlugins() fails with a PluginError naming the module", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/none.ts`, "export const x = 1;");
    await Deno.writeTextFile(`${dir}/throws.ts`, 'throw new Error("bad plugin");');
    const cases: [string, RegExp][] = [
      [`${dir}/missing.ts`, /^Cannot load plugin ".*missing\.ts": Module not found/],
      [`${dir}/none.ts`, /^Cannot load plugin ".*none\.ts": it exports no plugin/],
      [`${dir}/throws.ts`, /^Cannot load plugin ".*throws\.ts": bad plugin$/],
    ];
    for (const [path, message] of cases) {
      await assert.rejects(importPlugins(path, { baked: false }), (err: unknown) => {
        assert.ok(err instanceof PluginError);
        assert.match(err.message, message);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("importPlugins() falls back to the baked-in copy of a missing plugins/ path when asked", async () => {
  const missing = "/nonexistent-llm-balance/plugins/examples/quota_aware.ts";
  assert.deepEqual(await importPlugins(missing, { baked: true }), [quotaAware]);
  await assert.rejects(importPlugins(missing, { baked: false }), /Module not found[^(]*$/);
  await assert.rejects(
    importPlugins("/nonexistent-llm-balance/x.ts", { baked: true }),
    /put the plugin under plugins\//,
  );
  await assert.rejects(
    importPlugins("/nonexistent-llm-balance/plugins/examples/nope.ts", { baked: true }),
    /Module not found .* \(a compiled binary loads only the plugins\/ folder it was built with/,
  );
});
