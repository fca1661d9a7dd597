/**
 * @module
 * Hot reload of a running `serve` subprocess: SIGHUP with a stream in flight (the stream
 * completes, the new upstream list takes effect, surviving keys keep their counters in /stats),
 * a broken config kept out while the old one keeps serving, and `server.watch_config: true`
 * reloading on a file change.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startServe, tempConfig } from "../helpers/cli.ts";

const KEY_A = "sk-reload-aaaa-0000-1111";
const KEY_B = "sk-reload-bbbb-0000-2222";
const REJECTED = "reload rejected: the old config keeps serving";

function config(upstreams: Record<string, { url: string; key: string }>, extra = ""): string {
  const lines = ["log: { level: info, format: json }", "upstreams:"];
  for (const [name, u] of Object.entries(upstreams)) {
    lines.push(`  ${name}: { base_url: ${u.url}, keys: [${u.key}] }`);
  }
  return lines.join("\n") + "\n" + extra;
}

async function chat(url: string, stream = false): Promise<Response> {
  return await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(10_000),
  });
}

async function stats(url: string): Promise<Record<string, { upstream: string; requests: number }>> {
  const res = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return await res.json();
}

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for (let i = 0; i < 10_000; i++) {
    const r = await reader.read();
    if (r.done) break;
    text += decoder.decode(r.value, { stream: true });
  }
  return text;
}

Deno.test("SIGHUP reloads with a stream in flight: it completes, new upstreams serve, counters stay", async () => {
  await using a = await startMockUpstream({ name: "a", chunks: 8, chunkDelayMs: 100 });
  await using b = await startMockUpstream({ name: "b" });
  const cfg = await tempConfig(config({ a: { url: a.baseUrl, key: KEY_A } }));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    for (let i = 0; i < 2; i++) {
      const res = await chat(served.url);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    const streamed = await chat(served.url, true);
    assert.equal(streamed.status, 200);
    const reader = streamed.body!.getReader();
    await reader.read();

    await Deno.writeTextFile(
      cfg.path,
      config({ a: { url: a.baseUrl, key: KEY_A }, b: { url: b.baseUrl, key: KEY_B } }),
    );
    served.child.kill("SIGHUP");
    const reloaded = await served.waitForLog((r) => r.msg === "config reloaded");
    assert.equal(reloaded.trigger, "SIGHUP");
    assert.equal(reloaded.upstreams, 2);

    const rest = await readAll(reader);
    assert.ok(rest.endsWith("data: [DONE]\n\n"), `the stream did not complete: ${rest}`);

    for (let i = 0; i < 4; i++) {
      const res = await chat(served.url);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    assert.ok(b.requests.length >= 1, "the new upstream got no request");
    const s = await stats(served.url);
    const byUpstream = Object.fromEntries(Object.values(s).map((v) => [v.upstream, v]));
    // every request key a served, before and after the reload, is still counted
    assert.equal(byUpstream.a?.requests, a.requests.length, JSON.stringify(s));
    assert.ok(a.requests.length >= 3);
    assert.equal(byUpstream.b?.requests, b.requests.length);
    assert.equal((await served.close()).code, 0);
  } finally {
    await cfg.remove();
  }
});

Deno.test("a broken config is rejected on SIGHUP with a logged error; the old one keeps serving", async () => {
  await using a = await startMockUpstream({ name: "a" });
  const good = config({ a: { url: a.baseUrl, key: KEY_A } });
  const cfg = await tempConfig(good);
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const broken = [
      { text: "upstreams:\n  a: [\n", want: /invalid YAML/ },
      {
        text: good + "pools:\n  default: { strategy: nope, upstreams: [a] }\n",
        want: /pools\.default\.strategy \(line \d+\): unknown strategy "nope"/,
      },
      {
        text: good.replace(KEY_A, '"${LLM_BALANCE_TEST_UNSET_RELOAD}"'),
        want: /LLM_BALANCE_TEST_UNSET_RELOAD/,
      },
    ];
    for (const [i, { text, want }] of broken.entries()) {
      await Deno.writeTextFile(cfg.path, text);
      served.child.kill("SIGHUP");
      const rejections = () => served.logs().filter((r) => r.msg === REJECTED);
      await served.waitForLog(() => rejections().length === i + 1);
      const rejected = rejections()[i]!;
      assert.equal(rejected.level, "error");
      assert.equal(rejected.trigger, "SIGHUP");
      assert.match(String(rejected.error), want);
      const res = await chat(served.url);
      assert.equal(res.status, 200, `request after broken reload ${i}`);
      await res.body?.cancel();
    }
    assert.equal(a.requests.length, 3);
    assert.ok(!served.lines.join("\n").includes(KEY_A), "a log line holds the key");
    assert.equal((await served.close()).code, 0);
  } finally {
    await cfg.remove();
  }
});

Deno.test("server.watch_config: true reloads when the config file changes", async () => {
  await using a = await startMockUpstream({ name: "a" });
  await using b = await startMockUpstream({ name: "b" });
  const watch = "server: { watch_config: true }\n";
  const cfg = await tempConfig(config({ a: { url: a.baseUrl, key: KEY_A } }, watch));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    await served.waitForLog((r) => r.msg === "watching the config file");
    // Replace the file the way editors do: write a copy, then rename it over the original.
    const next = config({ b: { url: b.baseUrl, key: KEY_B } }, watch);
    await Deno.writeTextFile(`${cfg.path}.tmp`, next);
    await Deno.rename(`${cfg.path}.tmp`, cfg.path);
    const reloaded = await served.waitForLog((r) => r.msg === "config reloaded");
    assert.equal(reloaded.trigger, "file change");
    const res = await chat(served.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-llm-balance-upstream"), "b");
    await res.body?.cancel();
    assert.equal(a.requests.length, 0);
    assert.equal((await served.close()).code, 0);
  } finally {
    await cfg.remove();
  }
});
