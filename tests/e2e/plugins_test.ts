/**
 * @module
 * Strategy plugins loaded by path from a config, end to end: a custom strategy steers traffic
 * (a module next to the config, and the worked example `plugins/examples/quota_aware.ts`); a
 * strategy that throws is contained (round_robin serves, the error is logged); a module that
 * fails to import, or registers a taken name, makes `check` and `serve` exit 2 with a clear
 * message.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { runCli, startServe, tempConfig } from "../helpers/cli.ts";

const EXAMPLE = new URL("../../plugins/examples/quota_aware.ts", import.meta.url).pathname;
const KEYS = ["sk-plugin-key-aaaa-0001", "sk-plugin-key-bbbb-0002", "sk-plugin-key-cccc-0003"];

const LAST = `export default {
  kind: "strategy",
  name: "always_last",
  create: () => ({ pick: (available) => available[available.length - 1] }),
};
`;

const THROWS = `export default {
  kind: "strategy",
  name: "explodes",
  create: () => ({ pick() { throw new Error("plugin bug"); } }),
};
`;

function config(baseUrl: string, strategy: string, plugins: string[], keys = KEYS): string {
  return `log: { level: info, format: json }
upstreams:
  mock: { base_url: ${baseUrl}, keys: [${keys.join(", ")}] }
pools:
  default: { strategy: ${strategy}, upstreams: [mock] }
plugins: [${plugins.map((p) => JSON.stringify(p)).join(", ")}]
`;
}

async function chat(url: string): Promise<Response> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.body?.cancel();
  return res;
}

Deno.test("a custom strategy loaded by a path relative to the config steers every request", async () => {
  await using mock = await startMockUpstream();
  const cfg = await tempConfig(config(mock.baseUrl, "always_last", ["./always_last.ts"]));
  try {
    await Deno.writeTextFile(`${cfg.dir}/always_last.ts`, LAST);
    const check = await runCli(["check", "--config", cfg.path]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /default pool \(every other model\): always_last over 3 key/);
    assert.match(check.stdout, /plugin .*always_last\.ts: strategy:always_last/);
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    for (let i = 0; i < 4; i++) assert.equal((await chat(served.url)).status, 200);
    assert.deepEqual(mock.requests.map((r) => r.key), Array(4).fill(KEYS[2]));
  } finally {
    await cfg.remove();
  }
});

Deno.test("the daily_quota example loads by path and prefers the key with most quota left", async () => {
  await using mock = await startMockUpstream();
  // the second key has twice the quota (weight 2): it serves until it has no more left than the first
  const keys = [KEYS[0]!, `{ key: ${KEYS[1]}, weight: 2 }`];
  const cfg = await tempConfig(config(mock.baseUrl, "daily_quota", [EXAMPLE], keys));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    for (let i = 0; i < 5; i++) assert.equal((await chat(served.url)).status, 200);
    assert.deepEqual(mock.requests.map((r) => r.key), Array(5).fill(KEYS[1]));
  } finally {
    await cfg.remove();
  }
});

Deno.test("a strategy that throws is contained: round_robin serves and the error is logged", async () => {
  await using mock = await startMockUpstream();
  const cfg = await tempConfig(config(mock.baseUrl, "explodes", ["./explodes.ts"]));
  try {
    await Deno.writeTextFile(`${cfg.dir}/explodes.ts`, THROWS);
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    for (let i = 0; i < 3; i++) assert.equal((await chat(served.url)).status, 200);
    assert.deepEqual(mock.requests.map((r) => r.key), KEYS);
    const logged = await served.waitForLog((r) => r.level === "error" && r.strategy === "explodes");
    assert.match(String(logged.msg), /fell back to round_robin/);
    assert.match(String(logged.error), /plugin bug/);
    assert.equal((await served.close()).code, 0);
  } finally {
    await cfg.remove();
  }
});

Deno.test("a plugin module that cannot be loaded makes check and serve exit 2 with a clear message", async () => {
  const cases = [
    {
      file: undefined,
      want: /plugins\[0\] \(line 6\): cannot load plugin ".*missing\.ts": Module not found/,
    },
    {
      file: "export default {",
      want: /cannot load plugin ".*broken\.ts": .*(parse|Expected|Unexpected)/,
    },
    {
      file: 'throw new Error("no config for me");',
      want: /cannot load plugin ".*throws\.ts": .*no config for me/,
    },
    { file: "export const x = 1;", want: /cannot load plugin ".*empty\.ts": it exports no plugin/ },
    {
      file: 'export default { kind: "strategy", name: "x" };',
      want: /"x" is a strategy without a create\(\) function/,
    },
  ];
  const names = ["missing", "broken", "throws", "empty", "incomplete"];
  const cfgs = await Promise.all(names.map(async (name, i) => {
    const cfg = await tempConfig(config("http://127.0.0.1:9/v1", "round_robin", [`./${name}.ts`]));
    const file = cases[i]!.file;
    if (file !== undefined) await Deno.writeTextFile(`${cfg.dir}/${name}.ts`, file);
    return cfg;
  }));
  try {
    const checks = await Promise.all(cfgs.map((c) => runCli(["check", "--config", c.path])));
    for (const [i, r] of checks.entries()) {
      assert.equal(r.code, 2, `${names[i]}: ${r.stdout}`);
      assert.match(r.stderr, cases[i]!.want, names[i]);
      assert.match(r.stderr, /^Cannot load config "/);
    }
    const serve = await runCli(["serve", "--config", cfgs[0]!.path, "--port", "0"]);
    assert.equal(serve.code, 2);
    assert.equal(serve.stdout, "");
    assert.match(serve.stderr, cases[0]!.want);
  } finally {
    await Promise.all(cfgs.map((c) => c.remove()));
  }
});

Deno.test("a plugin that registers a name already taken makes check exit 2", async () => {
  const cfg = await tempConfig(
    config("http://127.0.0.1:9/v1", "round_robin", ["./dup.ts", "./last.ts", "./last2.ts"]),
  );
  try {
    await Deno.writeTextFile(
      `${cfg.dir}/dup.ts`,
      'export default { kind: "strategy", name: "round_robin", create: () => ({ pick: (a) => a[0] }) };',
    );
    await Deno.writeTextFile(`${cfg.dir}/last.ts`, LAST);
    await Deno.writeTextFile(`${cfg.dir}/last2.ts`, LAST);
    const r = await runCli(["check", "--config", cfg.path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /2 problems/);
    assert.match(
      r.stderr,
      /plugins\[0\].*: cannot load plugin ".*dup\.ts": strategy "round_robin" is already registered/,
    );
    assert.match(
      r.stderr,
      /plugins\[2\].*: cannot load plugin ".*last2\.ts": strategy "always_last" is already registered/,
    );
  } finally {
    await cfg.remove();
  }
});
