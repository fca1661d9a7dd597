/**
 * @module
 * The predecessors' config files, loaded verbatim (only the upstream URLs swapped for mocks by
 * string replacement on the text), forward requests as those systems promised.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { chat, postJson } from "../helpers/e2e.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`../fixtures/${name}`, import.meta.url));

/** Replaces the first occurrence of `from`, failing when it is absent. */
function swap(textIn: string, from: string, to: string): string {
  assert.ok(textIn.includes(from), `fixture no longer holds ${from}`);
  return textIn.replace(from, to);
}

Deno.test("Seed A config.json forwards the path as is with Bearer keys in turn", async () => {
  await using mock = await startMockUpstream();
  const text = swap(fixture("seed_a.json"), "https://api-inference.modelscope.cn", mock.origin);
  await using proxy = await startProxy(text, { source: "config.json" });
  assert.equal(proxy.config.format, "seed-a");
  const paths = ["/v1/chat/completions", "/v1/embeddings", "/v1/chat/completions"];
  for (const path of paths) {
    const body = path === "/v1/embeddings"
      ? { model: "m", input: "x" }
      : chat("Qwen/Qwen2.5-72B-Instruct");
    const res = await postJson(proxy.url + path, body);
    assert.equal(res.status, 200, path);
    await res.body?.cancel();
  }
  const models = await fetch(`${proxy.url}/v1/models`, { signal: AbortSignal.timeout(5000) });
  assert.equal(models.status, 200);
  assert.equal((await models.json()).object, "list");
  assert.deepEqual(mock.requests.map((r) => r.path), [...paths, "/v1/models"]);
  assert.deepEqual(mock.requests.map((r) => r.headers["authorization"]), [
    "Bearer key-1",
    "Bearer key-2",
    "Bearer key-3",
    "Bearer key-1",
  ]);
});

Deno.test("Seed A config.json streams through with the key list's auth", async () => {
  await using mock = await startMockUpstream();
  const text = swap(fixture("seed_a.json"), "https://api-inference.modelscope.cn", mock.origin);
  await using proxy = await startProxy(text, { source: "config.json" });
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("m", { stream: true }));
  assert.equal(res.status, 200);
  assert.ok((await res.text()).endsWith("data: [DONE]\n\n"));
  assert.equal(mock.requests[0]!.key, "key-1");
});

async function seedB() {
  const m1 = await startMockUpstream({ name: "gpt35-a" });
  const m2 = await startMockUpstream({ name: "gpt35-b" });
  const m3 = await startMockUpstream({ name: "gpt4" });
  let text = fixture("seed_b.yaml");
  // in file order: gpt-3.5-turbo's two upstreams, then gpt-4's
  text = swap(text, "https://api.openai.com/v1", m1.baseUrl);
  text = swap(text, "https://api-proxy1.com/v1", m2.baseUrl);
  text = swap(text, "https://api.openai.com/v1", m3.baseUrl);
  const proxy = await startProxy(text, { source: "config.yaml" });
  return {
    m1,
    m2,
    m3,
    proxy,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      for (const m of [m1, m2, m3]) await m.close();
    },
  };
}

Deno.test("Seed B config requires a client key from auth.default_auth.api_keys", async () => {
  await using s = await seedB();
  assert.equal(s.proxy.config.format, "seed-b");
  const none = await postJson(`${s.proxy.url}/v1/chat/completions`, chat("gpt-4"));
  assert.equal(none.status, 401);
  assert.equal((await none.json()).error.type, "authentication_error");
  const wrong = await postJson(`${s.proxy.url}/v1/chat/completions`, chat("gpt-4"), {
    authorization: "Bearer sk-key-1",
  });
  assert.equal(wrong.status, 401);
  await wrong.body?.cancel();
  assert.equal(s.m1.requests.length + s.m2.requests.length + s.m3.requests.length, 0);
  const ok = await postJson(`${s.proxy.url}/v1/chat/completions`, chat("gpt-4"), {
    authorization: "Bearer sk-prod-key-1",
  });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
});

Deno.test("Seed B config routes each model to its own upstreams, api_base including /v1", async () => {
  await using s = await seedB();
  const auth = { authorization: "Bearer sk-prod-key-1" };
  const served: string[] = [];
  for (const model of ["gpt-3.5-turbo", "gpt-3.5-turbo", "gpt-4", "gpt-3.5-turbo", "gpt-4"]) {
    const res = await postJson(`${s.proxy.url}/v1/chat/completions`, chat(model), auth);
    assert.equal(res.status, 200, model);
    assert.equal((await res.json()).model, model);
    served.push(res.headers.get("x-llm-balance-upstream")!);
  }
  assert.deepEqual(served, [
    "gpt-3.5-turbo-1",
    "gpt-3.5-turbo-2",
    "gpt-4-1",
    "gpt-3.5-turbo-1",
    "gpt-4-1",
  ]);
  assert.deepEqual(s.m1.requests.map((r) => [r.path, r.key]), [
    ["/v1/chat/completions", "sk-key-1"],
    ["/v1/chat/completions", "sk-key-1"],
  ]);
  assert.deepEqual(s.m2.requests.map((r) => [r.path, r.key]), [[
    "/v1/chat/completions",
    "sk-key-2",
  ]]);
  assert.deepEqual(s.m3.requests.map((r) => [r.path, r.key]), [
    ["/v1/chat/completions", "sk-..."],
    ["/v1/chat/completions", "sk-..."],
  ]);
});

Deno.test("Seed B config never sends the client key upstream", async () => {
  await using s = await seedB();
  const res = await postJson(`${s.proxy.url}/v1/chat/completions`, chat("gpt-3.5-turbo"), {
    authorization: "Bearer sk-prod-key-1",
  });
  await res.body?.cancel();
  const all = [...s.m1.requests, ...s.m2.requests, ...s.m3.requests];
  assert.equal(all.length, 1);
  assert.ok(!JSON.stringify(all[0]!.headers).includes("sk-prod-key-1"));
});
