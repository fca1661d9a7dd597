import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "./proxy.ts";

Deno.test("startProxy forwards a chat completion to a mock", async () => {
  await using mock = await startMockUpstream({ name: "m1" });
  await using proxy = await startProxy(`
upstreams:
  m1: { base_url: "${mock.baseUrl}", keys: [sk-test-key-000000000001] }
`);
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-x", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.object, "chat.completion");
  assert.equal(mock.requests[0]?.key, "sk-test-key-000000000001");
});
