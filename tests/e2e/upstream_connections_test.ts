/**
 * @module
 * End-to-end behaviour of upstream keep-alive connections through the proxy: a kept-alive
 * connection the upstream closes as a request goes out is retried as an attempt like any other
 * (counted, logged, bounded by `retry.max_attempts`, not held against the key), the request is
 * never re-sent unseen, and pauses against an upstream that closes idle connections fail
 * nothing.
 */

import assert from "node:assert/strict";
import { rawUpstream, response } from "../helpers/raw_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";

const KEY = "sk-live-000000000000000001";
const MASK = "sk-l...0001";
const ANSWER = response(
  200,
  '{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}',
  ["content-type: application/json"],
);

function config(url: string, maxAttempts: number): string {
  return `
upstreams:
  up: { base_url: "${url}/v1", keys: [${KEY}] }
retry: { max_attempts: ${maxAttempts} }
`;
}

function chat(proxy: TestProxy): Promise<Response> {
  return fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
  });
}

async function keyStats(proxy: TestProxy): Promise<Record<string, unknown>> {
  const res = await fetch(`${proxy.url}/stats`);
  const all = await res.json() as Record<string, Record<string, unknown>>;
  return all[MASK] ?? {};
}

async function attemptsTotal(proxy: TestProxy): Promise<number> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  return parsePrometheus(text).samples
    .filter((s) => s.name === "llm_balance_attempts_total")
    .reduce((n, s) => n + s.value, 0);
}

Deno.test("proxy retries a stale kept-alive connection as a counted attempt, sent once each", async () => {
  // the second request on the first connection is read, then the connection closes unanswered
  await using up = rawUpstream((req, conn) => {
    if (req.connection === 1 && req.index === 2) return "close";
    conn.write(ANSWER);
    return "keep";
  });
  await using proxy = await startProxy(config(up.url, 3));
  for (let i = 0; i < 2; i++) {
    const res = await chat(proxy);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.equal(up.requests.length, 3, "arrivals: 1 + the stale one + its retry");
  const s = await keyStats(proxy);
  assert.equal(s.requests, 3, "/stats counts every arrival as an attempt");
  assert.equal(s.consecutive_failures, 0, "a stale connection is not held against the key");
  assert.equal(await attemptsTotal(proxy), 3, "/metrics counts every attempt");
  const failed = proxy.logRecords().filter((l) => l.msg === "upstream attempt failed");
  assert.equal(failed.length, 1);
  assert.equal(failed[0]?.class, "stale");
  const lines = proxy.logRecords().filter((l) =>
    l.msg === "request" && l.path === "/v1/chat/completions"
  );
  assert.deepEqual(lines.map((l) => l.attempts), [1, 2]);
  assert.ok(up.requests[2]!.connection > 1, "the retry went on a fresh connection");
});

Deno.test("proxy answers a stale connection with a 502 and Retry-After when no attempt is left", async () => {
  await using up = rawUpstream((req, conn) => {
    if (req.index === 2) return "close";
    conn.write(ANSWER);
    return "keep";
  });
  await using proxy = await startProxy(config(up.url, 1));
  await (await chat(proxy)).body?.cancel();
  const res = await chat(proxy);
  assert.equal(res.status, 502);
  assert.equal(res.headers.get("retry-after"), "1");
  const body = await res.json() as { error: { code: string; message: string } };
  assert.equal(body.error.code, "upstream_connection_closed");
  assert.match(body.error.message, /Upstream "up"/);
  assert.doesNotMatch(body.error.message, /127\.0\.0\.1/);
  assert.equal(up.requests.length, 2, "max_attempts 1: the request was sent once");
  assert.equal((await keyStats(proxy)).requests, 2);
});

Deno.test("proxy fails nothing across pauses longer than the upstream's idle keep-alive", async () => {
  // closes idle connections after 150 ms, announcing nothing (as Node's and uvicorn's 5 s)
  await using up = rawUpstream((_req, conn) => {
    conn.write(ANSWER);
    return "keep";
  }, { idleCloseMs: 150 });
  await using proxy = await startProxy(config(up.url, 1));
  let ok = 0;
  for (let round = 0; round < 3; round++) {
    const burst = await Promise.all(Array.from({ length: 8 }, () => chat(proxy)));
    for (const res of burst) {
      if (res.status === 200) ok++;
      await res.body?.cancel();
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(ok, 24, "every request answered");
  assert.equal(up.requests.length, 24, "one arrival per request");
  const s = await keyStats(proxy);
  assert.equal(s.requests, 24);
  assert.equal(s.consecutive_failures, 0);
  assert.equal(proxy.logRecords().filter((l) => l.msg === "upstream attempt failed").length, 0);
});
