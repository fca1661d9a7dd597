/**
 * @module
 * The commands as a user runs them (`deno run -A main.ts ...` as a subprocess): `version`,
 * `--help`, `check` on valid and broken configs (exit codes, field paths and lines, masked
 * keys, JSON on stdout with `--json`), `probe` against mock upstreams (table and JSON with key
 * ids, exit 0/1, why a connection failed), unknown commands.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { runCli, tempConfig } from "../helpers/cli.ts";
import denoJson from "../../deno.json" with { type: "json" };

const KEY_A = "sk-cli-check-key-aaaa-0001";
const KEY_B = "sk-cli-check-key-bbbb-0002";

function nativeConfig(baseUrl: string, extra = ""): string {
  return `upstreams:
  mock:
    base_url: ${baseUrl}
    keys: [${KEY_A}, ${KEY_B}]
${extra}`;
}

Deno.test("version prints the version of deno.json on stdout and exits 0", async () => {
  for (const args of [["version"], ["--version"]]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), denoJson.version);
  }
});

Deno.test("--help of every command prints its usage on stdout and exits 0", async () => {
  const cases = [
    { args: ["--help"], want: /Usage: llm-balance \[command\][\s\S]*Exit codes/ },
    { args: ["help"], want: /Commands:[\s\S]*probe/ },
    { args: ["help", "check"], want: /Usage: llm-balance check/ },
    {
      args: ["serve", "--help"],
      want: /Usage: llm-balance serve[\s\S]*SIGHUP[\s\S]*LLM_BALANCE_PORT/,
    },
    { args: ["check", "--help"], want: /Usage: llm-balance check[\s\S]*Exit codes: 0 valid, 2/ },
    { args: ["probe", "-h"], want: /Usage: llm-balance probe[\s\S]*1 some keys not healthy/ },
    { args: ["version", "--help"], want: /Usage: llm-balance version/ },
  ];
  const results = await Promise.all(cases.map((c) => runCli(c.args)));
  for (const [i, r] of results.entries()) {
    assert.equal(r.code, 0, `${cases[i]!.args.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, cases[i]!.want);
  }
});

Deno.test("an unknown command or option exits 2 with a message on stderr", async () => {
  const [command, option, misplaced] = await Promise.all([
    runCli(["frobnicate"]),
    runCli(["check", "--frob"]),
    runCli(["probe", "--port", "1"]),
  ]);
  assert.equal(command.code, 2);
  assert.equal(command.stdout, "");
  assert.match(command.stderr, /Unknown command "frobnicate"/);
  assert.equal(option.code, 2);
  assert.match(option.stderr, /Unknown option "--frob"/);
  assert.equal(misplaced.code, 2);
  assert.match(misplaced.stderr, /--port does not apply to "probe"/);
});

Deno.test("check prints a summary of a valid config with keys masked and exits 0", async () => {
  const cfg = await tempConfig(nativeConfig(
    "http://127.0.0.1:9/v1",
    `pools:
  gpt-4o: { strategy: weighted, upstreams: [mock] }
  default: { upstreams: [mock] }
`,
  ));
  try {
    const [text, json] = await Promise.all([
      runCli(["check", "--config", cfg.path]),
      runCli(["check", "-c", cfg.path, "--json"]),
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /valid \(native format\)/);
    assert.match(text.stdout, /pool "gpt-4o": weighted over 2 key\(s\)/);
    assert.match(text.stdout, /default pool \(every other model\): round_robin over 2 key\(s\)/);
    assert.match(text.stdout, /upstream mock: http:\/\/127\.0\.0\.1:9\/v1/);
    for (const out of [text.stdout, text.stderr, json.stdout, json.stderr]) {
      assert.ok(!out.includes(KEY_A) && !out.includes(KEY_B), `a key leaked: ${out}`);
    }
    assert.equal(json.code, 0, json.stderr);
    const summary = JSON.parse(json.stdout);
    assert.equal(summary.format, "native");
    assert.equal(summary.pools.length, 2);
    assert.equal(summary.upstreams[0].keys.length, 2);
  } finally {
    await cfg.remove();
  }
});

Deno.test("check accepts Seed A and Seed B files unchanged", async () => {
  const fixtures = new URL("../fixtures/", import.meta.url).pathname;
  const [a, b] = await Promise.all([
    runCli(["check", "--config", `${fixtures}seed_a.json`]),
    // Seed B listens on 0.0.0.0 with client keys, which is allowed.
    runCli(["check", "--config", `${fixtures}seed_b.yaml`]),
  ]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /valid \(seed-a format\)/);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /valid \(seed-b format\)/);
});

Deno.test("check exits 2 naming the field and line of each broken config", async () => {
  const cases = [
    {
      name: "bad YAML",
      text: `upstreams:\n  a:\n    base_url: http://127.0.0.1:9/v1\n    keys: [k1\n  b: [\n`,
      want: [/line \d+: invalid YAML/],
    },
    {
      name: "unknown strategy",
      text: nativeConfig(
        "http://127.0.0.1:9/v1",
        "pools:\n  default:\n    strategy: fastest\n    upstreams: [mock]\n",
      ),
      want: [/pools\.default\.strategy \(line 7\): unknown strategy "fastest"/, /round_robin/],
    },
    {
      name: "negative weight",
      text: nativeConfig("http://127.0.0.1:9/v1", "    weight: -1\n"),
      want: [/upstreams\.mock\.weight \(line 5\): must be >= 0/],
    },
    {
      name: "missing env var",
      text:
        "upstreams:\n  mock:\n    base_url: http://127.0.0.1:9/v1\n    keys: ${LLM_BALANCE_TEST_NOPE_77}\n",
      want: [
        /upstreams\.mock\.keys \(line 4\): environment variable "LLM_BALANCE_TEST_NOPE_77" is not set/,
      ],
    },
    {
      name: "Seed B unknown strategy",
      text:
        `models:\n  gpt-4:\n    api_base: http://127.0.0.1:9/v1\n    api_key: sk-x\n    load_balance_strategy: fastest\n`,
      want: [/models\.gpt-4\.load_balance_strategy \(line 5\): unknown strategy "fastest"/],
    },
  ];
  const cfgs = await Promise.all(cases.map((c) => tempConfig(c.text)));
  try {
    const results = await Promise.all(cfgs.map((cfg) => runCli(["check", "--config", cfg.path])));
    for (const [i, r] of results.entries()) {
      const c = cases[i]!;
      assert.equal(r.code, 2, `${c.name}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "", c.name);
      assert.match(r.stderr, /^Cannot load config "/, c.name);
      for (const want of c.want) assert.match(r.stderr, want, c.name);
    }
  } finally {
    await Promise.all(cfgs.map((c) => c.remove()));
  }
});

Deno.test("check --json prints every problem of an invalid config as JSON on stdout, exit 2", async () => {
  const cases = [
    {
      name: "schema error",
      text: nativeConfig("http://127.0.0.1:9/v1", "    weight: -1\n"),
      want: [{ path: "upstreams.mock.weight", line: 5, message: "must be >= 0" }],
    },
    {
      name: "unknown strategy (found after loading)",
      text: nativeConfig(
        "http://127.0.0.1:9/v1",
        "pools:\n  default:\n    strategy: fastest\n    upstreams: [mock]\n",
      ),
      want: [{
        path: "pools.default.strategy",
        line: 7,
        message:
          'unknown strategy "fastest" (known: least_connections, p2c, quota_aware, random, round_robin, weighted)',
      }],
    },
  ];
  for (const c of cases) {
    const cfg = await tempConfig(c.text);
    try {
      const r = await runCli(["check", "--config", cfg.path, "--json"]);
      assert.equal(r.code, 2, `${c.name}: ${r.stderr}`);
      assert.deepEqual(JSON.parse(r.stdout), { valid: false, source: cfg.path, errors: c.want });
      assert.match(r.stderr, /^Cannot load config "/, `${c.name}: people still read stderr`);
    } finally {
      await cfg.remove();
    }
  }
  const missing = await runCli(["check", "--config", "/nonexistent/llm-balance.yaml", "--json"]);
  assert.equal(missing.code, 2);
  assert.deepEqual(JSON.parse(missing.stdout), {
    valid: false,
    source: "/nonexistent/llm-balance.yaml",
    errors: [{ path: "", message: "file not found" }],
  });
  const valid = await tempConfig(nativeConfig("http://127.0.0.1:9/v1"));
  try {
    const r = await runCli(["check", "--config", valid.path, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).valid, true);
  } finally {
    await valid.remove();
  }
});

Deno.test("probe --json gives each key's stable id and says why a connection failed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closed = listener.addr.port;
  listener.close();
  const cfg = await tempConfig(nativeConfig(`http://127.0.0.1:${closed}/v1`));
  try {
    const [json, keys] = await Promise.all([
      runCli(["probe", "--config", cfg.path, "--json"]),
      runCli(["check", "--config", cfg.path, "--json"]),
    ]);
    assert.equal(json.code, 1, json.stderr);
    const rows = JSON.parse(json.stdout) as { key: string; id: string; detail: string }[];
    assert.equal(rows.length, 2);
    const summary = JSON.parse(keys.stdout) as { upstreams: { keys: string[] }[] };
    assert.deepEqual(rows.map((r) => r.key), summary.upstreams[0]!.keys);
    for (const r of rows) {
      assert.match(r.id, /^mock:[0-9a-f]+$/);
      assert.match(r.detail, /^cannot connect: Connection refused/i);
    }
    assert.notEqual(rows[0]!.id, rows[1]!.id);
    assert.ok(!json.stdout.includes(KEY_A) && !json.stdout.includes(KEY_B));
  } finally {
    await cfg.remove();
  }
});

Deno.test("probe --json prints a broken config's problems as JSON on stdout", async () => {
  const cfg = await tempConfig(nativeConfig("http://127.0.0.1:9/v1", "    weight: -1\n"));
  try {
    const r = await runCli(["probe", "--config", cfg.path, "--json"]);
    assert.equal(r.code, 2);
    assert.deepEqual(JSON.parse(r.stdout).errors, [
      { path: "upstreams.mock.weight", line: 5, message: "must be >= 0" },
    ]);
  } finally {
    await cfg.remove();
  }
});

Deno.test("probe prints one row per key and exits 0 when every key is healthy", async () => {
  await using one = await startMockUpstream({ name: "one" });
  await using two = await startMockUpstream({ name: "two" });
  const cfg = await tempConfig(`upstreams:
  one: { base_url: ${one.baseUrl}, keys: [${KEY_A}] }
  two: { base_url: ${two.baseUrl}, keys: [${KEY_B}] }
`);
  try {
    const [table, json] = await Promise.all([
      runCli(["probe", "--config", cfg.path]),
      runCli(["probe", "--config", cfg.path, "--json"]),
    ]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split("\n");
    assert.match(lines[0]!, /^KEY\s+UPSTREAM\s+RESULT\s+STATUS\s+LATENCY/);
    assert.equal(lines.length, 3);
    assert.match(table.stdout, /one\s+healthy\s+200/);
    assert.match(table.stdout, /two\s+healthy\s+200/);
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as { key: string; upstream: string; result: string }[];
    assert.deepEqual(rows.map((r) => [r.upstream, r.result]), [["one", "healthy"], [
      "two",
      "healthy",
    ]]);
    for (const out of [table.stdout, json.stdout, table.stderr]) {
      assert.ok(!out.includes(KEY_A) && !out.includes(KEY_B), out);
    }
    // GET <base_url>/models with each key: two probes per mock (table and JSON runs)
    assert.deepEqual(one.requests.map((r) => `${r.method} ${r.path} ${r.key}`), [
      `GET /v1/models ${KEY_A}`,
      `GET /v1/models ${KEY_A}`,
    ]);
  } finally {
    await cfg.remove();
  }
});

Deno.test("probe exits 1 when a key is not healthy, and its JSON says which", async () => {
  await using good = await startMockUpstream({ name: "good" });
  await using bad = await startMockUpstream({ name: "bad", mode: "error500" });
  const cfg = await tempConfig(`upstreams:
  good: { base_url: ${good.baseUrl}, keys: [${KEY_A}] }
  bad: { base_url: ${bad.baseUrl}, keys: [${KEY_B}] }
`);
  try {
    const r = await runCli(["probe", "--config", cfg.path, "--json"]);
    assert.equal(r.code, 1, r.stderr);
    const rows = JSON.parse(r.stdout) as { upstream: string; result: string; status: number }[];
    const byName = Object.fromEntries(rows.map((row) => [row.upstream, row]));
    assert.equal(byName.good?.result, "healthy");
    assert.equal(byName.bad?.result, "server_error");
    assert.equal(byName.bad?.status, 500);
    assert.match(r.stderr, /1 of 2 key\(s\) not healthy/);
  } finally {
    await cfg.remove();
  }
});

Deno.test("probe exits 2 on a broken config and contacts nothing", async () => {
  await using mock = await startMockUpstream();
  const cfg = await tempConfig(nativeConfig(mock.baseUrl, "    weight: -1\n"));
  try {
    const r = await runCli(["probe", "--config", cfg.path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /weight \(line 5\): must be >= 0/);
    assert.equal(mock.requestCount, 0);
  } finally {
    await cfg.remove();
  }
});
