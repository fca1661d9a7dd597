/**
 * @module
 * The key-leak scan: a full scenario (successes, streams, upstream 401/429/500, broken
 * streams, timeouts, unreachable upstreams, an upstream that echoes the key it was sent, client
 * auth failures, client rate limits, stats, metrics, admin actions, debug logs), then every byte
 * llm-balance wrote (response status lines, headers and bodies, log lines, the SDK's error
 * messages, and the output of `check`, `probe --json` and `serve`) is searched for every
 * configured upstream key, client key and admin key, and for any 12 characters in a row of one.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { readChunks, startScriptedUpstream, waitFor } from "../helpers/e2e.ts";
import { runCli, startServe } from "../helpers/cli.ts";

const canary = (what: string) => `sk-LEAKCANARY-${what}-${crypto.randomUUID().replaceAll("-", "")}`;
const U_OK = canary("upstream-ok-1");
const U_OK2 = canary("upstream-ok-2");
const U_REVOKED = canary("upstream-revoked");
const U_500 = canary("upstream-500");
const U_429 = canary("upstream-429");
const U_DIE = canary("upstream-die");
const U_ECHO = canary("upstream-echo");
const U_DOWN = canary("upstream-down");
const U_HANG = canary("upstream-hang");
const C_ALICE = canary("client-alice");
const C_LIMITED = canary("client-limited");
const C_NARROW = canary("client-narrow");
const ADMIN = canary("admin");
const SECRETS = [
  U_OK,
  U_OK2,
  U_REVOKED,
  U_500,
  U_429,
  U_DIE,
  U_ECHO,
  U_DOWN,
  U_HANG,
  C_ALICE,
  C_LIMITED,
  C_NARROW,
  ADMIN,
];

/** Every place a secret (or 12 characters of one) appears in `text`. */
function leaks(text: string): string[] {
  const found: string[] = [];
  for (const s of SECRETS) {
    if (text.includes(s)) {
      found.push(`whole key ${s.slice(0, 30)}...`);
      continue;
    }
    for (let i = 0; i + 12 <= s.length; i++) {
      const window = s.slice(i, i + 12);
      // the shared "sk-LEAKCANARY-<what>-" prefix is not secret; the random tail is
      if (i + 12 <= s.lastIndexOf("-") + 1) continue;
      if (text.includes(window)) {
        found.push(`part "${window}" of ${s.slice(0, 30)}...`);
        break;
      }
    }
  }
  return found;
}

function assertNoLeak(what: string, text: string): void {
  const found = leaks(text);
  assert.deepEqual(found, [], `${what} leaks: ${found.join("; ")}\n${text.slice(0, 2000)}`);
}

function echoUpstream() {
  return startScriptedUpstream((req) => {
    // a badly behaved provider: its errors quote the key it was sent
    const key = req.headers.get("authorization")?.replace(/^Bearer /, "") ??
      req.headers.get("x-api-key") ?? "";
    const body = new TextDecoder().decode(req.body);
    if (body.includes('"echo-text"')) {
      return new Response(`upstream failed for key ${key}`, { status: 500 });
    }
    const err = { error: { message: `Incorrect API key provided: ${key}`, type: "auth", key } };
    return new Response(JSON.stringify(err), {
      // a 400 goes back to the client as it is, so its body must be masked on the way
      status: body.includes('"echo-401"') ? 401 : 400,
      headers: { "content-type": "application/json", "x-debug-key": key },
    });
  });
}

function configText(o: {
  ok: string;
  revoked: string;
  e500: string;
  r429: string;
  die: string;
  echo: string;
  down: string;
  hang: string;
}): string {
  return `
log: { level: debug }
auth:
  admin_key: ${ADMIN}
  client_keys:
    - { key: ${C_ALICE}, name: alice }
    - { key: ${C_LIMITED}, name: limited, rate_limit: 1 }
    - { key: ${C_NARROW}, name: narrow, models: [ok-model] }
upstreams:
  ok: { base_url: "${o.ok}", keys: [${U_OK}, { key: ${U_OK2}, name: second }] }
  revoked: { base_url: "${o.revoked}", keys: [${U_REVOKED}] }
  e500: { base_url: "${o.e500}", keys: [${U_500}] }
  r429: { base_url: "${o.r429}", keys: [${U_429}] }
  die: { base_url: "${o.die}", keys: [${U_DIE}] }
  echo: { base_url: "${o.echo}", auth: x-api-key, keys: [${U_ECHO}] }
  down: { base_url: "${o.down}", keys: [${U_DOWN}], timeout: { connect: 1 } }
  hang:
    base_url: "${o.hang}"
    keys: [${U_HANG}]
    timeout: { first_byte: 0.3 }
    health_check: { timeout: 0.3 }
pools:
  ok-model: { upstreams: [ok] }
  revoked: { upstreams: [revoked] }
  fail500: { upstreams: [e500] }
  limited429: { upstreams: [r429] }
  dies: { upstreams: [die] }
  echo: { upstreams: [echo] }
  echo-text: { upstreams: [echo] }
  echo-401: { upstreams: [echo] }
  down: { upstreams: [down] }
  slow: { upstreams: [hang] }
retry: { max_attempts: 2, backoff_base: 0.01, backoff_max: 0.02 }
`;
}

