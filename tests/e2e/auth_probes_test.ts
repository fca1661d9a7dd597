/**
 * @module
 * End-to-end: a probe that cannot validate keys never brings back a key the upstream refused.
 * Behind a ModelScope-like upstream (`GET /v1/models` answers 200 to any token; chat refuses a
 * bad key with 401) a refused key stays out through many successful probes, and comes back
 * only by a real request after `health.auth_rest` (refused again: out again), or through an
 * operator reset. With `health_check.validates_key: true` (an upstream whose probe path checks
 * the key) a successful probe brings it back at once.
 */

import assert from "node:assert/strict";
import { statusOf } from "../../src/health/availability.ts";
import type { Candidate } from "../../src/plugin.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { chat, postJson, startScriptedUpstream } from "../helpers/e2e.ts";

const BAD = "ms-key-refused-0000000000001";
const GOOD = "ms-key-accepted-000000000002";

/**
 * A ModelScope-like upstream: chat completions refuse keys not in `accepted` with 401; the
 * models list answers 200 to any token unless `modelsCheckKey`.
 */
function modelscope(accepted: Set<string>, modelsCheckKey = false) {
  const seen: { method: string; path: string; key: string }[] = [];
  const upstream = startScriptedUpstream((req) => {
    const key = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "");
    seen.push({ method: req.method, path: req.path, key });
    const refused = !accepted.has(key) && (req.method === "POST" || modelsCheckKey);
    if (refused) {
      return Response.json({ errors: { message: "Invalid token", request_id: "r" } }, {
        status: 401,
      });
    }
    if (req.method === "GET") return Response.json({ object: "list", data: [] });
    return Response.json({
      object: "chat.completion",
      choices: [{ index: 0, message: { role: "assistant", content: "hi" } }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    });
  });
  return { upstream, seen };
}

function candidate(proxy: TestProxy, key: string): Candidate {
  return [...proxy.app.rt.candidates.values()].find((c) => c.key?.reveal() === key)!;
}

function status(proxy: TestProxy, key: string): string {
  return statusOf(candidate(proxy, key).state, Date.now());
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

Deno.test("a probe answering 200 to any token never brings back a refused key; a request after auth_rest does", async () => {
  const accepted = new Set([GOOD]);
  const { upstream, seen } = modelscope(accepted);
  await using _u = upstream;
  await using proxy = await startProxy(
    `
upstreams:
  modelscope:
    base_url: "${upstream.baseUrl}"
    keys: [${BAD}, ${GOOD}]
    health_check: { interval: 0.05, timeout: 1 }
health: { auth_rest: 3 }
`,
    { probes: true },
  );
  const posts = (key: string) => seen.filter((r) => r.method === "POST" && r.key === key).length;
  const probes = (key: string) => seen.filter((r) => r.method === "GET" && r.key === key).length;
  // round robin tries the bad key first: refused, retried on the good one
  const first = await postJson(`${proxy.url}/v1/chat/completions`, chat());
  assert.equal(first.status, 200);
  await first.body?.cancel();
  assert.equal(posts(BAD), 1);
  assert.equal(status(proxy, BAD), "resting");
  assert.equal(candidate(proxy, BAD).state.restReason, "auth");

  // many probes of the bad key answer 200: it stays out, and no request goes to it
  const probed = probes(BAD);
  await until(() => probes(BAD) >= probed + 5, "five more probes of the refused key");
  assert.equal(status(proxy, BAD), "resting");
  for (let i = 0; i < 4; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.equal(posts(BAD), 1, "nothing sent to the refused key while it rests");
  const rested = proxy.logRecords().filter((l) =>
    l.msg === "key resting: refused by the upstream (401/403)"
  );
  assert.equal(rested.length, 1);
  assert.equal(
    proxy.logRecords().some((l) => l.msg === "key restored: a probe that validates keys succeeded"),
    false,
  );

  // after auth_rest a real request is its trial: still refused, out again
  await until(() => status(proxy, BAD) === "healthy", "the end of the auth rest");
  for (let i = 0; i < 2 && posts(BAD) < 2; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200, "the client never sees the refusal");
    await res.body?.cancel();
  }
  assert.equal(posts(BAD), 2);
  assert.equal(status(proxy, BAD), "resting");

  // the account is fixed, and the operator brings the key back at once
  accepted.add(BAD);
  const reset = await fetch(`${proxy.url}/admin/keys/${candidate(proxy, BAD).id}/reset`, {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  assert.equal(reset.status, 200, await reset.text());
  assert.equal(status(proxy, BAD), "healthy");
  const served = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  for (const r of seen.filter((r) => r.method === "POST").slice(-4)) served.add(r.key);
  assert.deepEqual([...served].sort(), [BAD, GOOD].sort());
});

Deno.test("with validates_key: true a successful probe brings a refused key back before auth_rest", async () => {
  const accepted = new Set([GOOD]);
  const { upstream, seen } = modelscope(accepted, true);
  await using _u = upstream;
  await using proxy = await startProxy(
    `
upstreams:
  openai:
    base_url: "${upstream.baseUrl}"
    keys: [${BAD}, ${GOOD}]
    health_check: { interval: 0.05, timeout: 1, validates_key: true }
health: { auth_rest: 600 }
`,
    { probes: true },
  );
  await until(() => status(proxy, BAD) === "unhealthy", "the probe refusing the bad key");
  assert.equal(candidate(proxy, BAD).state.unhealthyReason, "auth (HTTP 401)");
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.equal(seen.filter((r) => r.method === "POST" && r.key === BAD).length, 0);
  accepted.add(BAD);
  await until(() => status(proxy, BAD) === "healthy", "a probe accepting the key");
});
