/**
 * @module
 * End-to-end observability: /health, Seed A's /stats, the one log line per request (written when
 * the response has really finished), and the 503 error body when no key can serve.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { chat, postJson, requestLines, waitFor } from "../helpers/e2e.ts";

const KEYS = ["sk-observe-key-000000000001", "sk-observe-key-000000000002"];

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  return { status: res.status, body: await res.json() };
}

async function disable(proxy: TestProxy, id: string): Promise<void> {
  const res = await fetch(`${proxy.url}/admin/keys/${encodeURIComponent(id)}/disable`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
}

async function keyIds(proxy: TestProxy): Promise<string[]> {
  const { body } = await getJson(`${proxy.url}/admin/keys`);
  return (body.keys as { id: string }[]).map((k) => k.id);
}

Deno.test("GET /health answers 200 while one key is usable and 503 once all are disabled", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${KEYS.join(", ")}] }
`);
  const ok = await getJson(`${proxy.url}/health`);
  assert.equal(ok.status, 200);
  assert.equal(ok.body.status, "ok");
  const [a, b] = await keyIds(proxy);
  await disable(proxy, a!);
  assert.equal((await getJson(`${proxy.url}/health`)).status, 200);
  await disable(proxy, b!);
  const down = await getJson(`${proxy.url}/health`);
  assert.equal(down.status, 503);
  assert.equal(down.body.status, "unavailable");
  assert.equal(mock.requests.length, 0, "/health must not call upstreams");
});

Deno.test("proxy answers 503 with an OpenAI-style error body when no key is usable", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${KEYS.join(", ")}] }
`);
  for (const id of await keyIds(proxy)) await disable(proxy, id);
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
  assert.equal(res.status, 503);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = await res.json();
  assert.equal(typeof body.error.message, "string");
  assert.match(body.error.message, /all 2 keys of upstream "m" are unavailable: 2 disabled/);
  assert.equal(body.error.type, "service_unavailable");
  assert.equal(body.error.code, "no_upstream_available");
  assert.equal(mock.requests.length, 0);
  const chatLines = () => requestLines(proxy).filter((l) => l.path === "/v1/chat/completions");
  await waitFor(() => chatLines().length === 1, "the request log line");
  assert.equal(chatLines()[0]!.status, 503);
});

Deno.test("GET /stats shows every key under its own mask in Seed A's shape, never the key", async () => {
  await using mock = await startMockUpstream();
  const keys = [
    "k1",
    "k2",
    "sk-shared-prefix-and-suffix-AAAA-0001",
    "sk-shared-prefix-and-suffix-BBBB-0001",
    "sk-shared-prefix-000000000000000000003",
  ];
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${keys.join(", ")}] }
`);
  for (let i = 0; i < keys.length + 1; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  const res = await fetch(`${proxy.url}/stats`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  const raw = await res.text();
  for (const k of keys) {
    if (k.length > 2) assert.ok(!raw.includes(k), `/stats shows the key ${k}`);
  }
  const stats = JSON.parse(raw) as Record<
    string,
    { healthy: boolean; last_used: string | null; requests: number }
  >;
  const masks = Object.keys(stats);
  assert.equal(masks.length, keys.length, `masks: ${masks}`);
  assert.ok(!masks.includes("k1") && !masks.includes("k2"));
  for (const mask of masks) {
    const s = stats[mask]!;
    assert.equal(s.healthy, true);
    assert.equal(typeof s.requests, "number");
    assert.ok(s.last_used !== null && !Number.isNaN(Date.parse(s.last_used)), mask);
  }
  assert.deepEqual(masks.map((m) => stats[m]!.requests).sort(), [1, 1, 1, 1, 2]);
});

Deno.test("GET /stats counts every request when two upstreams share a key", async () => {
  await using a = await startMockUpstream({ name: "a" });
  await using b = await startMockUpstream({ name: "b" });
  const shared = "sk-same-key-on-two-upstreams-0001";
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", key: ${shared} }
  b: { base_url: "${b.baseUrl}", key: ${shared} }
pools:
  gpt-4o: { upstreams: [a] }
  gpt-4: { upstreams: [b] }
`);
  for (const model of ["gpt-4o", "gpt-4"]) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat(model));
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  const { body } = await getJson(`${proxy.url}/stats`);
  const total = Object.values(body as Record<string, { requests: number }>)
    .reduce((n, s) => n + s.requests, 0);
  assert.equal(total, 2, `/stats: ${JSON.stringify(Object.keys(body))}`);
});

Deno.test("proxy writes one log line per request with id, model, upstream, masked key, status, duration, attempts", async () => {
  await using bad = await startMockUpstream({ name: "bad", mode: "error500" });
  await using good = await startMockUpstream({ name: "good" });
  await using proxy = await startProxy(`
auth:
  client_keys: [sk-client-secret-000000001]
upstreams:
  bad: { base_url: "${bad.baseUrl}", key: ${KEYS[0]} }
  good: { base_url: "${good.baseUrl}", key: ${KEYS[1]} }
pools:
  gpt-4o: { upstreams: [bad, good] }
`);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat(), {
      authorization: "Bearer sk-client-secret-000000001",
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    ids.push(res.headers.get("x-request-id")!);
  }
  await waitFor(() => requestLines(proxy).length === 3, "3 request log lines");
  const lines = requestLines(proxy);
  assert.deepEqual(lines.map((l) => l.request_id), ids);
  const first = lines[0]!;
  assert.equal(first.model, "gpt-4o");
  assert.equal(first.upstream, "good");
  assert.equal(first.status, 200);
  assert.equal(first.attempts, 2);
  assert.equal(typeof first.duration_ms, "number");
  assert.equal(typeof first.key, "string");
  assert.notEqual(first.key, KEYS[1]);
  assert.equal(
    first.key,
    [...proxy.app.rt.candidates.values()].find((c) => c.upstream.name === "good")!.mask,
  );
  const all = proxy.logs.join("\n");
  for (const secret of [...KEYS, "sk-client-secret-000000001"]) {
    assert.ok(!all.includes(secret), `a log line holds ${secret}`);
  }
});

Deno.test("proxy writes a stream's log line when the stream has finished, its duration covering it", async () => {
  await using mock = await startMockUpstream({ chunkDelayMs: 100, chunks: 4 });
  await using proxy = await startProxy(`
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${KEYS[0]}] }
`);
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o", { stream: true }));
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(requestLines(proxy).length, 0, "logged before the stream finished");
  const t0 = performance.now();
  while (!(await reader.read()).done) { /* drain */ }
  const drained = performance.now() - t0;
  await waitFor(() => requestLines(proxy).length === 1, "the request log line");
  const line = requestLines(proxy)[0]!;
  assert.equal(line.status, 200);
  assert.equal(line.stream, true);
  assert.equal(line.outcome, "complete");
  assert.ok((line.duration_ms as number) >= 450, `duration_ms ${line.duration_ms}`);
  assert.ok(
    (line.duration_ms as number) >= drained,
    `duration_ms ${line.duration_ms} < ${drained}`,
  );
});

Deno.test("admin ids and masks work in URLs exactly as /admin/keys lists them", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${mock.baseUrl}", keys: [k1, sk-long-key-aaaaaaaaaaaa1] }
`);
  const listed = await (await fetch(`${proxy.url}/admin/keys`)).json();
  for (const k of listed.keys as { id: string; key: string }[]) {
    for (const name of [k.id, k.key]) {
      const post = { method: "POST", headers: { "content-type": "application/json" } };
      const res = await fetch(`${proxy.url}/admin/keys/${name}/disable`, post);
      assert.equal(res.status, 200, `disable ${name}`);
      await res.body?.cancel();
      const back = await fetch(`${proxy.url}/admin/keys/${name}/enable`, post);
      assert.equal(back.status, 200);
      await back.body?.cancel();
    }
  }
});