async function transcript(res: Response): Promise<string> {
  const head = `HTTP ${res.status} ${res.statusText}\n${
    [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n")
  }\n\n`;
  const { chunks } = await readChunks(res.body!);
  return head + chunks.map((c) => new TextDecoder().decode(c)).join("");
}

Deno.test("key leak: no configured key appears in any output of a full scenario", async () => {
  await using ok = await startMockUpstream({ name: "ok", keys: [U_OK, U_OK2] });
  await using revoked = await startMockUpstream({ name: "revoked", keys: [U_OK] });
  await using e500 = await startMockUpstream({ name: "e500", mode: "error500" });
  await using r429 = await startMockUpstream({ name: "r429", mode: "rate_limit" });
  await using die = await startMockUpstream({ name: "die", mode: "die_mid_stream" });
  await using hang = await startMockUpstream({ name: "hang", mode: "hang" });
  await using echo = echoUpstream();
  const down = await startMockUpstream({ name: "down" });
  const downUrl = down.baseUrl;
  await down.close(); // nothing listens there any more
  const text = configText({
    ok: ok.baseUrl,
    revoked: revoked.baseUrl,
    e500: e500.baseUrl,
    r429: r429.baseUrl,
    die: die.baseUrl,
    echo: echo.baseUrl,
    down: downUrl,
    hang: hang.baseUrl,
  });
  const outputs: [string, string][] = [];
  {
    await using proxy = await startProxy(text, { level: "debug" });
    const call = async (what: string, path: string, init: RequestInit = {}) => {
      const res = await fetch(proxy.url + path, { ...init, signal: AbortSignal.timeout(10_000) });
      outputs.push([what, await transcript(res)]);
      return res;
    };
    const as = (key: string, body?: unknown, extra: Record<string, string> = {}): RequestInit => ({
      method: body === undefined ? "GET" : "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}`, ...extra },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const chat = (model: string, extra: Record<string, unknown> = {}) => ({
      model,
      messages: [{ role: "user", content: "hello" }],
      ...extra,
    });

    // traffic
    assert.equal(
      (await call("ok", "/v1/chat/completions", as(C_ALICE, chat("ok-model")))).status,
      200,
    );
    await call(
      "ok stream",
      "/v1/chat/completions",
      as(C_ALICE, chat("ok-model", { stream: true })),
    );
    await call("anthropic", "/v1/messages", {
      ...as(C_ALICE, chat("ok-model", { max_tokens: 5 })),
      headers: { "content-type": "application/json", "x-api-key": C_ALICE },
    });
    const models = ["revoked", "fail500", "limited429", "echo", "echo-text", "echo-401", "down"];
    for (const model of [...models, "slow"]) {
      await call(model, "/v1/chat/completions", as(C_ALICE, chat(model)));
    }
    await call("dies", "/v1/chat/completions", as(C_ALICE, chat("dies", { stream: true })));
    await call("no model", "/v1/chat/completions", as(C_ALICE, { messages: [] }));
    await call("bad json", "/v1/chat/completions", {
      ...as(C_ALICE),
      method: "POST",
      body: "{oops",
    });
    await call("unknown model", "/v1/chat/completions", as(C_ALICE, chat("nope")));
    // client-side refusals
    await call("no key", "/v1/chat/completions", { method: "POST", body: "{}" });
    await call("wrong key", "/v1/chat/completions", as(`${C_ALICE}-not`, chat("ok-model")));
    await call("narrow", "/v1/chat/completions", as(C_NARROW, chat("fail500")));
    await call("limited 1", "/v1/chat/completions", as(C_LIMITED, chat("ok-model")));
    assert.equal(
      (await call("limited 2", "/v1/chat/completions", as(C_LIMITED, chat("ok-model")))).status,
      429,
    );
    // the SDK's own error messages
    const sdk = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: C_ALICE, maxRetries: 0 });
    for (const model of ["revoked", "echo", "fail500", "limited429"]) {
      const err = await sdk.chat.completions.create(chat(model) as never).then(
        () => "no error",
        (e: unknown) => `${e} ${JSON.stringify(e)}`,
      );
      outputs.push([`sdk ${model}`, err]);
    }
    // own endpoints, allowed and refused
    await call("health", "/health");
    for (
      const path of [
        "/stats",
        "/metrics",
        "/v1/stats/load_balancers",
        "/v1/stats/models/ok-model",
        "/admin/keys",
      ]
    ) {
      await call(path, path, as(ADMIN));
      await call(`${path} refused`, path, as(C_ALICE));
    }
    const keys = await (await fetch(`${proxy.url}/admin/keys`, as(ADMIN))).json();
    const id = encodeURIComponent(keys.keys[0].id);
    await call("disable", `/admin/keys/${id}/disable`, { ...as(ADMIN), method: "POST" });
    await call("enable", `/admin/keys/${id}/enable`, { ...as(ADMIN), method: "POST" });
    await call("reset", "/admin/upstreams/revoked/reset", { ...as(ADMIN), method: "POST" });
    await call("admin wrong", "/admin/keys", as(U_OK));
    await call("unknown admin", "/admin/keys/nope/disable", { ...as(ADMIN), method: "POST" });
    await call("stats again", "/v1/stats/load_balancers", as(ADMIN));
    await call("metrics again", "/metrics", as(ADMIN));
    // a reload logs too
    await proxy.app.reload(proxy.config);
    await waitFor(
      () => proxy.logRecords().filter((l) => l.msg === "request").length >= outputs.length - 4,
      "every request's log line",
      10_000,
    );
    outputs.push(["logs", proxy.logs.join("\n")]);
    // the upstream that quotes the key it was sent did so, and its key was masked
    assert.ok(echo.requests.length >= 1);
    const echoed = outputs.find(([what]) => what === "echo")![1];
    assert.match(echoed, /HTTP 400/);
    assert.match(echoed, /Incorrect API key provided: sk-L\.\.\.\w{4}/);
    assert.match(echoed, /x-debug-key: sk-L\.\.\.\w{4}/);
    assert.ok(
      proxy.logRecords().some((l) => l.msg === "a key was masked in a response to a client"),
    );
    assert.ok(proxy.logRecords().some((l) => l.level === "debug"), "debug lines were written");
  }

  const dir = await Deno.makeTempDir({ prefix: "llm-balance-leak-" });
  try {
    const path = `${dir}/config.yaml`;
    await Deno.writeTextFile(path, text);
    const checked = await runCli(["check", "--config", path]);
    outputs.push(["check", checked.stdout + checked.stderr]);
    assert.equal(checked.code, 0, checked.stderr);
    const probed = await runCli(["probe", "--json", "--config", path]);
    outputs.push(["probe", probed.stdout + probed.stderr]);
    const results = JSON.parse(probed.stdout) as { result: string }[];
    assert.equal(results.length, 9);
    assert.ok(results.some((r) => r.result === "healthy"));
    assert.ok(results.some((r) => r.result !== "healthy"));
    const bad = `${dir}/bad.yaml`;
    await Deno.writeTextFile(
      bad,
      text.replace(`{ key: ${U_OK2}, name: second }`, `{ key: ${U_OK2}, weight: -1, colour: red }`),
    );
    const invalid = await runCli(["check", "--config", bad]);
    assert.equal(invalid.code, 2);
    outputs.push(["check invalid", invalid.stdout + invalid.stderr]);
    await using served = await startServe(["serve", "--config", path, "--port", "0"]);
    const res = await fetch(`${served.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${C_ALICE}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "echo", messages: [] }),
    });
    outputs.push(["serve response", await transcript(res)]);
    await served.close();
    outputs.push(["serve stderr", served.lines.join("\n")]);
    assert.ok(served.lines.length > 2, "serve logged");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  const all: string[] = [];
  for (const [what, out] of outputs) all.push(...leaks(out).map((l) => `${what}: ${l}`));
  assert.deepEqual(all, [], `leaks found:\n${all.join("\n")}`);
  // the scan itself works: it sees a key when there is one
  assert.notDeepEqual(leaks(`x ${U_OK.slice(20, 40)} y`), []);
  assertNoLeak("all outputs", outputs.map(([, o]) => o).join("\n"));
});
