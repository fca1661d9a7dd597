import assert from "node:assert/strict";
import { matchClientKey } from "../../../plugins/middleware/client_auth.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { startProxy } from "../../helpers/proxy.ts";

const UPSTREAM_KEY = "sk-upstream-clientauth-test-000000000001";
const ALICE = "cl-alice-clientauth-test-0000000000000001";
const BOB = "cl-bob-clientauth-test-00000000000000002";

function config(baseUrl: string, clientKeys = `[${ALICE}, { key: ${BOB}, name: bob }]`): string {
  return `
auth:
  client_keys: ${clientKeys}
upstreams:
  m: { base_url: "${baseUrl}", keys: [${UPSTREAM_KEY}] }
`;
}

function chat(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-x", messages: [{ role: "user", content: "hi" }] }),
  });
}

Deno.test("matchClientKey() finds the key presented, or nothing", () => {
  const keys = [{ key: "k-one", name: "one" }, { key: "k-two", name: "two" }];
  assert.equal(matchClientKey(keys, "k-two")?.name, "two");
  assert.equal(matchClientKey(keys, "k-one")?.name, "one");
  assert.equal(matchClientKey(keys, "k-on"), undefined);
  assert.equal(matchClientKey(keys, "k-one "), undefined);
  assert.equal(matchClientKey([], "k-one"), undefined);
});

Deno.test("client_auth lets every request through when no client key is configured", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, "[]"));
  const res = await chat(proxy.url);
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("client_auth refuses a missing key with 401 in OpenAI's error shape", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("content-type"), "application/json");
  const body = await res.json();
  assert.equal(body.error.type, "authentication_error");
  assert.equal(body.error.code, "missing_api_key");
  assert.equal(typeof body.error.message, "string");
  assert.equal(mock.requests.length, 0);
});

Deno.test("client_auth refuses a wrong key with 401 and never echoes it", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const wrong = "cl-wrong-key-clientauth-0000000000000009";
  for (const headers of [{ authorization: `Bearer ${wrong}` }, { "x-api-key": wrong }]) {
    const res = await chat(proxy.url, headers);
    assert.equal(res.status, 401);
    const text = await res.text();
    assert.equal(JSON.parse(text).error.code, "invalid_api_key");
    assert.ok(!text.includes(wrong));
  }
  // a prefix of a real key is not a real key
  const res = await chat(proxy.url, { authorization: `Bearer ${ALICE.slice(0, -1)}` });
  assert.equal(res.status, 401);
  await res.body?.cancel();
  assert.equal(mock.requests.length, 0);
  assert.ok(!proxy.logs.join("\n").includes(wrong));
});

Deno.test("client_auth accepts Bearer, x-api-key and api-key and keeps the key from upstream", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const ways = [
    { authorization: `Bearer ${ALICE}` },
    { "x-api-key": BOB },
    { "api-key": ALICE },
  ];
  for (const headers of ways) {
    const res = await chat(proxy.url, headers);
    assert.equal(res.status, 200, JSON.stringify(headers));
    await res.body?.cancel();
  }
  assert.equal(mock.requests.length, 3);
  for (const r of mock.requests) {
    assert.equal(r.key, UPSTREAM_KEY);
    assert.ok(!JSON.stringify(r.headers).includes(ALICE));
    assert.ok(!JSON.stringify(r.headers).includes(BOB));
  }
  const lines = proxy.logRecords().filter((l) => l.msg === "request");
  assert.deepEqual(lines.map((l) => l.client), ["client-1", "bob", "client-1"]);
});

Deno.test("client_auth is not asked for /health or CORS preflights", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const health = await fetch(`${proxy.url}/health`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
  const preflight = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST" },
  });
  assert.equal(preflight.status, 204);
  await preflight.body?.cancel();
});
