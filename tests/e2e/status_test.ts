/**
 * @module
 * End-to-end: `llm-balance status` against a real llm-balance (`serve` as a subprocess, on
 * 127.0.0.1, over mock upstreams): the text and JSON views with keys masked, exit 0 while every
 * pool can serve and 1 once every key of a pool is disabled through the admin API, the admin
 * key taken from the environment or the config, a clear message without it (401), an
 * unreachable address, and `--watch` stopped by SIGINT.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { type CliResult, MAIN, runCli, startServe, tempConfig } from "../helpers/cli.ts";
import { loadEffectiveConfig, parseArgs } from "../../src/cli.ts";
import { optionalConfig, status } from "../../src/commands/status.ts";

const ADMIN = "ad-status-e2e-admin-key-00000000000001";
const K1 = "sk-status-e2e-upstream-key-0000000001";
const K2 = "sk-status-e2e-upstream-key-0000000002";
const K3 = "sk-status-e2e-upstream-key-0000000003";

function config(baseUrl: string, port = 0): string {
  return `server: { port: ${port} }
auth: { admin_key: ${ADMIN} }
upstreams:
  openai:
    base_url: ${baseUrl}
    keys:
      - { key: ${K1}, name: main, quota: { requests_per_day: 100 } }
      - ${K2}
  anthropic: { base_url: ${baseUrl}, keys: [${K3}] }
pools:
  gpt-4o: { upstreams: [openai] }
  claude: { upstreams: [anthropic] }
`;
}

/** Whether `src/cli.ts` knows `status` yet; until it does, `status()` is called in-process. */
const WIRED = (() => {
  try {
    parseArgs(["status"]);
    return true;
  } catch {
    return false;
  }
})();

/**
 * Runs `status` through the real command line (`deno run -A main.ts status ...`), or, before
 * the command line knows it, by calling `status()` with `--url`, `--json` and `--config` only.
 */
async function runStatus(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  if (WIRED) return await runCli(["status", ...args], { env: { LLM_BALANCE_CONFIG: "", ...env } });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const flag = (name: string) => args.includes(name) ? args[args.indexOf(name) + 1] : undefined;
  const path = flag("--config") ?? env.LLM_BALANCE_CONFIG;
  const load = () =>
    loadEffectiveConfig(
      { command: "serve", json: false, help: false, ...(path ? { config: path } : {}) },
      (n) => env[n],
    );
  const config = path ? await optionalConfig(load, true) : undefined;
  const code = await status(
    { config, url: flag("--url"), json: args.includes("--json") },
    {
      env: (n) => env[n],
      write: (t) => void stdout.push(t),
      say: (t) => void stderr.push(t + "\n"),
      isTerminal: false,
    },
  );
  return { code, stdout: stdout.join(""), stderr: stderr.join("") };
}

function noSecrets(r: CliResult): void {
  for (const secret of [ADMIN, K1, K2, K3]) {
    assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), "a secret was printed");
  }
}

async function chat(url: string, model: string): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
  await res.body?.cancel();
  return res.status;
}

