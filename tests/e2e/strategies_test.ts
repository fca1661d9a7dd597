/**
 * @module
 * End-to-end key selection through llm-balance with real mock upstreams: round_robin strict
 * order (skipping unusable keys), weighted 8:2 smooth, weight 0 never chosen,
 * least_connections, random, and Seed A's key list.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { seededRandom } from "../helpers/candidates.ts";
import { chat, postJson, startScriptedUpstream, waitFor } from "../helpers/e2e.ts";

async function send(proxy: TestProxy, n: number): Promise<string[]> {
  const served: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    await res.body?.cancel();
    served.push(res.headers.get("x-llm-balance-upstream") ?? "?");
  }
  return served;
}

Deno.test("round_robin sends requests to the keys in strict order", async () => {
  await using mock = await startMockUpstream();
  const keys = ["sk-rr-key-00000000000a", "sk-rr-key-00000000000b", "sk-rr-key-00000000000c"];
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${keys.join(", ")}] }
pools:
  gpt-4o: { strategy: round_robin, upstreams: [m] }
`);
  await send(proxy, 9);
  assert.deepEqual(mock.requests.map((r) => r.key), [...keys, ...keys, ...keys]);
});

Deno.test("round_robin skips a disabled key and keeps the order of the rest", async () => {
  await using mock = await startMockUpstream();
  const keys = ["sk-rr-key-00000000000a", "sk-rr-key-00000000000b", "sk-rr-key-00000000000c"];
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${keys.join(", ")}] }
`);
  const b = [...proxy.app.rt.candidates.values()].find((c) => c.key?.reveal() === keys[1])!;
  const off = await fetch(`${proxy.url}/admin/keys/${encodeURIComponent(b.id)}/disable`, {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  assert.equal(off.status, 200);
  await off.body?.cancel();
  await send(proxy, 4);
  assert.deepEqual(mock.requests.map((r) => r.key), [keys[0], keys[2], keys[0], keys[2]]);
});

Deno.test("weighted 8:2 gives 80/20 over 100 requests, 8 and 2 in every 10, weight 0 never", async () => {
  await using heavy = await startMockUpstream({ name: "heavy" });
  await using light = await startMockUpstream({ name: "light" });
  await using zero = await startMockUpstream({ name: "zero" });
  await using proxy = await startProxy(`
upstreams:
  heavy: { base_url: "${heavy.baseUrl}", key: sk-heavy-000000000001 }
  light: { base_url: "${light.baseUrl}", key: sk-light-000000000001 }
  zero: { base_url: "${zero.baseUrl}", key: sk-zero-0000000000001 }
pools:
  gpt-4o:
    strategy: weighted
    upstreams:
      - { upstream: heavy, weight: 8 }
      - { upstream: light, weight: 2 }
      - { upstream: zero, weight: 0 }
`);
  const served = await send(proxy, 100);
  assert.equal(heavy.requests.length, 80);
  assert.equal(light.requests.length, 20);
  assert.equal(zero.requests.length, 0);
  for (let i = 0; i + 10 <= served.length; i++) {
    const window = served.slice(i, i + 10);
    assert.equal(
      window.filter((s) => s === "light").length,
      2,
      `requests ${i}..${i + 9}: ${window}`,
    );
  }
});

Deno.test("least_connections prefers the idle upstream while another has slow requests in flight", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  await using slow = startScriptedUpstream(async () => {
    await gate;
    return Response.json({ object: "chat.completion" });
  });
  await using fast = await startMockUpstream({ name: "fast" });
  await using proxy = await startProxy(`
upstreams:
  slow: { base_url: "${slow.baseUrl}", key: sk-slow-000000000001 }
  fast: { base_url: "${fast.baseUrl}", key: sk-fast-000000000001 }
pools:
  gpt-4o: { strategy: least_connections, upstreams: [slow, fast] }
`);
  const first = postJson(`${proxy.url}/v1/chat/completions`, chat());
  await waitFor(() => slow.requests.length === 1, "the slow request");
  const served = await send(proxy, 8);
  assert.deepEqual(served, Array(8).fill("fast"));
  release();
  const res = await first;
  assert.equal(res.headers.get("x-llm-balance-upstream"), "slow");
  await res.body?.cancel();
  // both idle again: ties are shared in turn
  const after = await send(proxy, 2);
  assert.deepEqual(new Set(after), new Set(["slow", "fast"]));
  assert.equal(slow.requests.length, 2);
});

Deno.test("random spreads requests over every upstream", async () => {
  const mocks = await Promise.all(["a", "b", "c"].map((name) => startMockUpstream({ name })));
  try {
    await using proxy = await startProxy(
      `
upstreams:
${
        mocks.map((m) =>
          `  ${m.name}: { base_url: "${m.baseUrl}", key: sk-${m.name}-00000000000001 }`
        ).join("\n")
      }
pools:
  gpt-4o: { strategy: random, upstreams: [a, b, c] }
`,
      { random: seededRandom(7) },
    );
    await send(proxy, 60);
    for (const m of mocks) {
      assert.ok(
        m.requests.length >= 8 && m.requests.length <= 35,
        `${m.name}: ${m.requests.length}`,
      );
    }
  } finally {
    for (const m of mocks) await m.close();
  }
});

Deno.test("Seed A's api_keys are used round-robin", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    JSON.stringify({
      api_keys: ["key-1", "key-2", "key-3"],
      target_url: mock.origin,
      health_check: false,
    }),
    { source: "config.json" },
  );
  await send(proxy, 7);
  assert.deepEqual(mock.requests.map((r) => r.key), [
    "key-1",
    "key-2",
    "key-3",
    "key-1",
    "key-2",
    "key-3",
    "key-1",
  ]);
});