Deno.test("status shows a serving llm-balance as text and JSON and exits 0, then 1 once a pool has no key", async () => {
  await using mock = await startMockUpstream();
  const cfg = await tempConfig(config(mock.baseUrl));
  try {
    await using serve = await startServe(["serve", "--config", cfg.path]);
    for (const model of ["gpt-4o", "gpt-4o", "gpt-4o", "claude"]) {
      assert.equal(await chat(serve.url, model), 200);
    }
    const env = { LLM_BALANCE_ADMIN_KEY: ADMIN };
    const [text, json] = await Promise.all([
      runStatus(["--url", serve.url], env),
      runStatus(["--url", serve.url, "--json"], env),
    ]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.split("\n");
    assert.match(lines[0]!, new RegExp(`^OK {2}${serve.url} {2}llm-balance \\S+ {2}up `));
    assert.match(text.stdout, /^gpt-4o +round_robin +2\/2 /m);
    assert.match(text.stdout, /^claude +round_robin +1\/1 /m);
    assert.match(
      text.stdout,
      /^ {2}sk-s\.\.\.0001 +main +openai +serving +0 +\d+ +0 .*day \d+\/100/m,
    );
    assert.match(text.stdout, /^ {2}sk-s\.\.\.0003 +anthropic +serving /m);
    assert.ok(lines.every((l) => l.length <= 100), "fits 100 columns");
    assert.ok(!text.stdout.includes("\x1b["), "no colors on a pipe");
    // (the shipped ./config.yaml, which needs $MODELSCOPE_KEYS, may be noted as not used)
    assert.doesNotMatch(text.stderr.replace(/^llm-balance: config not used: .*\n/m, ""), /\S/);
    noSecrets(text);

    assert.equal(json.code, 0, json.stderr);
    const data = JSON.parse(json.stdout);
    assert.equal(data.ok, true);
    assert.deepEqual(data.pools.map((p: { model: string }) => p.model), ["gpt-4o", "claude"]);
    assert.deepEqual(
      data.keys.map((k: { mask: string }) => k.mask).sort(),
      ["sk-s...0001", "sk-s...0002", "sk-s...0003"],
    );
    assert.equal(
      data.keys.reduce((n: number, k: { requests: number }) => n + k.requests, 0),
      4,
    );
    noSecrets(json);

    // every key of claude disabled through the admin API: NOT OK, exit 1
    const res = await fetch(`${serve.url}/admin/upstreams/anthropic/disable`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    assert.equal(res.status, 200, await res.text());
    const [down, downJson] = await Promise.all([
      runStatus(["--url", serve.url], env),
      runStatus(["--url", serve.url, "--json"], env),
    ]);
    assert.equal(down.code, 1, down.stderr);
    assert.match(down.stdout, /^NOT OK /);
    assert.match(down.stdout, /^no usable key in claude$/m);
    assert.match(down.stdout, /^claude +round_robin +0\/1 /m);
    assert.match(down.stdout, /^ {2}sk-s\.\.\.0003 +anthropic +disabled /m);
    assert.match(down.stdout, /^LAST EVENTS$/m);
    assert.match(down.stdout, /anthropic sk-s\.\.\.0003 .*disabled/);
    assert.match(down.stderr, /1 of 2 pool\(s\) cannot serve/);
    assert.equal(downJson.code, 1);
    assert.equal(JSON.parse(downJson.stdout).ok, false);
    noSecrets(down);
  } finally {
    await cfg.remove();
  }
});

Deno.test("status needs the admin key: 401 said clearly, the key from the environment or the config", async () => {
  await using mock = await startMockUpstream();
  const cfg = await tempConfig(config(mock.baseUrl));
  try {
    await using serve = await startServe(["serve", "--config", cfg.path]);
    const [none, wrong] = await Promise.all([
      runStatus(["--url", serve.url]),
      runStatus(["--url", serve.url], { LLM_BALANCE_ADMIN_KEY: "ad-not-the-admin-key-0000000001" }),
    ]);
    assert.equal(none.code, 1);
    assert.equal(none.stdout, "");
    assert.match(
      none.stderr,
      /Cannot read status from "http:\/\/127\.0\.0\.1:\d+": an admin key is needed \(401\): set LLM_BALANCE_ADMIN_KEY or auth\.admin_key/,
    );
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /the admin key was refused \(401\)/);
    assert.ok(!wrong.stderr.includes("ad-not-the-admin-key"));

    // a config of its own gives the address and the admin key: no --url, no variable
    const port = new URL(serve.url).port;
    const mine = await tempConfig(config(mock.baseUrl, Number(port)));
    try {
      const viaFlag = await runStatus(["--config", mine.path]);
      assert.equal(viaFlag.code, 0, viaFlag.stderr);
      assert.match(viaFlag.stdout, new RegExp(`^OK {2}http://127\\.0\\.0\\.1:${port} `));
      noSecrets(viaFlag);
      const viaEnv = await runStatus([], { LLM_BALANCE_CONFIG: mine.path });
      assert.equal(viaEnv.code, 0, viaEnv.stderr);
    } finally {
      await mine.remove();
    }
  } finally {
    await cfg.remove();
  }
});

Deno.test("status exits 1 when nothing answers", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const gone = await runStatus(["--url", `http://127.0.0.1:${port}`]);
  assert.equal(gone.code, 1);
  assert.equal(gone.stdout, "");
  assert.match(gone.stderr, /cannot reach it: .*[Cc]onnection refused/);
});

Deno.test({
  name: "status exits 2 on an unknown option, a bad --interval or a named config missing",
  ignore: !WIRED,
}, async () => {
  const [flag, interval, missing] = await Promise.all([
    runStatus(["--frob"]),
    runStatus(["--watch", "--interval", "0"]),
    runStatus(["--config", "/nonexistent/llm-balance.yaml"]),
  ]);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Unknown option "--frob"/);
  assert.equal(interval.code, 2);
  assert.match(interval.stderr, /--interval must be/);
  assert.equal(missing.code, 2);
  assert.match(
    missing.stderr,
    /Cannot load config "\/nonexistent\/llm-balance\.yaml": file not found/,
  );
});

Deno.test("status --watch redraws until SIGINT and exits with the last frame's code", async () => {
  await using mock = await startMockUpstream();
  const cfg = await tempConfig(config(mock.baseUrl));
  try {
    await using serve = await startServe(["serve", "--config", cfg.path]);
    if (!WIRED) return await watchInProcess(serve.url);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "status", "--url", serve.url, "--watch", "--interval", "0.2"],
      env: { NO_COLOR: "1", LLM_BALANCE_ADMIN_KEY: ADMIN, LLM_BALANCE_CONFIG: "" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    const deadline = Date.now() + 20_000;
    while ((out.match(/^--- /gm)?.length ?? 0) < 2 && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    child.kill("SIGINT");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const { code } = await child.status;
    const stderr = await new Response(child.stderr).text();
    assert.ok((out.match(/^--- \d{4}-\d\d-\d\dT/gm)?.length ?? 0) >= 2, out);
    assert.ok((out.match(/^OK {2}http/gm)?.length ?? 0) >= 3, out);
    assert.equal(code, 0, stderr);
  } finally {
    await cfg.remove();
  }
});

/** `--watch` before the command line knows `status`: stopped by an abort after three frames. */
async function watchInProcess(url: string): Promise<void> {
  const stop = new AbortController();
  let out = "";
  const code = await status({ url, watch: true, intervalS: 0.2 }, {
    env: (n) => n === "LLM_BALANCE_ADMIN_KEY" ? ADMIN : undefined,
    isTerminal: false,
    signal: stop.signal,
    write: (t) => {
      out += t;
      if ((out.match(/^OK {2}http/gm)?.length ?? 0) >= 3) stop.abort();
    },
    say: () => {},
  });
  assert.equal(out.match(/^--- \d{4}-\d\d-\d\dT/gm)?.length ?? 0, 2, out);
  assert.equal(code, 0);
}
